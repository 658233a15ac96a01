"""One op: ref.py (plain PyTorch) and triton.py (the kernels)."""
