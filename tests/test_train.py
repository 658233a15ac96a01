import math

import pytest
import torch

from minimodels import GPT, GPTConfig, TrainConfig, train
from minimodels.training.loop import lr_at, make_optimizer


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


def test_config_validation():
    with pytest.raises(ValueError, match="max_iters"):
        TrainConfig(max_iters=0)
    with pytest.raises(ValueError, match="lr"):
        TrainConfig(lr=-1)
    with pytest.raises(ValueError, match="grad_clip"):
        TrainConfig(grad_clip=0)


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
