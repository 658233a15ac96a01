"""The one training loop every lesson reuses: AdamW, warmup + cosine schedule, clipping, validation.

    history = train(model, get_batch, TrainConfig(max_iters=500))
    plt.plot(history.train_loss)

`get_batch(split)` returns (inputs, targets) for split 'train' or 'val'. The default loss is next-token
cross-entropy on `model(inputs)` logits (B, T, V); pass `loss_fn(model, inputs, targets)` for anything else.

The same call runs unchanged under torchrun (see training/distributed.py): with a DDP- or FSDP-wrapped
model and a rank-sharded get_batch, gradients are averaged across ranks, validation losses too, and only
rank 0 shows a progress bar. `grad_accum_steps` micro-batches make one optimizer step (the gradient
all-reduce runs only on the last one); `precision="bf16"` runs the forward under torch.autocast.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from minimodels.runtime import progress_bar
from minimodels.training.distributed import all_reduce_mean, current_context, no_grad_sync

Batch = tuple[torch.Tensor, torch.Tensor]
LossFn = Callable[[torch.nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


PRECISIONS = ("fp32", "bf16", "fp16")


@dataclass
class TrainConfig:
    max_iters: int = 500
    lr: float = 1e-3
    min_lr: float | None = None  # end of the cosine decay; default lr / 10
    warmup_iters: int = 50
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float | None = 1.0  # max global grad norm; None disables clipping
    eval_interval: int = 100  # validate every this many iterations (and at the end)
    eval_iters: int = 10  # batches averaged per validation estimate
    progress: bool = True  # tqdm bar (rank 0 only under torchrun)
    grad_accum_steps: int = 1  # micro-batches per optimizer step (each one a get_batch("train") call)
    precision: str = "fp32"  # "fp32", "bf16" (torch.autocast, CPU or GPU) or "fp16" (autocast + GradScaler, GPU)

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ValueError(f"TrainConfig.precision must be one of {PRECISIONS}, got {self.precision!r}")
        for name in ("max_iters", "eval_interval", "eval_iters", "grad_accum_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.warmup_iters < 0:
            raise ValueError(f"TrainConfig.warmup_iters must be >= 0, got {self.warmup_iters}")
        if self.lr <= 0:
            raise ValueError(f"TrainConfig.lr must be > 0, got {self.lr}")
        if self.min_lr is None:
            self.min_lr = self.lr / 10
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ValueError(f"TrainConfig.grad_clip must be > 0 or None, got {self.grad_clip}")


@dataclass
class History:
    """What happened during training, for plots: one entry per iteration, and one per validation."""

    train_loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    grad_norm: list[float] = field(default_factory=list)
    val_iters: list[int] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    step_seconds: list[float] = field(default_factory=list)  # wall time of each optimizer step
    # bytes this process holds at the end: parameters, gradients, optimizer state (its shards under FSDP)
    state_bytes: dict[str, int] = field(default_factory=dict)


def _local_bytes(tensors) -> int:
    """Bytes of the tensors as stored on this process (the local shard of a DTensor)."""
    total = 0
    for t in tensors:
        if t is None or not isinstance(t, torch.Tensor):
            continue
        local = t.to_local() if hasattr(t, "to_local") else t
        total += local.numel() * local.element_size()
    return total


def state_bytes(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, int]:
    """Parameter, gradient and optimizer-state bytes held by this process."""
    params = [p for p in model.parameters()]
    return {
        "parameters": _local_bytes(params),
        "gradients": _local_bytes(p.grad for p in params),
        "optimizer": _local_bytes(v for state in optimizer.state.values() for v in state.values()),
    }


def lr_at(it: int, config: TrainConfig) -> float:
    """Linear warmup to config.lr over warmup_iters, then cosine decay to min_lr at max_iters."""
    if it < config.warmup_iters:
        return config.lr * (it + 1) / config.warmup_iters
    progress = (it - config.warmup_iters) / max(1, config.max_iters - config.warmup_iters)
    progress = min(progress, 1.0)
    return config.min_lr + 0.5 * (1 + math.cos(math.pi * progress)) * (config.lr - config.min_lr)


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW where matrices (dim >= 2: linear and embedding weights) decay and biases and norm gains do not.

    A parameter marked `p._no_weight_decay = True` never decays (Mamba's A_log, as in mamba-ssm).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    decays = [p.dim() >= 2 and not getattr(p, "_no_weight_decay", False) for p in params]
    decay = [p for p, d in zip(params, decays, strict=True) if d]
    no_decay = [p for p, d in zip(params, decays, strict=True) if not d]
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    extra = {}
    device_type = params[0].device.type if params else "cpu"
    if "fused" in inspect.signature(torch.optim.AdamW).parameters and device_type in ("cuda", "cpu"):
        extra["fused"] = True
    return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas, **extra)


def next_token_loss(model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of model(inputs) logits (B, T, V) against targets (B, T)."""
    logits = model(inputs)
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))


@torch.no_grad()
def estimate_loss(
    model: torch.nn.Module, get_batch: Callable[[str], Batch], split: str = "val", iters: int = 10,
    loss_fn: LossFn = next_token_loss,
) -> float:
    """Mean loss over `iters` batches of `split`, in eval mode (dropout off), restoring the previous mode.

    Under torchrun each rank scores its own shard and the result is the mean over ranks.
    """
    was_training = model.training
    model.eval()
    try:
        total = sum(loss_fn(model, *get_batch(split)).item() for _ in range(iters))
    finally:
        model.train(was_training)
    return all_reduce_mean(total / iters)


def _autocast(precision: str, device: torch.device):
    """torch.autocast for bf16 / fp16, a no-op for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def _model_device(model: torch.nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def train(
    model: torch.nn.Module,
    get_batch: Callable[[str], Batch],
    config: TrainConfig | None = None,
    loss_fn: LossFn | None = None,
) -> History:
    """Train `model` in place for config.max_iters optimizer steps and return the History.

    Each step averages the loss over config.grad_accum_steps micro-batches. Under torchrun (a DDP or
    FSDP2 model, see training/distributed.py) the gradients are averaged over ranks on the last
    micro-step only, and History holds the mean over ranks of each step's loss.
    """
    config = config or TrainConfig()
    loss_fn = loss_fn or next_token_loss
    ctx = current_context()
    device = _model_device(model)
    if config.precision == "fp16" and device.type != "cuda":
        raise ValueError("TrainConfig.precision='fp16' needs a CUDA model (GradScaler); use 'bf16' on CPU")
    scaler = torch.amp.GradScaler("cuda") if config.precision == "fp16" else None
    optimizer = make_optimizer(model, config)
    history = History()
    model.train()
    steps = config.grad_accum_steps
    bar = progress_bar(range(config.max_iters), enabled=config.progress and ctx.is_main, desc="train", leave=False)
    for it in bar:
        started = time.perf_counter()
        lr = lr_at(it, config)
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.zero_grad(set_to_none=True)
        step_loss = 0.0
        for micro in range(steps):
            with no_grad_sync(model, enabled=micro < steps - 1):  # all-reduce on the last micro-step only
                with _autocast(config.precision, device):
                    loss = loss_fn(model, *get_batch("train")) / steps
                (scaler.scale(loss) if scaler else loss).backward()
            step_loss += loss.item()
        if scaler:
            scaler.unscale_(optimizer)
        max_norm = config.grad_clip if config.grad_clip is not None else float("inf")  # inf: measure only
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
        if scaler:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        history.step_seconds.append(time.perf_counter() - started)
        history.train_loss.append(all_reduce_mean(step_loss, ctx))
        history.lr.append(lr)
        history.grad_norm.append(float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm))
        last = it == config.max_iters - 1
        if (it + 1) % config.eval_interval == 0 or last:
            with _autocast(config.precision, device):
                val = estimate_loss(model, get_batch, "val", config.eval_iters, loss_fn)
            history.val_iters.append(it + 1)
            history.val_loss.append(val)
            bar.set_postfix(train=f"{history.train_loss[-1]:.3f}", val=f"{val:.3f}")
    history.state_bytes = state_bytes(model, optimizer)
    return history
