"""Pretrain the course base model: a small Llama on the English corpus with the course BPE tokenizer.

    python scripts/pretrain.py                      # SIZE small: CPU, about 40 minutes on 2 cores
    python scripts/pretrain.py --size full          # bigger model and context, for a GPU
    python scripts/pretrain.py --max-iters 20 --out runs/try   # measure iterations per second first

Steps: train a byte-level BPE (vocabulary 4096, special token <|endoftext|>) on the train split of
`load_corpus("english")`; tokenize the train and validation documents once (each followed by
<|endoftext|>; cached under runs/); train `Llama` (RMSNorm, RoPE, grouped-query attention, SwiGLU, tied
embeddings) with the course loop `minimodels.train`; then write into --out: model.safetensors (float16),
config.json, tokenizer.json and training_log.json (loss per step, validation losses, tokens seen, wall
time, held-out loss per token and bits per byte, samples, the config and the command).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F

from minimodels import (
    BatchSampler,
    Llama,
    LlamaConfig,
    TrainConfig,
    generate,
    pick_device,
    save_checkpoint,
    seed_everything,
    train,
)
from minimodels.text.bpe import BPETokenizer
from minimodels.text.corpus import load_documents, manifest

ROOT = Path(__file__).resolve().parents[1]
EOT = "<|endoftext|>"
PRESETS = {
    # Sized to what two shared CPU cores train in about 40 minutes (2.6-5.5 s per 8 x 256 batch measured for
    # this model, 17 s per 16 x 256 batch for a 5.5M-parameter dim-256 one): a small model that sees ~1M
    # tokens learns more English than a bigger one that sees a few hundred thousand.
    "small": {"model": dict(dim=128, n_layers=6, n_heads=4, n_kv_heads=2, max_seq_len=256),
              "batch_size": 8, "max_iters": 500, "warmup_iters": 40, "eval_interval": 100, "eval_iters": 10,
              "lr": 3e-3},
    "full": {"model": dict(dim=512, n_layers=8, n_heads=8, n_kv_heads=4, max_seq_len=512),
             "batch_size": 64, "max_iters": 6000, "warmup_iters": 200, "eval_interval": 500, "eval_iters": 20,
             "lr": 1.5e-3},
}
VOCAB_SIZE = 4096
VAL_SLICE_WINDOWS = 8  # the fixed slice tests/test_pretrained.py recomputes
SAMPLE_PROMPTS = ("The", "A list is", "The function returns")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(PRESETS), default="small")
    parser.add_argument("--out", type=Path, default=ROOT / "checkpoints" / "course-llama")
    parser.add_argument("--max-iters", type=int, default=None, help="override the preset's iteration count")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None, help="default: CUDA when present, else CPU")
    parser.add_argument("--cache", type=Path, default=ROOT / "runs" / "pretrain-cache")
    parser.add_argument("--snapshot-every", type=int, default=250, help="save a float32 snapshot to the cache")
    args = parser.parse_args(argv)
    for name in ("max_iters", "batch_size", "threads", "snapshot_every"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    return args


def tokenizer_for(cache: Path) -> BPETokenizer:
    """The course BPE, trained on the English train split (cached: training takes a few seconds)."""
    corpus = manifest()["corpora"]["english"]["content_sha256"][:12]
    path = cache / f"tokenizer-{VOCAB_SIZE}-{corpus}.json"
    if path.is_file():
        return BPETokenizer.load(path)
    start = time.perf_counter()
    tokenizer = BPETokenizer.train(load_documents("english", "train"), VOCAB_SIZE, special_tokens=[EOT])
    print(f"trained BPE (vocab {VOCAB_SIZE}) in {time.perf_counter() - start:.1f} s", flush=True)
    cache.mkdir(parents=True, exist_ok=True)
    tokenizer.save(path)
    return tokenizer


def encode_documents(tokenizer: BPETokenizer, documents: list[str]) -> torch.Tensor:
    """One token stream: every document followed by <|endoftext|>."""
    eot = tokenizer.special_ids[EOT]
    ids: list[int] = []
    for doc in documents:
        ids += tokenizer.encode(doc)
        ids.append(eot)
    return torch.tensor(ids, dtype=torch.int16 if tokenizer.vocab_size < 2**15 else torch.int32)


def token_stream(tokenizer: BPETokenizer, split: str, cache: Path) -> torch.Tensor:
    digest = hashlib.sha256(json.dumps(tokenizer.to_json()["model"]["merges"]).encode()).hexdigest()[:12]
    path = cache / f"english-{split}-{digest}.pt"
    if path.is_file():
        return torch.load(path).long()
    start = time.perf_counter()
    ids = encode_documents(tokenizer, load_documents("english", split))
    torch.save(ids, path)
    print(f"tokenized english/{split}: {len(ids):,} tokens in {time.perf_counter() - start:.1f} s", flush=True)
    return ids.long()


@torch.no_grad()
def window_losses(model: Llama, ids: torch.Tensor, block: int, device, batch: int = 16) -> torch.Tensor:
    """Summed next-token cross-entropy (nats) of each non-overlapping window of `block` targets in `ids`."""
    n_windows = (len(ids) - 1) // block
    sums = []
    for first in range(0, n_windows, batch):
        starts = torch.arange(first, min(first + batch, n_windows)) * block
        idx = starts[:, None] + torch.arange(block)[None, :]  # (B, T)
        logits = model(ids[idx].to(device)).float()
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
    slice_loss = float(sums[:VAL_SLICE_WINDOWS].double().sum()) / (VAL_SLICE_WINDOWS * block)
    return {"val_loss": per_token, "val_perplexity": math.exp(per_token), "val_tokens": len(targets),
            "val_bytes": n_bytes, "val_bytes_per_token": n_bytes / len(targets),
            "val_bits_per_byte": total / math.log(2) / n_bytes,
            "val_slice": {"windows": VAL_SLICE_WINDOWS, "block_size": block, "loss": slice_loss,
                          "what": "mean next-token loss (nats) of the first `windows` non-overlapping windows of "
                                  "the English val documents, each followed by <|endoftext|>"}}


def samples(model: Llama, tokenizer: BPETokenizer, device, n_new: int = 60) -> list[dict]:
    out = []
    for i, prompt in enumerate(SAMPLE_PROMPTS):
        ids = torch.tensor([tokenizer.encode(prompt)], device=device)
        new = generate(model, ids, n_new, temperature=0.8, seed=i)[0, ids.size(1):].tolist()
        out.append({"prompt": prompt, "temperature": 0.8, "seed": i, "completion": tokenizer.decode(new)})
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    preset = PRESETS[args.size]
    device = pick_device(args.device)
    generator = seed_everything(args.seed)
    args.cache.mkdir(parents=True, exist_ok=True)

    tokenizer = tokenizer_for(args.cache)
    train_ids = token_stream(tokenizer, "train", args.cache)
    val_ids = token_stream(tokenizer, "val", args.cache)

    config = LlamaConfig(vocab_size=tokenizer.vocab_size, tie_embeddings=True, **preset["model"])
    model = Llama(config).to(device)
    block = config.max_seq_len
    batch_size = args.batch_size or preset["batch_size"]
    train_config = TrainConfig(max_iters=args.max_iters or preset["max_iters"], lr=args.lr or preset["lr"],
                               warmup_iters=min(preset["warmup_iters"], max(1, (args.max_iters or 10**9) // 10)),
                               eval_interval=preset["eval_interval"], eval_iters=preset["eval_iters"], progress=False)
    samplers = {"train": BatchSampler(train_ids, batch_size, block, device, generator),
                "val": BatchSampler(val_ids, batch_size, block, device, torch.Generator().manual_seed(args.seed + 1))}
    print(f"model: {model.num_parameters():,} parameters; train {len(train_ids):,} tokens, val {len(val_ids):,}; "
          f"{train_config.max_iters} iterations of {batch_size} x {block} tokens on {device}", flush=True)

    start = time.perf_counter()
    calls = {"train": 0}

    def get_batch(split: str):
        if split == "train":
            calls["train"] += 1
            step = calls["train"]
            if step % 10 == 0 or step == 1:
                elapsed = time.perf_counter() - start
                print(f"iter {step}/{train_config.max_iters}  {elapsed:.0f} s  ({step / elapsed:.3f} it/s)", flush=True)
            if step % args.snapshot_every == 0:
                save_checkpoint(model, args.cache / "snapshot", extra={"iter": step})
        return samplers[split]()

    history = train(model, get_batch, train_config)
    wall = time.perf_counter() - start
    print(f"trained in {wall:.0f} s; val losses {[round(v, 3) for v in history.val_loss]}", flush=True)

    # What is committed is float16; every figure below is measured on those rounded weights, as `load` gives them.
    args.out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(model.half(), args.out, extra={"dtype": "float16", "tokenizer": "tokenizer.json"})
    tokenizer.save(args.out / "tokenizer.json")
    model = model.float().eval()
    figures = held_out_figures(model, tokenizer, val_ids, block, device)
    log = {
        "command": " ".join(["python", "scripts/pretrain.py", *(argv if argv is not None else sys.argv[1:])]),
        "size": args.size, "seed": args.seed, "device": str(device), "threads": args.threads,
        "python": platform.python_version(), "torch": torch.__version__,
        "model_config": asdict(config), "parameters": model.num_parameters(),
        "train_config": asdict(train_config), "batch_size": batch_size, "block_size": block,
        "tokenizer": {"vocab_size": tokenizer.vocab_size, "merges": len(tokenizer.merges), "special_tokens": [EOT],
                      "trained_on": "english/train"},
        "corpus": {"name": "english", "content_sha256": manifest()["corpora"]["english"]["content_sha256"],
                   "train_tokens": len(train_ids), "val_tokens": len(val_ids)},
        "tokens_seen": train_config.max_iters * batch_size * block,
        "wall_time_s": round(wall, 1),
        "final_train_loss": sum(history.train_loss[-50:]) / len(history.train_loss[-50:]),
        **figures,
        "train_loss": [round(x, 4) for x in history.train_loss],
        "lr": history.lr,
        "val_iters": history.val_iters, "val_loss_during_training": history.val_loss,
        "samples": samples(model, tokenizer, device),
    }
    (args.out / "training_log.json").write_text(json.dumps(log, indent=1, ensure_ascii=False) + "\n")
    print(json.dumps({k: log[k] for k in ("tokens_seen", "wall_time_s", "final_train_loss", "val_loss",
                                          "val_perplexity", "val_bits_per_byte")}, indent=1))
    for s in log["samples"]:
        print(f"--- {s['prompt']!r}: {s['completion']!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
