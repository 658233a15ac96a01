"""The models `python -m minimodels.serving --model NAME` can serve, by name (nothing is downloaded).

- "course-llama": the course's pretrained base model and its BPE tokenizer (`minimodels.pretrained`).
- "random-llama": a small random Llama with the byte tokenizer: it speaks gibberish, but exercises the
  whole server without any checkpoint.
"""

from __future__ import annotations

import importlib

import torch

from minimodels.models.llama import Llama, LlamaConfig
from minimodels.serving.byte_tokenizer import ByteTokenizer

SERVED_MODELS = ("course-llama", "random-llama")


def random_llama(seed: int = 0, max_seq_len: int = 512, **overrides) -> Llama:
    """A small random Llama over the 256 byte ids (weights drawn with `seed`)."""
    values = dict(vocab_size=256, dim=64, n_layers=2, n_heads=4, n_kv_heads=2, max_seq_len=max_seq_len)
    torch.manual_seed(seed)
    return Llama(LlamaConfig(**(values | overrides))).eval()


def load_served_model(name: str, device: torch.device | str = "cpu"):
    """(model, tokenizer) for a served model name."""
    if name == "random-llama":
        return random_llama().to(device), ByteTokenizer()
    if name == "course-llama":
        try:
            pretrained = importlib.import_module("minimodels.pretrained")
            model, tokenizer = pretrained.load("course-llama")
        except (ImportError, FileNotFoundError, OSError) as err:
            raise ValueError(f"the course base model is not available here ({type(err).__name__}: {err}); "
                             f"train it with `make pretrain`, or serve --model random-llama") from None
        return model.to(device).eval(), tokenizer
    raise ValueError(f"unknown model {name!r}; this server can serve: {', '.join(SERVED_MODELS)}")
