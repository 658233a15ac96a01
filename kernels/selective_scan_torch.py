"""Selective scan in plain PyTorch: the sequential reference, a fast chunked version, and the decode step.

The selective state space recurrence of Mamba (mamba-ssm's `selective_scan_fn` semantics), per batch b,
channel d and state n:

    delta = softplus(delta + delta_bias)     # bias added whenever given, softplus only when asked
    h_t   = exp(delta_t * A) * h_{t-1} + delta_t * B_t * u_t         # from h = 0
    y_t   = sum_n h_t * C_t
    out   = (y + u * D) * silu(z)            # D and z optional; out in u's dtype

Shapes: u, delta, z (batch, dim, L); A (dim, N) float32; D, delta_bias (dim,) float32. B and C each come
in one of three forms: (dim, N) time-invariant, (batch, N, L) input-dependent and shared by all channels,
or (batch, G, N, L) grouped, where channel d reads group d // (dim / G).

`selective_scan_ref` is the obvious sequential loop (the test oracle). `selective_scan_chunked` computes
the same thing with a few whole-tensor operations per chunk of time steps (a parallel scan inside each
chunk, the state carried between chunks), differentiable by autograd; it is what CPU training uses.
`selective_state_update_ref` advances a state by one token (decode).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

DTYPES = (torch.float32, torch.float16, torch.bfloat16)
_DTYPE_NAMES = "float32, float16 or bfloat16"


def _name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def _check_same_device(op: str, **tensors: torch.Tensor | None) -> None:
    devices = {name: t.device for name, t in tensors.items() if t is not None}
    if len(set(devices.values())) > 1:
        listed = ", ".join(f"{name} on {dev}" for name, dev in devices.items())
        raise ValueError(f"{op}: all tensors must be on one device, got {listed}")


def _check_float32(op: str, name: str, t: torch.Tensor | None) -> None:
    if t is not None and t.dtype != torch.float32:
        raise TypeError(f"{op}: {name} must be float32, got {_name(t.dtype)}")


def _check_shape(op: str, name: str, t: torch.Tensor | None, expected: tuple[int, ...], spelled: str) -> None:
    if t is not None and tuple(t.shape) != expected:
        raise ValueError(f"{op}: {name} must have shape {spelled} = {expected}, got {tuple(t.shape)}")


def _check_bc(op: str, name: str, t: torch.Tensor, batch: int, dim: int, n: int, length: int | None) -> None:
    """B or C: (dim, N), (batch, N, L) or (batch, G, N, L) with G dividing dim (decode: no L axis)."""
    shape = tuple(t.shape)
    if length is None:  # decode step: (batch, N) or (batch, G, N)
        forms = "(batch, N) or (batch, G, N)"
        ok = (t.dim() == 2 and shape == (batch, n)) or (t.dim() == 3 and shape[0] == batch and shape[2] == n)
        groups = shape[1] if t.dim() == 3 else 1
    else:
        forms = "(dim, N), (batch, N, L) or (batch, G, N, L)"
        ok = (
            (t.dim() == 2 and shape == (dim, n))
            or (t.dim() == 3 and shape == (batch, n, length))
            or (t.dim() == 4 and shape[0] == batch and shape[2:] == (n, length))
        )
        groups = shape[1] if t.dim() == 4 else 1
    if not ok:
        sizes = f"batch={batch}, dim={dim}, N={n}" + ("" if length is None else f", L={length}")
        raise ValueError(f"{op}: {name} must have shape {forms} with {sizes}; got {shape}")
    if groups < 1 or dim % groups:
        raise ValueError(f"{op}: dim={dim} is not divisible by the number of groups G={groups} of {name}")
    if t.dtype not in (torch.float32,) + DTYPES:
        raise TypeError(f"{op}: {name} must be {_DTYPE_NAMES}, got {_name(t.dtype)}")


def check_scan_inputs(
    op: str,
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
) -> tuple[int, int, int, int]:
    """Validate a selective scan's arguments; return (batch, dim, L, N) or raise a clear error."""
    _check_same_device(op, u=u, delta=delta, A=A, B=B, C=C, D=D, z=z, delta_bias=delta_bias)
    if u.dim() != 3:
        raise ValueError(f"{op}: u must have shape (batch, dim, L), got {tuple(u.shape)}")
    batch, dim, length = u.shape
    if A.dim() != 2 or A.shape[0] != dim:
        raise ValueError(f"{op}: A must have shape (dim, N) with dim={dim}, got {tuple(A.shape)}")
    n = A.shape[1]
    _check_shape(op, "delta", delta, (batch, dim, length), "(batch, dim, L)")
    _check_shape(op, "z", z, (batch, dim, length), "(batch, dim, L)")
    _check_shape(op, "D", D, (dim,), "(dim,)")
    _check_shape(op, "delta_bias", delta_bias, (dim,), "(dim,)")
    _check_bc(op, "B", B, batch, dim, n, length)
    _check_bc(op, "C", C, batch, dim, n, length)
    if u.dtype not in DTYPES:
        raise TypeError(f"{op}: u must be {_DTYPE_NAMES}, got {_name(u.dtype)}")
    for name, t in (("delta", delta), ("z", z)):
        if t is not None and t.dtype != u.dtype:
            raise TypeError(f"{op}: {name} must have u's dtype {_name(u.dtype)}, got {_name(t.dtype)}")
    for name, t in (("A", A), ("D", D), ("delta_bias", delta_bias)):
        _check_float32(op, name, t)
    return batch, dim, length, n


def check_state_update_inputs(
    op: str,
    state: torch.Tensor,
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    dt_bias: torch.Tensor | None = None,
) -> tuple[int, int, int]:
    """Validate a decode step's arguments; return (batch, dim, N) or raise a clear error."""
    _check_same_device(op, state=state, x=x, dt=dt, A=A, B=B, C=C, D=D, z=z, dt_bias=dt_bias)
    if state.dim() != 3:
        raise ValueError(f"{op}: state must have shape (batch, dim, N), got {tuple(state.shape)}")
    batch, dim, n = state.shape
    _check_shape(op, "x", x, (batch, dim), "(batch, dim)")
    _check_shape(op, "dt", dt, (batch, dim), "(batch, dim)")
    _check_shape(op, "z", z, (batch, dim), "(batch, dim)")
    _check_shape(op, "A", A, (dim, n), "(dim, N)")
    _check_shape(op, "D", D, (dim,), "(dim,)")
    _check_shape(op, "dt_bias", dt_bias, (dim,), "(dim,)")
    _check_bc(op, "B", B, batch, dim, n, None)
    _check_bc(op, "C", C, batch, dim, n, None)
    for name, t in (("state", state), ("x", x)):
        if t.dtype not in DTYPES:
            raise TypeError(f"{op}: {name} must be {_DTYPE_NAMES}, got {_name(t.dtype)}")
    for name, t in (("dt", dt), ("z", z)):
        if t is not None and t.dtype != x.dtype:
            raise TypeError(f"{op}: {name} must have x's dtype {_name(x.dtype)}, got {_name(t.dtype)}")
    for name, t in (("A", A), ("D", D), ("dt_bias", dt_bias)):
        _check_float32(op, name, t)
    return batch, dim, n


def _scan_operand(t: torch.Tensor, dim: int) -> torch.Tensor:
    """B or C of a scan as float32 broadcasting against (batch, dim, L, N)."""
    t = t.float()
    if t.dim() == 2:  # (dim, N): the same for every batch and step
        return t[None, :, None, :]
    if t.dim() == 3:  # (batch, N, L): shared by all channels
        return t.transpose(1, 2)[:, None]
    return t.repeat_interleave(dim // t.shape[1], dim=1).transpose(2, 3)  # (batch, G, N, L) -> (b, dim, L, N)


def _decode_operand(t: torch.Tensor, dim: int) -> torch.Tensor:
    """B or C of a decode step as float32 broadcasting against (batch, dim, N)."""
    t = t.float()
    if t.dim() == 2:  # (batch, N)
        return t[:, None]
    return t.repeat_interleave(dim // t.shape[1], dim=1)  # (batch, G, N) -> (batch, dim, N)


def _prepare_delta(delta: torch.Tensor, delta_bias: torch.Tensor | None, softplus: bool) -> torch.Tensor:
    delta = delta.float()
    if delta_bias is not None:
        bias = delta_bias.float()  # (dim,), against scan (batch, dim, L) or decode (batch, dim)
        delta = delta + (bias[:, None] if delta.dim() == 3 else bias)
    return F.softplus(delta) if softplus else delta


def _finish(y, u, D, z, dtype):
    """out = (y + u * D) * silu(z), in the input dtype."""
    out = y if D is None else y + u * (D[:, None] if u.dim() == 3 else D)  # D (dim,)
    if z is not None:
        out = out * F.silu(z.float())
    return out.to(dtype)


def selective_scan_ref(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """The sequential reference: a Python loop over L in float32, written like mamba-ssm's selective_scan_ref."""
    _, dim, length, _ = check_scan_inputs("selective_scan_ref", u, delta, A, B, C, D, z, delta_bias)
    dtype_in = u.dtype
    u = u.float()
    delta = _prepare_delta(delta, delta_bias, delta_softplus)  # (batch, dim, L)
    is_variable_B, is_variable_C = B.dim() >= 3, C.dim() >= 3
    B, C = B.float(), C.float()
    x = A.new_zeros((u.shape[0], dim, A.shape[1]))  # the state h, (batch, dim, N)
    ys = []
    deltaA = torch.exp(torch.einsum("bdl,dn->bdln", delta, A))
    if not is_variable_B:
        deltaB_u = torch.einsum("bdl,dn,bdl->bdln", delta, B, u)
    elif B.dim() == 3:
        deltaB_u = torch.einsum("bdl,bnl,bdl->bdln", delta, B, u)
    else:  # (batch, G, N, L) -> (batch, dim, N, L): channel d reads group d // (dim / G)
        B = B.repeat_interleave(dim // B.shape[1], dim=1)
        deltaB_u = torch.einsum("bdl,bdnl,bdl->bdln", delta, B, u)
    if is_variable_C and C.dim() == 4:
        C = C.repeat_interleave(dim // C.shape[1], dim=1)
    last_state = x
    for i in range(length):
        x = deltaA[:, :, i] * x + deltaB_u[:, :, i]
        if not is_variable_C:
            y = torch.einsum("bdn,dn->bd", x, C)
        elif C.dim() == 3:
            y = torch.einsum("bdn,bn->bd", x, C[:, :, i])
        else:
            y = torch.einsum("bdn,bdn->bd", x, C[:, :, :, i])
        if i == length - 1:
            last_state = x
        ys.append(y)
    y = torch.stack(ys, dim=2) if ys else u.new_zeros(u.shape)  # (batch, dim, L)
    out = _finish(y, u, D, z, dtype_in)
    return (out, last_state) if return_last_state else out


def scan_odd_even(a: torch.Tensor, x: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
    """Solve h_t = a_t h_{t-1} + x_t for every t along dim -2, from h_{-1} = h0, with whole-tensor steps.

    a, x: (..., T, N); h0: (..., N). The work-efficient odd/even recursion (Blelloch style): fold each
    pair of neighbours (2i, 2i+1) into one step (a_{2i+1} a_{2i}, a_{2i+1} x_{2i} + x_{2i+1}), solve that
    half-length problem for the odd positions, then fill every even position from its odd predecessor:
    h_{2i} = a_{2i} h_{2i-1} + x_{2i}. log2(T) levels of ever smaller tensors, about 3T multiply-adds in all.
    Only products of a's appear, so with a = exp(delta * A) <= 1 nothing can overflow.
    """
    T = x.shape[-2]
    if T == 1:
        return torch.addcmul(x, a, h0[..., None, :])
    if T % 2:  # pad one step that keeps the state: a = 1, x = 0
        a, x = F.pad(a, (0, 0, 0, 1), value=1.0), F.pad(x, (0, 0, 0, 1))
    pairs = (*a.shape[:-2], a.shape[-2] // 2, 2, a.shape[-1])
    a_even, a_odd = a.reshape(pairs).unbind(-2)  # (..., T/2, N) each
    x_even, x_odd = x.reshape(pairs).unbind(-2)
    h_odd = scan_odd_even(a_odd * a_even, torch.addcmul(x_odd, a_odd, x_even), h0)
    h_before_even = torch.cat([h0[..., None, :], h_odd[..., :-1, :]], dim=-2)  # h_{2i-1}
    h_even = torch.addcmul(x_even, a_even, h_before_even)
    return torch.stack([h_even, h_odd], dim=-2).reshape(a.shape)[..., :T, :]


def selective_scan_chunked(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    chunk_size: int = 256,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """The selective scan with whole-tensor operations: parallel inside chunks, the state carried between.

    L is cut into chunks of `chunk_size` steps. A loop over the chunks builds each chunk's decays
    a = exp(delta * A) and inputs x = delta * B * u, solves its recurrence at once from the state the
    previous chunk left (`scan_odd_even`), and contracts the states with C. The (batch, dim, L, N) tensors
    exist one chunk at a time, which keeps them in cache. Same arguments and result as
    `selective_scan_ref`; differentiable by autograd; runs on any device.
    """
    batch, dim, length, n = check_scan_inputs("selective_scan_chunked", u, delta, A, B, C, D, z, delta_bias)
    if chunk_size < 1:
        raise ValueError(f"selective_scan_chunked: chunk_size must be >= 1, got {chunk_size}")
    dtype_in = u.dtype
    u = u.float()
    delta = _prepare_delta(delta, delta_bias, delta_softplus)  # (batch, dim, L)
    B_, C_ = _scan_operand(B, dim), _scan_operand(C, dim)  # broadcast against (batch, dim, L, N)
    T = chunk_size

    def split(t: torch.Tensor, axis: int):  # time-invariant operands have a time axis of size 1
        return t.split(T, dim=axis) if t.shape[axis] > 1 else [t] * math.ceil(length / T)

    h = u.new_zeros(batch, dim, n)  # state entering the chunk
    ys = []
    for delta_c, u_c, B_c, C_c in zip(split(delta, -1), split(u, -1), split(B_, -2), split(C_, -2), strict=True):
        a = torch.exp(delta_c[..., None] * A[:, None, :])  # (batch, dim, T, N)
        x = (delta_c * u_c)[..., None] * B_c  # (batch, dim, T, N)
        states = scan_odd_even(a, x, h)  # (batch, dim, T, N)
        h = states[..., -1, :]
        ys.append((states * C_c).sum(-1))  # (batch, dim, T)
    y = torch.cat(ys, dim=-1) if ys else u.new_zeros(batch, dim, 0)  # (batch, dim, L)
    out = _finish(y, u, D, z, dtype_in)
    return (out, h) if return_last_state else out


def selective_state_update_ref(
    state: torch.Tensor,
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    dt_bias: torch.Tensor | None = None,
    dt_softplus: bool = False,
) -> torch.Tensor:
    """One decode step: update `state` (batch, dim, N) in place and return out (batch, dim) in x's dtype.

    x, dt, z (batch, dim); B, C (batch, N) or (batch, G, N); the step of the scan for a single token.
    """
    _, dim, _ = check_state_update_inputs("selective_state_update_ref", state, x, dt, A, B, C, D, z, dt_bias)
    dt = _prepare_delta(dt, dt_bias, dt_softplus)  # (batch, dim)
    xf = x.float()
    new_state = state.float() * torch.exp(dt[..., None] * A) + (dt * xf)[..., None] * _decode_operand(B, dim)
    state.copy_(new_state)
    y = (state.float() * _decode_operand(C, dim)).sum(-1)  # (batch, dim)
    return _finish(y, xf, D, z, x.dtype)
