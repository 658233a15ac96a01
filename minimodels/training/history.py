"""Smoothing for loss curves: a per-batch training loss is noisy; its moving average shows the trend."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["smooth"]


def smooth(values: Sequence[float] | np.ndarray, window: int = 10) -> np.ndarray:
    """Moving average over `window` consecutive values ("valid" mode: len(values) - window + 1 points).

    Point i is the mean of values[i : i + window], so it belongs at x = i + window - 1 (the last step it
    averages). Fewer values than the window: they are returned unchanged, as floats.
    """
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"smooth: window must be a positive int, got {window!r}")
    values = np.asarray(values, dtype=float)
    if values.ndim != 1:
        raise ValueError(f"smooth: values must be one-dimensional, got shape {values.shape}")
    if len(values) < window:
        return values
    return np.convolve(values, np.ones(window) / window, mode="valid")
