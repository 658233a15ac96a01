"""Selective scan on the GPU: Triton against the chunked PyTorch scan, its torch.compile, and the sequential
reference (smallest L only: it launches a few kernels per time step).

Shapes of a Mamba-130M-like layer: batch 4, dim 1536, N 16, L 512 .. 4096, input-dependent B and C, with
D, z, delta_bias and softplus; float32 and bfloat16 inputs. Modes: forward, and forward + backward.

GB/s counts the bytes a scan must move at least (u, delta, z, B, C read, out written; the backward re-reads
them with dout and writes du, ddelta, dz and float32 dB, dC), divided by the time; `copy_fraction` compares
it with the device-to-device copy bandwidth measured in the same run.

    python -m kernels.bench selective_scan
"""

from __future__ import annotations

import torch

from benchmarks.gpu import common
from kernels import selective_scan, selective_scan_chunked, selective_scan_ref

BATCH, DIM, STATE = 4, 1536, 16
LENGTHS = (512, 1024, 2048, 4096)
DTYPES = (torch.float32, torch.bfloat16)
CHUNK = 256  # chunk_size of the PyTorch chunked scan
DIFFERENTIABLE = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")


def make_inputs(length: int, dtype: torch.dtype) -> dict:
    g = torch.Generator(device="cuda").manual_seed(0)
    randn = lambda *shape: torch.randn(*shape, device="cuda", generator=g)
    return dict(
        u=randn(BATCH, DIM, length).to(dtype),
        delta=(randn(BATCH, DIM, length) * 0.5 - 1).to(dtype),
        A=-torch.exp(randn(DIM, STATE) * 0.5),
        B=randn(BATCH, STATE, length).to(dtype),
        C=randn(BATCH, STATE, length).to(dtype),
        D=randn(DIM),
        z=randn(BATCH, DIM, length).to(dtype),
        delta_bias=randn(DIM) * 0.1,
        delta_softplus=True,
    )


def min_bytes(length: int, dtype: torch.dtype, backward: bool) -> int:
    """Bytes that must cross memory: (batch, dim, L) and (batch, N, L) tensors, parameters neglected."""
    size = torch.finfo(dtype).bits // 8
    channel_l, state_l = BATCH * DIM * length, BATCH * STATE * length
    forward = (4 * channel_l + 2 * state_l) * size  # u, delta, z, B, C in; out
    if not backward:
        return forward
    backward_bytes = (7 * channel_l + 2 * state_l) * size + 2 * state_l * 4  # + dout in; du, ddelta, dz, dB, dC
    return forward + backward_bytes


def make_call(scan, inputs: dict, backward: bool):
    """A closure running the scan (and, if asked, the gradients of every tensor input)."""
    if not backward:
        def forward():
            with torch.no_grad():
                return scan(**inputs)
        return forward
    leaves = {k: (v.detach().requires_grad_() if k in DIFFERENTIABLE else v) for k, v in inputs.items()}
    grad_out = torch.randn(BATCH, DIM, inputs["u"].shape[-1], device="cuda", dtype=inputs["u"].dtype)
    params = [leaves[k] for k in DIFFERENTIABLE]

    def forward_backward():
        return torch.autograd.grad(scan(**leaves), params, grad_out)

    return forward_backward


def providers(length: int):
    scan_compiled = common.compiled(selective_scan_chunked)
    found = {
        "triton": selective_scan,
        "torch_chunked": lambda **kw: selective_scan_chunked(**kw, chunk_size=CHUNK),
        "torch_chunked_compiled": lambda **kw: scan_compiled(**kw, chunk_size=CHUNK),
    }
    if length == min(LENGTHS):
        found["sequential_ref"] = selective_scan_ref
    return found


def run() -> list[dict]:
    copy_gbs = common.copy_bandwidth_gbs()
    print(f"device copy bandwidth: {copy_gbs:.0f} GB/s")
    rows = []
    for dtype in DTYPES:
        for length in LENGTHS:
            inputs = make_inputs(length, dtype)
            reference = selective_scan_chunked(**inputs, chunk_size=CHUNK).float()
            error = (selective_scan(**inputs).float() - reference).abs().max().item()
            for mode, backward in (("fwd", False), ("fwd+bwd", True)):
                nbytes = min_bytes(length, dtype, backward)
                for provider, scan in providers(length).items():
                    row = dict(
                        op="selective_scan", mode=mode, provider=provider, dtype=str(dtype).replace("torch.", ""),
                        batch=BATCH, dim=DIM, state=STATE, L=length,
                        shape=f"({BATCH}, {DIM}, {length}) N={STATE}",
                    )
                    try:
                        ms = common.time_ms(make_call(scan, inputs, backward))
                        gbs = nbytes / (ms * 1e-3) / 1e9
                        row.update(ms=ms, gbs=gbs, copy_gbs=copy_gbs, copy_fraction=gbs / copy_gbs)
                    except (torch.cuda.OutOfMemoryError, RuntimeError) as exc:  # e.g. the reference at large L
                        row.update(ms=float("nan"), error=type(exc).__name__)
                    if provider == "triton":
                        row["max_abs_err_vs_chunked"] = error
                    rows.append(row)
                    print({k: (f"{v:.3g}" if isinstance(v, float) else v) for k, v in row.items()})
                    torch.cuda.empty_cache()
            del inputs, reference
    _add_speedups(rows)
    return rows


def _add_speedups(rows: list[dict]) -> None:
    """speedup = provider's ms / triton's ms at the same dtype, L and mode (how much faster Triton is)."""
    triton_ms = {(r["dtype"], r["L"], r["mode"]): r["ms"] for r in rows if r["provider"] == "triton"}
    for r in rows:
        r["triton_speedup"] = r["ms"] / triton_ms[(r["dtype"], r["L"], r["mode"])]
