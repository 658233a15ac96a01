"""Triton kernels of the course, each beside a plain PyTorch reference with the same signature.

`kernels.<op>` runs compiled Triton on CUDA tensors, and the Triton interpreter on CPU tensors when
`TRITON_INTERPRET=1` was set before triton was imported; `kernels.<op>_ref` is the PyTorch reference,
which needs no triton (so it works on macOS, where no triton wheel exists).

Each op lives in `kernels/ops/<op>/`: `ref.py` (plain PyTorch) and `triton.py` (kernels and autograd).
Importing this package has no side effects and does not import triton: each name is loaded the first time
it is used. (Hugging Face's `kernels` package shares this import name; the project's distribution
metadata maps `kernels` to this course, see tests/test_kernels_name_clash.py.)
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> module (inside this package) that defines it
_WHERE = {
    "softmax": "ops.softmax.triton",
    "softmax_ref": "ops.softmax.ref",
    "rms_norm": "ops.rms_norm.triton",
    "rms_norm_ref": "ops.rms_norm.ref",
    "flash_attention": "ops.flash_attention.triton",
    "flash_attention_forward": "ops.flash_attention.triton",
    "flash_attention_ref": "ops.flash_attention.ref",
    "selective_scan": "ops.selective_scan.triton",
    "selective_scan_ref": "ops.selective_scan.ref",
    "selective_scan_chunked": "ops.selective_scan.chunked",
    "selective_state_update": "ops.selective_scan.triton",
    "selective_state_update_ref": "ops.selective_scan.ref",
    "attention_mask": "masks",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'kernels' has no attribute {name!r}; it offers {', '.join(__all__)}")
    value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
