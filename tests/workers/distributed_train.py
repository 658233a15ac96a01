"""Worker for tests/test_distributed.py: a few training steps of a tiny Llama, under torchrun or alone.

    torchrun --standalone --nproc_per_node=2 tests/workers/distributed_train.py --strategy ddp --out DIR

Every process draws the same global batches (a fixed token stream, batch i = rows of step i); rank r
keeps its rows. Rank 0 writes the final weights (weights.pt) and a checkpoint (DIR/ckpt).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from minimodels import Llama, LlamaConfig, TrainConfig, train
from minimodels.training.distributed import (
    full_state_dict,
    init_distributed,
    save_distributed_checkpoint,
    shard_batch,
    shutdown,
    wrap_model,
)

VOCAB, T = 48, 16


def tiny_llama() -> Llama:
    torch.manual_seed(0)
    return Llama(LlamaConfig(vocab_size=VOCAB, dim=32, n_layers=2, n_heads=4, n_kv_heads=2, max_seq_len=T))


def batches(global_batch: int):
    """get_batch(split): step i of each split returns the same (global_batch, T) rows on every process."""
    g = torch.Generator().manual_seed(1)
    stream = torch.randint(VOCAB, (4096,), generator=g)
    calls = {"train": 0, "val": 0}

    def get_batch(split: str):
        i = calls[split]
        calls[split] += 1
        starts = (torch.arange(global_batch) * 37 + i * 101 + (0 if split == "train" else 2000)) % (4096 - T - 1)
        idx = starts[:, None] + torch.arange(T)[None, :]
        return stream[idx], stream[idx + 1]

    return get_batch


def config(steps: int, accum: int = 1) -> TrainConfig:
    return TrainConfig(max_iters=steps, lr=1e-3, warmup_iters=1, eval_interval=steps, eval_iters=2,
                       grad_accum_steps=accum, progress=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--strategy", default="ddp")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8, help="global batch per micro-step")
    parser.add_argument("--accum", type=int, default=1)
    parser.add_argument("--fail-rank", type=int, default=None, help="this rank raises after the first step")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    ctx = init_distributed(timeout_s=30)
    try:
        torch.set_num_threads(1)
        model = wrap_model(tiny_llama(), ctx, args.strategy)
        get_batch = shard_batch(batches(args.batch), ctx)
        if args.fail_rank is not None:
            train(model, get_batch, config(1))
            if ctx.rank == args.fail_rank:
                raise RuntimeError(f"rank {ctx.rank} fails on purpose")
            train(model, get_batch, config(50))  # the other ranks would wait here for the failed one
        history = train(model, get_batch, config(args.steps, args.accum))
        state = full_state_dict(model)
        if ctx.is_main:
            args.out.mkdir(parents=True, exist_ok=True)
            torch.save({"state": state, "train_loss": history.train_loss, "val_loss": history.val_loss,
                        "state_bytes": history.state_bytes},
                       args.out / "weights.pt")
        save_distributed_checkpoint(model, args.out / "ckpt", ctx)
    finally:
        shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
