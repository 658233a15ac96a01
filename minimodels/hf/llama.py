"""Load Hugging Face Llama, Mistral and Mixtral models into the course `Llama`.

The tensors are the same; only names change. Mixtral in transformers 5 stores its experts stacked:
`experts.gate_up_proj` (E, 2 * hidden, dim), whose first half of rows is the gate and second the up
projection, and `experts.down_proj` (E, dim, hidden). Older checkpoints name them per expert w1 (gate),
w3 (up) and w2 (down); both layouts are read.
"""

from __future__ import annotations

import torch

from minimodels.hf import load_converted, strip_prefix
from minimodels.models.llama import Llama, LlamaConfig

SUPPORTED = ("LlamaForCausalLM", "MistralForCausalLM", "MixtralForCausalLM")


def _rope_theta(hf_config: dict) -> float:
    """RoPE base from `rope_parameters` (transformers 5) or `rope_theta` (older); only plain RoPE."""
    rope = hf_config.get("rope_parameters") or hf_config.get("rope_scaling") or {}
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type != "default":
        raise ValueError(f"RoPE type {rope_type!r} (scaled RoPE) is not supported; only 'default' is")
    theta = rope.get("rope_theta", hf_config.get("rope_theta"))
    if theta is None:
        raise ValueError("the Hugging Face config has no rope_theta (in rope_parameters or at top level)")
    return float(theta)


def llama_config_from_hf(hf_config: dict, model_class: str) -> LlamaConfig:
    """LlamaConfig from a Llama / Mistral / Mixtral config dict; unsupported options raise ValueError."""
    if model_class not in SUPPORTED:
        raise TypeError(f"{model_class} is not supported; supported: {', '.join(SUPPORTED)}")
    if hf_config.get("hidden_act", "silu") != "silu":
        raise ValueError(f"hidden_act={hf_config['hidden_act']!r} is not supported; only 'silu' is")
    for flag in ("attention_bias", "mlp_bias"):
        if hf_config.get(flag):
            raise ValueError(f"{flag}=True is not supported: the course Llama has no biases")
    if hf_config.get("layer_types") and len(set(hf_config["layer_types"])) > 1:
        raise ValueError(f"mixed layer_types {sorted(set(hf_config['layer_types']))} are not supported")
    if hf_config.get("router_jitter_noise"):
        raise ValueError("router_jitter_noise > 0 is not supported (the course router adds no noise)")
    is_moe = model_class == "MixtralForCausalLM"
    window = hf_config.get("sliding_window") if model_class != "LlamaForCausalLM" else None
    return LlamaConfig(
        vocab_size=hf_config["vocab_size"],
        dim=hf_config["hidden_size"],
        n_layers=hf_config["num_hidden_layers"],
        n_heads=hf_config["num_attention_heads"],
        n_kv_heads=hf_config.get("num_key_value_heads") or hf_config["num_attention_heads"],
        head_dim=hf_config.get("head_dim") or hf_config["hidden_size"] // hf_config["num_attention_heads"],
        mlp_hidden=hf_config["intermediate_size"],
        rope_theta=_rope_theta(hf_config),
        norm_eps=hf_config.get("rms_norm_eps", 1e-6),
        max_seq_len=hf_config.get("max_position_embeddings", 2048),
        sliding_window=window,
        tie_embeddings=bool(hf_config.get("tie_word_embeddings", False)),
        n_experts=hf_config["num_local_experts"] if is_moe else None,
        top_k=hf_config.get("num_experts_per_tok", 2) if is_moe else 2,
        router_aux_loss_coef=hf_config.get("router_aux_loss_coef", 0.001) if is_moe else 0.001,
        dropout=0.0,
    )


def _expert_weights(src: dict[str, torch.Tensor], prefix: str, e: int, hidden: int) -> dict:
    """gate/up/down weights of expert e in the MoE block whose keys start with `prefix` ('layers.0.mlp.')."""
    if f"{prefix}experts.gate_up_proj" in src:  # transformers 5: stacked experts
        gate_up = src[f"{prefix}experts.gate_up_proj"][e]  # (2 * hidden, dim): gate rows, then up rows
        return {"gate_proj": gate_up[:hidden], "up_proj": gate_up[hidden:],
                "down_proj": src[f"{prefix}experts.down_proj"][e]}
    base = f"{prefix}experts.{e}."
    if f"{base}w1.weight" not in src:
        raise ValueError(f"from_hf: no weights for expert {e} under {prefix!r} (expected experts.gate_up_proj "
                         f"or experts.{e}.w1/w2/w3)")
    return {"gate_proj": src[f"{base}w1.weight"], "up_proj": src[f"{base}w3.weight"],
            "down_proj": src[f"{base}w2.weight"]}


def llama_state_from_hf(hf_state: dict[str, torch.Tensor], config: LlamaConfig) -> dict[str, torch.Tensor]:
    """Rename Hugging Face tensors into the course Llama's state dict."""
    src = strip_prefix(hf_state, "model.", "Llama-family")
    out = {"embed.weight": src["embed_tokens.weight"], "norm.weight": src["norm.weight"]}
    out["lm_head.weight"] = src["embed_tokens.weight"] if config.tie_embeddings else src["lm_head.weight"]
    for i in range(config.n_layers):
        hf, me = f"layers.{i}.", f"layers.{i}."
        for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
            out[f"{me}attn.{proj}.weight"] = src[f"{hf}self_attn.{proj}.weight"]
        out[f"{me}attn_norm.weight"] = src[f"{hf}input_layernorm.weight"]
        out[f"{me}mlp_norm.weight"] = src[f"{hf}post_attention_layernorm.weight"]
        if not config.is_moe:
            for proj in ("gate_proj", "up_proj", "down_proj"):
                out[f"{me}mlp.{proj}.weight"] = src[f"{hf}mlp.{proj}.weight"]
            continue
        moe = f"{hf}mlp." if f"{hf}mlp.gate.weight" in src else f"{hf}block_sparse_moe."  # new or old names
        out[f"{me}mlp.router.weight"] = src[f"{moe}gate.weight"]
        for e in range(config.n_experts):
            for name, weight in _expert_weights(src, moe, e, config.mlp_hidden).items():
                out[f"{me}mlp.experts.{e}.{name}.weight"] = weight
    return {k: v.detach().clone().contiguous() for k, v in out.items()}


def llama_from_hf(hf_model: torch.nn.Module) -> Llama:
    """The course Llama with the weights of a transformers Llama/Mistral/MixtralForCausalLM."""
    name = type(hf_model).__name__
    if name not in SUPPORTED:
        raise TypeError(
            f"llama_from_hf does not support {name}; supported Hugging Face classes: {', '.join(SUPPORTED)}"
        )
    config = llama_config_from_hf(hf_model.config.to_dict(), name)
    state = llama_state_from_hf(hf_model.state_dict(), config)
    model = load_converted(Llama(config), state, name)
    return model.to(state["embed.weight"].dtype).eval()
