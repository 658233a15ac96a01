"""Pretrain the course base model: a small Llama on the English corpus with the course BPE tokenizer.

    python -m minimodels.training pretrain                  # make pretrain (about 15 min on 2 idle CPU cores)
    python -m minimodels.training pretrain --size full      # bigger model and context, for a GPU
    python -m minimodels.training pretrain --max-iters 20 --out runs/try    # measure iterations per second
    torchrun --standalone --nproc_per_node=2 -m minimodels.training pretrain --strategy ddp

Steps: train a byte-level BPE (vocabulary 4096, special token <|endoftext|>) on the train split of
`load_corpus("english")`; tokenize the train and validation documents once (each followed by
<|endoftext|>; cached under runs/); train `Llama` (RMSNorm, RoPE, grouped-query attention, SwiGLU, tied
embeddings) with the course loop `minimodels.train`; then write into --out: model.safetensors (float16),
config.json, tokenizer.json and training_log.json (loss per step, validation losses, tokens seen, wall
time, held-out loss per token and bits per byte, samples, the config and the command).

Under torchrun the same loop runs data-parallel (DDP or FSDP2): `--batch-size` stays the global batch, each
rank takes its rows of it, and rank 0 logs, evaluates and writes the checkpoint.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F

from minimodels.generation.generate import generate
from minimodels.models.llama import Llama, LlamaConfig
from minimodels.runtime import pick_device, seed_everything
from minimodels.text.bpe import BPETokenizer
from minimodels.text.corpus import load_documents, manifest
from minimodels.training.checkpoint import save_checkpoint
from minimodels.training.data import BatchSampler
from minimodels.training.distributed import (
    STRATEGIES,
    DistributedContext,
    full_state_dict,
    init_distributed,
    save_distributed_checkpoint,
    shard_batch,
    shutdown,
    wrap_model,
)
from minimodels.training.loop import PRECISIONS, TrainConfig, train

ROOT = Path(__file__).resolve().parents[2]
EOT = "<|endoftext|>"
PRESETS = {
    # A few seconds on a CPU: for tests and for trying the command, not for a model worth sampling.
    "tiny": {"model": dict(dim=32, n_layers=1, n_heads=2, n_kv_heads=1, max_seq_len=32),
             "batch_size": 4, "max_iters": 20, "warmup_iters": 2, "eval_interval": 10, "eval_iters": 2,
             "lr": 3e-3},
    # Sized to what two CPU cores train in well under an hour (about 3 steps of 8 x 256 tokens per second on an
    # idle machine): 3000 steps see 6.1M tokens, about four passes over the 1.5M training tokens, which took
    # held-out loss from 4.84 (500 steps) to 3.45 nats per token. The notebooks that fine-tune it stay fast.
    "small": {"model": dict(dim=128, n_layers=6, n_heads=4, n_kv_heads=2, max_seq_len=256),
              "batch_size": 8, "max_iters": 3000, "warmup_iters": 40, "eval_interval": 100, "eval_iters": 10,
              "lr": 3e-3},
    "full": {"model": dict(dim=512, n_layers=8, n_heads=8, n_kv_heads=4, max_seq_len=512),
             "batch_size": 64, "max_iters": 6000, "warmup_iters": 200, "eval_interval": 500, "eval_iters": 20,
             "lr": 1.5e-3},
}
VOCAB_SIZE = 4096
VAL_SLICE_WINDOWS = 8  # the fixed slice tests/test_pretrained.py recomputes
SAMPLE_PROMPTS = ("The", "A list is", "The function returns")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m minimodels.training pretrain",
                                     description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(PRESETS), default="small")
    parser.add_argument("--out", type=Path, default=ROOT / "checkpoints" / "course-llama")
    parser.add_argument("--max-iters", type=int, default=None, help="override the preset's iteration count")
    parser.add_argument("--batch-size", type=int, default=None, help="global batch (split over the ranks)")
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--vocab-size", type=int, default=VOCAB_SIZE)
    parser.add_argument("--max-docs", type=int, default=None,
                        help="use only the first N documents of each split (quick trials and tests)")
    parser.add_argument("--strategy", choices=STRATEGIES, default="ddp", help="used under torchrun")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (per process)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None, help="one process only; default: CUDA when present, else CPU")
    parser.add_argument("--cache", type=Path, default=ROOT / "runs" / "pretrain-cache")
    parser.add_argument("--snapshot-every", type=int, default=250, help="save a float32 snapshot to the cache")
    args = parser.parse_args(argv)
    for name in ("max_iters", "batch_size", "threads", "snapshot_every", "max_docs"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if args.vocab_size < 257:
        parser.error(f"--vocab-size must be >= 257 (256 bytes and <|endoftext|>), got {args.vocab_size}")
    return args


def _write_atomically(path: Path, save) -> None:
    """save(tmp) then rename: ranks that build the same cache file at once never read a half-written one."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    save(tmp)
    os.replace(tmp, path)


def documents(split: str, max_docs: int | None) -> list[str]:
    docs = load_documents("english", split)
    return docs if max_docs is None else docs[:max_docs]


def tokenizer_for(cache: Path, vocab_size: int = VOCAB_SIZE, max_docs: int | None = None,
                  log=print) -> BPETokenizer:
    """The course BPE, trained on the English train split (cached: training takes a few seconds)."""
    corpus = manifest()["corpora"]["english"]["content_sha256"][:12]
    subset = "" if max_docs is None else f"-first{max_docs}"
    path = cache / f"tokenizer-{vocab_size}-{corpus}{subset}.json"
    if path.is_file():
        return BPETokenizer.load(path)
    start = time.perf_counter()
    tokenizer = BPETokenizer.train(documents("train", max_docs), vocab_size, special_tokens=[EOT])
    log(f"trained BPE (vocab {vocab_size}) in {time.perf_counter() - start:.1f} s")
    cache.mkdir(parents=True, exist_ok=True)
    _write_atomically(path, tokenizer.save)
    return tokenizer


def encode_documents(tokenizer: BPETokenizer, docs: list[str]) -> torch.Tensor:
    """One token stream: every document followed by <|endoftext|>."""
    eot = tokenizer.special_ids[EOT]
    ids: list[int] = []
    for doc in docs:
        ids += tokenizer.encode(doc)
        ids.append(eot)
    return torch.tensor(ids, dtype=torch.int16 if tokenizer.vocab_size < 2**15 else torch.int32)


def token_stream(tokenizer: BPETokenizer, split: str, cache: Path, max_docs: int | None = None,
                 log=print) -> torch.Tensor:
    """The split's documents as one token stream (cached, keyed by the tokenizer's merges)."""
    digest = hashlib.sha256(json.dumps(tokenizer.to_json()["model"]["merges"]).encode()).hexdigest()[:12]
    subset = "" if max_docs is None else f"-first{max_docs}"
    path = cache / f"english-{split}-{digest}{subset}.pt"
    if path.is_file():
        return torch.load(path).long()
    start = time.perf_counter()
    ids = encode_documents(tokenizer, documents(split, max_docs))
    _write_atomically(path, lambda tmp: torch.save(ids, tmp))
    log(f"tokenized english/{split}: {len(ids):,} tokens in {time.perf_counter() - start:.1f} s")
    return ids.long()


@torch.no_grad()
def window_losses(model: Llama, ids: torch.Tensor, block: int, device, batch: int = 16) -> torch.Tensor:
    """Summed next-token cross-entropy (nats) of each non-overlapping window of `block` targets in `ids`."""
    n_windows = (len(ids) - 1) // block
    sums = []
    for first in range(0, n_windows, batch):
        starts = torch.arange(first, min(first + batch, n_windows)) * block
        idx = starts[:, None] + torch.arange(block)[None, :]  # (B, T)
        logits = model(ids[idx].to(device)).float()  # (B, T, V)
        loss = F.cross_entropy(logits.transpose(1, 2), ids[idx + 1].to(device), reduction="none")  # (B, T)
        sums.append(loss.sum(dim=1).cpu())
    return torch.cat(sums)


def held_out_figures(model: Llama, tokenizer: BPETokenizer, val: torch.Tensor, block: int, device) -> dict:
    """Validation loss over every window of the val stream: per token (and perplexity) and bits per byte.

    Bits per byte divide the summed loss by the UTF-8 bytes of the target tokens; <|endoftext|> counts as
    zero bytes (its loss is kept), so the figure errs high rather than low.
    """
    sums = window_losses(model, val, block, device)
    n_windows = len(sums)
    targets = val[1:n_windows * block + 1].tolist()
    eot = tokenizer.special_ids[EOT]
    n_bytes = sum(len(tokenizer.vocab[t]) for t in targets if t != eot)
    total = float(sums.double().sum())
    per_token = total / len(targets)
    slice_windows = min(VAL_SLICE_WINDOWS, n_windows)
    slice_loss = float(sums[:slice_windows].double().sum()) / (slice_windows * block)
    return {"val_loss": per_token, "val_perplexity": math.exp(per_token), "val_tokens": len(targets),
            "val_bytes": n_bytes, "val_bytes_per_token": n_bytes / len(targets),
            "val_bits_per_byte": total / math.log(2) / n_bytes,
            "val_slice": {"windows": slice_windows, "block_size": block, "loss": slice_loss,
                          "what": "mean next-token loss (nats) of the first `windows` non-overlapping windows of "
                                  "the English val documents, each followed by <|endoftext|>"}}


def samples(model: Llama, tokenizer: BPETokenizer, device, n_new: int = 60) -> list[dict]:
    out = []
    for i, prompt in enumerate(SAMPLE_PROMPTS):
        ids = torch.tensor([tokenizer.encode(prompt)], device=device)
        new = generate(model, ids, n_new, temperature=0.8, seed=i)[0, ids.size(1):].tolist()
        out.append({"prompt": prompt, "temperature": 0.8, "seed": i, "completion": tokenizer.decode(new)})
    return out


def write_base_model(model: torch.nn.Module, config: LlamaConfig, ctx: DistributedContext, out: Path) -> Llama | None:
    """Gather the trained weights (a collective under FSDP) and, on rank 0, write them in float16.

    Returns the float32 model rebuilt from those rounded weights on rank 0 (every figure of the training log
    is measured on what `minimodels.pretrained.load` gives), None on the other ranks.
    """
    state = full_state_dict(model)
    if not ctx.is_main:
        return None
    plain = Llama(config)
    plain.load_state_dict(state)
    out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(plain.half(), out, extra={"dtype": "float16", "tokenizer": "tokenizer.json"})
    return plain.float().eval()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    ctx = init_distributed()
    try:
        return _pretrain(args, argv, ctx)
    finally:
        shutdown()


def _pretrain(args: argparse.Namespace, argv: list[str], ctx: DistributedContext) -> int:
    def log(message: str) -> None:
        if ctx.is_main:
            print(message, flush=True)

    torch.set_num_threads(args.threads)
    preset = PRESETS[args.size]
    device = ctx.device if ctx.is_distributed else pick_device(args.device)
    generator = seed_everything(args.seed)  # the same initial weights and batches on every rank
    args.cache.mkdir(parents=True, exist_ok=True)

    tokenizer = tokenizer_for(args.cache, args.vocab_size, args.max_docs, log)
    train_ids = token_stream(tokenizer, "train", args.cache, args.max_docs, log)
    val_ids = token_stream(tokenizer, "val", args.cache, args.max_docs, log)

    config = LlamaConfig(vocab_size=tokenizer.vocab_size, tie_embeddings=True, **preset["model"])
    model = Llama(config).to(device)
    n_params = model.num_parameters()
    model = wrap_model(model, ctx, args.strategy)
    block = config.max_seq_len
    batch_size = args.batch_size or preset["batch_size"]
    train_config = TrainConfig(max_iters=args.max_iters or preset["max_iters"], lr=args.lr or preset["lr"],
                               warmup_iters=min(preset["warmup_iters"], max(1, (args.max_iters or 10**9) // 10)),
                               eval_interval=preset["eval_interval"], eval_iters=preset["eval_iters"],
                               precision=args.precision, progress=False)
    samplers = {"train": BatchSampler(train_ids, batch_size, block, device, generator),
                "val": BatchSampler(val_ids, batch_size, block, device, torch.Generator().manual_seed(args.seed + 1))}
    log(f"model: {n_params:,} parameters; train {len(train_ids):,} tokens, val {len(val_ids):,}; "
        f"{train_config.max_iters} iterations of {batch_size} x {block} tokens on {device}"
        + (f", {ctx.world_size} ranks ({args.strategy})" if ctx.is_distributed else ""))

    start = time.perf_counter()
    calls = {"train": 0}

    def get_batch(split: str):  # the global batch; shard_batch keeps this rank's rows
        if split == "train":
            calls["train"] += 1
            step = calls["train"]
            if step % 10 == 0 or step == 1:
                elapsed = time.perf_counter() - start
                log(f"iter {step}/{train_config.max_iters}  {elapsed:.0f} s  ({step / elapsed:.3f} it/s)")
            if step % args.snapshot_every == 0:  # every rank reaches this step: the gather is collective
                save_distributed_checkpoint(model, args.cache / "snapshot", ctx, extra={"iter": step})
        return samplers[split]()

    history = train(model, shard_batch(get_batch, ctx), train_config)
    wall = time.perf_counter() - start
    log(f"trained in {wall:.0f} s; val losses {[round(v, 3) for v in history.val_loss]}")

    model = write_base_model(model, config, ctx, args.out)
    if model is None:  # not rank 0: its part is done
        return 0
    model = model.to(device)
    tokenizer.save(args.out / "tokenizer.json")
    figures = held_out_figures(model, tokenizer, val_ids, block, device)
    launcher = ["torchrun", f"--nproc_per_node={ctx.world_size}"] if ctx.is_distributed else ["python"]
    log_record = {
        "command": " ".join([*launcher, "-m", "minimodels.training", "pretrain", *argv]),
        "size": args.size, "seed": args.seed, "device": str(device), "threads": args.threads,
        "world_size": ctx.world_size, "strategy": args.strategy if ctx.is_distributed else "single",
        "python": platform.python_version(), "torch": torch.__version__,
        "model_config": asdict(config), "parameters": n_params,
        "train_config": asdict(train_config), "batch_size": batch_size, "block_size": block,
        "tokenizer": {"vocab_size": tokenizer.vocab_size, "merges": len(tokenizer.merges), "special_tokens": [EOT],
                      "trained_on": "english/train" + ("" if args.max_docs is None else f" (first {args.max_docs})")},
        "corpus": {"name": "english", "content_sha256": manifest()["corpora"]["english"]["content_sha256"],
                   "max_docs": args.max_docs, "train_tokens": len(train_ids), "val_tokens": len(val_ids)},
        "tokens_seen": train_config.max_iters * batch_size * block,
        "wall_time_s": round(wall, 1),
        "final_train_loss": sum(history.train_loss[-50:]) / len(history.train_loss[-50:]),
        **figures,
        "train_loss": [round(x, 4) for x in history.train_loss],
        "lr": history.lr,
        "val_iters": history.val_iters, "val_loss_during_training": history.val_loss,
        "samples": samples(model, tokenizer, device),
    }
    (args.out / "training_log.json").write_text(json.dumps(log_record, indent=1, ensure_ascii=False) + "\n")
    log(json.dumps({k: log_record[k] for k in ("tokens_seen", "wall_time_s", "final_train_loss", "val_loss",
                                               "val_perplexity", "val_bits_per_byte")}, indent=1))
    for s in log_record["samples"]:
        log(f"--- {s['prompt']!r}: {s['completion']!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
