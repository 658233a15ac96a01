"""Device choice, seeding and progress bars: what every notebook and script starts with."""

from __future__ import annotations

import os
import random

import numpy as np
import torch


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


def progress_bar(iterable, enabled: bool = True, **kwargs):
    """A tqdm.auto bar over `iterable` (a widget in Jupyter, text in a terminal).

    Off when `enabled` is False or when TQDM_DISABLE is set to anything but 0: the notebook runner sets it,
    so that notebooks stored after a batch run never show a bar frozen at 0% (widget state is not saved).
    """
    from tqdm.auto import tqdm

    off = (not enabled) or os.environ.get("TQDM_DISABLE", "0").strip().lower() not in ("", "0", "false")
    return tqdm(iterable, disable=off, **kwargs)
