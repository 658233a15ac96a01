"""Shared pieces of the GPU benchmarks: the environment row, timing, torch.compile baselines, and the
copy-bandwidth ceiling."""

from __future__ import annotations

import platform

import torch


def environment() -> dict:
    """GPU name and library versions, written into every CSV row."""
    import triton

    return {
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "cpu",
        "torch": torch.__version__,
        "triton": triton.__version__,
    }


def time_ms(fn, warmup_ms: int = 25, rep_ms: int = 100) -> float:
    """Median milliseconds of `fn()` on the GPU (CUDA events through triton.testing.do_bench)."""
    from triton.testing import do_bench

    return float(do_bench(fn, warmup=warmup_ms, rep=rep_ms, return_mode="median"))


def compiled(fn):
    """torch.compile of `fn` with fresh caches, so that every shape compiles once (no recompile limit)."""
    torch._dynamo.reset()
    return torch.compile(fn, dynamic=False)


def copy_bandwidth_gbs(n_bytes: int = 1 << 30) -> float:
    """Device-to-device copy bandwidth (bytes read + bytes written per second), the memory ceiling."""
    src = torch.empty(n_bytes // 4, dtype=torch.float32, device="cuda").uniform_()
    dst = torch.empty_like(src)
    ms = time_ms(lambda: dst.copy_(src))
    return 2 * n_bytes / (ms * 1e-3) / 1e9
