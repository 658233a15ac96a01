"""Load a Hugging Face transformers MambaForCausalLM into the course `MambaLM` (same weights, same logits).

The modules carry the same names on both sides (mixer.in_proj, mixer.conv1d, mixer.x_proj, mixer.dt_proj,
mixer.A_log, mixer.D, mixer.out_proj, norm, norm_f), so the conversion is a renaming of the outer keys.
"""

from __future__ import annotations

import torch

from minimodels.hf import load_converted, strip_prefix
from minimodels.models.mamba import MambaConfig, MambaLM


def mamba_config_from_hf(hf_config: dict) -> MambaConfig:
    """MambaConfig from a transformers MambaConfig as a dict; raises ValueError for unsupported options."""
    activation = hf_config.get("hidden_act", "silu")
    if activation != "silu":
        raise ValueError(f"Mamba option hidden_act={activation!r} is not supported; the course Mamba uses 'silu'")
    expand = hf_config.get("expand", 2)
    if int(expand) != expand:
        raise ValueError(f"Mamba option expand={expand} is not supported; it must be a whole number")
    intermediate = hf_config.get("intermediate_size")
    if intermediate is not None and intermediate != int(expand) * hf_config["hidden_size"]:
        raise ValueError(
            f"Mamba intermediate_size={intermediate} differs from expand * hidden_size = "
            f"{int(expand) * hf_config['hidden_size']}; the course Mamba only supports the latter"
        )
    return MambaConfig(
        vocab_size=hf_config["vocab_size"],
        d_model=hf_config["hidden_size"],
        n_layers=hf_config["num_hidden_layers"],
        d_state=hf_config.get("state_size", 16),
        expand=int(expand),
        d_conv=hf_config.get("conv_kernel", 4),
        dt_rank=hf_config.get("time_step_rank", "auto"),
        dt_min=hf_config.get("time_step_min", 1e-3),
        dt_max=hf_config.get("time_step_max", 0.1),
        dt_init_floor=hf_config.get("time_step_floor", 1e-4),
        conv_bias=hf_config.get("use_conv_bias", True),
        bias=hf_config.get("use_bias", False),
        norm_eps=hf_config.get("layer_norm_epsilon", 1e-5),
        tie_embeddings=hf_config.get("tie_word_embeddings", True),
        residual_in_fp32=hf_config.get("residual_in_fp32", True),
    )


def mamba_state_from_hf(hf_state: dict[str, torch.Tensor], config: MambaConfig) -> dict[str, torch.Tensor]:
    """Rename a MambaForCausalLM state dict into MambaLM's."""
    out = {}
    for key, value in strip_prefix(hf_state, "backbone.", "Mamba").items():
        if key.startswith(("embeddings.", "embedding.")):
            key = "embedding." + key.split(".", 1)[1]
        out[key] = value
    if "embedding.weight" not in out:
        raise ValueError(f"from_hf: the Mamba checkpoint has no embeddings.weight; it holds {sorted(out)[:3]}, ...")
    if config.tie_embeddings:
        out["lm_head.weight"] = out["embedding.weight"]
    elif "lm_head.weight" not in out:
        raise ValueError(
            "from_hf: the Mamba config has tie_word_embeddings=False, but the checkpoint holds no lm_head.weight; "
            "an untied head cannot be rebuilt from the embedding (tie it in the config if that is what you mean)"
        )
    return {k: v.detach().clone().contiguous() for k, v in out.items()}


def mamba_from_hf(hf_model: torch.nn.Module) -> MambaLM:
    """The course MambaLM with the weights of a transformers MambaForCausalLM."""
    config = mamba_config_from_hf(hf_model.config.to_dict())
    state = mamba_state_from_hf(hf_model.state_dict(), config)
    model = load_converted(MambaLM(config), state, "Mamba")
    return model.to(state["embedding.weight"].dtype).eval()
