"""Fine-tuning a chosen subset of the existing parameters: everything, the last layers, or the biases.

- full fine-tuning: every parameter trains (the reference the others are measured against);
- last layers only: the top `n_layers` blocks and the final norm train, the rest is frozen (the classic
  "freeze the feature extractor" recipe);
- BitFit (Ben Zaken et al., 2021, arXiv:2106.10199): only the bias terms train. Llama has no biases, so
  here every linear layer gets a zero bias (the model is unchanged until trained) and only those train.
"""

from __future__ import annotations

import torch
from torch import nn

from minimodels.peft.params import freeze


def full_finetune(model: nn.Module) -> nn.Module:
    """Every parameter trainable."""
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def train_last_layers(model: nn.Module, n_layers: int = 1, include_head: bool = False) -> nn.Module:
    """Train the last `n_layers` of model.layers and the final norm (and lm_head if include_head)."""
    layers = getattr(model, "layers", None)
    if not isinstance(layers, nn.ModuleList):
        raise TypeError(f"{type(model).__name__} has no `layers` ModuleList of blocks")
    if not isinstance(n_layers, int) or not 1 <= n_layers <= len(layers):
        raise ValueError(f"n_layers must be an int in [1, {len(layers)}], got {n_layers!r}")
    freeze(model)
    top = list(layers[len(layers) - n_layers:])
    if hasattr(model, "norm"):
        top.append(model.norm)
    if include_head:
        top.append(model.lm_head)
    for module in top:
        for p in module.parameters():
            p.requires_grad_(True)
    return model


def apply_bitfit(model: nn.Module) -> nn.Module:
    """Train only biases; a linear without one gets a zero bias first (so the outputs do not change)."""
    freeze(model)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(model).__name__} has no nn.Linear layers to train biases of")
    for m in linears:
        if m.bias is None:
            m.bias = nn.Parameter(torch.zeros(m.out_features, device=m.weight.device, dtype=m.weight.dtype))
        m.bias.requires_grad_(True)
    return model
