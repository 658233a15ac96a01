"""Fused softmax over the last dimension, forward and backward, in Triton.

The eager softmax `exp(x - max) / sum(exp(x - max))` runs as five kernels that each read and write the
whole matrix. Here one program owns one row: it reads the row once, keeps it on chip, and writes the
result once, so the op moves the minimum number of bytes and runs at the speed of memory.

Two schemes, picked by the row width N:
- N <= SINGLE_PASS_MAX_WIDTH: the whole row fits one block; one read, one write.
- wider rows: the program loops over column blocks twice. The first pass keeps a running max and a sum
  rescaled whenever the max grows (the "online softmax"); the second pass writes exp(x - max) / sum.

Arithmetic is float32 inside the kernels; the output has the input's dtype. The backward uses the saved
output y: dx = y * (dy - sum(dy * y)).
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from kernels.runtime import check_dtype, check_launchable, num_warps_for, on_device, record_kernel_import

record_kernel_import()  # the kernels below are decorated now, compiled or interpreted

# Rows up to this many columns take the single-pass kernel; wider rows loop over blocks of LOOP_BLOCK.
# Module constants, so tests can shrink them to exercise the looped path on tiny rows.
SINGLE_PASS_MAX_WIDTH = 16384
LOOP_BLOCK = 4096

DTYPES = (torch.float32, torch.float16, torch.bfloat16)


@triton.jit
def _softmax_fwd_single_pass(x_ptr, y_ptr, n_cols, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK)
    mask = cols < n_cols  # the block is a power of two; columns past the row end are masked off
    x = tl.load(x_ptr + row * n_cols + cols, mask=mask, other=-float("inf")).to(tl.float32)
    z = tl.exp(x - tl.max(x, axis=0))  # masked lanes: exp(-inf) = 0, so they add nothing to the sum
    y = z / tl.sum(z, axis=0)
    tl.store(y_ptr + row * n_cols + cols, y.to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _softmax_fwd_looped(x_ptr, y_ptr, n_cols, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    x_row = x_ptr + row * n_cols
    y_row = y_ptr + row * n_cols
    cols = tl.arange(0, BLOCK)
    # pass 1: per lane, a running max and a sum of exp(x - running max)
    m_run = tl.full([BLOCK], -float("inf"), tl.float32)
    s_run = tl.zeros([BLOCK], tl.float32)
    for start in range(0, n_cols, BLOCK):
        mask = start + cols < n_cols
        x = tl.load(x_row + start + cols, mask=mask, other=-float("inf")).to(tl.float32)
        m_new = tl.maximum(m_run, x)
        # a lane that has seen only -inf shifts by 0, not by -inf (-inf - -inf is nan); its sum stays 0
        shift = tl.where(m_new == -float("inf"), 0.0, m_new)
        s_run = s_run * tl.exp(m_run - shift) + tl.exp(x - shift)  # rescale the old sum to the new max
        m_run = m_new
    m = tl.max(m_run, axis=0)
    s = tl.sum(tl.where(m_run != -float("inf"), s_run * tl.exp(m_run - m), 0.0), axis=0)
    # pass 2: read the row again and write the normalized values
    for start in range(0, n_cols, BLOCK):
        mask = start + cols < n_cols
        x = tl.load(x_row + start + cols, mask=mask, other=-float("inf")).to(tl.float32)
        y = tl.exp(x - m) / s
        tl.store(y_row + start + cols, y.to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _softmax_bwd_single_pass(y_ptr, dy_ptr, dx_ptr, n_cols, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK)
    mask = cols < n_cols
    y = tl.load(y_ptr + row * n_cols + cols, mask=mask, other=0.0).to(tl.float32)
    dy = tl.load(dy_ptr + row * n_cols + cols, mask=mask, other=0.0).to(tl.float32)
    dx = y * (dy - tl.sum(y * dy, axis=0))
    tl.store(dx_ptr + row * n_cols + cols, dx.to(dx_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _softmax_bwd_looped(y_ptr, dy_ptr, dx_ptr, n_cols, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    y_row = y_ptr + row * n_cols
    dy_row = dy_ptr + row * n_cols
    dx_row = dx_ptr + row * n_cols
    cols = tl.arange(0, BLOCK)
    acc = tl.zeros([BLOCK], tl.float32)
    for start in range(0, n_cols, BLOCK):  # pass 1: sum(y * dy)
        mask = start + cols < n_cols
        y = tl.load(y_row + start + cols, mask=mask, other=0.0).to(tl.float32)
        dy = tl.load(dy_row + start + cols, mask=mask, other=0.0).to(tl.float32)
        acc += y * dy
    dot = tl.sum(acc, axis=0)
    for start in range(0, n_cols, BLOCK):  # pass 2: dx = y * (dy - dot)
        mask = start + cols < n_cols
        y = tl.load(y_row + start + cols, mask=mask, other=0.0).to(tl.float32)
        dy = tl.load(dy_row + start + cols, mask=mask, other=0.0).to(tl.float32)
        tl.store(dx_row + start + cols, (y * (dy - dot)).to(dx_ptr.dtype.element_ty), mask=mask)




def _launch(single_pass, looped, n_rows: int, n_cols: int, *tensors: torch.Tensor) -> None:
    if n_cols <= SINGLE_PASS_MAX_WIDTH:
        kernel, block = single_pass, triton.next_power_of_2(n_cols)
    else:
        kernel, block = looped, triton.next_power_of_2(min(LOOP_BLOCK, n_cols))
    with on_device(tensors[0].device):
        kernel[(n_rows,)](*tensors, n_cols, BLOCK=block, num_warps=num_warps_for(block))


def softmax_forward(x2d: torch.Tensor) -> torch.Tensor:
    """Softmax of every row of a contiguous (M, N) tensor."""
    y = torch.empty_like(x2d)
    if x2d.numel():
        _launch(_softmax_fwd_single_pass, _softmax_fwd_looped, *x2d.shape, x2d, y)
    return y


def softmax_backward(y2d: torch.Tensor, dy2d: torch.Tensor) -> torch.Tensor:
    """Gradient of the row softmax, from its output y and the output gradient dy, both (M, N) contiguous."""
    dx = torch.empty_like(y2d)
    if y2d.numel():
        _launch(_softmax_bwd_single_pass, _softmax_bwd_looped, *y2d.shape, y2d, dy2d, dx)
    return dx


class _Softmax(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x2d: torch.Tensor) -> torch.Tensor:
        y = softmax_forward(x2d)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, dy: torch.Tensor) -> torch.Tensor:
        (y,) = ctx.saved_tensors
        return softmax_backward(y, dy.to(y.dtype).contiguous())


def softmax(x: torch.Tensor) -> torch.Tensor:
    """Softmax over the last dimension of x (any leading shape), fused in one Triton kernel per direction.

    float32, float16 and bfloat16 (bfloat16 on GPU only); float32 arithmetic inside, output in x's dtype.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"softmax: x must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() == 0:
        raise ValueError("softmax: x must have at least one dimension (softmax runs over the last one)")
    check_launchable("softmax", x=x)
    check_dtype("softmax", "x", x, DTYPES)
    n_rows, n_cols = math.prod(x.shape[:-1]), x.shape[-1]
    y2d = _Softmax.apply(x.contiguous().view(n_rows, n_cols))  # (M, N)
    return y2d.view(x.shape)

