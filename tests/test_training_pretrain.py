"""`python -m minimodels.training pretrain`: the base model's training, in one process and under torchrun.

A tiny preset on the first documents of the English corpus, so each run takes seconds. The recorded held-out
loss is recomputed here with the saved tokenizer and model; two ranks (DDP, FSDP) equal one process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from minimodels import Llama
from minimodels.pretrained import load
from minimodels.text.corpus import load_documents

ROOT = Path(__file__).resolve().parent.parent
EOT = "<|endoftext|>"
MAX_DOCS, VOCAB = 40, 300
TINY = ["--size", "tiny", "--max-docs", str(MAX_DOCS), "--vocab-size", str(VOCAB), "--threads", "1"]


def run_pretrain(out: Path, cache: Path, *extra: str, nproc: int = 1) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    launcher = [sys.executable] if nproc == 1 else [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                    f"--nproc_per_node={nproc}"]
    command = [*launcher, "-m", "minimodels.training", "pretrain", *TINY, "--out", str(out), "--cache", str(cache),
               *extra]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> Path:
    """One process, 6 steps; its cache (tokenizer, token streams, the step-4 snapshot) sits beside it."""
    root = tmp_path_factory.mktemp("single")  # course-llama: the one name `pretrained.load` accepts
    run_pretrain(root / "course-llama", root / "cache", "--max-iters", "6", "--snapshot-every", "4")
    return root / "course-llama"


def test_writes_a_base_model_that_pretrained_load_reads(single, monkeypatch):
    assert {p.name for p in single.iterdir()} == {"model.safetensors", "config.json", "tokenizer.json",
                                                  "training_log.json"}
    assert all(t.dtype == torch.float16 for t in load_file(single / "model.safetensors").values())
    monkeypatch.setenv("MINIMODELS_CHECKPOINTS", str(single.parent))
    model, tokenizer = load(single.name)
    assert isinstance(model, Llama) and model.config.vocab_size == tokenizer.vocab_size == VOCAB
    log = json.loads((single / "training_log.json").read_text())
    assert log["command"].startswith("python -m minimodels.training pretrain --size tiny")
    assert len(log["train_loss"]) == 6 and log["world_size"] == 1
    assert log["tokens_seen"] == 6 * 4 * 32  # iterations x batch x context of the tiny preset


def test_recorded_held_out_loss_is_recomputed_from_the_saved_files(single, monkeypatch):
    monkeypatch.setenv("MINIMODELS_CHECKPOINTS", str(single.parent))
    model, tokenizer = load(single.name)
    eot = tokenizer.encode(EOT)
    assert len(eot) == 1
    ids: list[int] = []
    for doc in load_documents("english", "val")[:MAX_DOCS]:
        ids += tokenizer.encode(doc) + eot
    block = model.config.max_seq_len
    windows = (len(ids) - 1) // block
    x = torch.tensor(ids[:windows * block]).view(windows, block)  # (W, T)
    y = torch.tensor(ids[1:windows * block + 1]).view(windows, block)
    with torch.no_grad():
        loss = F.cross_entropy(model(x).reshape(-1, VOCAB), y.reshape(-1)).item()
    log = json.loads((single / "training_log.json").read_text())
    assert log["val_tokens"] == windows * block
    assert loss == pytest.approx(log["val_loss"], rel=1e-5)
    assert loss < 0.97 * torch.log(torch.tensor(float(VOCAB))).item()  # six steps already beat a uniform guess


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_ranks_train_the_same_model_as_one_process(tmp_path, single, strategy):
    done = run_pretrain(tmp_path / "ddp", tmp_path / "cache", "--max-iters", "6", "--snapshot-every", "4",
                        "--strategy", strategy, nproc=2)
    assert f"2 ranks ({strategy})" in done.stdout
    one = json.loads((single / "training_log.json").read_text())
    two = json.loads((tmp_path / "ddp" / "training_log.json").read_text())
    assert two["world_size"] == 2 and two["command"].startswith("torchrun --nproc_per_node=2")
    assert two["train_loss"] == pytest.approx(one["train_loss"], abs=2e-4)  # rounded to 4 decimals when logged
    # the float32 snapshots both runs took at step 4 (the DDP one gathered and written by rank 0). Three AdamW
    # updates of up to lr = 3e-3 each moved every weight; summing the gradient over two ranks rounds differently,
    # and Adam's m / sqrt(v) magnifies that where a gradient is near zero, so a few weights differ by ~1e-5.
    snapshot_one = load_file(single.parent / "cache" / "snapshot" / "model.safetensors")
    snapshot_two = load_file(tmp_path / "cache" / "snapshot" / "model.safetensors")
    assert snapshot_one.keys() == snapshot_two.keys()
    for name, value in snapshot_one.items():
        assert value.dtype == torch.float32
        torch.testing.assert_close(snapshot_two[name], value, atol=1e-4, rtol=0, msg=lambda m, n=name: f"{n}: {m}")
    # the committed float16 files: equal within a rounding step of float16
    final_one = load_file(single / "model.safetensors")
    final_two = load_file(tmp_path / "ddp" / "model.safetensors")
    for name, value in final_one.items():
        torch.testing.assert_close(final_two[name].float(), value.float(), atol=1e-3, rtol=1e-3)


def test_bad_arguments_are_refused_with_their_name(tmp_path):
    command = [sys.executable, "-m", "minimodels.training", "pretrain", "--out", str(tmp_path)]
    for bad, message in ((["--max-iters", "0"], "--max-iters must be >= 1"),
                         (["--vocab-size", "100"], "--vocab-size must be >= 257"),
                         (["--size", "huge"], "invalid choice: 'huge'")):
        done = subprocess.run([*command, *bad], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and message in done.stderr, done.stderr
