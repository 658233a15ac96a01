"""LoRA against full fine-tuning of the same Llama: step time and peak memory, as ratios measured in one run.

One training step is forward, loss, backward and an AdamW step. Memory is reported three ways:
- state: bytes of parameters, gradients and AdamW state (exact; what LoRA removes: no gradient and no
  optimizer state for the frozen weights);
- saved activations: bytes autograd keeps for the backward pass (LoRA still backpropagates through every
  layer, but a frozen linear layer needs no copy of its input for a weight gradient);
- peak: the most tensor memory alive at any moment of a step (parameters and optimizer state held before it,
  plus the running sum of the allocations and frees that PyTorch's profiler records during it).
"""

from __future__ import annotations

import statistics
import time

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

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
    optimizer.zero_grad(set_to_none=True)
    x, y = batch(i)
    logits = model(x)
    loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
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


def peak_step_bytes(model, optimizer, i: int) -> int:
    """Peak tensor bytes alive during one training step (after a first step has created the AdamW state)."""
    optimizer.zero_grad(set_to_none=True)
    held = sum(state_bytes(model, optimizer).values())  # parameters and optimizer state; no gradients yet
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step(model, optimizer, i)
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events() if e.name() == "[memory]")
    running = peak = 0
    for _, nbytes in events:  # allocations are positive, frees negative
        running += nbytes
        peak = max(peak, running)
    return held + peak


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
        peak = peak_step_bytes(model, optimizer, warmup + iters)
        state = state_bytes(model, optimizer)  # after a step: gradients of the trainable parameters exist
        acts = saved_activation_bytes(model)
        ms = min(times[method])
        result |= {f"{method}_ms": ms, f"{method}_state_bytes": sum(state.values()),
                   f"{method}_activation_bytes": acts, f"{method}_peak_bytes": peak}
        mb = {k: v / 2**20 for k, v in state.items()}
        print(f"{method:<5} {trainable_parameters(model)}")
        print(f"      {ms:8.1f} ms/step | parameters {mb['parameters']:.1f} MB, gradients {mb['gradients']:.1f} MB, "
              f"AdamW {mb['optimizer']:.1f} MB, saved activations {acts / 2**20:.1f} MB, peak {peak / 2**20:.1f} MB")
    keys = ("ms", "state_bytes", "activation_bytes", "peak_bytes")
    ratio = {k: result[f"lora_{k}"] / result[f"full_{k}"] for k in keys}
    print(f"LoRA / full: step time {ratio['ms']:.2f}x, peak memory {ratio['peak_bytes']:.2f}x, state (parameters + "
          f"gradients + optimizer) {ratio['state_bytes']:.2f}x, saved activations {ratio['activation_bytes']:.2f}x")
    torch.set_num_threads(threads)
    return result


if __name__ == "__main__":
    main()
