"""The course base model, committed under checkpoints/: `model, tokenizer = load("course-llama")`.

`make pretrain` (`python -m minimodels.training pretrain`, in minimodels/training/pretrain.py) trains it: the
course Llama with the course byte-level BPE on the English corpus. The folder holds model.safetensors
(float16), config.json, tokenizer.json and training_log.json. Checkpoints are looked up in
$MINIMODELS_CHECKPOINTS when set, else in checkpoints/ at the repository root.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from minimodels.text.bpe import BPETokenizer
from minimodels.training.checkpoint import load_checkpoint

AVAILABLE = ("course-llama",)


def checkpoints_dir() -> Path:
    """$MINIMODELS_CHECKPOINTS if set, else checkpoints/ at the repository root."""
    env = os.environ.get("MINIMODELS_CHECKPOINTS")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "checkpoints"


def checkpoint_path(name: str = "course-llama") -> Path:
    """The folder of checkpoint `name`; a clear error naming the path when it is missing."""
    if name not in AVAILABLE:
        raise ValueError(f"name must be one of {AVAILABLE}, got {name!r}")
    folder = checkpoints_dir() / name
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"no checkpoint {name!r} at {folder} (config.json missing): run `make pretrain` to train it, or set "
            f"MINIMODELS_CHECKPOINTS to the folder that holds {name}/")
    return folder


def training_log(name: str = "course-llama") -> dict:
    """What training recorded: config, command, loss per step, validation losses, perplexity, samples."""
    return json.loads((checkpoint_path(name) / "training_log.json").read_text(encoding="utf-8"))


def load(name: str = "course-llama", device: torch.device | str = "cpu") -> tuple[torch.nn.Module, BPETokenizer]:
    """(model, tokenizer): the model in float32 and eval mode on `device`, and its BPE tokenizer."""
    folder = checkpoint_path(name)
    model = load_checkpoint(folder, device=device).float().eval()
    return model, BPETokenizer.load(folder / "tokenizer.json")


__all__ = ["AVAILABLE", "checkpoint_path", "checkpoints_dir", "load", "training_log"]
