"""Softmax over rows on the GPU: the fused Triton kernel against torch eager and torch.compile.

Softmax is memory bound, so each row reports its effective bandwidth (bytes read + written once, over
the time) and that bandwidth as a fraction of a device-to-device copy measured in the same run. Target:
at 4096-wide rows the Triton kernel reaches at least 80% of copy bandwidth.
"""

from __future__ import annotations

import torch

from benchmarks.gpu.common import compiled, copy_bandwidth_gbs, time_ms
from kernels import softmax, softmax_ref

DTYPES = (torch.float16, torch.bfloat16, torch.float32)
# (M rows, N columns): 4096-wide rows at several M, then other widths (32768 takes the looped kernel)
SHAPES = [(4096, 4096), (8192, 4096), (16384, 4096), (32768, 4096)] + [
    (16384, n) for n in (1024, 2048, 8192, 16384, 32768)
]


def bench_shape(m: int, n: int, dtype: torch.dtype, copy_gbs: float) -> list[dict]:
    x = torch.randn(m, n, device="cuda", dtype=dtype)
    torch.testing.assert_close(softmax(x), softmax_ref(x), atol=1e-2, rtol=2e-2)
    softmax_compiled = compiled(softmax_ref)
    providers = {
        "triton": lambda: softmax(x),
        "torch": lambda: torch.softmax(x, dim=-1),
        "torch.compile": lambda: softmax_compiled(x),
    }
    n_bytes = 2 * x.numel() * x.element_size()  # read x once, write y once
    rows = []
    for provider, fn in providers.items():
        try:
            ms = time_ms(fn)
        except Exception as error:  # e.g. torch.compile unavailable: report the gap, keep going
            print(f"softmax {provider} {m}x{n} {dtype}: {type(error).__name__}: {error}")
            continue
        gbs = n_bytes / (ms * 1e-3) / 1e9
        rows.append(
            dict(op="softmax", M=m, N=n, dtype=str(dtype).replace("torch.", ""), provider=provider,
                 ms=round(ms, 5), gbs=round(gbs, 1), copy_gbs=round(copy_gbs, 1),
                 ratio=round(gbs / copy_gbs, 3))
        )
    return rows


def run() -> list[dict]:
    copy_gbs = copy_bandwidth_gbs()
    return [row for dtype in DTYPES for m, n in SHAPES for row in bench_shape(m, n, dtype, copy_gbs)]
