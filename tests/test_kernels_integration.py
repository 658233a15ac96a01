"""A course model runs its attention and RMSNorm through the Triton kernels when its config asks.

Through the interpreter on CPU (conftest sets TRITON_INTERPRET=1), at a tiny size: logits and gradients
of the kernel path equal those of the PyTorch path with the same weights.
"""

import pytest
import torch

from minimodels import Llama, LlamaConfig
from minimodels.generation.kv_cache import new_cache


def twin_models(**kw):
    config = dict(vocab_size=29, dim=32, n_layers=2, n_heads=2, n_kv_heads=1, max_seq_len=32)
    config.update(kw)
    torch.manual_seed(0)
    plain = Llama(LlamaConfig(**config))
    with torch.no_grad():  # non-trivial norm gains, so that the RMSNorm weight gradient matters
        for name, p in plain.named_parameters():
            if "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    fused = Llama(LlamaConfig(**config, use_kernels=True))
    fused.load_state_dict(plain.state_dict())
    return plain, fused


@pytest.mark.parametrize("window", [None, 5])
def test_kernel_path_equals_pytorch_path(window):
    plain, fused = twin_models(sliding_window=window)
    ids = torch.randint(0, 29, (2, 12))
    logits_plain, logits_fused = plain(ids), fused(ids)
    torch.testing.assert_close(logits_fused, logits_plain, atol=1e-4, rtol=1e-4)
    logits_plain.square().mean().backward()
    logits_fused.square().mean().backward()
    for (name, p), q in zip(plain.named_parameters(), fused.parameters(), strict=True):
        # gradients range from 1e-5 (q, k projections) to 1e-2 (embedding): compare each at its own scale;
        # the two paths agree to about 1e-6 of it, a wrong gradient is off by its whole size
        scale = p.grad.abs().max().item()
        assert scale > 0, f"gradient of {name} is zero: the comparison could not fail"
        torch.testing.assert_close(q.grad, p.grad, atol=1e-5 * scale, rtol=1e-4, msg=f"gradient of {name}")


def test_kernel_path_decodes_through_the_cache():
    plain, fused = twin_models(sliding_window=4)
    ids = torch.randint(0, 29, (1, 9))
    full = plain(ids)
    cache = new_cache(fused, batch_size=1, kind="rolling")
    steps = [fused(ids[:, :4], cache=cache)] + [fused(ids[:, t:t + 1], cache=cache) for t in range(4, 9)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-4, rtol=1e-4)


