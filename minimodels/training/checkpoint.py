"""Save and load course models: weights in model.safetensors, the dataclass config in config.json.

config.json names the model by its registry name ("gpt", "llama", "mamba", "seq2seq"), never by module
path, so moving a file never breaks a saved model. A reloaded model gives the same logits as the saved one.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
from pathlib import Path

import torch
from safetensors.torch import load_model, save_model

# registry name -> ("module:Model", "module:Config"); resolved only when a checkpoint is loaded
REGISTRY: dict[str, tuple[str, str]] = {
    "gpt": ("minimodels.models.gpt:GPT", "minimodels.models.gpt:GPTConfig"),
    "llama": ("minimodels.models.llama:Llama", "minimodels.models.llama:LlamaConfig"),
    "mamba": ("minimodels.models.mamba:MambaLM", "minimodels.models.mamba:MambaConfig"),
    "seq2seq": ("minimodels.models.seq2seq:Seq2Seq", "minimodels.models.seq2seq:Seq2SeqConfig"),
    "bert": ("minimodels.models.bert:Bert", "minimodels.models.bert:BertConfig"),
}


def register_model(name: str, model: str, config: str) -> None:
    """Add a model family to the registry: `model` and `config` are "module:Class" strings."""
    if name in REGISTRY and REGISTRY[name] != (model, config):
        raise ValueError(f"registry name {name!r} is already taken by {REGISTRY[name][0]}")
    REGISTRY[name] = (model, config)


def _resolve(qualified: str) -> type:
    module_name, name = qualified.split(":")
    return getattr(importlib.import_module(module_name), name)


def registry_name(model: torch.nn.Module) -> str:
    """The registry name of `model`'s class; a clear error for a class the registry does not know."""
    for name, (model_path, _) in REGISTRY.items():
        module_name, cls_name = model_path.split(":")
        if type(model).__name__ == cls_name and type(model).__module__ == module_name:
            return name
    raise TypeError(f"{type(model).__name__} is not a registered course model; registered: {', '.join(REGISTRY)}")


def save_checkpoint(model: torch.nn.Module, folder: str | Path, extra: dict | None = None) -> Path:
    """Write model.safetensors and config.json into `folder` (created if needed); return the folder."""
    config = getattr(model, "config", None)
    if config is None or not dataclasses.is_dataclass(config):
        raise TypeError(f"save_checkpoint needs a model with a dataclass .config, got {type(model).__name__}")
    if extra is not None and not isinstance(extra, dict):
        raise TypeError(f"extra must be a dict of JSON values, got {type(extra).__name__}")
    meta = {"model": registry_name(model), "config": dataclasses.asdict(config), "extra": extra or {}}
    text = json.dumps(meta, indent=2)  # fails here, before anything is written, if extra is not JSON
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_model(model, str(folder / "model.safetensors"))  # handles tied (shared) weights
    (folder / "config.json").write_text(text)
    return folder


def read_meta(folder: str | Path) -> dict:
    """config.json of a checkpoint: {"model": registry name, "config": {...}, "extra": {...}}."""
    meta_path = Path(folder) / "config.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"no config.json in {folder}: not a checkpoint written by save_checkpoint")
    meta = json.loads(meta_path.read_text())
    if meta.get("model") not in REGISTRY:
        raise ValueError(
            f"{meta_path} names model {meta.get('model')!r}; known registry names: {', '.join(REGISTRY)}"
        )
    return meta


def load_checkpoint(folder: str | Path, device: torch.device | str = "cpu",
                    dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """Rebuild the model saved by `save_checkpoint` from its config and load its weights (in `dtype`)."""
    meta = read_meta(folder)
    model_path, config_path = REGISTRY[meta["model"]]
    config_cls = _resolve(config_path)
    fields = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(meta["config"]) - fields)
    if unknown:
        raise ValueError(f"{folder}/config.json has fields {unknown} that {config_cls.__name__} does not know")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in meta["config"].items()}
    model = _resolve(model_path)(config_cls(**values)).to(dtype)
    load_model(model, str(Path(folder) / "model.safetensors"), strict=True, device=str(device))
    return model.to(device).eval()
