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
import numbers
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from minimodels.runtime import progress_bar
from minimodels.training.distributed import all_reduce_mean, current_context, no_grad_sync
from minimodels.training.losses import next_token_loss

Batch = tuple[torch.Tensor, torch.Tensor]
LossFn = Callable[[torch.nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]

__all__ = ["History", "TrainConfig", "estimate_loss", "lr_at", "make_optimizer", "next_token_loss", "state_bytes",
           "train"]


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


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
        def fail(name: str, reason: str):
            raise ValueError(f"TrainConfig.{name}={getattr(self, name)!r}: {reason}")

        for name in ("max_iters", "eval_interval", "eval_iters", "grad_accum_steps"):
            if not _is_int(getattr(self, name)) or getattr(self, name) < 1:
                fail(name, "must be an int >= 1")
        if self.precision not in PRECISIONS:
            fail("precision", f"must be one of {PRECISIONS}")
        if not _is_int(self.warmup_iters) or self.warmup_iters < 0:
            fail("warmup_iters", "must be an int >= 0")
        if not _is_real(self.lr) or self.lr <= 0:
            fail("lr", "must be a finite number > 0")
        if self.min_lr is None:
            self.min_lr = self.lr / 10
        if not _is_real(self.min_lr) or not 0 <= self.min_lr <= self.lr:
            fail("min_lr", f"must be a number in [0, lr={self.lr}]: the cosine decays from lr down to min_lr")
        if not _is_real(self.weight_decay) or self.weight_decay < 0:
            fail("weight_decay", "must be a finite number >= 0")
        pair = isinstance(self.betas, (tuple, list)) and len(self.betas) == 2
        if not pair or not all(_is_real(b) and 0 <= b < 1 for b in self.betas):
            fail("betas", "must be two numbers in [0, 1)")
        if self.grad_clip is not None and (not _is_real(self.grad_clip) or self.grad_clip <= 0):
            fail("grad_clip", "must be a finite number > 0, or None to disable clipping")
        self.betas = tuple(self.betas)


@dataclass
class History:
    """What happened during training, for plots: one entry per iteration, and one per validation."""

    train_loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    grad_norm: list[float] = field(default_factory=list)  # global gradient norm, before clipping
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
    params = list(model.parameters())
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


def unpack_batch(batch, split: str) -> Batch:
    """The (inputs, targets) pair that get_batch(split) must return; a TypeError saying so otherwise."""
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        return batch[0], batch[1]
    got = (f"a tensor of shape {tuple(batch.shape)}" if isinstance(batch, torch.Tensor)
           else f"a {type(batch).__name__} of length {len(batch)}" if isinstance(batch, (tuple, list))
           else f"a {type(batch).__name__}")
    raise TypeError(f"get_batch({split!r}) must return a pair (inputs, targets), got {got}")


def grad_norm(parameters: list[torch.nn.Parameter], clip: float | None) -> float:
    """Global norm of the gradients (before clipping); with `clip`, scale them down to at most that norm."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        raise ValueError(
            "no parameter of the model received a gradient: the loss must be computed from the model's output "
            "(check loss_fn, and that the parameters it should train have requires_grad=True)"
        )
    norm = torch.nn.utils.get_total_norm(grads) if clip is None else torch.nn.utils.clip_grad_norm_(parameters, clip)
    return float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)  # a DTensor under FSDP


@torch.no_grad()
def estimate_loss(
    model: torch.nn.Module, get_batch: Callable[[str], Batch], split: str = "val", iters: int = 10,
    loss_fn: LossFn = next_token_loss,
) -> float:
    """Mean loss over `iters` batches of `split`, in eval mode (dropout off), restoring the previous mode.

    Under torchrun each rank scores its own shard and the result is the mean over ranks.
    """
    if not _is_int(iters) or iters < 1:
        raise ValueError(f"estimate_loss: iters must be an int >= 1, got {iters!r}")
    was_training = model.training
    model.eval()
    try:
        total = sum(loss_fn(model, *unpack_batch(get_batch(split), split)).item() for _ in range(iters))
    finally:
        model.train(was_training)
    return all_reduce_mean(total / iters)


def _autocast(precision: str, device: torch.device):
    """torch.autocast for bf16 / fp16, a no-op for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


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
    if not isinstance(config, TrainConfig):
        raise TypeError(f"train: config must be a TrainConfig, got {type(config).__name__}")
    loss_fn = loss_fn or next_token_loss
    parameters = [p for p in model.parameters() if p.requires_grad]
    if not parameters:
        raise ValueError(f"train: {type(model).__name__} has no parameter with requires_grad=True to train")
    ctx = current_context()
    device = parameters[0].device
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
                    loss = loss_fn(model, *unpack_batch(get_batch("train"), "train"))
                if not isinstance(loss, torch.Tensor) or loss.dim() != 0 or not loss.requires_grad:
                    got = f"shape {tuple(loss.shape)}, requires_grad={loss.requires_grad}" if isinstance(
                        loss, torch.Tensor) else type(loss).__name__
                    raise ValueError(f"train: loss_fn must return a scalar tensor that requires grad, got {got}")
                loss = loss / steps
                (scaler.scale(loss) if scaler else loss).backward()
            step_loss += loss.item()
        if scaler:
            scaler.unscale_(optimizer)
        norm = grad_norm(parameters, config.grad_clip)
        if scaler:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        history.step_seconds.append(time.perf_counter() - started)
        history.train_loss.append(all_reduce_mean(step_loss, ctx))
        history.lr.append(lr)
        history.grad_norm.append(norm)
        last = it == config.max_iters - 1
        if (it + 1) % config.eval_interval == 0 or last:
            with _autocast(config.precision, device):
                val = estimate_loss(model, get_batch, "val", config.eval_iters, loss_fn)
            history.val_iters.append(it + 1)
            history.val_loss.append(val)
            bar.set_postfix(train=f"{history.train_loss[-1]:.3f}", val=f"{val:.3f}")
    history.state_bytes = state_bytes(model, optimizer)
    return history
