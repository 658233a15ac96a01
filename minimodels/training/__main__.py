"""Train a course model on the course corpus, in one process or under torchrun.

    python -m minimodels.training --model llama --preset small --max-iters 200 --out runs/llama
    python -m minimodels.training pretrain          # the course base model (BPE, English): see pretrain.py
    torchrun --standalone --nproc_per_node=2 -m minimodels.training --model llama --preset small --strategy ddp
    torchrun --nnodes 2 --node_rank 0 --nproc_per_node 8 --rdzv_backend c10d --rdzv_endpoint HOST:29500 \\
        -m minimodels.training --model llama --preset full --strategy fsdp --precision bf16

Characters of CPython's help topics (documents split at random into train and validation). `--batch-size`
is the global batch: each of the N ranks takes batch/N rows. Rank 0 prints the log and writes the
checkpoint (model.safetensors + config.json), the character vocabulary and history.json into --out.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

from minimodels.models import GPT, GPTConfig, Llama, LlamaConfig, MambaConfig, MambaLM
from minimodels.runtime import seed_everything
from minimodels.training.data import CharDataset
from minimodels.training.distributed import (
    STRATEGIES,
    init_distributed,
    save_distributed_checkpoint,
    shard_batch,
    shutdown,
    wrap_model,
)
from minimodels.training.loop import PRECISIONS, TrainConfig, train

# preset -> model fields (width, depth, heads); block size and batch size are command-line options
PRESETS = {
    "tiny": dict(width=32, layers=1, heads=2),
    "small": dict(width=128, layers=4, heads=4),
    "full": dict(width=512, layers=8, heads=8),
}


def build_model(name: str, preset: str, vocab_size: int, block_size: int) -> torch.nn.Module:
    """A course model of the given family and preset for a character vocabulary."""
    p = PRESETS[preset]
    if name == "gpt":
        return GPT(GPTConfig(vocab_size=vocab_size, block_size=block_size, n_layer=p["layers"], n_head=p["heads"],
                             n_embd=p["width"]))
    if name == "llama":
        return Llama(LlamaConfig(vocab_size=vocab_size, dim=p["width"], n_layers=p["layers"], n_heads=p["heads"],
                                 n_kv_heads=max(1, p["heads"] // 2), max_seq_len=block_size))
    return MambaLM(MambaConfig(vocab_size=vocab_size, d_model=p["width"], n_layers=p["layers"]))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=("gpt", "llama", "mamba"), default="llama")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="small")
    parser.add_argument("--max-iters", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=16, help="global batch (split over the ranks)")
    parser.add_argument("--block-size", type=int, default=64)
    parser.add_argument("--grad-accum", type=int, default=1, help="micro-batches per optimizer step")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32")
    parser.add_argument("--strategy", choices=(*STRATEGIES, "local"), default="ddp",
                        help="used under torchrun; 'local': no gradient exchange at all (each rank trains alone on "
                             "its shard), only to measure what communication costs")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--eval-interval", type=int, default=100)
    parser.add_argument("--max-chars", type=int, default=None, help="use only this much of the corpus")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads per process")
    parser.add_argument("--out", type=Path, default=None, help="folder for the checkpoint and history.json")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["pretrain"]:  # the base model: BPE tokens of the English corpus, same loop and launcher
        from minimodels.training.pretrain import main as pretrain

        return pretrain(argv[1:])
    args = parse_args(argv)
    ctx = init_distributed()
    try:
        if args.threads:
            torch.set_num_threads(args.threads)
        seed_everything(args.seed)  # the same initial weights and batches on every rank
        data = CharDataset.from_corpus(args.max_chars)
        model = build_model(args.model, args.preset, data.tokenizer.vocab_size, args.block_size).to(ctx.device)
        n_params = sum(p.numel() for p in model.parameters())
        if args.strategy != "local":
            model = wrap_model(model, ctx, args.strategy)
        get_batch = shard_batch(data.batch_fn(args.batch_size, args.block_size, ctx.device, seed=args.seed), ctx)
        config = TrainConfig(max_iters=args.max_iters, lr=args.lr, eval_interval=args.eval_interval,
                             grad_accum_steps=args.grad_accum, precision=args.precision,
                             warmup_iters=min(50, args.max_iters // 10))
        if ctx.is_main:
            print(f"{args.model}/{args.preset}: {n_params / 1e6:.2f}M parameters, {ctx.world_size} process(es) "
                  f"({ctx.backend or 'single'}, {args.strategy if ctx.is_distributed else 'no wrapper'}), "
                  f"global batch {args.batch_size} x {args.block_size} x {args.grad_accum} micro-steps, "
                  f"{args.precision}", flush=True)
        start = time.perf_counter()
        history = train(model, get_batch, config)
        seconds = time.perf_counter() - start
        tokens = args.max_iters * args.batch_size * args.block_size * args.grad_accum
        if ctx.is_main:
            print(f"final train loss {history.train_loss[-1]:.4f}, val loss {history.val_loss[-1]:.4f}, "
                  f"{seconds:.1f} s, {tokens / seconds:.0f} tokens/s in all", flush=True)
        if args.out is not None:
            save_distributed_checkpoint(model, args.out, ctx, extra={"args": vars(args) | {"out": str(args.out)}})
            if ctx.is_main:
                data.tokenizer.save(args.out / "tokenizer.json")
                log = {"history": asdict(history), "seconds": seconds, "tokens": tokens,
                       "world_size": ctx.world_size, "tokens_per_s": tokens / seconds,
                       "strategy": args.strategy if ctx.is_distributed else "single", "n_params": n_params}
                (args.out / "history.json").write_text(json.dumps(log))
    finally:
        shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
