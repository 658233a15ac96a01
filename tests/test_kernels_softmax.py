"""kernels.softmax against the PyTorch reference: forward, gradients, both kernel schemes, bad input.

On CPU the kernels run through the Triton interpreter (conftest sets TRITON_INTERPRET=1), so shapes are tiny.
"""

import importlib

import pytest
import torch

from kernels import softmax, softmax_ref

softmax_module = importlib.import_module("kernels.ops.softmax.triton")

TOL = {torch.float32: dict(atol=1e-5, rtol=1e-5), torch.float16: dict(atol=2e-3, rtol=1e-2)}
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.fixture
def looped(monkeypatch):
    """Make rows wider than 8 columns take the looped (online softmax) kernels, in blocks of 4."""
    monkeypatch.setattr(softmax_module, "SINGLE_PASS_MAX_WIDTH", 8)
    monkeypatch.setattr(softmax_module, "LOOP_BLOCK", 4)


def check_forward_and_grad(x: torch.Tensor) -> None:
    """Compare softmax and its input gradient with the reference and autograd through the reference."""
    x = x.detach().requires_grad_()
    x_ref = x.detach().clone().requires_grad_()
    y, y_ref = softmax(x), softmax_ref(x_ref)
    assert y.shape == x.shape and y.dtype == x.dtype
    torch.testing.assert_close(y, y_ref, **TOL[x.dtype])
    dy = torch.randn_like(x)
    (dx,) = torch.autograd.grad(y, x, dy)
    (dx_ref,) = torch.autograd.grad(y_ref, x_ref, dy)
    assert dx.dtype == x.dtype
    torch.testing.assert_close(dx, dx_ref, **TOL[x.dtype])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("shape", [(5, 1), (4, 3), (3, 17), (2, 100), (16,), (2, 3, 7)])
def test_single_pass_matches_reference(shape, dtype):
    torch.manual_seed(0)
    check_forward_and_grad(torch.randn(shape, device=DEVICE).mul(3).to(dtype))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("shape", [(3, 9), (2, 17), (2, 2, 13), (16,)])
def test_looped_path_matches_reference(looped, shape, dtype):
    torch.manual_seed(1)
    check_forward_and_grad(torch.randn(shape, device=DEVICE).mul(3).to(dtype))


def test_looped_path_is_taken(looped, monkeypatch):
    calls = []
    original = softmax_module._launch

    def spy(single_pass, looped_kernel, n_rows, n_cols, *tensors):
        calls.append(n_cols > softmax_module.SINGLE_PASS_MAX_WIDTH)
        return original(single_pass, looped_kernel, n_rows, n_cols, *tensors)

    monkeypatch.setattr(softmax_module, "_launch", spy)
    softmax(torch.randn(2, 17, device=DEVICE))
    softmax(torch.randn(2, 5, device=DEVICE))
    assert calls == [True, False]


@pytest.mark.parametrize("path", ["single_pass", "looped"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_extreme_values_stay_finite(path, dtype, monkeypatch):
    if path == "looped":
        monkeypatch.setattr(softmax_module, "SINGLE_PASS_MAX_WIDTH", 8)
        monkeypatch.setattr(softmax_module, "LOOP_BLOCK", 4)
    x = torch.randn(4, 13, device=DEVICE)
    x[0, 3], x[0, 7] = 1e4, -1e4
    x[1] = -1e4
    x[1, 12] = 1e4
    x[2, :9] = -float("inf")  # whole blocks of -inf before the first finite value
    x[3, ::2] = -float("inf")
    x = x.to(dtype)
    y, y_ref = softmax(x), softmax_ref(x)
    assert torch.isfinite(y).all()
    torch.testing.assert_close(y, y_ref, **TOL[dtype])
    torch.testing.assert_close(y.float().sum(-1), torch.ones(4, device=DEVICE), **TOL[dtype])
    check_forward_and_grad(x)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # interpreter: -inf - -inf
def test_row_of_only_minus_inf_is_nan_like_reference():
    x = torch.full((1, 6), -float("inf"), device=DEVICE)
    assert torch.isnan(softmax_ref(x)).all()
    assert torch.isnan(softmax(x)).all()


def test_non_contiguous_input():
    torch.manual_seed(2)
    base = torch.randn(7, 5, device=DEVICE)
    x = base.t()  # (5, 7), strides (1, 5)
    assert not x.is_contiguous()
    check_forward_and_grad(x)


def test_empty_input():
    x = torch.randn(0, 5, device=DEVICE, requires_grad=True)
    y = softmax(x)
    assert y.shape == (0, 5)
    y.sum().backward()
    assert x.grad.shape == (0, 5)


def test_kernels_softmax_is_the_op():
    import kernels

    x = torch.randn(2, 3, device=DEVICE)
    assert kernels.softmax is softmax and kernels.softmax_ref is softmax_ref
    torch.testing.assert_close(kernels.softmax(x), softmax_ref(x), **TOL[torch.float32])


@pytest.mark.parametrize("dtype", [torch.int64, torch.float64])
def test_unsupported_dtype(dtype):
    with pytest.raises(TypeError, match=f"softmax: x has dtype {str(dtype)[6:]}"):
        softmax(torch.ones(2, 3, dtype=dtype, device=DEVICE))


def test_bfloat16_rejected_by_interpreter(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")  # the dtype check comes before any launch
    with pytest.raises(TypeError, match="through the interpreter it must be one of float32, float16$"):
        softmax(torch.ones(2, 3, dtype=torch.bfloat16))


def test_scalar_rejected():
    with pytest.raises(ValueError, match="at least one dimension"):
        softmax(torch.tensor(1.0, device=DEVICE))


def test_not_a_tensor():
    with pytest.raises(TypeError, match="x must be a torch.Tensor, got list"):
        softmax([1.0, 2.0])


def test_unsupported_device():
    with pytest.raises(RuntimeError, match="tensors on meta are not supported"):
        softmax(torch.ones(2, 3, device="meta"))


def test_cpu_without_interpreter_raises(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(RuntimeError, match="softmax: got CPU tensors.*TRITON_INTERPRET=1.*softmax_ref"):
        softmax(torch.ones(2, 3))


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("shape", [(4096, 4096), (64, 3000), (8, 3, 20000), (16, 65536)])
def test_gpu_large_shapes(shape, dtype):
    torch.manual_seed(3)
    x = torch.randn(shape, device="cuda").mul(4).to(dtype).requires_grad_()
    x_ref = x.detach().clone().requires_grad_()
    y, y_ref = softmax(x), softmax_ref(x_ref)
    tol = dict(atol=1e-5, rtol=1e-5) if dtype == torch.float32 else dict(atol=1e-2, rtol=2e-2)
    torch.testing.assert_close(y, y_ref, **tol)
    dy = torch.randn_like(x)
    (dx,) = torch.autograd.grad(y, x, dy)
    (dx_ref,) = torch.autograd.grad(y_ref, x_ref, dy)
    torch.testing.assert_close(dx, dx_ref, **tol)
