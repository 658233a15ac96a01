"""Every tensor argument of every kernel, given as a strided view, gives the reference's answer.

A view here holds the same values as a contiguous tensor but with other strides, and its neighbours in
memory are NaN: a kernel that reads an argument as if it were contiguous reads NaN or another element's
value, and the comparison fails. Two layouts: `every_other` (every stride doubled, so even the last one
is 2) and `padded_rows` (last stride 1, the rows padded). Outputs and gradients are compared with the
PyTorch references run on the contiguous tensors. Tiny shapes: on CPU the kernels run through the Triton
interpreter (tests/conftest.py sets TRITON_INTERPRET=1).
"""

import pytest
import torch

from kernels import (
    flash_attention,
    flash_attention_ref,
    rms_norm,
    rms_norm_ref,
    selective_scan,
    selective_scan_ref,
    selective_state_update,
    selective_state_update_ref,
    softmax,
    softmax_ref,
)
from kernels.ops.selective_scan.triton_kernels import CPU_BLOCK_D, GPU_MAX_BLOCK_D, scan_blocks

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
LAYOUTS = ("every_other", "padded_rows")


def strided(t: torch.Tensor, layout: str) -> torch.Tensor:
    """t's values in a non-contiguous view (a leaf) whose neighbours in memory are NaN."""
    if layout == "every_other":
        wide = torch.full((*t.shape, 2), float("nan"), dtype=t.dtype, device=t.device)
        wide[..., 0] = t
        view = wide[..., 0]
    else:
        if t.dim() == 1:
            pytest.skip("a 1-D tensor has no rows to pad")
        wide = torch.full((*t.shape[:-1], t.shape[-1] + 3), float("nan"), dtype=t.dtype, device=t.device)
        wide[..., : t.shape[-1]] = t
        view = wide[..., : t.shape[-1]]
    assert torch.equal(view, t) and not view.is_contiguous()
    return view


def run(fn, args: dict, names: list[str], dout_seed: int = 1):
    """fn(**args) and the gradients of a random projection of its output with respect to args[names]."""
    leaves = {k: (v.detach().requires_grad_() if k in names else v) for k, v in args.items()}
    out = fn(**leaves)
    dout = torch.randn(out.shape, generator=torch.Generator().manual_seed(dout_seed)).to(out.device, out.dtype)
    grads = torch.autograd.grad(out, [leaves[k] for k in names], dout)
    return out, dict(zip(names, grads, strict=True))


def assert_same(got, want, names, atol=1e-5, rtol=1e-5):
    out, grads = got
    out_ref, grads_ref = want
    torch.testing.assert_close(out, out_ref, atol=atol, rtol=rtol)
    for name in names:
        scale = grads_ref[name].abs().max().item()
        assert scale > 0, f"gradient of {name} is zero: the check could not fail"
        torch.testing.assert_close(grads[name], grads_ref[name], atol=atol * max(1.0, scale), rtol=rtol,
                                   msg=lambda message, n=name: f"gradient of {n}: {message}")


def randn(*shape, seed=0):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed)).to(DEVICE)


# ---------------------------------------------------------------------------------- softmax, rms_norm


@pytest.mark.parametrize("layout", LAYOUTS)
def test_softmax_strided_x(layout):
    x = randn(5, 13) * 3
    want = run(softmax_ref, dict(x=x), ["x"])
    assert_same(run(softmax, dict(x=strided(x, layout)), ["x"]), want, ["x"])


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("name", ["x", "weight"])
def test_rms_norm_strided_argument(name, layout):
    args = dict(x=randn(4, 3, 10) * 2, weight=randn(10, seed=1) * 0.2 + 1)
    want = run(rms_norm_ref, args, ["x", "weight"])
    got = run(rms_norm, {**args, name: strided(args[name], layout)}, ["x", "weight"])
    assert_same(got, want, ["x", "weight"])


# ---------------------------------------------------------------------------------- flash_attention


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("name", ["q", "k", "v"])
def test_flash_attention_strided_argument(name, layout):
    args = dict(q=randn(1, 2, 20, 16), k=randn(1, 1, 23, 16, seed=1), v=randn(1, 1, 23, 16, seed=2))
    names = ["q", "k", "v"]
    fixed = dict(causal=True, window=9)
    want = run(lambda **a: flash_attention_ref(**a, **fixed), args, names)
    got = run(lambda **a: flash_attention(**a, **fixed), {**args, name: strided(args[name], layout)}, names)
    assert_same(got, want, names, atol=1e-4, rtol=1e-4)


# ---------------------------------------------------------------------------------- selective scan

SCAN_NAMES = ["u", "delta", "A", "B", "C", "D", "z", "delta_bias"]


def scan_args(form: str) -> dict:
    """(batch 1, dim 4, N 3, L 20): two chunks of the interpreter's BLOCK_L = 16."""
    batch, dim, n, length = 1, 4, 3, 20
    bc_shape = {"invariant": (dim, n), "variable": (batch, n, length), "grouped": (batch, 2, n, length)}[form]
    return dict(
        u=randn(batch, dim, length), delta=randn(batch, dim, length, seed=1) * 0.5 - 1,
        A=-torch.exp(randn(dim, n, seed=2) * 0.5), B=randn(*bc_shape, seed=3), C=randn(*bc_shape, seed=4),
        D=randn(dim, seed=5), z=randn(batch, dim, length, seed=6), delta_bias=randn(dim, seed=7) * 0.3,
    )


@pytest.mark.parametrize(
    "name, form",
    [(name, "variable") for name in SCAN_NAMES] + [("B", "invariant"), ("C", "invariant"), ("B", "grouped"),
                                                   ("C", "grouped")],
)
def test_selective_scan_strided_argument(name, form):
    args = scan_args(form)
    fixed = dict(delta_softplus=True)
    want = run(lambda **a: selective_scan_ref(**a, **fixed), args, SCAN_NAMES)
    got = run(lambda **a: selective_scan(**a, **fixed), {**args, name: strided(args[name], "every_other")},
              SCAN_NAMES)
    assert_same(got, want, SCAN_NAMES, atol=2e-4, rtol=1e-3)


UPDATE_NAMES = ["state", "x", "dt", "A", "B", "C", "D", "z", "dt_bias"]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("name", UPDATE_NAMES)
def test_selective_state_update_strided_argument(name, layout):
    batch, dim, n = 2, 4, 3
    args = dict(
        state=randn(batch, dim, n), x=randn(batch, dim, seed=1), dt=randn(batch, dim, seed=2),
        A=-torch.exp(randn(dim, n, seed=3) * 0.5), B=randn(batch, 2, n, seed=4), C=randn(batch, n, seed=5),
        D=randn(dim, seed=6), z=randn(batch, dim, seed=7), dt_bias=randn(dim, seed=8) * 0.3,
    )
    state_ref = args["state"].clone()
    want = selective_state_update_ref(**{**args, "state": state_ref}, dt_softplus=True)
    given = {**args, name: strided(args[name], layout)}
    got = selective_state_update(**given, dt_softplus=True)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(given["state"], state_ref, atol=1e-5, rtol=1e-5)  # updated in place
    if name == "state":  # the update wrote through the view, not over its NaN neighbours
        base = given["state"]._base
        assert base is not None and int(torch.isnan(base).sum()) == base.numel() - state_ref.numel()


# ---------------------------------------------------------------------------------- scan launch blocks


@pytest.mark.parametrize("device, widest", [("cpu", CPU_BLOCK_D), ("cuda", GPU_MAX_BLOCK_D)])
def test_time_invariant_b_and_c_keep_wide_channel_blocks(device, widest):
    """A (dim, N) B or C has no groups: it must not force BLOCK_D = 1 (one channel per program)."""
    device = torch.device(device)  # scan_blocks only reads the device type: no GPU needed
    dim, n, length = 64, 16, 256
    invariant = scan_blocks(dim, n, length, (None, None), device)
    varying = scan_blocks(dim, n, length, (dim, dim), device)
    assert invariant[0] == varying[0] == widest
    assert scan_blocks(dim, n, length, (None, 2), device)[0] == 2  # groups of 2 channels still constrain it
