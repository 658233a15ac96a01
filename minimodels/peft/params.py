"""Which parameters train: freezing, counting, and finding modules by qualified name.

Every method of the PEFT family is "freeze the model, then make a few (new or existing) tensors trainable";
`trainable_parameters` reports the count and fraction the same way peft's `get_nb_trainable_parameters` does
(a 4-bit QuantLinear counts its weights as frozen parameters, as peft counts bitsandbytes' Params4bit).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class TrainableReport:
    trainable: int
    total: int

    @property
    def fraction(self) -> float:
        return self.trainable / self.total if self.total else 0.0

    def __str__(self) -> str:
        return (f"trainable params: {self.trainable:,} || all params: {self.total:,} || "
                f"trainable%: {100 * self.fraction:.4f}")


def trainable_parameters(model: nn.Module) -> TrainableReport:
    """Trainable and total parameter counts (a shared tensor, e.g. tied embeddings, counts once)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    total += sum(getattr(m, "weight_numel", 0) for m in model.modules() if hasattr(m, "dequantized_weight"))
    return TrainableReport(trainable, total)


def freeze(model: nn.Module) -> nn.Module:
    """requires_grad = False for every parameter; returns the model."""
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def name_matches(name: str, targets: tuple[str, ...] | list[str]) -> bool:
    """peft's rule: a target matches a module named `name` if it equals it or is a dotted suffix of it
    ('q_proj' matches 'layers.0.attn.q_proj'); a target 're:<pattern>' must fullmatch the whole name."""
    for target in targets:
        if target.startswith("re:"):
            if re.fullmatch(target[3:], name):
                return True
        elif name == target or name.endswith("." + target):
            return True
    return False


def replace_module(model: nn.Module, name: str, new: nn.Module) -> None:
    """Put `new` where the submodule called `name` ('layers.0.attn.q_proj') is."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)
