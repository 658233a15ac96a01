"""Linear time-invariant state space models (S4D style): discretization, two views, two scans.

A continuous SSM maps an input signal u(t) to an output y(t) through a hidden state x(t) of size N:

    x'(t) = A x(t) + B u(t),        y(t) = C x(t)

Here every channel is its own single-input single-output system with a diagonal A, as in S4D: A is a
vector of N eigenvalues, either complex (S4D-Lin: A_n = -1/2 + i pi n) or real (S4D-Real: A_n = -(n+1)).
Complex eigenvalues stand for conjugate pairs, so the real output is y = 2 Re(C x).

Sampling with a step dt turns it into a recurrence, x_k = dA x_{k-1} + dB u_k, y_k = C x_k:

    zero-order hold (u constant over a step):  dA = exp(dt A),  dB = (exp(dt A) - 1) / A * B
    forward Euler (first-order Taylor):        dA = 1 + dt A,   dB = dt B

Because dA, dB, C do not depend on time, the same map is a convolution: unrolling the recurrence from
x = 0 gives y_k = sum_j K_j u_{k-j} with the kernel K = (C dB, C dA dB, C dA^2 dB, ...). Training uses
the convolution (parallel over time, FFT in O(L log L)); generation uses the recurrence (constant state).

The first-order recurrence h_t = a_t h_{t-1} + x_t is also a scan with the associative operator
(a1, b1) . (a2, b2) = (a1 a2, a2 b1 + b2): `sequential_scan` walks it step by step, `parallel_scan`
(Hillis-Steele) needs only ceil(log2 L) whole-sequence steps. Selective SSMs (Mamba) make dA, dB and C
depend on the input, which kills the convolution view but keeps the scan.

Shapes: A, B, C (H, N) for H channels (or anything that broadcasts); dt (H, 1); u, y (batch, H, L).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


def s4d_lin(state_size: int) -> torch.Tensor:
    """S4D-Lin eigenvalues A_n = -1/2 + i pi n, (N,) complex64: equal damping, linearly spaced frequencies."""
    n = torch.arange(state_size, dtype=torch.float32)
    return torch.complex(torch.full_like(n, -0.5), math.pi * n)


def s4d_real(state_size: int) -> torch.Tensor:
    """S4D-Real eigenvalues A_n = -(n + 1), (N,) float32: pure decays at rates 1, 2, ..., N."""
    return -torch.arange(1, state_size + 1, dtype=torch.float32)


def discretize_zoh(A: torch.Tensor, B: torch.Tensor, dt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-order hold for a diagonal A: dA = exp(dt A), dB = (exp(dt A) - 1) / A * B (exact for step inputs)."""
    dA = torch.exp(dt * A)
    return dA, (dA - 1) / A * B


def discretize_zoh_dense(
    A: torch.Tensor, B: torch.Tensor, dt: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-order hold for a full (N, N) matrix A and (N, M) B: exp(dt A) and A^-1 (exp(dt A) - I) B."""
    dA = torch.linalg.matrix_exp(dt * A)
    eye = torch.eye(A.shape[-1], dtype=A.dtype, device=A.device)
    return dA, torch.linalg.solve(A, (dA - eye) @ B)


def discretize_euler(A: torch.Tensor, B: torch.Tensor, dt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward Euler: dA = 1 + dt A, dB = dt B (first order in dt; unstable once |1 + dt A| > 1)."""
    return 1 + dt * A, dt * B


def _real(y: torch.Tensor) -> torch.Tensor:
    """Complex eigenvalues stand for conjugate pairs, whose outputs add up to twice the real part."""
    return 2 * y.real if y.is_complex() else y


def ssm_recurrent(dA: torch.Tensor, dB: torch.Tensor, C: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """The recurrent view: x_k = dA x_{k-1} + dB u_k, y_k = C x_k, a loop over time from x = 0.

    dA, dB, C (H, N); u (batch, H, L) real. Returns y (batch, H, L) real.
    """
    x = torch.zeros(*u.shape[:-1], dA.shape[-1], dtype=torch.promote_types(dA.dtype, u.dtype), device=u.device)
    ys = []
    for k in range(u.shape[-1]):
        x = dA * x + dB * u[..., k, None]  # (batch, H, N)
        ys.append(_real((C * x).sum(-1)))  # (batch, H)
    return torch.stack(ys, dim=-1)


def ssm_kernel(dA: torch.Tensor, dB: torch.Tensor, C: torch.Tensor, length: int) -> torch.Tensor:
    """The convolution kernel K_k = C dA^k dB for k = 0 .. length-1, (H, L) real (a Vandermonde product)."""
    powers = dA[..., None] ** torch.arange(length, device=dA.device, dtype=dA.real.dtype)  # (H, N, L)
    return _real(((C * dB)[..., None] * powers).sum(-2))


def causal_conv(u: torch.Tensor, K: torch.Tensor, method: str = "fft") -> torch.Tensor:
    """y_k = sum_{j <= k} K_j u_{k-j} per channel: u (batch, H, L), K (H, L) -> (batch, H, L).

    "fft" pads both to 2L (so that the circular convolution does not wrap) and multiplies spectra:
    O(L log L). "direct" is the O(L^2) sum, as a grouped conv1d on the left-padded input.
    """
    length = u.shape[-1]
    if method == "fft":
        n = 2 * length
        return torch.fft.irfft(torch.fft.rfft(u, n=n) * torch.fft.rfft(K, n=n), n=n)[..., :length]
    if method == "direct":
        channels = K.shape[0]
        weight = K.flip(-1)[:, None, :]  # (H, 1, L): conv1d correlates, so flip to convolve
        return F.conv1d(F.pad(u, (length - 1, 0)), weight, groups=channels)
    raise ValueError(f"causal_conv: method must be 'fft' or 'direct', got {method!r}")


def ssm_convolutional(
    dA: torch.Tensor, dB: torch.Tensor, C: torch.Tensor, u: torch.Tensor, method: str = "fft"
) -> torch.Tensor:
    """The convolutional view: y = K * u with K = (C dB, C dA dB, ...); equals `ssm_recurrent`."""
    return causal_conv(u, ssm_kernel(dA, dB, C, u.shape[-1]), method)


def sequential_scan(a: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """h_t = a_t h_{t-1} + x_t along the last dim from h = 0: L dependent steps."""
    h = torch.zeros_like(x[..., 0])
    hs = []
    for t in range(x.shape[-1]):
        h = a[..., t] * h + x[..., t]
        hs.append(h)
    return torch.stack(hs, dim=-1)


def hillis_steele_offsets(length: int) -> list[int]:
    """The offsets 1, 2, 4, ... < length of the parallel scan's steps: ceil(log2 length) of them."""
    return [1 << i for i in range(max(0, math.ceil(math.log2(max(length, 1)))))]


def parallel_scan(a: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The same recurrence as `sequential_scan` in ceil(log2 L) whole-sequence steps (Hillis-Steele).

    After the step with offset k, position t holds the combination of the 2k inputs ending at t: the pair
    (A, X) of "multiply the state by A, then add X". Combining with the window that ends k earlier uses
    (a1, b1) . (a2, b2) = (a1 a2, a2 b1 + b2); positions t < k have nothing to their left and stay.
    """
    for k in hillis_steele_offsets(x.shape[-1]):
        x = torch.cat([x[..., :k], a[..., k:] * x[..., :-k] + x[..., k:]], dim=-1)
        a = torch.cat([a[..., :k], a[..., k:] * a[..., :-k]], dim=-1)
    return x


@dataclass
class S4DConfig:
    """A diagonal LTI SSM layer: `channels` independent SISO systems of `state_size` states each."""

    channels: int
    state_size: int = 16
    init: str = "lin"  # "lin" (complex, S4D-Lin) or "real" (S4D-Real)
    dt_min: float = 1e-3
    dt_max: float = 1e-1

    def __post_init__(self):
        for name in ("channels", "state_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"S4DConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.init not in ("lin", "real"):
            raise ValueError(f"S4DConfig.init must be 'lin' or 'real', got {self.init!r}")
        if not 0 < self.dt_min <= self.dt_max:
            raise ValueError(f"S4DConfig needs 0 < dt_min <= dt_max, got dt_min={self.dt_min}, dt_max={self.dt_max}")


class S4D(nn.Module):
    """A trainable LTI SSM layer (S4D): ZOH-discretized diagonal SSMs applied as causal FFT convolutions.

    forward: (batch, L, channels) -> (batch, L, channels), y = K * u + D u per channel. Learns log dt,
    the eigenvalues (real part kept negative as -exp(.)) and C; B is fixed to ones (C absorbs its scale).
    """

    def __init__(self, config: S4DConfig):
        super().__init__()
        self.config = config
        H, N = config.channels, config.state_size
        log_dt = torch.rand(H) * (math.log(config.dt_max) - math.log(config.dt_min)) + math.log(config.dt_min)
        self.log_dt = nn.Parameter(log_dt)  # (H,)
        self.complex = config.init == "lin"
        A = (s4d_lin(N) if self.complex else s4d_real(N)).repeat(H, 1)  # (H, N)
        self.log_neg_A_real = nn.Parameter(torch.log(-A.real))
        if self.complex:
            self.A_imag = nn.Parameter(A.imag)
            self.C = nn.Parameter(torch.view_as_real(torch.randn(H, N, dtype=torch.complex64)) * 0.5**0.5)
        else:
            self.C = nn.Parameter(torch.randn(H, N))
        self.D = nn.Parameter(torch.randn(H))

    def discrete(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(dA, dB, C), each (H, N), of the current parameters (complex for S4D-Lin)."""
        A = -torch.exp(self.log_neg_A_real)
        C = self.C
        if self.complex:
            A, C = torch.complex(A, self.A_imag), torch.view_as_complex(self.C)
        dA, dB = discretize_zoh(A, torch.ones_like(A), torch.exp(self.log_dt)[:, None])
        return dA, dB, C

    def kernel(self, length: int) -> torch.Tensor:
        """K (H, L), the layer's response to a unit impulse."""
        return ssm_kernel(*self.discrete(), length)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        u = u.transpose(1, 2)  # (batch, H, L)
        y = causal_conv(u, self.kernel(u.shape[-1])) + self.D[:, None] * u
        return y.transpose(1, 2)
