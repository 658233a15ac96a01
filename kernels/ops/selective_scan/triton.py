"""Mamba's selective scan: Triton kernels beside their PyTorch references (mamba-ssm semantics).

    out = selective_scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus=True)       # (batch, dim, L)
    out, last_state = selective_scan(..., return_last_state=True)                      # state (batch, dim, N)
    y = selective_state_update(state, x, dt, A, B, C, D, z, dt_bias, dt_softplus=True)  # one token, in place

| name                         | what                                                   | runs on            |
|------------------------------|--------------------------------------------------------|--------------------|
| `selective_scan`             | Triton forward + backward (torch.autograd.Function)    | CUDA, interpreter  |
| `selective_scan_ref`         | sequential Python loop over L (the test oracle)        | anywhere           |
| `selective_scan_chunked`     | chunked parallel scan in PyTorch, autograd (CPU speed) | anywhere           |
| `selective_state_update`     | Triton decode step                                     | CUDA, interpreter  |
| `selective_state_update_ref` | PyTorch decode step                                    | anywhere           |

The math, shapes and B/C forms are in kernels/ops/selective_scan/ref.py; the kernels and their design in
kernels/ops/selective_scan/triton_kernels.py. Dtypes: u, delta, z (and x, dt in decode) float32, float16 or bfloat16
(no bfloat16 in the interpreter); A, D, delta_bias float32; B, C float32 or the input's dtype.
"""

from __future__ import annotations

import torch

from kernels.ops.selective_scan.ref import DTYPES, check_scan_inputs, check_state_update_inputs
from kernels.ops.selective_scan.triton_kernels import scan_backward, scan_forward, state_update
from kernels.runtime import check_dtype, check_launchable


class _SelectiveScan(torch.autograd.Function):
    """Forward saves only the inputs and the state entering each chunk; backward recomputes the rest."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus, block_l):
        out, last, chunk_states, block_l = scan_forward(
            u, delta, A, B, C, D, z, delta_bias, delta_softplus, save_chunks=True, block_l=block_l
        )
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, chunk_states)
        ctx.delta_softplus, ctx.block_l = delta_softplus, block_l
        return out, last

    @staticmethod
    def backward(ctx, dout, dlast):
        u, delta, A, B, C, D, z, delta_bias, chunk_states = ctx.saved_tensors
        grads = scan_backward(
            u, delta, A, B, C, D, z, delta_bias, ctx.delta_softplus, chunk_states, dout, dlast, ctx.block_l
        )
        return (*grads, None, None)


def selective_scan(
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
    *,
    block_l: int | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """The selective scan in Triton, differentiable; same arguments and result as `selective_scan_ref`.

    u, delta, z (batch, dim, L); A (dim, N); B, C (dim, N), (batch, N, L) or (batch, G, N, L); D, delta_bias
    (dim,). Gradients flow to every tensor input, and also through last_state. `block_l` overrides the
    chunk length (a power of two >= 16; by default chosen from the shapes).
    """
    op = "selective_scan"
    check_launchable(op, u=u, delta=delta, A=A, B=B, C=C, D=D, z=z, delta_bias=delta_bias)
    check_scan_inputs(op, u, delta, A, B, C, D, z, delta_bias)
    for name, t in (("u", u), ("delta", delta), ("z", z), ("B", B), ("C", C)):
        if t is not None:
            check_dtype(op, name, t, DTYPES)
    if block_l is not None and (block_l < 16 or block_l & (block_l - 1)):
        raise ValueError(f"{op}: block_l must be a power of two >= 16, got {block_l}")
    tensors = (u, delta, A, B, C, D, z, delta_bias)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors):
        out, last = _SelectiveScan.apply(*tensors, delta_softplus, block_l)
    else:
        out, last, _, _ = scan_forward(*tensors, delta_softplus, save_chunks=False, block_l=block_l)
    return (out, last) if return_last_state else out


def selective_state_update(
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
    """One decode step in Triton: updates `state` (batch, dim, N) in place, returns out (batch, dim).

    x, dt, z (batch, dim); B, C (batch, N) or (batch, G, N); A (dim, N); D, dt_bias (dim,). Not
    differentiable (inference only), like mamba-ssm's.
    """
    op = "selective_state_update"
    check_launchable(op, state=state, x=x, dt=dt, A=A, B=B, C=C, D=D, z=z, dt_bias=dt_bias)
    check_state_update_inputs(op, state, x, dt, A, B, C, D, z, dt_bias)
    for name, t in (("state", state), ("x", x), ("dt", dt), ("z", z), ("B", B), ("C", C)):
        if t is not None:
            check_dtype(op, name, t, DTYPES)
    with torch.no_grad():
        return state_update(state, x, dt, A, B, C, D, z, dt_bias, dt_softplus)

