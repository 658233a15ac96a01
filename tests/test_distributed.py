"""The training loop under torchrun on CPU (gloo, two processes) equals one process.

Each test starts `torchrun --standalone --nproc_per_node=2` on tests/workers/distributed_train.py and
compares what rank 0 wrote with a single-process run of the same steps in this process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from minimodels import load_checkpoint, train
from minimodels.training.distributed import (
    DistributedContext,
    communication_bytes_per_step,
    init_distributed,
    shard_batch,
    wrap_model,
)
from tests.workers.distributed_train import VOCAB, T, batches, config, tiny_llama

ROOT = Path(__file__).resolve().parent.parent
WORKER = ROOT / "tests" / "workers" / "distributed_train.py"
TIMEOUT_S = 150


def torchrun(out: Path, *args: str, nproc: int = 2) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               str(WORKER), "--out", str(out), *args]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)


def single_process(steps: int, batch: int, accum: int = 1) -> tuple[dict, list[float]]:
    model = tiny_llama()
    history = train(model, batches(batch), config(steps, accum))
    return model.state_dict(), history.train_loss


def assert_same_weights(got: dict, expected: dict, atol: float = 1e-5) -> None:
    assert got.keys() == expected.keys()
    for name, value in expected.items():
        torch.testing.assert_close(got[name], value, atol=atol, rtol=0, msg=lambda m, n=name: f"{n}: {m}")


def test_ddp_on_two_ranks_equals_one_process_with_the_whole_batch(tmp_path):
    done = torchrun(tmp_path, "--strategy", "ddp", "--steps", "4", "--batch", "8")
    assert done.returncode == 0, done.stderr[-3000:]
    result = torch.load(tmp_path / "weights.pt")
    expected, losses = single_process(steps=4, batch=8)
    assert_same_weights(result["state"], expected)
    assert result["train_loss"] == pytest.approx(losses, abs=1e-5)
    # the checkpoint written by rank 0 reloads in one process to the same logits
    reloaded = load_checkpoint(tmp_path / "ckpt")
    reference = tiny_llama()
    reference.load_state_dict(expected)
    x = torch.randint(VOCAB, (2, T), generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(reloaded(x), reference.eval()(x), atol=1e-5, rtol=0)


def test_fsdp_equals_one_process(tmp_path):
    done = torchrun(tmp_path, "--strategy", "fsdp", "--steps", "3", "--batch", "8")
    assert done.returncode == 0, done.stderr[-3000:]
    expected, _ = single_process(steps=3, batch=8)
    result = torch.load(tmp_path / "weights.pt")
    assert_same_weights(result["state"], expected)
    assert load_checkpoint(tmp_path / "ckpt").config == tiny_llama().config
    # rank 0 holds about half of every kind of state (ZeRO-3); the full model's figures by hand:
    full = sum(v.numel() * 4 for v in expected.values())
    for kind in ("parameters", "gradients"):
        assert 0.45 * full <= result["state_bytes"][kind] <= 0.55 * full, (kind, result["state_bytes"], full)
    assert 0.9 * full <= result["state_bytes"]["optimizer"] <= 1.2 * full  # AdamW: two moments per shard


def test_accumulation_under_ddp_equals_one_big_batch(tmp_path):
    """2 ranks x 2 micro-steps of 4 rows = one process with 2 micro-steps of 8 rows = the same steps."""
    done = torchrun(tmp_path, "--strategy", "ddp", "--steps", "2", "--batch", "8", "--accum", "2")
    assert done.returncode == 0, done.stderr[-3000:]
    expected, _ = single_process(steps=2, batch=8, accum=2)
    assert_same_weights(torch.load(tmp_path / "weights.pt")["state"], expected)


def test_a_failing_rank_fails_the_run_fast_with_its_error(tmp_path):
    start = time.perf_counter()
    done = torchrun(tmp_path, "--fail-rank", "1")
    elapsed = time.perf_counter() - start
    assert done.returncode != 0
    assert "rank 1 fails on purpose" in done.stdout + done.stderr
    assert elapsed < TIMEOUT_S - 30, f"the run took {elapsed:.0f} s to fail"


def test_accumulating_four_micro_batches_equals_one_batch_four_times_larger():
    """Single process: 4 micro-batches of 4 rows, stacked, are the 16 rows of one big batch."""
    small = batches(4)
    steps = 3

    def big_batch(split):
        parts = [small(split) for _ in range(4)]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

    accumulated, one_big = tiny_llama(), tiny_llama()
    train(accumulated, batches(4), config(steps, accum=4))
    train(one_big, big_batch, config(steps, accum=1))
    assert_same_weights(accumulated.state_dict(), one_big.state_dict())
    # and it is not trivially equal: one micro-batch per step gives other weights
    different = tiny_llama()
    train(different, batches(4), config(steps, accum=1))
    with pytest.raises(AssertionError):
        assert_same_weights(different.state_dict(), one_big.state_dict())


def test_single_process_helpers_are_no_ops(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    ctx = init_distributed()
    assert ctx == DistributedContext() and ctx.is_main and not ctx.is_distributed
    model = tiny_llama()
    assert wrap_model(model, ctx) is model
    get_batch = batches(4)
    assert shard_batch(get_batch, ctx) is get_batch


def test_shard_batch_takes_each_ranks_rows():
    x = torch.arange(12).view(6, 2)
    parts = [shard_batch(lambda split: (x, x + 100), DistributedContext(rank=r, world_size=3))("train")
             for r in range(3)]
    assert torch.equal(torch.cat([p[0] for p in parts]), x)
    assert torch.equal(parts[1][1], x[2:4] + 100)
    with pytest.raises(ValueError, match="cannot be split evenly over 4 ranks"):
        shard_batch(lambda split: (x, x), DistributedContext(rank=0, world_size=4))("train")


def test_bad_arguments_are_refused(monkeypatch):
    with pytest.raises(ValueError, match="strategy must be one of"):
        wrap_model(tiny_llama(), DistributedContext(world_size=2), strategy="zero")
    with pytest.raises(ValueError, match="backend must be"):
        init_distributed(backend="mpi")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    with pytest.raises(RuntimeError, match="start the script with torchrun"):
        init_distributed()
    with pytest.raises(ValueError, match="precision must be one of"):
        config(1).__class__(precision="fp8")


def test_ring_all_reduce_sends_two_n_minus_one_over_n_of_the_gradients():
    # by hand: 2 ranks each send half the gradient twice (reduce-scatter, then all-gather) = 1x its size
    assert communication_bytes_per_step(1000, 2) == 4000
    assert communication_bytes_per_step(1000, 1) == 0
    assert communication_bytes_per_step(1000, 4) == 6000
