"""minimodels.layers.ssm: discretizations against the matrix exponential, the convolutional view against the
recurrent view, the parallel scan against the sequential loop, and the S4D layer."""

import math

import pytest
import torch

from minimodels.layers.ssm import (
    S4D,
    S4DConfig,
    causal_conv,
    discretize_euler,
    discretize_zoh,
    discretize_zoh_dense,
    hillis_steele_offsets,
    parallel_scan,
    s4d_lin,
    s4d_real,
    sequential_scan,
    ssm_convolutional,
    ssm_kernel,
    ssm_recurrent,
)

H, N, L = 3, 6, 40


def system(init: str, dtype=torch.float64, seed: int = 0):
    """A (H, N), B (H, N), C (H, N), dt (H, 1) for S4D-Lin (complex) or S4D-Real."""
    torch.manual_seed(seed)
    if init == "lin":
        A = s4d_lin(N).to(torch.complex128).repeat(H, 1)
        C = torch.randn(H, N, dtype=torch.complex128)
    else:
        A = s4d_real(N).to(dtype).repeat(H, 1)
        C = torch.randn(H, N, dtype=dtype)
    B = torch.ones_like(A) + 0.1 * torch.randn(H, N, dtype=dtype)
    dt = torch.tensor([[0.01], [0.05], [0.2]], dtype=dtype)
    return A, B, C, dt


@pytest.mark.parametrize("init", ["lin", "real"])
def test_zoh_of_diagonal_matches_matrix_exponential(init):
    """Van Loan: exp(dt [[A, B], [0, 0]]) = [[exp(dt A), int_0^dt exp(sA) ds B], [0, 1]], per channel."""
    A, B, C, dt = system(init)
    dA, dB = discretize_zoh(A, B, dt)
    for h in range(H):
        block = torch.zeros(N + 1, N + 1, dtype=A.dtype)
        block[:N, :N] = torch.diag(A[h])
        block[:N, N] = B[h]
        expm = torch.linalg.matrix_exp(dt[h, 0] * block)
        torch.testing.assert_close(dA[h], torch.diagonal(expm[:N, :N]))
        torch.testing.assert_close(dB[h], expm[:N, N])


def test_zoh_dense_matches_matrix_exponential_block():
    torch.manual_seed(0)
    M = torch.randn(4, 4, dtype=torch.float64)
    A = M - 3 * torch.eye(4, dtype=torch.float64)  # a full, stable (eigenvalues left of 0) matrix
    B = torch.randn(4, 2, dtype=torch.float64)
    block = torch.zeros(6, 6, dtype=torch.float64)
    block[:4, :4], block[:4, 4:] = A, B
    expm = torch.linalg.matrix_exp(0.3 * block)
    dA, dB = discretize_zoh_dense(A, B, 0.3)
    torch.testing.assert_close(dA, expm[:4, :4])
    torch.testing.assert_close(dB, expm[:4, 4:])
    # the diagonal formula is the dense one on a diagonal matrix
    a = -torch.rand(4, dtype=torch.float64) - 0.1
    dA_diag, dB_diag = discretize_zoh(a, B[:, 0], 0.3)
    dA_full, dB_full = discretize_zoh_dense(torch.diag(a), B[:, :1], 0.3)
    torch.testing.assert_close(torch.diag(dA_diag), dA_full)
    torch.testing.assert_close(dB_diag, dB_full[:, 0])


def test_euler_is_first_order_close_to_zoh():
    A, B, _, _ = system("lin")
    errors = []
    for dt in (1e-2, 1e-3):
        dA_e, dB_e = discretize_euler(A, B, dt)
        dA_z, dB_z = discretize_zoh(A, B, dt)
        errors.append(max((dA_e - dA_z).abs().max().item(), (dB_e - dB_z).abs().max().item()))
    assert errors[1] < errors[0] / 50  # error O(dt^2) per step: 10x smaller dt, ~100x smaller error


@pytest.mark.parametrize("method", ["fft", "direct"])
@pytest.mark.parametrize("discretize", [discretize_zoh, discretize_euler])
@pytest.mark.parametrize("init", ["lin", "real"])
def test_convolutional_view_equals_recurrent_view(init, discretize, method):
    A, B, C, dt = system(init)
    if discretize is discretize_euler:  # Euler is stable only while |1 + dt A| <= 1: dt < ~1 / |A|^2 here
        dt = dt / 100
    dA, dB = discretize(A, B, dt)
    u = torch.randn(2, H, L, dtype=torch.float64)
    y_rec = ssm_recurrent(dA, dB, C, u)
    y_conv = ssm_convolutional(dA, dB, C, u, method=method)
    assert y_rec.shape == y_conv.shape == (2, H, L) and not y_conv.is_complex()
    torch.testing.assert_close(y_conv, y_rec)


def test_kernel_is_the_impulse_response():
    A, B, C, dt = system("lin")
    dA, dB = discretize_zoh(A, B, dt)
    K = ssm_kernel(dA, dB, C, L)
    torch.testing.assert_close(K[:, 0], 2 * (C * dB).sum(-1).real)
    torch.testing.assert_close(K[:, 2], 2 * (C * dA**2 * dB).sum(-1).real)
    impulse = torch.zeros(1, H, L, dtype=torch.float64)
    impulse[..., 0] = 1
    torch.testing.assert_close(ssm_recurrent(dA, dB, C, impulse)[0], K)


def test_causal_conv_fft_matches_direct_and_rejects_unknown_method():
    torch.manual_seed(0)
    u, K = torch.randn(2, 4, 33), torch.randn(4, 33)
    torch.testing.assert_close(causal_conv(u, K, "fft"), causal_conv(u, K, "direct"), atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="method must be 'fft' or 'direct', got 'fast'"):
        causal_conv(u, K, "fast")


@pytest.mark.parametrize("length", [1, 2, 5, 16, 37])
@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128])
def test_parallel_scan_equals_sequential_scan(length, dtype):
    torch.manual_seed(length)
    a = torch.rand(3, length, dtype=dtype) * 0.9 + 0.05
    x = torch.randn(3, length, dtype=dtype)
    torch.testing.assert_close(parallel_scan(a, x), sequential_scan(a, x))


def test_scan_step_count_is_ceil_log2():
    assert hillis_steele_offsets(1) == []
    assert hillis_steele_offsets(8) == [1, 2, 4]
    assert len(hillis_steele_offsets(1000)) == math.ceil(math.log2(1000)) == 10


def test_scan_of_discretized_ssm_is_the_recurrent_view():
    """Per state, the SSM recurrence is the scan with a = dA, x = dB u."""
    A, B, C, dt = system("real")
    dA, dB = discretize_zoh(A, B, dt)
    u = torch.randn(1, H, L, dtype=torch.float64)
    states = parallel_scan(dA[..., None].expand(1, H, N, L), dB[..., None] * u[:, :, None, :])  # (1, H, N, L)
    torch.testing.assert_close((C[..., None] * states).sum(-2), ssm_recurrent(dA, dB, C, u))


@pytest.mark.parametrize("init", ["lin", "real"])
def test_s4d_layer_is_causal_and_matches_its_recurrence(init):
    torch.manual_seed(0)
    layer = S4D(S4DConfig(channels=4, state_size=8, init=init))
    u = torch.randn(2, 20, 4)
    y = layer(u)
    assert y.shape == (2, 20, 4)
    dA, dB, C = layer.discrete()
    y_rec = ssm_recurrent(dA, dB, C, u.transpose(1, 2)) + layer.D[:, None] * u.transpose(1, 2)
    torch.testing.assert_close(y, y_rec.transpose(1, 2), atol=1e-4, rtol=1e-4)
    u2 = u.clone()
    u2[:, 10:] = torch.randn(2, 10, 4)  # change the future only
    torch.testing.assert_close(layer(u2)[:, :10], y[:, :10], atol=1e-5, rtol=1e-5)
    y.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in layer.parameters())


@pytest.mark.parametrize(
    "fields, match",
    [
        (dict(channels=0), "channels must be >= 1"),
        (dict(channels=2, state_size=0), "state_size must be >= 1"),
        (dict(channels=2, init="complex"), "init must be 'lin' or 'real'"),
        (dict(channels=2, dt_min=0.1, dt_max=0.01), "0 < dt_min <= dt_max"),
    ],
)
def test_config_rejects_impossible_values(fields, match):
    with pytest.raises(ValueError, match=match):
        S4DConfig(**fields)
