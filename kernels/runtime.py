"""Where a kernel may run: compiled on CUDA, or through the Triton interpreter on CPU.

Every op calls `check_launchable` at entry, so that a CPU tensor never silently takes a slow path:
without `TRITON_INTERPRET=1` it gets an error that says how to run it instead.
"""

from __future__ import annotations

import os
import sys
import types

import torch


def interpreter_enabled() -> bool:
    """True when the Triton interpreter is on (the variable must be set before triton is imported)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def check_launchable(op: str, **tensors: torch.Tensor) -> torch.device:
    """Check that the named tensors share one device on which a Triton kernel can run; return it."""
    devices = {name: t.device for name, t in tensors.items() if t is not None}
    if len(set(devices.values())) > 1:
        listed = ", ".join(f"{name} on {dev}" for name, dev in devices.items())
        raise ValueError(f"{op}: all tensors must be on one device, got {listed}")
    device = next(iter(devices.values()))
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


class _OpModule(types.ModuleType):
    """A module that calls its op when called (see `export_op_module`)."""

    def __call__(self, *args, **kwargs):
        return self.__op__(*args, **kwargs)


def export_op_module(module_name: str, op) -> None:
    """Make the module `kernels.<op>` callable as the op of the same name.

    `kernels.softmax` names both a module and its function. The package resolves the name lazily to the
    function, but once anything imports the submodule, Python binds the package attribute to the module.
    Calling that module then calls the function, so `kernels.softmax(x)` works whatever was imported first.
    """
    module = sys.modules[module_name]
    module.__op__ = op
    module.__class__ = _OpModule
