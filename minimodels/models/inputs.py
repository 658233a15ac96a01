"""The check every language model of the course runs on its input ids, before the embedding sees them."""

from __future__ import annotations

import torch


def check_token_ids(input_ids: torch.Tensor, vocab_size: int, name: str = "input_ids") -> None:
    """Integer ids in [0, vocab_size): a clear error here instead of an IndexError deep in nn.Embedding
    (or a device-side assert on a GPU). Any shape; `name` is what the message calls the tensor."""
    if not isinstance(input_ids, torch.Tensor):
        raise TypeError(f"{name} must be a tensor of token ids, got {type(input_ids).__name__}")
    if input_ids.dtype.is_floating_point or input_ids.dtype.is_complex or input_ids.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer token ids, got dtype {input_ids.dtype}")
    if input_ids.numel() == 0:
        return
    low, high = int(input_ids.min()), int(input_ids.max())
    if low < 0 or high >= vocab_size:
        raise ValueError(
            f"{name} must be token ids in [0, vocab_size={vocab_size}), got ids from {low} to {high}"
        )
