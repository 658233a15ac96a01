"""RMSNorm over the last dimension, forward and backward, in Triton.

Convention (the one of Hugging Face's LlamaRMSNorm, which `rms_norm_ref` spells out):

    rstd = 1 / sqrt(mean(x.float() ** 2) + eps)           # float32, one value per row
    y    = weight * (x.float() * rstd).to(x.dtype)         # normalize in float32, cast back, then scale

so y has dtype torch.promote_types(x.dtype, weight.dtype): x's dtype when the weight matches it.

Forward: one program per row; it saves rstd (float32, one per row) for the backward.
Backward, with n = x * rstd and g = dy * weight (the cast to x's dtype passes gradients unchanged):

    dx      = rstd * (g - n * mean(g * n))                # per row
    dweight = sum over rows of dy * n

dweight sums over every row, so each program takes a contiguous group of rows, accumulates its partial
dweight in float32, and writes it to its own row of a (programs, N) buffer; a sum over that buffer finishes
the reduction. No atomics, and the result does not depend on scheduling.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from kernels.ops.rms_norm.ref import check_eps
from kernels.runtime import check_dtype, check_launchable, num_warps_for, on_device, record_kernel_import

record_kernel_import()  # the kernels below are decorated now, compiled or interpreted

MAX_WIDTH = 16384  # a whole row lives in registers; wider rows would spill
CPU_BACKWARD_PROGRAMS = 4  # interpreter: a few programs, so that each one reduces several rows
PROGRAMS_PER_SM = 4  # GPU: backward programs per streaming multiprocessor

DTYPES = (torch.float32, torch.float16, torch.bfloat16)


@triton.jit
def _rms_norm_fwd_kernel(x_ptr, w_ptr, y_ptr, rstd_ptr, n_cols, eps, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK)
    mask = cols < n_cols
    x = tl.load(x_ptr + row * n_cols + cols, mask=mask, other=0.0).to(tl.float32)
    rstd = tl.rsqrt(tl.sum(x * x, axis=0) / n_cols + eps)
    normed = (x * rstd).to(x_ptr.dtype.element_ty)  # cast back to x's dtype before the weight, like HF
    w = tl.load(w_ptr + cols, mask=mask, other=0.0).to(tl.float32)
    y = normed.to(tl.float32) * w
    tl.store(y_ptr + row * n_cols + cols, y.to(y_ptr.dtype.element_ty), mask=mask)
    tl.store(rstd_ptr + row, rstd)


@triton.jit
def _rms_norm_bwd_kernel(
    dy_ptr, x_ptr, w_ptr, rstd_ptr, dx_ptr, dw_partial_ptr, n_rows, n_cols, rows_per_program,
    BLOCK: tl.constexpr,
):
    pid = tl.program_id(0)
    cols = tl.arange(0, BLOCK)
    mask = cols < n_cols
    w = tl.load(w_ptr + cols, mask=mask, other=0.0).to(tl.float32)
    dw_acc = tl.zeros([BLOCK], tl.float32)  # this program's share of dweight
    first = pid.to(tl.int64) * rows_per_program  # int64 rows: row * n_cols may pass 2**31
    last = tl.minimum(first + rows_per_program, n_rows)
    for row in range(first, last):
        offs = row * n_cols + cols
        x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        dy = tl.load(dy_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        rstd = tl.load(rstd_ptr + row)
        n = x * rstd
        g = dy * w
        dx = rstd * (g - n * (tl.sum(g * n, axis=0) / n_cols))
        tl.store(dx_ptr + offs, dx.to(dx_ptr.dtype.element_ty), mask=mask)
        dw_acc += dy * n.to(x_ptr.dtype.element_ty).to(tl.float32)  # y = w * n cast to x's dtype
    tl.store(dw_partial_ptr + pid.to(tl.int64) * n_cols + cols, dw_acc, mask=mask)




def backward_programs(n_rows: int, device: torch.device) -> int:
    """How many programs share the backward's rows (each writes one partial dweight)."""
    if device.type == "cuda":
        sms = torch.cuda.get_device_properties(device).multi_processor_count
        return max(1, min(n_rows, PROGRAMS_PER_SM * sms))
    return max(1, min(n_rows, CPU_BACKWARD_PROGRAMS))


def rms_norm_forward(
    x2d: torch.Tensor, weight: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """RMSNorm of the rows of a contiguous (M, N) tensor; returns y (M, N) and rstd (M,) in float32."""
    n_rows, n_cols = x2d.shape
    y = torch.empty(x2d.shape, dtype=torch.promote_types(x2d.dtype, weight.dtype), device=x2d.device)
    rstd = torch.empty(n_rows, dtype=torch.float32, device=x2d.device)
    if x2d.numel():
        block = triton.next_power_of_2(n_cols)
        with on_device(x2d.device):
            _rms_norm_fwd_kernel[(n_rows,)](
                x2d, weight, y, rstd, n_cols, eps, BLOCK=block, num_warps=num_warps_for(block)
            )
    return y, rstd


def rms_norm_backward(
    dy2d: torch.Tensor,
    x2d: torch.Tensor,
    weight: torch.Tensor,
    rstd: torch.Tensor,
    programs: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients of RMSNorm for contiguous (M, N) rows: dx (M, N) and the partial dweights (programs, N).

    Row group p (rows p*R .. p*R+R-1, R = ceil(M / programs)) writes partial row p, in float32;
    dweight is `partials.sum(0)`.
    """
    n_rows, n_cols = x2d.shape
    programs = programs or backward_programs(n_rows, x2d.device)
    dx = torch.empty_like(x2d)
    partials = torch.zeros(programs, n_cols, dtype=torch.float32, device=x2d.device)
    if x2d.numel():
        rows_per_program = math.ceil(n_rows / programs)
        block = triton.next_power_of_2(n_cols)
        with on_device(x2d.device):
            _rms_norm_bwd_kernel[(programs,)](
                dy2d, x2d, weight, rstd, dx, partials, n_rows, n_cols, rows_per_program,
                BLOCK=block, num_warps=num_warps_for(block),
            )
    return dx, partials


class _RMSNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x2d: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
        y, rstd = rms_norm_forward(x2d, weight, eps)
        ctx.save_for_backward(x2d, weight, rstd)
        return y

    @staticmethod
    def backward(ctx, dy: torch.Tensor):
        x2d, weight, rstd = ctx.saved_tensors
        dx, partials = rms_norm_backward(dy.contiguous(), x2d, weight, rstd)
        dweight = partials.sum(0).to(weight.dtype) if ctx.needs_input_grad[1] else None
        return dx, dweight, None


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """RMSNorm over the last dimension of x (any leading shape) with a 1-D weight of size x.shape[-1].

    Same convention as `rms_norm_ref` (HF LlamaRMSNorm): float32 inside, normalized values cast to x's
    dtype, then scaled by the weight. float32, float16 and bfloat16 (bfloat16 on GPU only).
    """
    for name, t in (("x", x), ("weight", weight)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"rms_norm: {name} must be a torch.Tensor, got {type(t).__name__}")
    if x.dim() == 0:
        raise ValueError("rms_norm: x must have at least one dimension (the norm runs over the last one)")
    n_cols = x.shape[-1]
    if weight.dim() != 1 or weight.shape[0] != n_cols:
        raise ValueError(
            f"rms_norm: weight must be 1-D of size x.shape[-1] = {n_cols}, got shape {tuple(weight.shape)}"
        )
    if n_cols > MAX_WIDTH:
        raise ValueError(f"rms_norm: rows up to {MAX_WIDTH} wide are supported, got x.shape[-1] = {n_cols}")
    eps = check_eps("rms_norm", eps)
    check_launchable("rms_norm", x=x, weight=weight)
    check_dtype("rms_norm", "x", x, DTYPES)
    check_dtype("rms_norm", "weight", weight, DTYPES)
    n_rows = math.prod(x.shape[:-1])
    y2d = _RMSNorm.apply(x.contiguous().view(n_rows, n_cols), weight.contiguous(), eps)  # (M, N)
    return y2d.view(x.shape)
