"""LoRA: a frozen weight W plus a trainable low-rank update, W + (alpha / r) * B @ A (Hu et al., 2021,
arXiv:2106.09685).

    model = apply_lora(model, LoRAConfig(r=8, alpha=16, target_modules=("q_proj", "v_proj")))
    ... train: only the lora_A / lora_B tensors have requires_grad ...
    save_lora(model, "adapter.safetensors")    # the adapter alone: kilobytes, not the whole model
    merge_lora(model)                          # fold B @ A into W: the same latency as the base model

A (r, in_features) starts Kaiming-uniform and B (out_features, r) at zero, as peft initializes them, so a
fresh LoRA model computes exactly what its base does and training starts from the base model. Dropout acts
on the input of the low-rank branch only. rsLoRA (Kalajdzievski, 2023, arXiv:2312.03732) scales by
alpha / sqrt(r) instead of alpha / r, so that the update does not shrink as the rank grows.

The logits equal peft's `get_peft_model` on the same Llama with the same A and B (tests/test_lora.py).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from minimodels.peft.params import freeze, name_matches, replace_module
from minimodels.peft.quant import QuantLinear


@dataclass
class LoRAConfig:
    r: int = 8
    alpha: float = 16
    dropout: float = 0.0
    target_modules: tuple[str, ...] = ("q_proj", "v_proj")  # name suffixes, or "re:<pattern>" on the full name
    use_rslora: bool = False

    def __post_init__(self):
        def fail(field: str, reason: str):
            raise ValueError(f"LoRAConfig.{field}={getattr(self, field)!r}: {reason}")

        if not isinstance(self.r, int) or isinstance(self.r, bool) or self.r < 1:
            fail("r", "must be an int >= 1 (the rank of the update B @ A)")
        if not isinstance(self.alpha, (int, float)) or self.alpha <= 0:
            fail("alpha", "must be a number > 0 (the update is scaled by alpha / r)")
        if not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            fail("dropout", "must be in [0, 1)")
        if isinstance(self.target_modules, str):
            self.target_modules = (self.target_modules,)
        self.target_modules = tuple(self.target_modules)
        if not self.target_modules or not all(isinstance(t, str) and t for t in self.target_modules):
            fail("target_modules", "must be a non-empty list of non-empty module names or 're:' patterns")

    @property
    def scaling(self) -> float:
        return self.alpha / math.sqrt(self.r) if self.use_rslora else self.alpha / self.r


class LoRALinear(nn.Module):
    """base(x) + scaling * dropout(x) @ A.T @ B.T, with `base` (nn.Linear or QuantLinear) frozen."""

    def __init__(self, base: nn.Module, r: int, alpha: float, dropout: float = 0.0, use_rslora: bool = False):
        super().__init__()
        if not isinstance(base, (nn.Linear, QuantLinear)):
            raise TypeError(f"base must be an nn.Linear or QuantLinear, got {type(base).__name__}")
        self.base = base
        for p in base.parameters():
            p.requires_grad_(False)
        self.r, self.alpha, self.use_rslora = r, alpha, use_rslora
        self.scaling = alpha / math.sqrt(r) if use_rslora else alpha / r
        device = base.weight.device if isinstance(base, nn.Linear) else base.data.device
        self.lora_A = nn.Parameter(torch.empty(r, base.in_features, device=device))  # (r, in)
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, r, device=device))  # (out, r)
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # as nn.Linear and peft: U(-1/sqrt(in), 1/sqrt(in))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.merged = False

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    def delta_weight(self) -> torch.Tensor:
        """scaling * B @ A (out, in): what LoRA adds to W."""
        return self.scaling * (self.lora_B @ self.lora_A)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)  # (..., out)
        if self.merged:
            return out
        update = F.linear(F.linear(self.dropout(x).to(self.lora_A.dtype), self.lora_A), self.lora_B)  # (..., out)
        return out + self.scaling * update.to(out.dtype)

    def merge(self) -> None:
        """W <- W + scaling * B @ A; the LoRA branch is then skipped."""
        if self.merged:
            return
        if isinstance(self.base, QuantLinear):
            raise ValueError("cannot merge LoRA into a quantized (QuantLinear) base: the sum would have to be "
                             "re-quantized and lose the update; call merge_lora(model, dequantize=True) to "
                             "replace the base by its dequantized float weight first")
        with torch.no_grad():
            self.base.weight += self.delta_weight().to(self.base.weight.dtype)
        self.merged = True

    def unmerge(self) -> None:
        """W <- W - scaling * B @ A: back to the base weight and a separate LoRA branch."""
        if not self.merged:
            return
        with torch.no_grad():
            self.base.weight -= self.delta_weight().to(self.base.weight.dtype)
        self.merged = False

    def extra_repr(self) -> str:
        return f"r={self.r}, alpha={self.alpha}, scaling={self.scaling:.4g}, merged={self.merged}"


def lora_modules(model: nn.Module) -> dict[str, LoRALinear]:
    return {name: m for name, m in model.named_modules() if isinstance(m, LoRALinear)}


def apply_lora(model: nn.Module, config: LoRAConfig) -> nn.Module:
    """Wrap every linear whose qualified name matches config.target_modules in a LoRALinear; freeze the rest.

    In place; returns the model. A target that matches no linear layer raises ValueError listing the names
    of the linear layers there are.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not isinstance(config, LoRAConfig):
        raise TypeError(f"config must be a LoRAConfig, got {type(config).__name__}")
    if lora_modules(model):
        raise ValueError(f"the model already has LoRA layers ({', '.join(list(lora_modules(model))[:4])}, ...): "
                         "apply_lora once, or load_lora / merge_lora on the existing adapter")
    linears = [name for name, m in model.named_modules() if isinstance(m, (nn.Linear, QuantLinear))]
    targets = [name for name in linears if name_matches(name, config.target_modules)]
    if not targets:
        shown = sorted({name.rsplit(".", 1)[-1] for name in linears})
        raise ValueError(f"LoRAConfig.target_modules={config.target_modules} matches no linear layer of "
                         f"{type(model).__name__}; linear layers are named {shown} (e.g. {linears[:3]})")
    freeze(model)
    for name in targets:
        base = model.get_submodule(name)
        replace_module(model, name, LoRALinear(base, config.r, config.alpha, config.dropout, config.use_rslora))
    model.lora_config = config
    return model


def _require_lora(model: nn.Module) -> dict[str, LoRALinear]:
    modules = lora_modules(model)
    if not modules:
        raise ValueError(f"{type(model).__name__} has no LoRA layers: call apply_lora(model, config) first")
    return modules


def merge_lora(model: nn.Module, dequantize: bool = False) -> nn.Module:
    """Fold every adapter into its base weight (in place). A forward then costs what the base model costs.

    dequantize=True first replaces a QuantLinear base by an nn.Linear holding its dequantized weight.
    """
    for module in _require_lora(model).values():
        if dequantize and isinstance(module.base, QuantLinear):
            module.base = module.base.to_linear().requires_grad_(False)
        module.merge()
    return model


def unmerge_lora(model: nn.Module) -> nn.Module:
    """Undo merge_lora: the base weights come back (to float rounding) and the branches are separate again."""
    for module in _require_lora(model).values():
        module.unmerge()
    return model


def merge_and_unload(model: nn.Module) -> nn.Module:
    """Merge, then replace each LoRALinear by its (merged) base layer: a plain model with no LoRA left."""
    for name, module in _require_lora(model).items():
        module.merge()
        replace_module(model, name, module.base)
    if hasattr(model, "lora_config"):
        del model.lora_config
    return model


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The adapter tensors only: {'<module>.lora_A': (r, in), '<module>.lora_B': (out, r)}."""
    out = {}
    for name, module in _require_lora(model).items():
        out[f"{name}.lora_A"] = module.lora_A.detach()
        out[f"{name}.lora_B"] = module.lora_B.detach()
    return out


def save_lora(model: nn.Module, path: str | Path) -> Path:
    """Write the adapter (A and B of every LoRA layer, and the LoRAConfig) to one safetensors file."""
    modules = _require_lora(model)
    if any(m.merged for m in modules.values()):
        raise ValueError("the model's LoRA layers are merged: unmerge_lora(model) before saving the adapter alone")
    config = getattr(model, "lora_config", None)
    if config is None:
        first = next(iter(modules.values()))
        config = LoRAConfig(first.r, first.alpha, 0.0, tuple(modules), first.use_rslora)
    path = Path(path)
    tensors = {k: v.contiguous().cpu() for k, v in lora_state_dict(model).items()}
    save_file(tensors, str(path), metadata={"lora_config": json.dumps(asdict(config))})
    return path


def load_lora(model: nn.Module, path: str | Path) -> nn.Module:
    """Load an adapter written by save_lora; on a model without LoRA, apply_lora with the saved config first."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no adapter file at {path}")
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if "lora_config" not in meta:
        raise ValueError(f"{path} has no 'lora_config' metadata: it was not written by save_lora")
    config = LoRAConfig(**json.loads(meta["lora_config"]))
    if not lora_modules(model):
        apply_lora(model, config)
    tensors = load_file(str(path))
    ours = lora_state_dict(model)
    missing, unexpected = sorted(set(ours) - set(tensors)), sorted(set(tensors) - set(ours))
    if missing or unexpected:
        raise ValueError(f"adapter {path} does not fit the model: missing {missing[:4]}, unexpected {unexpected[:4]}")
    modules = lora_modules(model)
    with torch.no_grad():
        for key, value in tensors.items():
            name, _, which = key.rpartition(".")
            target = getattr(modules[name], which)
            if target.shape != value.shape:
                raise ValueError(f"{key}: the adapter holds shape {tuple(value.shape)}, "
                                 f"the model {tuple(target.shape)}")
            target.copy_(value)
    return model
