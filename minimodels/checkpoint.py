"""Save and load course models: weights in model.safetensors, the dataclass config in config.json.

A reloaded model gives the same logits as the saved one. Any course model with a dataclass `config`
attribute and a constructor `Model(config)` works.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
from pathlib import Path

import torch
from safetensors.torch import load_model, save_model


def _qualified(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _resolve(qualified: str) -> type:
    module_name, name = qualified.split(":")
    if module_name.split(".")[0] != "minimodels":
        raise ValueError(f"checkpoint names class {qualified}; only minimodels classes can be loaded")
    return getattr(importlib.import_module(module_name), name)


def save_checkpoint(model: torch.nn.Module, folder: str | Path, extra: dict | None = None) -> Path:
    """Write model.safetensors and config.json into `folder` (created if needed); return the folder."""
    config = getattr(model, "config", None)
    if config is None or not dataclasses.is_dataclass(config):
        raise TypeError(f"save_checkpoint needs a model with a dataclass .config, got {type(model).__name__}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_model(model, str(folder / "model.safetensors"))  # handles tied (shared) weights
    meta = {"model": _qualified(type(model)), "config_class": _qualified(type(config)),
            "config": dataclasses.asdict(config), "extra": extra or {}}
    (folder / "config.json").write_text(json.dumps(meta, indent=2))
    return folder


def load_checkpoint(folder: str | Path, device: torch.device | str = "cpu") -> torch.nn.Module:
    """Rebuild the model saved by `save_checkpoint` from its config and load its weights."""
    folder = Path(folder)
    meta_path = folder / "config.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"no config.json in {folder}: not a checkpoint written by save_checkpoint")
    meta = json.loads(meta_path.read_text())
    config_cls = _resolve(meta["config_class"])
    fields = {f.name for f in dataclasses.fields(config_cls)}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in meta["config"].items() if k in fields}
    model = _resolve(meta["model"])(config_cls(**values))
    load_model(model, str(folder / "model.safetensors"), strict=True, device=str(device))
    return model.to(device).eval()
