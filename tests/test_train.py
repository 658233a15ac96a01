import math

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

from minimodels import GPT, GPTConfig, TrainConfig, estimate_loss, train
from minimodels.training.loop import lr_at, make_optimizer
from minimodels.training.losses import token_cross_entropy


def test_schedule_warmup_then_cosine():
    cfg = TrainConfig(max_iters=100, lr=1e-3, warmup_iters=10, min_lr=1e-4)
    assert lr_at(0, cfg) == pytest.approx(1e-4)
    assert lr_at(9, cfg) == pytest.approx(1e-3)
    assert lr_at(55, cfg) == pytest.approx(1e-4 + 0.5 * (1 + math.cos(math.pi * 0.5)) * 9e-4)
    assert lr_at(100, cfg) == pytest.approx(1e-4)


def test_decay_groups_split_matrices_from_vectors():
    model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=16))
    opt = make_optimizer(model, TrainConfig(weight_decay=0.1))
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"]) and all(p.dim() < 2 for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_training_lowers_the_loss_on_a_learnable_stream():
    torch.manual_seed(0)
    stream = torch.arange(2000) % 7  # a periodic sequence: perfectly predictable
    gen = torch.Generator().manual_seed(0)

    def get_batch(split):
        starts = torch.randint(0, len(stream) - 9, (8,), generator=gen)
        idx = starts[:, None] + torch.arange(8)
        return stream[idx], stream[idx + 1]

    model = GPT(GPTConfig(vocab_size=7, block_size=8, n_layer=1, n_head=2, n_embd=32))
    history = train(model, get_batch, TrainConfig(max_iters=100, lr=1e-2, warmup_iters=5, eval_interval=20,
                                                  eval_iters=2, progress=False))
    assert len(history.train_loss) == 100 and history.val_iters == [20, 40, 60, 80, 100]
    assert history.train_loss[0] > 1.5  # about log(7) at the start
    assert history.val_loss[-1] < 0.2
    assert max(history.grad_norm) > 0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(max_iters=0), r"TrainConfig.max_iters=0: must be an int >= 1"),
        (dict(max_iters=2.5), r"TrainConfig.max_iters=2.5: must be an int >= 1"),
        (dict(eval_interval=True), r"TrainConfig.eval_interval=True: must be an int >= 1"),
        (dict(eval_iters=0), r"TrainConfig.eval_iters=0: must be an int >= 1"),
        (dict(warmup_iters=-1), r"TrainConfig.warmup_iters=-1: must be an int >= 0"),
        (dict(lr=-1), r"TrainConfig.lr=-1: must be a finite number > 0"),
        (dict(lr=float("nan")), r"TrainConfig.lr=nan: must be a finite number > 0"),
        (dict(lr=1e-3, min_lr=1e-2), r"TrainConfig.min_lr=0.01: must be a number in \[0, lr=0.001\]"),
        (dict(min_lr=-1e-4), r"TrainConfig.min_lr=-0.0001: must be a number in \[0, lr="),
        (dict(weight_decay=-0.1), r"TrainConfig.weight_decay=-0.1: must be a finite number >= 0"),
        (dict(betas=(0.9, 1.0)), r"TrainConfig.betas=\(0.9, 1.0\): must be two numbers in \[0, 1\)"),
        (dict(betas=(0.9,)), r"TrainConfig.betas=\(0.9,\): must be two numbers"),
        (dict(grad_clip=0), r"TrainConfig.grad_clip=0: must be a finite number > 0, or None"),
    ],
)
def test_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kwargs)


def linear_problem(seed=0):
    """A linear model and batches of a noisy linear target: big gradients at the start."""
    torch.manual_seed(seed)
    model = torch.nn.Linear(8, 1)
    gen = torch.Generator().manual_seed(seed)
    true_w = torch.randn(8, 1, generator=gen) * 10

    def get_batch(split):
        x = torch.randn(16, 8, generator=gen)
        return x, x @ true_w

    def mse(model, x, y):
        return (model(x) - y).pow(2).mean()

    return model, get_batch, mse


def grad_norms_seen_by_the_optimizer(run) -> list[float]:
    """The global gradient norm at each optimizer step (after any clipping), recorded by a step pre-hook."""
    seen = []

    def hook(optimizer, args, kwargs):
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        seen.append(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])).item())

    handle = register_optimizer_step_pre_hook(hook)
    try:
        run()
    finally:
        handle.remove()
    return seen


@pytest.mark.parametrize("clip", [0.5, None])
def test_grad_clip_bounds_the_norm_of_each_step_and_none_leaves_it(clip):
    model, get_batch, mse = linear_problem()
    config = TrainConfig(max_iters=8, lr=1e-3, warmup_iters=0, grad_clip=clip, eval_interval=8, eval_iters=1,
                         progress=False)
    history = None

    def run():
        nonlocal history
        history = train(model, get_batch, config, loss_fn=mse)

    seen = grad_norms_seen_by_the_optimizer(run)
    assert len(seen) == 8 and min(history.grad_norm) > 10  # far above the clip: clipping must act
    if clip is None:
        assert seen == pytest.approx(history.grad_norm, rel=1e-5)  # the recorded norm is the one stepped with
    else:
        assert seen == pytest.approx([clip] * 8, rel=1e-4)  # scaled down to exactly the clip norm


def test_get_batch_must_return_a_pair():
    model, get_batch, mse = linear_problem()
    config = TrainConfig(max_iters=2, warmup_iters=0, progress=False)
    with pytest.raises(TypeError, match=r"get_batch\('train'\) must return a pair \(inputs, targets\), "
                                        r"got a tensor of shape \(16, 8\)"):
        train(model, lambda split: get_batch(split)[0], config, loss_fn=mse)
    with pytest.raises(TypeError, match=r"get_batch\('val'\) must return a pair .* got a tuple of length 3"):
        estimate_loss(model, lambda split: (*get_batch(split), None), "val", 1, mse)


@pytest.mark.parametrize("clip", [1.0, None])
def test_a_loss_that_reaches_no_parameter_is_named(clip):
    model, get_batch, _ = linear_problem()
    other = torch.nn.Linear(8, 1)  # the loss is computed with another module's weights
    config = TrainConfig(max_iters=2, warmup_iters=0, grad_clip=clip, progress=False)
    with pytest.raises(ValueError, match="no parameter of the model received a gradient"):
        train(model, get_batch, config, loss_fn=lambda m, x, y: (other(x) - y).pow(2).mean())


def test_bad_losses_and_models_are_named():
    model, get_batch, mse = linear_problem()
    config = TrainConfig(max_iters=2, warmup_iters=0, progress=False)
    with pytest.raises(ValueError, match=r"loss_fn must return a scalar tensor that requires grad, got shape \(16, 1"):
        train(model, get_batch, config, loss_fn=lambda m, x, y: (m(x) - y).pow(2))
    with pytest.raises(ValueError, match="loss_fn must return a scalar tensor .* got float"):
        train(model, get_batch, config, loss_fn=lambda m, x, y: 1.0)
    for p in model.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="Linear has no parameter with requires_grad=True"):
        train(model, get_batch, config, loss_fn=mse)
    with pytest.raises(TypeError, match="config must be a TrainConfig, got dict"):
        train(model, get_batch, {"max_iters": 2})


def test_estimate_loss_restores_the_mode_when_the_loss_raises():
    model, get_batch, _ = linear_problem()
    model.train()

    def failing(m, x, y):
        assert not m.training
        raise RuntimeError("fails on purpose")

    with pytest.raises(RuntimeError, match="fails on purpose"):
        estimate_loss(model, get_batch, "val", 2, failing)
    assert model.training


def test_token_cross_entropy_by_hand_and_shape_check():
    logits = torch.log(torch.tensor([[[0.5, 0.25, 0.25], [0.1, 0.8, 0.1]]]))  # (1, 2, 3) log-probabilities
    targets = torch.tensor([[0, 1]])
    expected = -(math.log(0.5) + math.log(0.8)) / 2
    assert token_cross_entropy(logits, targets).item() == pytest.approx(expected, abs=1e-6)
    assert token_cross_entropy(logits, targets, ignore_index=1).item() == pytest.approx(-math.log(0.5), abs=1e-6)
    with pytest.raises(ValueError, match=r"share their leading shape, got logits \(1, 2, 3\) and targets \(2,\)"):
        token_cross_entropy(logits, targets[0])


def test_parameters_marked_no_weight_decay_do_not_decay():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 2))
    model[1].weight._no_weight_decay = True
    decay, no_decay = make_optimizer(model, TrainConfig()).param_groups
    assert any(p is model[1].weight for p in no_decay["params"])
    assert not any(p is model[1].weight for p in decay["params"])


def test_state_bytes_counts_parameters_gradients_and_adam_moments():
    from minimodels.training.loop import make_optimizer, state_bytes

    model = torch.nn.Linear(4, 3)  # 12 + 3 float32 values = 60 bytes
    optimizer = make_optimizer(model, TrainConfig())
    model(torch.randn(2, 4)).sum().backward()
    optimizer.step()
    counted = state_bytes(model, optimizer)
    assert counted["parameters"] == 60 and counted["gradients"] == 60
    # two moments (exp_avg, exp_avg_sq) of 60 bytes, plus one float32 step counter per parameter tensor
    assert counted["optimizer"] == 2 * 60 + 2 * 4
