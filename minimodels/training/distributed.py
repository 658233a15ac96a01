"""The course training loop on PyTorch's own distributed engine: torchrun, DDP, FSDP2, rank-0 checkpoints.

    ctx = init_distributed()                      # reads RANK / WORLD_SIZE / LOCAL_RANK set by torchrun
    model = wrap_model(Llama(config).to(ctx.device), ctx, strategy="ddp")   # or "fsdp"
    history = train(model, shard_batch(get_batch, ctx), TrainConfig(grad_accum_steps=4))
    save_distributed_checkpoint(model, "runs/ckpt", ctx)
    shutdown()

Run the same file with `torchrun --standalone --nproc_per_node=2 script.py` (one machine) or with
`--nnodes N --node_rank R --rdzv_backend c10d --rdzv_endpoint HOST:PORT` (several). Without torchrun the
same code runs as one process: `init_distributed` returns a single-rank context and every helper is a no-op.

Data parallelism (DDP, Li et al. 2020, arXiv:2006.15704): every rank holds the whole model, computes the
gradient of its shard of the global batch, and an all-reduce averages the gradients, so one step equals a
single-process step on the whole batch. FSDP (ZeRO-3, Rajbhandari et al. 2019, arXiv:1910.02054) also
shards parameters, gradients and optimizer state across ranks and all-gathers each layer's parameters just
before it runs.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

STRATEGIES = ("ddp", "fsdp")


@dataclass(frozen=True)
class DistributedContext:
    """Who this process is: its rank among world_size processes and the device it computes on."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    backend: str | None = None  # None: a single process, no process group

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that logs, shows progress bars and writes checkpoints."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an int, got {value!r}") from None


def current_context() -> DistributedContext:
    """The context of the running process group (a single-process context when there is none)."""
    if not (dist.is_available() and dist.is_initialized()):
        return DistributedContext()
    backend = dist.get_backend()
    local_rank = _env_int("LOCAL_RANK", 0)
    device = torch.device("cuda", local_rank) if backend == "nccl" else torch.device("cpu")
    return DistributedContext(dist.get_rank(), dist.get_world_size(), local_rank, device, backend)


def init_distributed(backend: str | None = None, timeout_s: float = 120.0) -> DistributedContext:
    """Join the process group that torchrun describes in the environment; a single process otherwise.

    backend defaults to nccl when CUDA is available and gloo on CPU. timeout_s bounds every collective, so
    a rank that died makes the others fail instead of waiting forever.
    """
    if backend is not None and backend not in ("gloo", "nccl"):
        raise ValueError(f"backend must be 'gloo', 'nccl' or None (automatic), got {backend!r}")
    if timeout_s <= 0:
        raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
    if dist.is_available() and dist.is_initialized():
        return current_context()
    world_size = _env_int("WORLD_SIZE", 1)
    if world_size == 1:
        return DistributedContext()
    missing = [name for name in ("RANK", "MASTER_ADDR", "MASTER_PORT") if name not in os.environ]
    if missing:
        raise RuntimeError(f"WORLD_SIZE={world_size} but {', '.join(missing)} not set: start the script with torchrun")
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    local_rank = _env_int("LOCAL_RANK", 0)
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
    return current_context()


def shutdown() -> None:
    """Leave the process group (a no-op for a single process)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def wrap_model(model: nn.Module, ctx: DistributedContext, strategy: str = "ddp") -> nn.Module:
    """DDP or FSDP2 (`fully_shard` on every decoder layer, then on the whole model); unchanged for one process.

    The model must already be on ctx.device. FSDP2 shards each layer's parameters across ranks as DTensors;
    the module keeps its class, so `model.config` and `model(input_ids)` work as before.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    if not ctx.is_distributed:
        return model
    if strategy == "ddp":
        device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
    from torch.distributed.fsdp import fully_shard

    for block in _blocks(model):
        fully_shard(block)
    fully_shard(model)
    return model


def _blocks(model: nn.Module) -> list[nn.Module]:
    """The repeated blocks to shard one by one: `model.layers` or `model.blocks` when present."""
    for name in ("layers", "blocks", "h"):
        blocks = getattr(model, name, None)
        if isinstance(blocks, nn.ModuleList):
            return list(blocks)
    return []


def unwrap(model: nn.Module) -> nn.Module:
    """The course model inside a DDP wrapper (FSDP2 keeps the module itself)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def is_fsdp(model: nn.Module) -> bool:
    """True for a module sharded with FSDP2's fully_shard."""
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def shard_batch(get_batch: Callable, ctx: DistributedContext) -> Callable:
    """get_batch(split) returning the GLOBAL batch -> one returning this rank's rows of it.

    Every rank draws the same global batch (same seed), and rank r keeps rows r*B .. (r+1)*B - 1 with
    B = global batch / world_size. The ranks together see exactly the batch one process would.
    """
    if not ctx.is_distributed:
        return get_batch

    def rank_batch(split: str):
        x, y = get_batch(split)
        if x.size(0) % ctx.world_size:
            raise ValueError(f"global batch of {x.size(0)} rows cannot be split evenly over {ctx.world_size} ranks")
        rows = x.size(0) // ctx.world_size
        part = slice(ctx.rank * rows, (ctx.rank + 1) * rows)
        return x[part], y[part]

    return rank_batch


def all_reduce_mean(value: float, ctx: DistributedContext | None = None) -> float:
    """The mean of a float over all ranks (the value itself for one process)."""
    ctx = ctx or current_context()
    if not ctx.is_distributed:
        return float(value)
    t = torch.tensor([float(value)], dtype=torch.float64, device=ctx.device)
    dist.all_reduce(t)
    return float(t.item()) / ctx.world_size


def full_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The whole model's weights as plain CPU tensors (gathered from the shards under FSDP; rank 0 only)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    if is_fsdp(model):
        return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return {k: v.detach().cpu() for k, v in unwrap(model).state_dict().items()}


def save_distributed_checkpoint(model: nn.Module, folder: str | Path, ctx: DistributedContext | None = None,
                                extra: dict | None = None) -> Path:
    """Rank 0 writes the same checkpoint as `save_checkpoint` (reloadable in one process); others wait.

    Under FSDP the full weights are gathered with torch.distributed.checkpoint's state-dict API (every
    rank takes part in the gather; only rank 0 receives and writes).
    """
    from minimodels.training.checkpoint import save_checkpoint

    ctx = ctx or current_context()
    state = full_state_dict(model)  # a collective under FSDP: every rank must call it
    if ctx.is_main:
        inner = unwrap(model)
        plain = type(inner)(copy.deepcopy(inner.config))  # an unsharded twin to hold the gathered weights
        plain.load_state_dict(state)
        save_checkpoint(plain, folder, extra)
    if ctx.is_distributed:
        dist.barrier()
    return Path(folder)


def no_grad_sync(model: nn.Module, enabled: bool):
    """Context manager: skip the gradient all-reduce of this backward (all but the last micro-step).

    DDP has `no_sync()`; FSDP2 has `set_requires_gradient_sync(False)`. Gradients still accumulate locally.
    """
    import contextlib

    if not enabled:
        return contextlib.nullcontext()
    if isinstance(model, nn.parallel.DistributedDataParallel):
        return model.no_sync()
    if is_fsdp(model):
        @contextlib.contextmanager
        def fsdp_no_sync():
            model.set_requires_gradient_sync(False)
            try:
                yield
            finally:
                model.set_requires_gradient_sync(True)

        return fsdp_no_sync()
    return contextlib.nullcontext()


def communication_bytes_per_step(n_params: int, world_size: int, bytes_per_value: int = 4) -> int:
    """Bytes each rank sends in one ring all-reduce of the gradients: 2 (N - 1) / N times the gradient size."""
    if world_size < 1 or n_params < 0:
        raise ValueError(f"need world_size >= 1 and n_params >= 0, got {world_size}, {n_params}")
    return 2 * (world_size - 1) * n_params * bytes_per_value // world_size
