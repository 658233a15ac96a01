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

`selective_scan_ref` is the obvious sequential loop (the test oracle). `selective_scan_chunked` (chunked.py) computes
the same thing with a few whole-tensor operations per chunk of time steps (a parallel scan inside each
chunk, the state carried between chunks), differentiable by autograd; it is what CPU training uses.
`selective_state_update_ref` advances a state by one token (decode).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kernels.runtime import check_same_device

DTYPES = (torch.float32, torch.float16, torch.bfloat16)
_DTYPE_NAMES = "float32, float16 or bfloat16"


def _name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


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
    check_same_device(op, u=u, delta=delta, A=A, B=B, C=C, D=D, z=z, delta_bias=delta_bias)
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
    check_same_device(op, state=state, x=x, dt=dt, A=A, B=B, C=C, D=D, z=z, dt_bias=dt_bias)
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


def scan_operand(t: torch.Tensor, dim: int) -> torch.Tensor:
    """B or C of a scan as float32 broadcasting against (batch, dim, L, N)."""
    t = t.float()
    if t.dim() == 2:  # (dim, N): the same for every batch and step
        return t[None, :, None, :]
    if t.dim() == 3:  # (batch, N, L): shared by all channels
        return t.transpose(1, 2)[:, None]
    return t.repeat_interleave(dim // t.shape[1], dim=1).transpose(2, 3)  # (batch, G, N, L) -> (b, dim, L, N)


def decode_operand(t: torch.Tensor, dim: int) -> torch.Tensor:
    """B or C of a decode step as float32 broadcasting against (batch, dim, N)."""
    t = t.float()
    if t.dim() == 2:  # (batch, N)
        return t[:, None]
    return t.repeat_interleave(dim // t.shape[1], dim=1)  # (batch, G, N) -> (batch, dim, N)


def prepare_delta(delta: torch.Tensor, delta_bias: torch.Tensor | None, softplus: bool) -> torch.Tensor:
    delta = delta.float()
    if delta_bias is not None:
        bias = delta_bias.float()  # (dim,), against scan (batch, dim, L) or decode (batch, dim)
        delta = delta + (bias[:, None] if delta.dim() == 3 else bias)
    return F.softplus(delta) if softplus else delta


def finish(y, u, D, z, dtype):
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
    delta = prepare_delta(delta, delta_bias, delta_softplus)  # (batch, dim, L)
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
    out = finish(y, u, D, z, dtype_in)
    return (out, last_state) if return_last_state else out


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
    dt = prepare_delta(dt, dt_bias, dt_softplus)  # (batch, dim)
    xf = x.float()
    new_state = state.float() * torch.exp(dt[..., None] * A) + (dt * xf)[..., None] * decode_operand(B, dim)
    state.copy_(new_state)
    y = (state.float() * decode_operand(C, dim)).sum(-1)  # (batch, dim)
    return finish(y, xf, D, z, x.dtype)
