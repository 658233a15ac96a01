"""Load GPT-2 weights (a transformers GPT2LMHeadModel, or a local checkpoint folder) into the course GPT.

GPT-2 stores its projections as `Conv1D` with weight (in, out): the transpose of nn.Linear's (out, in).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from minimodels.hf import load_converted, strip_prefix
from minimodels.models.gpt import GPT, GPTConfig

HF_ACTIVATIONS = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu", "relu": "relu"}


def gpt_config_from_hf(hf_config: dict) -> GPTConfig:
    """GPTConfig from a GPT2Config as a dict (config.json)."""
    for flag in ("scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn"):
        if hf_config.get(flag):
            raise ValueError(f"GPT-2 option {flag}=True is not supported by the course GPT")
    if not hf_config.get("scale_attn_weights", True):
        raise ValueError("GPT-2 option scale_attn_weights=False is not supported by the course GPT")
    activation = hf_config.get("activation_function", "gelu_new")
    if activation not in HF_ACTIVATIONS:
        raise ValueError(f"GPT-2 activation_function {activation!r} is not supported; supported: "
                         f"{sorted(HF_ACTIVATIONS)}")
    return GPTConfig(
        vocab_size=hf_config["vocab_size"],
        block_size=hf_config["n_positions"],
        n_layer=hf_config["n_layer"],
        n_head=hf_config["n_head"],
        n_embd=hf_config["n_embd"],
        mlp_hidden=hf_config.get("n_inner") or 4 * hf_config["n_embd"],
        dropout=0.0,
        bias=True,
        tie_embeddings=hf_config.get("tie_word_embeddings", True),
        layer_norm_eps=hf_config.get("layer_norm_epsilon", 1e-5),
        activation=HF_ACTIVATIONS[activation],
    )


def gpt_state_from_hf(hf_state: dict[str, torch.Tensor], config: GPTConfig) -> dict[str, torch.Tensor]:
    """Rename (and transpose) GPT-2 tensors into the course GPT's state dict."""
    src = strip_prefix(hf_state, "transformer.", "GPT-2")
    out = {"wte.weight": src["wte.weight"], "wpe.weight": src["wpe.weight"],
           "ln_f.weight": src["ln_f.weight"], "ln_f.bias": src["ln_f.bias"]}
    out["lm_head.weight"] = src["wte.weight"] if config.tie_embeddings else src["lm_head.weight"]
    renames = {"ln_1": "ln_1", "ln_2": "ln_2", "attn.c_attn": "attn.qkv", "attn.c_proj": "attn.proj",
               "mlp.c_fc": "mlp.fc", "mlp.c_proj": "mlp.proj"}
    for i in range(config.n_layer):
        for hf_name, name in renames.items():
            weight = src[f"h.{i}.{hf_name}.weight"]
            out[f"blocks.{i}.{name}.weight"] = weight if hf_name.startswith("ln") else weight.t()
            out[f"blocks.{i}.{name}.bias"] = src[f"h.{i}.{hf_name}.bias"]
    return {k: v.detach().clone().contiguous() for k, v in out.items()}


def _build(hf_config: dict, hf_state: dict[str, torch.Tensor]) -> GPT:
    config = gpt_config_from_hf(hf_config)
    state = gpt_state_from_hf(hf_state, config)
    model = load_converted(GPT(config), state, "GPT-2")
    return model.to(state["wte.weight"].dtype).eval()


def gpt_from_hf(hf_model: torch.nn.Module) -> GPT:
    """The course GPT with the weights of a transformers GPT2LMHeadModel."""
    return _build(hf_model.config.to_dict(), hf_model.state_dict())


def load_gpt2_checkpoint(folder: str | Path) -> GPT:
    """A course GPT from a local GPT-2 checkpoint folder holding config.json and model.safetensors.

    This is the layout of the checkpoints published for GPT-2 (download the folder once, then load offline).
    """
    from safetensors.torch import load_file

    folder = Path(folder)
    missing = [name for name in ("config.json", "model.safetensors") if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"GPT-2 checkpoint folder {folder} lacks {', '.join(missing)}")
    return _build(json.loads((folder / "config.json").read_text()), load_file(folder / "model.safetensors"))
