"""Triton kernels of the course, each beside a plain PyTorch reference with the same signature.

`kernels.<op>` runs compiled Triton on CUDA tensors, and the Triton interpreter on CPU tensors when
`TRITON_INTERPRET=1` was set before triton was imported; `kernels.<op>_ref` is the PyTorch reference.

Importing this package has no side effects and does not import triton: each op's module is loaded the
first time one of its names is used. (Hugging Face's `kernels` package shares this import name; the
project's distribution metadata maps `kernels` to this course, see tests/test_kernels_name_clash.py.)
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> module (inside this package) that defines it
_WHERE = {
    "softmax": "softmax",
    "softmax_ref": "softmax",
    "rms_norm": "rmsnorm",
    "rms_norm_ref": "rmsnorm",
    "flash_attention": "flash_attention",
    "flash_attention_ref": "flash_attention",
    "selective_scan": "selective_scan",
    "selective_scan_ref": "selective_scan_torch",  # the PyTorch ones load without triton
    "selective_scan_chunked": "selective_scan_torch",
    "selective_state_update": "selective_scan",
    "selective_state_update_ref": "selective_scan_torch",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'kernels' has no attribute {name!r}; it offers {', '.join(__all__)}")
    module = importlib.import_module(f"{__name__}.{_WHERE[name]}")
    return getattr(module, name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
