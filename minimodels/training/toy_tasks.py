"""Generated sequence-to-sequence tasks, for lessons that need a task with a known right answer.

    task = ReversalTask(n_symbols=10, min_len=4, max_len=24)
    batch = task.sample(64, torch.Generator().manual_seed(0))  # src, tgt_in, tgt_out, lengths

Reversal is the classic test of a single context vector: the first output token is the last input token,
and the last output token is the first input token, which the encoder read longest ago.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch

PAD, BOS, EOS = 0, 1, 2
N_SPECIALS = 3  # ordinary symbols are the ids N_SPECIALS .. vocab_size - 1


class Seq2SeqBatch(NamedTuple):
    src: torch.Tensor  # (B, S) source tokens, right-padded with PAD
    tgt_in: torch.Tensor  # (B, T) BOS + target: what the decoder reads under teacher forcing
    tgt_out: torch.Tensor  # (B, T) target + EOS: what the decoder must predict (PAD after EOS)
    lengths: torch.Tensor  # (B,) source lengths (the output has lengths + 1 tokens with EOS)


@dataclass
class ReversalTask:
    """Output the source sequence backwards: [5, 3, 9] -> [9, 3, 5, EOS]. Lengths are uniform in [min_len, max_len]."""

    n_symbols: int = 10
    min_len: int = 4
    max_len: int = 24

    def __post_init__(self):
        for name in ("n_symbols", "min_len", "max_len"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"ReversalTask.{name} must be a positive int, got {value!r}")
        if self.max_len < self.min_len:
            raise ValueError(f"ReversalTask.max_len={self.max_len} must be >= min_len={self.min_len}")

    @property
    def vocab_size(self) -> int:
        return N_SPECIALS + self.n_symbols

    def sample(
        self, batch_size: int, generator: torch.Generator, lengths: torch.Tensor | None = None,
    ) -> Seq2SeqBatch:
        """A batch of random sources and their reversals; `lengths` (B,) fixes the source lengths if given."""
        if lengths is None:
            lengths = torch.randint(self.min_len, self.max_len + 1, (batch_size,), generator=generator)
        elif lengths.shape != (batch_size,) or lengths.min() < 1:
            raise ValueError(f"lengths must be ({batch_size},) with values >= 1, got {tuple(lengths.shape)}")
        width = int(lengths.max())
        positions = torch.arange(width)  # (S,)
        valid = positions < lengths[:, None]  # (B, S)
        tokens = torch.randint(N_SPECIALS, self.vocab_size, (batch_size, width), generator=generator)
        src = torch.where(valid, tokens, PAD)  # (B, S)
        mirror = (lengths[:, None] - 1 - positions).clamp(min=0)  # (B, S) position j reads source L-1-j
        reversed_src = torch.where(valid, src.gather(1, mirror), PAD)  # (B, S)
        pad_column = torch.full((batch_size, 1), PAD)
        tgt_out = torch.cat([reversed_src, pad_column], dim=1)  # (B, S + 1)
        tgt_out.scatter_(1, lengths[:, None], EOS)
        tgt_in = torch.cat([torch.full((batch_size, 1), BOS), reversed_src], dim=1)  # (B, S + 1)
        return Seq2SeqBatch(src, tgt_in, tgt_out, lengths)


def make_get_batch(
    task: ReversalTask, batch_size: int, seed: int = 0, device: torch.device | str = "cpu",
) -> Callable[[str], tuple[tuple[torch.Tensor, torch.Tensor], torch.Tensor]]:
    """`get_batch(split) -> ((src, tgt_in), tgt_out)` for minimodels.training.loop, one seeded stream per split."""
    generators = {
        "train": torch.Generator().manual_seed(seed),
        "val": torch.Generator().manual_seed(seed + 1),
    }

    def get_batch(split: str):
        if split not in generators:
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        batch = task.sample(batch_size, generators[split])
        return (batch.src.to(device), batch.tgt_in.to(device)), batch.tgt_out.to(device)

    return get_batch


def exact_match(pred: torch.Tensor, target: torch.Tensor, pad_id: int = PAD) -> torch.Tensor:
    """(B,) bool: every target token up to and including EOS is predicted; what follows EOS is ignored.

    pred (B, T_pred) may be shorter or longer than target (B, T); missing positions count as wrong.
    """
    if pred.dim() != 2 or target.dim() != 2 or pred.size(0) != target.size(0):
        raise ValueError(f"pred and target must be (B, T) with the same B, got {tuple(pred.shape)} and "
                         f"{tuple(target.shape)}")
    width = target.size(1)
    if pred.size(1) < width:
        filler = torch.full((pred.size(0), width - pred.size(1)), -1, dtype=pred.dtype, device=pred.device)
        pred = torch.cat([pred, filler], dim=1)
    pred = pred[:, :width]
    return ((pred == target) | (target == pad_id)).all(dim=1)


def accuracy_by_length(correct: torch.Tensor, lengths: torch.Tensor) -> dict[int, float]:
    """Fraction of correct examples for each source length present: {length: accuracy}."""
    return {
        int(length): correct[lengths == length].float().mean().item()
        for length in torch.unique(lengths).tolist()
    }
