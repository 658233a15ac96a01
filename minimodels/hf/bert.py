"""Load Hugging Face BERT weights (a transformers BertModel, or a local checkpoint folder) into the course `Bert`.

The tensors are the same; only names change. This file reads config dicts and state dicts only, so
`load_bert_checkpoint` (config.json + model.safetensors) works without importing transformers.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from minimodels.hf import strip_prefix
from minimodels.models.bert import Bert, BertConfig

HF_ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "relu": "relu"}

# course name in a layer -> Hugging Face name in encoder.layer.{i}
LAYER_RENAMES = {
    "attn.query": "attention.self.query",
    "attn.key": "attention.self.key",
    "attn.value": "attention.self.value",
    "attn.proj": "attention.output.dense",
    "ln_1": "attention.output.LayerNorm",
    "fc": "intermediate.dense",
    "proj": "output.dense",
    "ln_2": "output.LayerNorm",
}


def bert_config_from_hf(hf_config: dict, pooler: bool = False) -> BertConfig:
    """BertConfig from a Hugging Face BertConfig as a dict (config.json); unsupported options raise ValueError."""
    if hf_config.get("model_type", "bert") != "bert":
        raise ValueError(f"model_type={hf_config['model_type']!r} is not supported; only 'bert' is")
    if hf_config.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError(f"position_embedding_type={hf_config['position_embedding_type']!r} is not supported; "
                         "only 'absolute' is")
    for flag in ("is_decoder", "add_cross_attention"):
        if hf_config.get(flag):
            raise ValueError(f"BERT option {flag}=True is not supported: the course Bert is an encoder only")
    activation = hf_config.get("hidden_act", "gelu")
    if activation not in HF_ACTIVATIONS:
        raise ValueError(f"hidden_act={activation!r} is not supported; supported: {sorted(HF_ACTIVATIONS)}")
    return BertConfig(
        vocab_size=hf_config["vocab_size"],
        block_size=hf_config["max_position_embeddings"],
        type_vocab_size=hf_config.get("type_vocab_size", 2),
        n_layer=hf_config["num_hidden_layers"],
        n_head=hf_config["num_attention_heads"],
        n_embd=hf_config["hidden_size"],
        mlp_hidden=hf_config["intermediate_size"],
        dropout=0.0,
        layer_norm_eps=hf_config.get("layer_norm_eps", 1e-12),
        pad_token_id=hf_config.get("pad_token_id") or 0,
        activation=HF_ACTIVATIONS[activation],
        pooler=pooler,
    )


def bert_state_from_hf(hf_state: dict[str, torch.Tensor], config: BertConfig) -> dict[str, torch.Tensor]:
    """Rename BertModel tensors into the course Bert's state dict (the pooler only if config.pooler)."""
    src = strip_prefix(hf_state, "bert.")
    emb = "embeddings."
    renames = {"wte": emb + "word_embeddings", "wpe": emb + "position_embeddings",
               "wse": emb + "token_type_embeddings", "ln_emb": emb + "LayerNorm"}
    for i in range(config.n_layer):
        renames.update({f"layers.{i}.{ours}": f"encoder.layer.{i}.{theirs}" for ours, theirs in LAYER_RENAMES.items()})
    if config.pooler:
        renames["pooler"] = "pooler.dense"
    out = {}
    for ours, theirs in renames.items():
        for kind in ("weight", "bias"):
            key = f"{theirs}.{kind}"
            if key in src:
                out[f"{ours}.{kind}"] = src[key]
            elif not (ours in ("wte", "wpe", "wse") and kind == "bias"):
                raise KeyError(f"the BERT state dict lacks {key!r} (is it a BertModel checkpoint?)")
    return {k: v.detach().clone().contiguous() for k, v in out.items()}


def _build(hf_config: dict, hf_state: dict[str, torch.Tensor], pooler: bool) -> Bert:
    config = bert_config_from_hf(hf_config, pooler=pooler)
    model = Bert(config)
    model.load_state_dict(bert_state_from_hf(hf_state, config), strict=True)
    return model.to(next(iter(hf_state.values())).dtype).eval()


def bert_from_hf(hf_model: torch.nn.Module) -> Bert:
    """The course Bert with the weights of a transformers BertModel (its pooler too, when it has one)."""
    has_pooler = getattr(hf_model, "pooler", None) is not None
    return _build(hf_model.config.to_dict(), hf_model.state_dict(), pooler=has_pooler)


def load_bert_checkpoint(folder: str | Path, pooler: bool = False) -> Bert:
    """A course Bert from a local BERT folder holding config.json and model.safetensors (no transformers needed)."""
    from safetensors.torch import load_file

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"BERT checkpoint folder {folder} does not exist")
    missing = [name for name in ("config.json", "model.safetensors") if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"BERT checkpoint folder {folder} lacks {', '.join(missing)}")
    state = load_file(folder / "model.safetensors")
    state = {k: v for k, v in state.items() if not k.endswith("position_ids")}  # a buffer, not a weight
    return _build(json.loads((folder / "config.json").read_text()), state, pooler=pooler)
