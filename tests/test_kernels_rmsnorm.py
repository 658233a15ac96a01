"""kernels.rms_norm against the PyTorch reference: forward, gradients, the dweight reduction, bad input.

On CPU the kernels run through the Triton interpreter (conftest sets TRITON_INTERPRET=1), so shapes are tiny.
"""

import importlib

import pytest
import torch

from kernels import rms_norm, rms_norm_ref
from kernels.ops.rms_norm.triton import rms_norm_backward, rms_norm_forward

rmsnorm_module = importlib.import_module("kernels.ops.rms_norm.triton")

TOL = {torch.float32: dict(atol=1e-5, rtol=1e-5), torch.float16: dict(atol=1e-2, rtol=1e-2)}
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def make_inputs(shape, dtype, weight_dtype=None, seed=0):
    torch.manual_seed(seed)
    x = torch.randn(shape, device=DEVICE).mul(2).to(dtype)
    weight = torch.randn(shape[-1], device=DEVICE).mul(0.2).add(1).to(weight_dtype or dtype)
    return x, weight


def check_forward_and_grads(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> None:
    """Compare rms_norm and its gradients with the reference and autograd through the reference."""
    x, weight = x.detach().requires_grad_(), weight.detach().requires_grad_()
    x_ref, w_ref = x.detach().clone().requires_grad_(), weight.detach().clone().requires_grad_()
    y, y_ref = rms_norm(x, weight, eps), rms_norm_ref(x_ref, w_ref, eps)
    assert y.shape == y_ref.shape and y.dtype == y_ref.dtype
    tol = TOL[torch.float16 if torch.float16 in (x.dtype, weight.dtype) else torch.float32]
    torch.testing.assert_close(y, y_ref, **tol)
    dy = torch.randn_like(y)
    dx, dw = torch.autograd.grad(y, (x, weight), dy)
    dx_ref, dw_ref = torch.autograd.grad(y_ref, (x_ref, w_ref), dy)
    assert dx.dtype == x.dtype and dw.dtype == weight.dtype
    torch.testing.assert_close(dx, dx_ref, **tol)
    torch.testing.assert_close(dw, dw_ref, **tol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("shape", [(5, 1), (4, 3), (3, 17), (2, 100), (16,), (2, 3, 7)])
def test_matches_reference(shape, dtype):
    check_forward_and_grads(*make_inputs(shape, dtype))


def test_half_input_with_float32_weight_promotes_like_reference():
    x, weight = make_inputs((3, 10), torch.float16, weight_dtype=torch.float32)
    assert rms_norm(x, weight).dtype == torch.float32
    check_forward_and_grads(x, weight)


def test_forward_is_bitwise_reference_in_float16():
    x, weight = make_inputs((4, 12), torch.float16)
    assert torch.equal(rms_norm(x, weight), rms_norm_ref(x, weight))


def test_saved_rstd_is_reciprocal_rms():
    x, weight = make_inputs((6, 9), torch.float32)
    _, rstd = rms_norm_forward(x, weight, 1e-6)
    assert rstd.dtype == torch.float32 and rstd.shape == (6,)
    torch.testing.assert_close(rstd, x.pow(2).mean(-1).add(1e-6).rsqrt())


@pytest.mark.parametrize("programs", [1, 3, 4, 7, 30])
def test_dweight_partials_reduce_across_row_groups(programs):
    # 23 rows over `programs` programs: each program reduces a group of ceil(23 / programs) rows
    x, weight = make_inputs((23, 11), torch.float32, seed=4)
    dy = torch.randn_like(x)
    _, rstd = rms_norm_forward(x, weight, 1e-6)
    dx, partials = rms_norm_backward(dy, x, weight, rstd, programs=programs)
    assert partials.shape == (programs, 11) and partials.dtype == torch.float32
    rows_per_program = -(-23 // programs)
    for p in range(programs):  # partial p is the reference's dweight over rows of group p alone
        rows = slice(p * rows_per_program, (p + 1) * rows_per_program)
        w_ref = weight.detach().clone().requires_grad_()
        (dw_group,) = torch.autograd.grad(rms_norm_ref(x[rows], w_ref), w_ref, dy[rows])
        torch.testing.assert_close(partials[p], dw_group, **TOL[torch.float32])
    x_ref, w_ref = x.clone().requires_grad_(), weight.clone().requires_grad_()
    dx_ref, dw_ref = torch.autograd.grad(rms_norm_ref(x_ref, w_ref), (x_ref, w_ref), dy)
    torch.testing.assert_close(partials.sum(0), dw_ref, **TOL[torch.float32])
    torch.testing.assert_close(dx, dx_ref, **TOL[torch.float32])


def test_default_programs_each_reduce_several_rows():
    x, weight = make_inputs((2, 9, 3), torch.float32)  # 18 rows, CPU_BACKWARD_PROGRAMS programs on CPU
    if DEVICE == "cpu":
        assert rmsnorm_module.backward_programs(18, x.device) < 18
    check_forward_and_grads(x, weight)


def test_weight_without_grad_and_non_contiguous_input():
    x, weight = make_inputs((7, 5), torch.float32)
    x = x.t().detach().requires_grad_()  # (5, 7), not contiguous
    weight = torch.randn(7, device=DEVICE)
    (dx,) = torch.autograd.grad(rms_norm(x, weight), x, torch.ones(5, 7, device=DEVICE))
    x_ref = x.detach().clone().requires_grad_()
    (dx_ref,) = torch.autograd.grad(rms_norm_ref(x_ref, weight), x_ref, torch.ones(5, 7, device=DEVICE))
    torch.testing.assert_close(dx, dx_ref, **TOL[torch.float32])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_extreme_values_stay_finite(dtype):
    x, weight = make_inputs((3, 8), dtype)
    x[0] = 0.0  # rms 0: eps keeps it finite
    x[1, 2], x[1, 5] = 1e4, -1e4  # x**2 overflows float16, not the float32 inside
    x[2] = 1e-4
    y = rms_norm(x, weight)
    assert torch.isfinite(y).all()
    check_forward_and_grads(x, weight)


def test_empty_input():
    x = torch.randn(0, 4, device=DEVICE, requires_grad=True)
    weight = torch.ones(4, device=DEVICE, requires_grad=True)
    y = rms_norm(x, weight)
    assert y.shape == (0, 4)
    y.sum().backward()
    assert torch.equal(weight.grad, torch.zeros(4, device=DEVICE))


@pytest.mark.parametrize("bad_shape", [(5,), (4, 1), (1, 4), ()])
def test_weight_shape_mismatch(bad_shape):
    with pytest.raises(ValueError, match=r"weight must be 1-D of size x.shape\[-1\] = 4, got shape"):
        rms_norm(torch.ones(2, 4, device=DEVICE), torch.ones(bad_shape, device=DEVICE))


@pytest.mark.parametrize("dtype", [torch.int64, torch.float64])
def test_unsupported_dtype_of_x(dtype):
    with pytest.raises(TypeError, match=f"rms_norm: x has dtype {str(dtype)[6:]}"):
        rms_norm(torch.ones(2, 4, dtype=dtype, device=DEVICE), torch.ones(4, device=DEVICE))


def test_unsupported_dtype_of_weight():
    with pytest.raises(TypeError, match="rms_norm: weight has dtype float64"):
        rms_norm(torch.ones(2, 4, device=DEVICE), torch.ones(4, dtype=torch.float64, device=DEVICE))


def test_bfloat16_rejected_by_interpreter(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")  # the dtype check comes before any launch
    with pytest.raises(TypeError, match="x has dtype bfloat16; through the interpreter"):
        rms_norm(torch.ones(2, 4, dtype=torch.bfloat16), torch.ones(4, dtype=torch.bfloat16))


def test_tensors_on_different_devices():
    with pytest.raises(ValueError, match="one device, got x on cpu, weight on meta"):
        rms_norm(torch.ones(2, 4), torch.ones(4, device="meta"))


def test_cpu_without_interpreter_raises(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(RuntimeError, match="rms_norm: got CPU tensors.*TRITON_INTERPRET=1.*rms_norm_ref"):
        rms_norm(torch.ones(2, 4), torch.ones(4))


def test_too_wide_rows(monkeypatch):
    monkeypatch.setattr(rmsnorm_module, "MAX_WIDTH", 8)
    with pytest.raises(ValueError, match="rows up to 8 wide are supported, got x.shape\\[-1\\] = 9"):
        rms_norm(torch.ones(2, 9, device=DEVICE), torch.ones(9, device=DEVICE))


def test_scalar_rejected():
    with pytest.raises(ValueError, match="at least one dimension"):
        rms_norm(torch.tensor(1.0, device=DEVICE), torch.ones(1, device=DEVICE))


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("shape", [(4096, 4096), (3, 1000, 3000), (64, 16384), (100_000, 64)])
def test_gpu_large_shapes(shape, dtype):
    x, weight = make_inputs(shape, dtype)
    x, weight = x.requires_grad_(), weight.requires_grad_()
    x_ref, w_ref = x.detach().clone().requires_grad_(), weight.detach().clone().requires_grad_()
    y, y_ref = rms_norm(x, weight), rms_norm_ref(x_ref, w_ref)
    tol = dict(atol=1e-4, rtol=1e-4) if dtype == torch.float32 else dict(atol=2e-2, rtol=2e-2)
    torch.testing.assert_close(y, y_ref, **tol)
    dy = torch.randn_like(y)
    dx, dw = torch.autograd.grad(y, (x, weight), dy)
    dx_ref, dw_ref = torch.autograd.grad(y_ref, (x_ref, w_ref), dy)
    torch.testing.assert_close(dx, dx_ref, **tol)
    # dweight sums up to 1e5 rows (float32 partials here, another order in torch): compare to its scale
    scale = dw_ref.float().abs().max()
    assert (dw.float() - dw_ref.float()).abs().max() <= (1e-4 if dtype == torch.float32 else 1e-2) * scale


@pytest.mark.parametrize("op", [rms_norm, rms_norm_ref], ids=["kernel", "reference"])
@pytest.mark.parametrize(
    "eps, error, match",
    [
        (0.0, ValueError, r"eps must be finite and > 0, got 0.0"),
        (-1e-6, ValueError, r"eps must be finite and > 0, got -1e-06"),
        (float("nan"), ValueError, r"eps must be finite and > 0, got nan"),
        ("1e-6", TypeError, r"eps must be a real number, got str '1e-6'"),
        (None, TypeError, r"eps must be a real number, got NoneType"),
    ],
)
def test_bad_eps_is_named(op, eps, error, match):
    with pytest.raises(error, match=rf"{op.__name__}: {match}"):
        op(torch.ones(2, 4, device=DEVICE), torch.ones(4, device=DEVICE), eps)
