"""Benchmark: FlashAttention (ours) against torch SDPA's flash backend and the PyTorch reference.

Rows cover float16 / bfloat16, head dims 64 and 128, T from 1K to 8K with B chosen so that B * T = 16K
tokens, 16 query heads with 16 (MHA) or 4 (GQA) kv heads, causal and not, and sliding windows of 256 to
1024 at T = 4K and 8K (compare them with the full-causal rows of the same shape). The reference
materializes the (T, S) matrix, so it runs only up to T = 2K. SDPA's flash backend takes no arbitrary
mask, so window rows time our kernel alone.

TFLOPS count the multiply-adds of the visible (query, key) pairs only: 4 * B * Hq * pairs * D for the
forward (QK^T and PV), 2.5 times that for the backward (recomputed QK^T, then dV, dP, dQ, dK), where pairs
is T * S without a mask and the number of unmasked pairs under causal / window masks (about T^2 / 2 for
causal). The backward is timed as (forward + backward) minus forward.

    python -m kernels.bench flash_attention
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from benchmarks.gpu.common import time_ms

TOKENS = 16 * 1024
HEADS = 16
SEQ_LENS = (1024, 2048, 4096, 8192)
WINDOWS = (256, 512, 1024)
WINDOW_SEQ_LENS = (4096, 8192)
REFERENCE_MAX_T = 2048


def visible_pairs(T: int, S: int, causal: bool, window: int | None) -> int:
    """Number of (query, key) pairs the mask keeps (queries aligned to the end of the keys)."""
    pos = torch.arange(T, dtype=torch.int64) + (S - T)  # absolute query positions
    hi = torch.clamp(pos + 1, 0, S) if causal else torch.full_like(pos, S)  # keys [lo, hi)
    lo = torch.clamp(pos - window + 1, min=0) if window is not None else torch.zeros_like(pos)
    return int(torch.clamp(hi - lo, min=0).sum())


def _providers(T: int, causal: bool, window: int | None) -> dict:
    """name -> attention function (q, k, v) -> out, for the providers that apply to this row."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from kernels import flash_attention, flash_attention_ref

    fns = {"ours": lambda q, k, v: flash_attention(q, k, v, causal=causal, window=window)}
    if window is None:

        def sdpa(q, k, v):
            gqa = q.shape[1] != k.shape[1]
            with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
                return F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=gqa)

        fns["sdpa_flash"] = sdpa
    if T <= REFERENCE_MAX_T:
        fns["reference"] = lambda q, k, v: flash_attention_ref(q, k, v, causal=causal, window=window)
    return fns


def _time_fwd_bwd(fn, q, k, v) -> tuple[float, float]:
    do = torch.randn_like(q)
    ms_fwd = time_ms(lambda: fn(q, k, v))

    def fwd_bwd():
        out = fn(q, k, v)
        torch.autograd.grad(out, (q, k, v), do)

    ms_total = time_ms(fwd_bwd)
    return ms_fwd, max(ms_total - ms_fwd, 1e-6)


def _rows_for(dtype: torch.dtype, D: int, T: int, Hkv: int, causal: bool, window: int | None) -> list[dict]:
    B = max(1, TOKENS // T)
    q = torch.randn(B, HEADS, T, D, device="cuda", dtype=dtype, requires_grad=True)
    k = torch.randn(B, Hkv, T, D, device="cuda", dtype=dtype, requires_grad=True)
    v = torch.randn(B, Hkv, T, D, device="cuda", dtype=dtype, requires_grad=True)
    flops_fwd = 4 * B * HEADS * visible_pairs(T, T, causal, window) * D
    dtype_name = str(dtype).replace("torch.", "")
    base = dict(op="flash_attention", B=B, Hq=HEADS, Hkv=Hkv, T=T, D=D, dtype=dtype_name, causal=causal,
                window=window if window is not None else "")
    rows = []
    for provider, fn in _providers(T, causal, window).items():
        try:
            ms_fwd, ms_bwd = _time_fwd_bwd(fn, q, k, v)
        except (torch.cuda.OutOfMemoryError, RuntimeError) as err:  # e.g. a backend refusing this shape
            print(f"skipped {provider} {base}: {str(err).splitlines()[0]}")
            torch.cuda.empty_cache()
            if provider != "sdpa_flash" or Hkv == HEADS:
                continue
            # a flash backend without enable_gqa: give it k and v repeated over the group (outside the timing)
            provider = "sdpa_flash_repeated_kv"
            k_rep, v_rep = (t.detach().repeat_interleave(HEADS // Hkv, 1).requires_grad_() for t in (k, v))
            ms_fwd, ms_bwd = _time_fwd_bwd(fn, q, k_rep, v_rep)
        for name, ms, flops in (("fwd", ms_fwd, flops_fwd), ("bwd", ms_bwd, 2.5 * flops_fwd)):
            rows.append({**base, "pass": name, "provider": provider, "ms": round(ms, 4),
                         "tflops": round(flops / (ms * 1e-3) / 1e12, 2)})
    return rows


def run() -> list[dict]:
    rows = []
    for dtype in (torch.float16, torch.bfloat16):
        for D in (64, 128):
            for T in SEQ_LENS:
                for Hkv in (HEADS, HEADS // 4):
                    for causal in (False, True):
                        rows += _rows_for(dtype, D, T, Hkv, causal, None)
            for T in WINDOW_SEQ_LENS:
                for window in WINDOWS:
                    rows += _rows_for(dtype, D, T, HEADS // 4, True, window)
            print(f"flash_attention: {dtype} D={D} done ({len(rows)} rows)")
    return rows


if __name__ == "__main__":
    for row in run():
        print(row)
