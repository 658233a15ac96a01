"""Argument checks shared by the alignment losses: tensors, matching shapes, boolean-like masks."""

from __future__ import annotations

import torch


def check_tensor(op: str, name: str, t, dim: int | None = None) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if dim is not None and t.dim() != dim:
        raise ValueError(f"{op}: {name} must have {dim} dims, got shape {tuple(t.shape)}")
    return t


def check_same_shape(op: str, **tensors: torch.Tensor) -> tuple[int, ...]:
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    if len(set(shapes.values())) > 1:
        listed = ", ".join(f"{name} {shape}" for name, shape in shapes.items())
        raise ValueError(f"{op}: these tensors must have one shape, got {listed}")
    return next(iter(shapes.values()))


def check_mask(op: str, mask: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """A 0/1 (or bool) mask of the given shape, as float; at least one 1 in all."""
    check_tensor(op, "mask", mask)
    if tuple(mask.shape) != tuple(shape):
        raise ValueError(f"{op}: mask must have shape {tuple(shape)}, got {tuple(mask.shape)}")
    m = mask.float()
    if not torch.all((m == 0) | (m == 1)):
        raise ValueError(f"{op}: mask must hold only 0 and 1")
    if m.sum() == 0:
        raise ValueError(f"{op}: mask selects no token (empty completions)")
    return m
