"""CPU benchmark: the serving engine (continuous batching over a paged KV cache) against sequential decoding.

    python -m benchmarks.cpu serving          # about two minutes on a 2-core CPU

64 requests of mixed prompt and output lengths, all arriving at once, greedy. The engine decodes them
together (LLMEngine, block size 16); the baselines serve them one after another with `generate_cached`
and with Hugging Face `generate` (on the same weights, through from_hf; HF on the first HF_REQUESTS
requests only, as it is the slowest). Same model, same tokens: the outputs are compared token for token.
Printed: output tokens/s and the ratios, wall-clock and process CPU time (with one thread, CPU time barely
moves when other programs share the machine, wall-clock does); KV memory in use against preallocating
every running request to its maximum length (prompt + max_tokens, and the whole context); time to first
token and time per output token, median and p95.
"""

from __future__ import annotations

import statistics
import sys
import time

import torch

from benchmarks.cpu.bench_decode import hf_generate, hf_twin
from benchmarks.cpu.timing import run_report
from minimodels.generation.cached import generate_cached
from minimodels.models.llama import LlamaConfig
from minimodels.serving import LLMEngine, SamplingParams

MODEL = dict(vocab_size=512, dim=256, n_layers=4, n_heads=8, n_kv_heads=2, max_seq_len=640)
N_REQUESTS, HF_REQUESTS = 64, 16
PROMPT_LENGTHS, OUTPUT_LENGTHS = (32, 384), (32, 160)  # uniform in [lo, hi)


def workload(n: int, seed: int = 0) -> tuple[list[list[int]], list[int]]:
    g = torch.Generator().manual_seed(seed)
    prompt_lengths = torch.randint(*PROMPT_LENGTHS, (n,), generator=g).tolist()
    prompts = [torch.randint(0, MODEL["vocab_size"], (t,), generator=g).tolist() for t in prompt_lengths]
    return prompts, torch.randint(*OUTPUT_LENGTHS, (n,), generator=g).tolist()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def run_engine(model, prompts, max_tokens) -> dict:
    """All requests queued at t0, then engine steps until they finish; latencies and KV use per step."""
    engine = LLMEngine(model, block_size=16)
    ids = [engine.add_request(p, SamplingParams(max_tokens=n)) for p, n in zip(prompts, max_tokens, strict=True)]
    first, last, outputs = {}, {}, {}
    used = allocated = reserved = reserved_ctx = 0
    wall, cpu = time.perf_counter(), time.process_time()
    while engine.has_unfinished_requests():
        outs = engine.step()
        now = time.perf_counter() - wall
        for out in outs:
            first.setdefault(out.request_id, now)
            if out.finished:
                last[out.request_id], outputs[out.request_id] = now, out.token_ids
        step_used, step_allocated = engine.kv_usage()  # slots holding keys, slots of the blocks held
        running = engine.scheduler.running
        used, allocated = used + step_used, allocated + step_allocated
        reserved += sum(r.num_prompt_tokens + r.params.max_tokens for r in running)  # preallocated to max
        reserved_ctx += len(running) * engine.max_model_len  # preallocated to the whole context
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    ttft = [first[i] for i in ids]
    tpot = [(last[i] - first[i]) / (len(outputs[i]) - 1) for i in ids if len(outputs[i]) > 1]
    return dict(wall=wall, cpu=cpu, outputs=[outputs[i] for i in ids], ttft=ttft, tpot=tpot,
                e2e=[last[i] for i in ids], steps=engine.num_steps, waste=1 - used / allocated,
                waste_max=1 - used / reserved, waste_ctx=1 - used / reserved_ctx,
                kv_bytes_per_token=engine.runner.kv_bytes_per_block // engine.block_manager.block_size)


def run_sequential(generate_one, prompts, max_tokens) -> dict:
    """One request after another; end-to-end latency of request i includes waiting for those before it."""
    outputs, e2e = [], []
    wall, cpu = time.perf_counter(), time.process_time()
    for prompt, n in zip(prompts, max_tokens, strict=True):
        ids = torch.tensor([prompt])
        outputs.append(generate_one(ids, n)[0, len(prompt):].tolist())
        e2e.append(time.perf_counter() - wall)
    return dict(wall=time.perf_counter() - wall, cpu=time.process_time() - cpu, outputs=outputs, e2e=e2e)


def report() -> None:
    config = LlamaConfig(**MODEL)
    hf, model = hf_twin(config)
    prompts, max_tokens = workload(N_REQUESTS)
    n_out = sum(max_tokens)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), float32, greedy")
    print(f"model: Llama dim {config.dim}, {config.n_layers} layers, {config.n_heads} heads, {config.n_kv_heads} kv "
          f"heads, vocab {config.vocab_size} ({model.num_parameters():,} parameters)")
    print(f"workload: {N_REQUESTS} requests at once, prompts {min(map(len, prompts))}-{max(map(len, prompts))} "
          f"tokens (mean {statistics.mean(map(len, prompts)):.0f}), outputs {min(max_tokens)}-{max(max_tokens)} "
          f"(mean {statistics.mean(max_tokens):.0f}), {n_out} output tokens\n")

    LLMEngine(model).generate(prompts[:4], SamplingParams(max_tokens=4))  # warm-up
    engine = run_engine(model, prompts, max_tokens)
    cached = run_sequential(lambda ids, n: generate_cached(model, ids, n, greedy=True), prompts, max_tokens)
    k = HF_REQUESTS
    hf_run = run_sequential(lambda ids, n: hf_generate(hf, ids, n), prompts[:k], max_tokens[:k])
    hf_out = sum(max_tokens[:k])
    # the engine's tokens/s on the HF subset: its whole run's rate (the subset shares the batch)
    rows = [("engine (paged KV, continuous batching)", N_REQUESTS, n_out, engine, None),
            ("sequential generate_cached", N_REQUESTS, n_out, cached, engine["outputs"]),
            (f"sequential HF generate (first {k})", k, hf_out, hf_run, engine["outputs"][:k])]
    print(f"{'method':<40} {'requests':>8} {'tokens':>7} {'wall s':>7} {'cpu s':>7} {'tok/s wall':>10} "
          f"{'tok/s cpu':>9}  same tokens as the engine")
    for name, n_req, tokens, run, reference in rows:
        agree = None if reference is None else sum(a == b for a, b in zip(run["outputs"], reference, strict=True))
        same = "" if agree is None else f"{agree}/{n_req}"
        print(f"{name:<40} {n_req:>8} {tokens:>7} {run['wall']:>7.2f} {run['cpu']:>7.2f} "
              f"{tokens / run['wall']:>10.0f} {tokens / run['cpu']:>9.0f}  {same}")
    for name, run, tokens in (("generate_cached", cached, n_out), ("HF generate", hf_run, hf_out)):
        wall = (n_out / engine["wall"]) / (tokens / run["wall"])
        cpu = (n_out / engine["cpu"]) / (tokens / run["cpu"])
        print(f"engine / sequential {name}: {wall:.2f}x output tokens/s (wall), {cpu:.2f}x (cpu)")

    print(f"\nKV memory ({engine['kv_bytes_per_token']} bytes per token), averaged over the engine's "
          f"{engine['steps']} steps:")
    print(f"  paged, blocks of 16: {100 * engine['waste']:.1f}% of the held slots unused (the ends of last blocks)")
    print(f"  preallocated to prompt + max_tokens per request: {100 * engine['waste_max']:.1f}% unused")
    print(f"  preallocated to the whole context ({MODEL['max_seq_len']}) per request: "
          f"{100 * engine['waste_ctx']:.1f}% unused")
    ms = lambda values, q: 1000 * percentile(values, q)  # noqa: E731
    print(f"\nlatency, all {N_REQUESTS} requests arriving at once (wall-clock, ms):")
    print(f"  engine: time to first token median {ms(engine['ttft'], 50):.0f}, p95 {ms(engine['ttft'], 95):.0f}; "
          f"time per output token median {ms(engine['tpot'], 50):.1f}, p95 {ms(engine['tpot'], 95):.1f}")
    print(f"  end-to-end: engine median {ms(engine['e2e'], 50):.0f}, p95 {ms(engine['e2e'], 95):.0f}; "
          f"sequential generate_cached median {ms(cached['e2e'], 50):.0f}, p95 {ms(cached['e2e'], 95):.0f}")


def main(argv: list[str] | None = None) -> None:
    """Print the tables; argv (e.g. ["--threads", "2"]) defaults to none."""
    run_report(report, argv, __doc__.splitlines()[0])


if __name__ == "__main__":
    main(sys.argv[1:])
