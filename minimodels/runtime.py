"""Device choice, seeding and parameter counts: what every notebook and script starts with."""

from __future__ import annotations

import random

import numpy as np
import torch
from torch import nn


def pick_device(prefer: str | None = None) -> torch.device:
    """CUDA when present, else CPU; `prefer` ('cpu', 'cuda', 'cuda:1') overrides the choice."""
    if prefer is not None:
        device = torch.device(prefer)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"prefer={prefer!r} asks for CUDA, but no CUDA device is available")
        return device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (CPU and CUDA); return a torch.Generator seeded the same for local use."""
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def num_parameters(module: nn.Module) -> int:
    """Number of parameter values in `module`; a tied (shared) weight counts once."""
    return sum(p.numel() for p in module.parameters())
