"""RMSNorm on the GPU: the Triton kernels against the eager reference and torch.compile of it.

Two ops per shape: the forward alone ("rms_norm_fwd", bytes = read x + write y) and forward + backward
("rms_norm_fwd_bwd", bytes = forward + read x, dy + write dx). Bandwidth is also given as a fraction of a
device-to-device copy measured in the same run, and `vs_compile` is torch.compile's time over this
provider's time. Targets: the forward at 4096-wide rows reaches at least 80% of copy bandwidth, and
forward + backward is faster than torch.compile of the reference (vs_compile > 1).
"""

from __future__ import annotations

import torch

from benchmarks.gpu.common import compiled, copy_bandwidth_gbs, time_ms
from kernels import rms_norm, rms_norm_ref

DTYPES = (torch.float16, torch.bfloat16, torch.float32)
SHAPES = [(4096, 4096), (8192, 4096), (16384, 4096), (32768, 4096)] + [
    (16384, n) for n in (1024, 2048, 8192, 16384)
]


def bench_shape(m: int, n: int, dtype: torch.dtype, copy_gbs: float) -> list[dict]:
    x = torch.randn(m, n, device="cuda", dtype=dtype, requires_grad=True)
    weight = torch.randn(n, device="cuda", dtype=dtype).mul(0.1).add(1).requires_grad_()
    dy = torch.randn(m, n, device="cuda", dtype=dtype)
    torch.testing.assert_close(rms_norm(x, weight), rms_norm_ref(x, weight), atol=2e-2, rtol=2e-2)
    fns = {"triton": rms_norm, "torch": rms_norm_ref, "torch.compile": compiled(rms_norm_ref)}
    steps = {  # op -> (bytes moved at best, step to time for a given implementation)
        "rms_norm_fwd": (2, lambda fn: lambda: fn(x.detach(), weight.detach())),
        "rms_norm_fwd_bwd": (5, lambda fn: lambda: torch.autograd.grad(fn(x, weight), (x, weight), dy)),
    }
    rows = []
    for op, (passes, step) in steps.items():
        n_bytes = passes * x.numel() * x.element_size()
        times = {}
        for provider, fn in fns.items():
            try:
                times[provider] = time_ms(step(fn))
            except Exception as error:  # e.g. torch.compile unavailable: report the gap, keep going
                print(f"{op} {provider} {m}x{n} {dtype}: {type(error).__name__}: {error}")
        for provider, ms in times.items():
            gbs = n_bytes / (ms * 1e-3) / 1e9
            vs_compile = times["torch.compile"] / ms if "torch.compile" in times else float("nan")
            rows.append(
                dict(op=op, M=m, N=n, dtype=str(dtype).replace("torch.", ""), provider=provider,
                     ms=round(ms, 5), gbs=round(gbs, 1), copy_gbs=round(copy_gbs, 1),
                     ratio=round(gbs / copy_gbs, 3), vs_compile=round(vs_compile, 3))
            )
    return rows


def run() -> list[dict]:
    copy_gbs = copy_bandwidth_gbs()
    return [row for dtype in DTYPES for m, n in SHAPES for row in bench_shape(m, n, dtype, copy_gbs)]
