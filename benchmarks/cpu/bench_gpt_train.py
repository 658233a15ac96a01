"""CPU training speed of the course GPT against a single-file GPT, same settings, same run.

The well-known small CPU setting of character-level GPTs: 4 layers, 4 heads, width 128, block 64,
batch 12, dropout 0, float32. Prints ms per iteration and tokens/s for both, and their ratio.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from benchmarks.cpu.single_file_gpt import SingleFileGPT
from benchmarks.cpu.timing import measure
from minimodels import GPT, CharDataset, GPTConfig, TrainConfig
from minimodels.training.loop import make_optimizer

SETTINGS = dict(n_layer=4, n_head=4, n_embd=128, block_size=64, batch_size=12)


def training_step(model, optimizer, get_batch):
    """One full training iteration (batch, forward, loss, backward, clip, step), the same for both models."""

    def step():
        x, y = get_batch("train")
        logits = model(x)
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()

    return step


def main(seconds_per_round: float = 2.0, rounds: int = 3) -> dict[str, float]:
    torch.manual_seed(0)
    data = CharDataset.from_corpus()
    get_batch = data.batch_fn(SETTINGS["batch_size"], SETTINGS["block_size"])
    vocab = data.tokenizer.vocab_size
    ours = GPT(GPTConfig(vocab_size=vocab, block_size=SETTINGS["block_size"], n_layer=SETTINGS["n_layer"],
                         n_head=SETTINGS["n_head"], n_embd=SETTINGS["n_embd"], dropout=0.0))
    baseline = SingleFileGPT(vocab, SETTINGS["block_size"], SETTINGS["n_layer"], SETTINGS["n_head"], SETTINGS["n_embd"])
    runs = {
        "course GPT": (ours, make_optimizer(ours, TrainConfig(lr=1e-3))),
        "single-file GPT": (baseline, baseline.configure_optimizer(1e-3)),
    }
    medians: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):  # interleave rounds so that machine noise hits both alike
        for name, (model, optimizer) in runs.items():
            timing = measure(training_step(model, optimizer, get_batch), min_run_time=seconds_per_round)
            medians[name].append(timing.median_wall * 1e3)  # ms per iteration
    tokens = SETTINGS["batch_size"] * SETTINGS["block_size"]
    print(f"settings: {SETTINGS}, vocab {vocab}, float32, {torch.get_num_threads()} threads")
    result = {}
    for name, values in medians.items():
        ms = min(values)  # best of the rounds' medians
        result[name] = ms
        print(f"{name:<16} {ms:7.2f} ms/iter  {tokens / ms * 1e3:9.0f} tokens/s")
    ratio = result["single-file GPT"] / result["course GPT"]
    print(f"speed ratio course / single-file: {ratio:.2f}x (>= 1 means the course GPT is at least as fast)")
    return result


if __name__ == "__main__":
    main()
