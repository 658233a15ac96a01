"""`from_hf`: turn a Hugging Face transformers model into the course model with the same weights.

Each supported class maps to a converter in its own module, imported only when needed, so that
`import minimodels` does not import transformers.
"""

from __future__ import annotations

import importlib

import torch

# Hugging Face class name -> "module:function" taking the HF model and returning the course model
CONVERTERS = {
    "GPT2LMHeadModel": "minimodels.hf.gpt:gpt_from_hf",
    "LlamaForCausalLM": "minimodels.hf.llama:llama_from_hf",
    "MistralForCausalLM": "minimodels.hf.llama:llama_from_hf",
    "MixtralForCausalLM": "minimodels.hf.llama:llama_from_hf",
    "MambaForCausalLM": "minimodels.hf.mamba:mamba_from_hf",
    "BertModel": "minimodels.hf.bert:bert_from_hf",
}


def from_hf(hf_model: torch.nn.Module) -> torch.nn.Module:
    """The course model equal to `hf_model` (same weights; float32 logits within 1e-4)."""
    name = type(hf_model).__name__
    if name not in CONVERTERS:
        raise TypeError(
            f"from_hf does not support {name}; supported Hugging Face classes: {', '.join(sorted(CONVERTERS))}"
        )
    module_name, function = CONVERTERS[name].split(":")
    return getattr(importlib.import_module(module_name), function)(hf_model)


class CheckpointTensors(dict):
    """A Hugging Face state dict (prefix dropped) whose missing tensor is a ValueError naming it.

    The converters look tensors up by name; a checkpoint that lacks one (an incomplete file, a model with
    a module removed) then fails at the boundary with the name, instead of a bare KeyError deep inside.
    """

    def __init__(self, tensors: dict[str, torch.Tensor], source: str, prefix: str = ""):
        super().__init__(tensors)
        self.source, self.prefix = source, prefix

    def __missing__(self, key: str):
        where = f" (after dropping the prefix {self.prefix!r})" if self.prefix else ""
        sample = ", ".join(sorted(self)[:3])
        raise ValueError(
            f"from_hf: the {self.source} checkpoint has no tensor {key!r}{where}; it holds {len(self)} tensors "
            f"({sample}, ...): is the checkpoint complete, and of this model class?"
        )


def strip_prefix(state: dict[str, torch.Tensor], prefix: str, source: str = "Hugging Face") -> CheckpointTensors:
    """Drop `prefix` from the keys that start with it (checkpoints are saved with or without it)."""
    renamed = {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in state.items()}
    return CheckpointTensors(renamed, source, prefix)


def load_converted(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> torch.nn.Module:
    """Load a converted state dict into `model`, with a ValueError naming missing or unexpected tensors."""
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise ValueError(
            f"from_hf: the {source} checkpoint does not fit {type(model).__name__}: missing tensors {missing}, "
            f"unexpected tensors {unexpected}"
        )
    model.load_state_dict(state, strict=True)
    return model
