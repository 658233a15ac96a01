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


def strip_prefix(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Drop `prefix` from the keys that start with it (checkpoints are saved with or without it)."""
    return {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in state.items()}
