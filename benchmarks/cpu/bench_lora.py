"""LoRA against full fine-tuning of the same Llama: step time and memory, as ratios measured in one run.

One training step is forward, loss, backward and an AdamW step. Memory is reported three ways:
- state: bytes of parameters, gradients and AdamW state (exact; what LoRA removes: no gradient and no
  optimizer state for the frozen weights);
- activations: bytes autograd saves for the backward pass (LoRA still backpropagates through every layer,
  so these barely change);
- peak: the growth of the process's peak resident memory over a few steps, each method in a fresh process
  (from after a warm-up on a tiny model, so that loading PyTorch's kernel libraries is not counted).
"""

from __future__ import annotations

import multiprocessing
import resource
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from minimodels import Llama, LlamaConfig, TrainConfig
from minimodels.peft import LoRAConfig, apply_lora, trainable_parameters
from minimodels.training.loop import make_optimizer, state_bytes

MODEL = dict(vocab_size=4096, dim=256, n_layers=4, n_heads=8, n_kv_heads=4)
BATCH, SEQ = 8, 128
LORA = LoRAConfig(r=8, alpha=16, target_modules=("q_proj", "k_proj", "v_proj", "o_proj"))


def build(method: str) -> torch.nn.Module:
    torch.manual_seed(0)
    model = Llama(LlamaConfig(**MODEL))
    return apply_lora(model, LORA) if method == "lora" else model


def batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(step)
    ids = torch.randint(0, MODEL["vocab_size"], (BATCH, SEQ + 1), generator=g)
    return ids[:, :-1], ids[:, 1:]


def step(model, optimizer, i: int) -> None:
    x, y = batch(i)
    logits = model(x)
    loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def saved_activation_bytes(model) -> int:
    """Bytes of the tensors autograd keeps for backward in one forward pass (each storage once)."""
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor):
        storage = t.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
        return t

    x, y = batch(0)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        logits = model(x)
        F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    return sum(n for ptr, n in seen.items() if ptr not in params)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def _peak_growth(method: str, steps: int, queue) -> None:
    """In a fresh process: peak resident memory over `steps` training steps, minus the memory before."""
    torch.set_num_threads(1)
    warm = Llama(LlamaConfig(vocab_size=64, dim=32, n_layers=1, n_heads=2))  # load the kernels' libraries first
    warm(torch.zeros(1, 4, dtype=torch.long)).sum().backward()
    del warm
    before = _rss_bytes()
    model = build(method)
    optimizer = make_optimizer(model, TrainConfig(lr=1e-3))
    for i in range(steps):
        step(model, optimizer, i)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux
    queue.put(peak - before)


def peak_growth(method: str, steps: int = 3) -> int | None:
    if not sys.platform.startswith("linux"):
        return None  # /proc and ru_maxrss in kilobytes are Linux's
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_peak_growth, args=(method, steps, queue))
    proc.start()
    value = queue.get(timeout=600)
    proc.join()
    return value


def main(iters: int = 8, warmup: int = 2, rounds: int = 3) -> dict[str, float]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    runs = {}
    for method in ("full", "lora"):
        model = build(method)
        runs[method] = (model, make_optimizer(model, TrainConfig(lr=1e-3)))
    times: dict[str, list[float]] = {m: [] for m in runs}
    for _ in range(rounds):  # interleaved, so machine noise hits both alike
        for method, (model, optimizer) in runs.items():
            ms = []
            for i in range(warmup + iters):
                start = time.perf_counter()
                step(model, optimizer, i)
                if i >= warmup:
                    ms.append((time.perf_counter() - start) * 1e3)
            times[method].append(statistics.median(ms))
    print(f"Llama {MODEL}, batch {BATCH} x {SEQ} tokens, float32, AdamW, 1 thread; LoRA {LORA}")
    result: dict[str, float] = {}
    for method, (model, optimizer) in runs.items():
        state = state_bytes(model, optimizer)
        acts = saved_activation_bytes(model)
        peak = peak_growth(method)
        ms = min(times[method])
        result |= {f"{method}_ms": ms, f"{method}_state_bytes": sum(state.values()), f"{method}_activation_bytes": acts}
        if peak is not None:
            result[f"{method}_peak_bytes"] = peak
        mb = {k: v / 2**20 for k, v in state.items()}
        print(f"{method:<5} {trainable_parameters(model)}")
        print(f"      {ms:8.1f} ms/step | parameters {mb['parameters']:.1f} MB, "
              f"gradients {mb['gradients']:.1f} MB, AdamW {mb['optimizer']:.1f} MB, saved activations "
              f"{acts / 2**20:.1f} MB" + ("" if peak is None else f", peak RSS growth {peak / 2**20:.1f} MB"))
    print(f"LoRA / full: step time {result['lora_ms'] / result['full_ms']:.2f}x, "
          f"state (parameters + gradients + optimizer) {result['lora_state_bytes'] / result['full_state_bytes']:.2f}x, "
          f"saved activations {result['lora_activation_bytes'] / result['full_activation_bytes']:.2f}x"
          + ("" if "lora_peak_bytes" not in result else
             f", peak memory growth {result['lora_peak_bytes'] / result['full_peak_bytes']:.2f}x"))
    torch.set_num_threads(threads)
    return result


if __name__ == "__main__":
    main()
