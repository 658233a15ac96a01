"""Bottleneck adapters (Houlsby et al., 2019, arXiv:1902.00751): a small residual MLP after a sublayer.

    h = sublayer(x);  h + up(gelu(down(h)))       # down: dim -> bottleneck, up: bottleneck -> dim

One adapter after the attention and one after the feed-forward of every block, before the block's residual
addition, as in the paper. `up` starts at zero, so the adapted model starts equal to the base. Unlike LoRA
the extra layers stay in the forward pass: an adapter cannot be merged into the weights (it is nonlinear).
Houlsby et al. also train the layer norms; `train_norms=True` does that.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from minimodels.peft.params import freeze, name_matches, replace_module


class BottleneckAdapter(nn.Module):
    """h (..., dim) -> h + up(gelu(down(h)))."""

    def __init__(self, dim: int, bottleneck: int):
        super().__init__()
        if bottleneck < 1:
            raise ValueError(f"bottleneck must be >= 1, got {bottleneck}")
        self.down = nn.Linear(dim, bottleneck)
        self.up = nn.Linear(bottleneck, dim)
        nn.init.zeros_(self.up.weight)  # starts as the identity; `down` keeps nn.Linear's Kaiming-uniform init
        nn.init.zeros_(self.up.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.up(F.gelu(self.down(h)))


class Adapted(nn.Module):
    """A frozen sublayer followed by an adapter: adapter(sublayer(*args, **kwargs))."""

    def __init__(self, sublayer: nn.Module, dim: int, bottleneck: int):
        super().__init__()
        self.sublayer = sublayer
        self.adapter = BottleneckAdapter(dim, bottleneck)

    def forward(self, *args, **kwargs) -> torch.Tensor:
        return self.adapter(self.sublayer(*args, **kwargs))


def apply_adapters(model: nn.Module, bottleneck: int = 16, targets: tuple[str, ...] = ("attn", "mlp"),
                   dim: int | None = None, train_norms: bool = False) -> nn.Module:
    """Put an adapter after every sublayer whose name matches `targets` (default: each block's attention and
    feed-forward); freeze everything else. In place; returns the model."""
    if not isinstance(bottleneck, int) or bottleneck < 1:
        raise ValueError(f"bottleneck must be an int >= 1, got {bottleneck!r}")
    dim = dim if dim is not None else getattr(getattr(model, "config", None), "dim", None)
    if dim is None:
        raise ValueError("dim is needed (the width of the sublayers' output): pass dim= or use a model with config.dim")
    if any(isinstance(m, Adapted) for m in model.modules()):
        raise ValueError("the model already has adapters: apply_adapters once")
    names = [n for n, _ in model.named_modules() if n and name_matches(n, targets)]
    if not names:
        raise ValueError(f"targets={targets} match no submodule of {type(model).__name__}")
    freeze(model)
    for name in names:
        sub = model.get_submodule(name)
        replace_module(model, name, Adapted(sub, dim, bottleneck).to(next(sub.parameters()).device))
    if train_norms:
        for name, p in model.named_parameters():
            if "norm" in name:
                p.requires_grad_(True)
    return model
