"""CPU benchmark: greedy decoding with a KV cache against without, and against Hugging Face `generate`;
then a mixture-of-experts forward against a dense model with the same active parameters.

    python -m benchmarks.cpu decode            # two to three minutes on a 2-core CPU

All ratios come from the same run. Each time is the best of the blocks `benchmarks.cpu.timing.measure`
ran after its warm-up call (the slow no-cache runs: one block), given as wall-clock and as process CPU
time: with one thread, CPU time barely moves when other programs share the machine, while wall-clock
does. Models have random weights (speed does not depend on them); the token-by-token agreement of the
outputs is printed.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import torch

from benchmarks.cpu.timing import measure, run_report
from minimodels.generation.cached import generate_cached
from minimodels.generation.generate import generate
from minimodels.models.llama import Llama, LlamaConfig

PROMPT_LEN = 16
MAIN = dict(vocab_size=512, dim=256, n_layers=4, n_heads=8, n_kv_heads=4, max_seq_len=1100)
# without a cache every token re-reads the whole sequence (about 100 s for 1024 tokens of MAIN on a 2-core
# CPU), so the 1024-token cache / no-cache comparison uses this smaller model for both runs
SMALL = dict(vocab_size=512, dim=128, n_layers=2, n_heads=4, n_kv_heads=2, max_seq_len=1100)
SHORT_RUN_S = 3.0  # seconds of timing for the short runs (cached, HF, MoE forward): several blocks


@dataclass
class Run:
    model: str
    new: int  # tokens generated
    method: str
    wall: float  # seconds
    cpu: float  # seconds of process CPU time
    same: bool | None = None  # same tokens as the reference run of its group
    baseline: Run | None = None  # the run this one is compared with
    ratio_label: str = ""


def hf_twin(config: LlamaConfig):
    """A transformers LlamaForCausalLM of this shape and the course model with its weights."""
    from transformers import LlamaConfig as HFLlamaConfig
    from transformers import LlamaForCausalLM

    from minimodels import from_hf

    hf_config = HFLlamaConfig(
        vocab_size=config.vocab_size, hidden_size=config.dim, intermediate_size=config.mlp_hidden,
        num_hidden_layers=config.n_layers, num_attention_heads=config.n_heads,
        num_key_value_heads=config.n_kv_heads, max_position_embeddings=config.max_seq_len,
        rms_norm_eps=config.norm_eps, bos_token_id=None, eos_token_id=None, pad_token_id=None,
    )
    torch.manual_seed(0)
    hf = LlamaForCausalLM(hf_config).eval()
    return hf, from_hf(hf)


def hf_generate(hf, prompt: torch.Tensor, n: int) -> torch.Tensor:
    with torch.no_grad():
        return hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=n, min_new_tokens=n,
                           do_sample=False, use_cache=True, eos_token_id=None, pad_token_id=0)


def decode_runs(name: str, model: Llama, prompt: torch.Tensor, n_new: int, hf=None, no_cache: bool = True):
    """Cached greedy decoding of n_new tokens, against the full re-run (no_cache) and HF generate (hf).

    The cached and HF runs are short: best of the blocks of SHORT_RUN_S seconds of timing; the slow
    no-cache run is timed once (after the timer's warm-up call).
    """
    timing = measure(lambda: generate_cached(model, prompt, n_new, greedy=True), min_run_time=SHORT_RUN_S)
    cached = Run(name, n_new, "ours, KV cache", timing.best_wall, timing.best_cpu)
    ours = timing.output
    runs = [cached]
    if no_cache:
        timing = measure(lambda: generate(model, prompt, n_new, greedy=True))
        runs.insert(0, Run(name, n_new, "ours, no cache (full re-run)", timing.best_wall, timing.best_cpu))
        cached.same, cached.baseline = torch.equal(ours, timing.output), runs[0]
        cached.ratio_label = "x vs no cache"
    if hf is not None:
        timing = measure(lambda: hf_generate(hf, prompt, n_new), min_run_time=SHORT_RUN_S)
        runs.append(Run(name, n_new, "HF generate (use_cache=True)", timing.best_wall, timing.best_cpu,
                        torch.equal(ours, timing.output)))
        # ratio written on the HF row: how much faster ours is (HF time / our time)
        runs[-1].baseline, runs[-1].ratio_label = cached, "x: ours vs HF"
    return runs


def print_decode_table(runs: list[Run]) -> None:
    print(f"{'model':<6} {'new':>5}  {'method':<29} {'wall s':>7} {'cpu s':>7} {'tok/s':>6} "
          f"{'speed-up (wall, cpu)':<28} same tokens")
    for r in runs:
        ratio = ""
        if r.baseline is not None:
            if r.ratio_label.endswith("no cache"):  # cached row: baseline time / this time
                wall, cpu = r.baseline.wall / r.wall, r.baseline.cpu / r.cpu
            else:  # HF row: HF time / our time
                wall, cpu = r.wall / r.baseline.wall, r.cpu / r.baseline.cpu
            ratio = f"{wall:.2f}, {cpu:.2f}{r.ratio_label}"
        same = "" if r.same is None else ("yes" if r.same else "NO")
        print(f"{r.model:<6} {r.new:>5}  {r.method:<29} {r.wall:>7.2f} {r.cpu:>7.2f} {r.new / r.wall:>6.0f} "
              f"{ratio:<28} {same}")


def moe_rows(batch: int, seq: int) -> list[dict]:
    """Forward tokens/s: dense SwiGLU of hidden 2H against 8 experts of hidden H, top-2 (same active size)."""
    base = dict(vocab_size=512, dim=256, n_layers=4, n_heads=8, n_kv_heads=4, max_seq_len=seq)
    hidden = 352
    models = {
        f"dense (hidden {2 * hidden})": Llama(LlamaConfig(**base, mlp_hidden=2 * hidden)),
        f"MoE 8 experts top-2 (hidden {hidden})": Llama(
            LlamaConfig(**base, mlp_hidden=hidden, n_experts=8, top_k=2)
        ),
    }
    ids = torch.randint(0, 512, (batch, seq), generator=torch.Generator().manual_seed(0))
    rows = []
    for name, model in models.items():
        model.eval()
        with torch.no_grad():
            timing = measure(lambda m=model: m(ids), min_run_time=SHORT_RUN_S)
        wall, cpu = timing.best_wall, timing.best_cpu
        rows.append(dict(model=name, params=model.num_parameters(), active=model.num_parameters(active=True),
                         wall=wall, cpu=cpu, tok_s=batch * seq / wall, tok_cpu_s=batch * seq / cpu))
    return rows


def main(argv: list[str] | None = None) -> None:
    """Print the tables; argv (e.g. ["--threads", "2"]) defaults to none."""
    run_report(report, argv, __doc__.splitlines()[0])


def report() -> None:
    print(f"torch {torch.__version__}, CPU threads {torch.get_num_threads()}, batch 1, "
          f"prompt {PROMPT_LEN} tokens, greedy, float32")
    main_config, small_config = LlamaConfig(**MAIN), LlamaConfig(**SMALL)
    hf, model = hf_twin(main_config)
    small = Llama(small_config).eval()
    for name, config, m in (("main", main_config, model), ("small", small_config, small)):
        print(f"{name + ':':<6} dim {config.dim}, {config.n_layers} layers, {config.n_heads} heads, "
              f"{config.n_kv_heads} kv heads, vocab {config.vocab_size} ({m.num_parameters():,} parameters)")
    print("The no-cache run at 1024 tokens uses the small model (minutes on the main one); HF generate runs "
          "the main model.\n")
    prompt = torch.randint(0, 512, (1, PROMPT_LEN), generator=torch.Generator().manual_seed(1))
    runs = decode_runs("main", model, prompt, 256, hf)
    runs += decode_runs("main", model, prompt, 1024, hf, no_cache=False)
    runs += decode_runs("small", small, prompt, 256)
    runs += decode_runs("small", small, prompt, 1024)
    print_decode_table(runs)

    print("\nMixture of experts against dense at equal active parameters (forward, batch 4 x 256 tokens)")
    moe = moe_rows(batch=4, seq=256)
    print(f"{'model':<34} {'params':>10} {'active':>10} {'wall s':>7} {'cpu s':>7} {'tok/s':>6}")
    for r in moe:
        print(f"{r['model']:<34} {r['params']:>10,} {r['active']:>10,} {r['wall']:>7.3f} {r['cpu']:>7.3f} "
              f"{r['tok_s']:>6.0f}")
    print(f"MoE / dense throughput: {moe[1]['tok_s'] / moe[0]['tok_s']:.2f} wall, "
          f"{moe[1]['tok_cpu_s'] / moe[0]['tok_cpu_s']:.2f} cpu "
          f"(with {moe[1]['params'] / moe[0]['params']:.1f}x the parameters)")


if __name__ == "__main__":
    main(sys.argv[1:])
