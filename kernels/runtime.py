"""Where a kernel may run: compiled on CUDA, or through the Triton interpreter on CPU.

Every op calls `check_launchable` at entry, so that a CPU tensor never silently takes a slow path:
without `TRITON_INTERPRET=1` it gets an error that says how to run it instead.
"""

from __future__ import annotations

import contextlib
import os

import torch


def _flag_on(value: str | None) -> bool:
    return (value or "0").strip().lower() not in ("", "0", "false", "no", "off")


# TRITON_INTERPRET as it was when the first kernel module was imported: `@triton.jit` reads it then, when
# it decorates each kernel, and never again. None until a kernel module is imported.
_INTERPRET_AT_IMPORT: bool | None = None


def record_kernel_import() -> None:
    """Called by each kernels/ops/<op>/triton.py as it is imported (its kernels are decorated then)."""
    global _INTERPRET_AT_IMPORT
    if _INTERPRET_AT_IMPORT is None:
        _INTERPRET_AT_IMPORT = _flag_on(os.environ.get("TRITON_INTERPRET"))


def interpreter_enabled() -> bool:
    """True when the Triton interpreter is on for CPU tensors.

    The kernels are compiled or interpreted as decided when they were imported. Turning TRITON_INTERPRET
    on after that has no effect inside triton, so it is reported here as an error that says what to do,
    instead of failing deep inside triton. (Turning it off later simply refuses CPU tensors.)
    """
    now = _flag_on(os.environ.get("TRITON_INTERPRET"))
    if now and _INTERPRET_AT_IMPORT is False:
        raise RuntimeError(
            "TRITON_INTERPRET=1 was set after the kernels were imported, and triton reads it only at import. "
            "Set it before anything imports triton or the kernels (in the shell, or in the first cell of the "
            "notebook: import os; os.environ['TRITON_INTERPRET'] = '1'), then restart the kernel or process."
        )
    return now


def on_device(device: torch.device):
    """Launch on the tensors' GPU (Triton launches on the current CUDA device); nothing to do on CPU."""
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


def num_warps_for(block: int) -> int:
    """Warps for a one-row program: enough that each thread holds a handful of elements (at most 16)."""
    return 4 if block <= 1024 else 8 if block <= 4096 else 16


def check_same_device(op: str, **tensors: torch.Tensor | None) -> torch.device:
    """Check that the named tensors (None: an absent optional one) share one device; return it.

    The references call it too, so that the kernels and the references refuse mixed devices alike.
    """
    devices = {name: t.device for name, t in tensors.items() if t is not None}
    if not devices:
        raise ValueError(f"{op}: got no tensor")
    if len(set(devices.values())) > 1:
        listed = ", ".join(f"{name} on {dev}" for name, dev in devices.items())
        raise ValueError(f"{op}: all tensors must be on one device, got {listed}")
    return next(iter(devices.values()))


def check_launchable(op: str, **tensors: torch.Tensor | None) -> torch.device:
    """Check that the named tensors share one device on which a Triton kernel can run; return it."""
    device = check_same_device(op, **tensors)
    if device.type == "cuda":
        return device
    if device.type == "cpu" and interpreter_enabled():
        return device
    if device.type == "cpu":
        raise RuntimeError(
            f"{op}: got CPU tensors, but Triton compiles for CUDA only. Move the tensors to a CUDA device, "
            f"or set TRITON_INTERPRET=1 before importing triton to run the (slow) Triton interpreter, "
            f"or call {op}_ref for the plain PyTorch reference."
        )
    raise RuntimeError(
        f"{op}: tensors on {device} are not supported; use CUDA tensors (or CPU with TRITON_INTERPRET=1)"
    )


def check_dtype(op: str, name: str, t: torch.Tensor, allowed: tuple[torch.dtype, ...]) -> None:
    """Raise a clear error when `t` has a dtype the kernel does not support on its device."""
    if t.device.type == "cpu":  # the interpreter runs numpy, which has no bfloat16
        allowed = tuple(d for d in allowed if d != torch.bfloat16)
    if t.dtype not in allowed:
        names = ", ".join(str(d).replace("torch.", "") for d in allowed)
        where = "through the interpreter" if t.device.type == "cpu" else f"on {t.device.type}"
        got = str(t.dtype).replace("torch.", "")
        raise TypeError(f"{op}: {name} has dtype {got}; {where} it must be one of {names}")
