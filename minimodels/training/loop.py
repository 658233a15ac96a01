"""The one training loop every lesson reuses: AdamW, warmup + cosine schedule, clipping, validation.

    history = train(model, get_batch, TrainConfig(max_iters=500))
    plt.plot(history.train_loss)

`get_batch(split)` returns (inputs, targets) for split 'train' or 'val'. The default loss is next-token
cross-entropy on `model(inputs)` logits (B, T, V); pass `loss_fn(model, inputs, targets)` for anything else.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

Batch = tuple[torch.Tensor, torch.Tensor]
LossFn = Callable[[torch.nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


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
    progress: bool = True  # tqdm bar

    def __post_init__(self):
        for name in ("max_iters", "eval_interval", "eval_iters"):
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
    """Mean loss over `iters` batches of `split`, in eval mode (dropout off), restoring the previous mode."""
    was_training = model.training
    model.eval()
    total = sum(loss_fn(model, *get_batch(split)).item() for _ in range(iters))
    model.train(was_training)
    return total / iters


def train(
    model: torch.nn.Module,
    get_batch: Callable[[str], Batch],
    config: TrainConfig | None = None,
    loss_fn: LossFn | None = None,
) -> History:
    """Train `model` in place for config.max_iters steps and return the History."""
    config = config or TrainConfig()
    loss_fn = loss_fn or next_token_loss
    optimizer = make_optimizer(model, config)
    history = History()
    model.train()
    bar = tqdm(range(config.max_iters), disable=not config.progress, desc="train", leave=False)
    for it in bar:
        lr = lr_at(it, config)
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss = loss_fn(model, *get_batch("train"))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip is not None:
            norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        else:
            norm = torch.linalg.vector_norm(
                torch.stack([p.grad.norm() for p in model.parameters() if p.grad is not None])
            )
        optimizer.step()
        history.train_loss.append(loss.item())
        history.lr.append(lr)
        history.grad_norm.append(float(norm))
        last = it == config.max_iters - 1
        if (it + 1) % config.eval_interval == 0 or last:
            val = estimate_loss(model, get_batch, "val", config.eval_iters, loss_fn)
            history.val_iters.append(it + 1)
            history.val_loss.append(val)
            bar.set_postfix(train=f"{loss.item():.3f}", val=f"{val:.3f}")
    return history
