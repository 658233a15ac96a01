"""Selective scan and its decode step in Triton: chunked associative scan forward, recomputing backward.

Forward: one program per (batch, block of BLOCK_D channels). It holds the state h as a (BLOCK_D, BLOCK_N)
tile and walks L in chunks of BLOCK_L steps. Inside a chunk the first-order recurrence h_t = a_t h_{t-1} + x_t
(a = exp(delta * A), x = delta * B * u) is a `tl.associative_scan` over (BLOCK_D, BLOCK_N, BLOCK_L) pairs
combined as (a1, b1) . (a2, b2) = (a1 * a2, a2 * b1 + b2); the state entering the chunk is added as
prod(a) * h_in. delta_bias, softplus, the C contraction, the D skip and the silu(z) gate are fused, so u,
delta, z, B and C are read once and out written once. For the backward it stores only the state entering
every chunk (batch, dim, chunks, N), never per-step states.

Backward, per program, chunks from last to first: recompute the chunk's states from its saved entry state
(one forward scan), then run the adjoint recurrence g_t = C_t dy_t + a_{t+1} g_{t+1} as a reverse
associative scan, with the gradient entering from the next chunk carried like the forward state. With
g_t = dL/dh_t and a_t h_{t-1} = h_t - x_t:

    du      = dy * D + delta * sum_n g B          ddelta = u * sum_n g B + sum_n g (h - x) A
    dA      = sum_{b,t} g (h - x) delta           dB_t   = g delta u (summed over a group's channels)
    dC_t    = dy h (summed likewise)              dD     = sum_{b,t} dy u

then the softplus and z-gate chain rules. Time-invariant B and C (and A, D, delta_bias) are reduced over
time in registers and written as per-batch partials that a torch sum finishes; input-dependent B and C are
first summed over the program's channels (all in one group, see `scan_blocks`) and then atomically added.

Strides: u, delta, z, B, C (and the decode step's state, x, dt, z, B, C) are read through their strides,
so any view works; the small per-channel parameters A, D and delta_bias are made contiguous first.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.runtime import on_device, record_kernel_import

record_kernel_import()  # the kernels below are decorated now, compiled or interpreted


@triton.jit
def _first_order(a1, b1, a2, b2):
    """Compose two steps h -> a1 h + b1 then h -> a2 h + b2 into one."""
    return a1 * a2, a2 * b1 + b2


@triton.jit
def _log1p(y):
    """log(1 + y) accurate for small y (Goldberg's trick; tl.log alone loses it below 1e-7)."""
    w = 1.0 + y
    return tl.where(w == 1.0, y, tl.log(w) * (y / (w - 1.0)))


@triton.jit
def _softplus(x):
    """log(1 + exp(x)) like torch's (linear above 20), without exp of a large number."""
    return tl.where(x > 20.0, x, tl.maximum(x, 0.0) + _log1p(tl.exp(-tl.abs(x))))


@triton.jit
def _load_delta(delta_ptr, offs, mask, bias, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr):
    """delta after the bias and softplus, 0 where masked (a step with delta = 0 keeps the state)."""
    raw = tl.load(delta_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    if HAS_BIAS:
        raw = raw + bias[:, None]
    dt = raw
    if SOFTPLUS:
        dt = _softplus(raw)
    return tl.where(mask, dt, 0.0), raw


@triton.jit
def _load_bc_chunk(ptr, base, g, d, n, l, s_b, s_g, s_n, s_l, d_mask, n_mask, l_mask, VARYING: tl.constexpr):
    """B or C for one chunk as a tile that broadcasts against (BLOCK_D, BLOCK_N, BLOCK_L)."""
    if VARYING:  # (N, L) of this program's group
        offs = base + g * s_g + n[:, None] * s_n + l[None, :] * s_l
        tile = tl.load(ptr + offs, mask=n_mask[:, None] & l_mask[None, :], other=0.0).to(tl.float32)[None, :, :]
    else:  # time-invariant (dim, N)
        offs = d[:, None] * s_g + n[None, :] * s_n
        tile = tl.load(ptr + offs, mask=d_mask[:, None] & n_mask[None, :], other=0.0).to(tl.float32)[:, :, None]
    return tile


@triton.jit
def _channel_params(A_ptr, D_ptr, bias_ptr, d, n, d_mask, dn_mask, N, HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr):
    """A (BD, BN), D (BD,) and delta_bias (BD,) of the program's channels (contiguous; None when absent)."""
    A = tl.load(A_ptr + d[:, None] * N + n[None, :], mask=dn_mask, other=0.0)
    D = tl.load(D_ptr + d, mask=d_mask, other=0.0) if HAS_D else None
    bias = tl.load(bias_ptr + d, mask=d_mask, other=0.0) if HAS_BIAS else None
    return A, D, bias


@triton.jit
def _selective_scan_fwd_kernel(
    u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, out_ptr, last_ptr, chunk_ptr,
    dim, L, N,
    s_ub, s_ud, s_ul, s_db, s_dd, s_dl, s_zb, s_zd, s_zl,
    s_Bb, s_Bg, s_Bn, s_Bl, b_per_group,
    s_Cb, s_Cg, s_Cn, s_Cl, c_per_group,
    B_VARYING: tl.constexpr, C_VARYING: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr,
    HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, SAVE_CHUNKS: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_L: tl.constexpr,
):
    pid_b = tl.program_id(0).to(tl.int64)
    d0 = tl.program_id(1) * BLOCK_D
    d = d0 + tl.arange(0, BLOCK_D)
    n = tl.arange(0, BLOCK_N)
    steps = tl.arange(0, BLOCK_L)
    d_mask, n_mask = d < dim, n < N
    dn_mask = d_mask[:, None] & n_mask[None, :]
    A, D, bias = _channel_params(A_ptr, D_ptr, bias_ptr, d, n, d_mask, dn_mask, N, HAS_D, HAS_BIAS)
    B_base, C_base = pid_b * s_Bb, pid_b * s_Cb
    gB, gC = d0 // b_per_group, d0 // c_per_group  # the program's group (varying B, C)
    row = pid_b * dim + d  # (BD,) row of the (batch, dim, ...) outputs
    chunks = tl.cdiv(L, BLOCK_L)
    h = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    for c in range(0, chunks):
        if SAVE_CHUNKS:  # state entering chunk c, for the backward
            tl.store(chunk_ptr + (row[:, None] * chunks + c) * N + n[None, :], h, mask=dn_mask)
        l = c * BLOCK_L + steps
        l_mask = l < L
        dl_mask = d_mask[:, None] & l_mask[None, :]
        u = tl.load(u_ptr + pid_b * s_ub + d[:, None] * s_ud + l[None, :] * s_ul, mask=dl_mask, other=0.0)
        u = u.to(tl.float32)  # (BD, BL)
        dt, _ = _load_delta(delta_ptr, pid_b * s_db + d[:, None] * s_dd + l[None, :] * s_dl, dl_mask, bias,
                            HAS_BIAS, SOFTPLUS)
        Bt = _load_bc_chunk(B_ptr, B_base, gB, d, n, l, s_Bb, s_Bg, s_Bn, s_Bl,
                            d_mask, n_mask, l_mask, B_VARYING)
        Ct = _load_bc_chunk(C_ptr, C_base, gC, d, n, l, s_Cb, s_Cg, s_Cn, s_Cl,
                            d_mask, n_mask, l_mask, C_VARYING)
        a = tl.exp(dt[:, None, :] * A[:, :, None])  # (BD, BN, BL)
        x = (dt * u)[:, None, :] * Bt  # (BD, BN, BL)
        decay, hs = tl.associative_scan((a, x), axis=2, combine_fn=_first_order)
        hs = hs + decay * h[:, :, None]  # states of the chunk, (BD, BN, BL)
        y = tl.sum(hs * Ct, axis=1)  # (BD, BL)
        h = tl.sum(tl.where(steps[None, None, :] == BLOCK_L - 1, hs, 0.0), axis=2)  # padded steps keep h
        if HAS_D:
            y += u * D[:, None]
        if HAS_Z:
            z_offs = pid_b * s_zb + d[:, None] * s_zd + l[None, :] * s_zl
            zt = tl.load(z_ptr + z_offs, mask=dl_mask, other=0.0).to(tl.float32)
            y = y * zt * tl.sigmoid(zt)
        tl.store(out_ptr + row[:, None] * L + l[None, :], y.to(out_ptr.dtype.element_ty), mask=dl_mask)
    tl.store(last_ptr + row[:, None] * N + n[None, :], h, mask=dn_mask)


@triton.jit
def _selective_scan_bwd_kernel(
    u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, chunk_ptr, dout_ptr, dlast_ptr,
    du_ptr, ddelta_ptr, dz_ptr, dA_ptr, dB_ptr, dC_ptr, dD_ptr, dbias_ptr,
    dim, L, N,
    s_ub, s_ud, s_ul, s_db, s_dd, s_dl, s_zb, s_zd, s_zl,
    s_Bb, s_Bg, s_Bn, s_Bl, b_per_group,
    s_Cb, s_Cg, s_Cn, s_Cl, c_per_group,
    s_dBb, s_dBg, s_dBn, s_dBl, s_dCb, s_dCg, s_dCn, s_dCl,
    B_VARYING: tl.constexpr, C_VARYING: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr,
    HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_L: tl.constexpr,
):
    pid_b = tl.program_id(0).to(tl.int64)
    d0 = tl.program_id(1) * BLOCK_D
    d = d0 + tl.arange(0, BLOCK_D)
    n = tl.arange(0, BLOCK_N)
    steps = tl.arange(0, BLOCK_L)
    d_mask, n_mask = d < dim, n < N
    dn_mask = d_mask[:, None] & n_mask[None, :]
    A, D, bias = _channel_params(A_ptr, D_ptr, bias_ptr, d, n, d_mask, dn_mask, N, HAS_D, HAS_BIAS)
    B_base, C_base = pid_b * s_Bb, pid_b * s_Cb
    gB, gC = d0 // b_per_group, d0 // c_per_group
    row = pid_b * dim + d
    chunks = tl.cdiv(L, BLOCK_L)
    g_next = tl.load(dlast_ptr + row[:, None] * N + n[None, :], mask=dn_mask, other=0.0)  # dL/dh after L
    dA_acc = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    dB_acc = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)  # time-invariant B, C
    dC_acc = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    dD_acc = tl.zeros((BLOCK_D,), dtype=tl.float32)
    dbias_acc = tl.zeros((BLOCK_D,), dtype=tl.float32)
    for i in range(0, chunks):
        c = chunks - 1 - i
        l = c * BLOCK_L + steps
        l_mask, next_mask = l < L, l + 1 < L
        dl_mask = d_mask[:, None] & l_mask[None, :]
        offs = pid_b * s_db + d[:, None] * s_dd + l[None, :] * s_dl
        dt, raw = _load_delta(delta_ptr, offs, dl_mask, bias, HAS_BIAS, SOFTPLUS)  # (BD, BL)
        dt_next, _ = _load_delta(delta_ptr, offs + s_dl, d_mask[:, None] & next_mask[None, :], bias,
                                 HAS_BIAS, SOFTPLUS)
        u = tl.load(u_ptr + pid_b * s_ub + d[:, None] * s_ud + l[None, :] * s_ul, mask=dl_mask, other=0.0)
        u = u.to(tl.float32)
        dy = tl.load(dout_ptr + row[:, None] * L + l[None, :], mask=dl_mask, other=0.0).to(tl.float32)
        Bt = _load_bc_chunk(B_ptr, B_base, gB, d, n, l, s_Bb, s_Bg, s_Bn, s_Bl,
                            d_mask, n_mask, l_mask, B_VARYING)
        Ct = _load_bc_chunk(C_ptr, C_base, gC, d, n, l, s_Cb, s_Cg, s_Cn, s_Cl,
                            d_mask, n_mask, l_mask, C_VARYING)

        # recompute the chunk's states from the saved entry state
        h_in = tl.load(chunk_ptr + (row[:, None] * chunks + c) * N + n[None, :], mask=dn_mask, other=0.0)
        a = tl.exp(dt[:, None, :] * A[:, :, None])  # (BD, BN, BL)
        x = (dt * u)[:, None, :] * Bt
        decay, hs = tl.associative_scan((a, x), axis=2, combine_fn=_first_order)
        hs = hs + decay * h_in[:, :, None]  # (BD, BN, BL)

        if HAS_Z:  # out = pre * silu(z)
            z_offs = pid_b * s_zb + d[:, None] * s_zd + l[None, :] * s_zl
            zt = tl.load(z_ptr + z_offs, mask=dl_mask, other=0.0).to(tl.float32)
            pre = tl.sum(hs * Ct, axis=1)
            if HAS_D:
                pre += u * D[:, None]
            sig = tl.sigmoid(zt)
            dz = dy * pre * sig * (1.0 + zt * (1.0 - sig))
            tl.store(dz_ptr + row[:, None] * L + l[None, :], dz.to(dz_ptr.dtype.element_ty), mask=dl_mask)
            dy = dy * zt * sig
        du = tl.zeros((BLOCK_D, BLOCK_L), dtype=tl.float32)
        if HAS_D:
            du = dy * D[:, None]
            dD_acc += tl.sum(dy * u, axis=1)

        # adjoint states g_t = C_t dy_t + a_{t+1} g_{t+1}, reverse scan plus the carry from the next chunk
        a_next = tl.exp(dt_next[:, None, :] * A[:, :, None])
        growth, gs = tl.associative_scan((a_next, dy[:, None, :] * Ct), axis=2, combine_fn=_first_order,
                                         reverse=True)
        g = gs + growth * g_next[:, :, None]  # (BD, BN, BL)
        g_next = tl.sum(tl.where(steps[None, None, :] == 0, g, 0.0), axis=2)

        gB_sum = tl.sum(g * Bt, axis=1)  # (BD, BL)
        du += dt * gB_sum
        g_ah = g * (hs - x)  # g_t * a_t * h_{t-1}
        ddt = u * gB_sum + tl.sum(g_ah * A[:, :, None], axis=1)
        dA_acc += tl.sum(g_ah * dt[:, None, :], axis=2)
        if SOFTPLUS:
            ddt = ddt * tl.where(raw > 20.0, 1.0, tl.sigmoid(raw))
        ddt = tl.where(dl_mask, ddt, 0.0)
        dbias_acc += tl.sum(ddt, axis=1)
        out_offs = row[:, None] * L + l[None, :]
        tl.store(du_ptr + out_offs, du.to(du_ptr.dtype.element_ty), mask=dl_mask)
        tl.store(ddelta_ptr + out_offs, ddt.to(ddelta_ptr.dtype.element_ty), mask=dl_mask)

        dBt = g * (dt * u)[:, None, :]  # (BD, BN, BL)
        dCt = dy[:, None, :] * hs
        if B_VARYING:
            nl_mask = n_mask[:, None] & l_mask[None, :]
            offs_B = pid_b * s_dBb + gB * s_dBg + n[:, None] * s_dBn + l[None, :] * s_dBl
            tl.atomic_add(dB_ptr + offs_B, tl.sum(dBt, axis=0), mask=nl_mask, sem="relaxed")
        else:
            dB_acc += tl.sum(dBt, axis=2)
        if C_VARYING:
            nl_mask = n_mask[:, None] & l_mask[None, :]
            offs_C = pid_b * s_dCb + gC * s_dCg + n[:, None] * s_dCn + l[None, :] * s_dCl
            tl.atomic_add(dC_ptr + offs_C, tl.sum(dCt, axis=0), mask=nl_mask, sem="relaxed")
        else:
            dC_acc += tl.sum(dCt, axis=2)

    # per-batch partials of the parameters' gradients, (batch, dim, N) and (batch, dim)
    tl.store(dA_ptr + row[:, None] * N + n[None, :], dA_acc, mask=dn_mask)
    if not B_VARYING:
        tl.store(dB_ptr + row[:, None] * N + n[None, :], dB_acc, mask=dn_mask)
    if not C_VARYING:
        tl.store(dC_ptr + row[:, None] * N + n[None, :], dC_acc, mask=dn_mask)
    if HAS_D:
        tl.store(dD_ptr + row, dD_acc, mask=d_mask)
    if HAS_BIAS:
        tl.store(dbias_ptr + row, dbias_acc, mask=d_mask)


@triton.jit
def _state_update_kernel(
    state_ptr, x_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, out_ptr,
    dim, N,
    s_sb, s_sd, s_sn, s_xb, s_xd, s_tb, s_td, s_zb, s_zd,
    s_Bb, s_Bg, s_Bn, b_per_group, s_Cb, s_Cg, s_Cn, c_per_group,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr,
):
    pid_b = tl.program_id(0).to(tl.int64)
    d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    n = tl.arange(0, BLOCK_N)
    d_mask, n_mask = d < dim, n < N
    dn_mask = d_mask[:, None] & n_mask[None, :]
    state_offs = pid_b * s_sb + d[:, None] * s_sd + n[None, :] * s_sn
    state = tl.load(state_ptr + state_offs, mask=dn_mask, other=0.0).to(tl.float32)  # (BD, BN)
    x = tl.load(x_ptr + pid_b * s_xb + d * s_xd, mask=d_mask, other=0.0).to(tl.float32)  # (BD,)
    dt = tl.load(dt_ptr + pid_b * s_tb + d * s_td, mask=d_mask, other=0.0).to(tl.float32)
    if HAS_BIAS:
        dt += tl.load(bias_ptr + d, mask=d_mask, other=0.0)
    if SOFTPLUS:
        dt = _softplus(dt)
    A = tl.load(A_ptr + d[:, None] * N + n[None, :], mask=dn_mask, other=0.0)
    B_offs = pid_b * s_Bb + (d // b_per_group)[:, None] * s_Bg + n[None, :] * s_Bn  # each channel's group
    C_offs = pid_b * s_Cb + (d // c_per_group)[:, None] * s_Cg + n[None, :] * s_Cn
    B = tl.load(B_ptr + B_offs, mask=dn_mask, other=0.0).to(tl.float32)
    C = tl.load(C_ptr + C_offs, mask=dn_mask, other=0.0).to(tl.float32)
    state = state * tl.exp(dt[:, None] * A) + (dt * x)[:, None] * B
    tl.store(state_ptr + state_offs, state.to(state_ptr.dtype.element_ty), mask=dn_mask)
    out = tl.sum(state.to(state_ptr.dtype.element_ty).to(tl.float32) * C, axis=1)  # (BD,)
    if HAS_D:
        out += x * tl.load(D_ptr + d, mask=d_mask, other=0.0)
    if HAS_Z:
        z = tl.load(z_ptr + pid_b * s_zb + d * s_zd, mask=d_mask, other=0.0).to(tl.float32)
        out = out * z * tl.sigmoid(z)
    tl.store(out_ptr + pid_b * dim + d, out.to(out_ptr.dtype.element_ty), mask=d_mask)


# ---------------------------------------------------------------------------------------------- launchers

# GPU tiles (BLOCK_D, BLOCK_N, BLOCK_L) of about GPU_TILE elements: with N = 16, (4, 16, 32). Compiled for
# sm_90 these use about 128 (forward, 4 warps) and 225 (backward, 8 warps) registers without spills.
GPU_TILE, GPU_MAX_BLOCK_D, GPU_MAX_BLOCK_L = 2048, 4, 64
GPU_FWD_WARPS, GPU_BWD_WARPS = 4, 8
CPU_BLOCK_D, CPU_BLOCK_L = 8, 16  # the interpreter's cost grows with every tile element


def _sequence_strides(name: str, t: torch.Tensor) -> dict[str, int]:
    """The kernels' s_<name>b, s_<name>d, s_<name>l: strides of a (batch, dim, L) tensor (any layout)."""
    return dict(zip((f"s_{name}b", f"s_{name}d", f"s_{name}l"), t.stride(), strict=True))


def _bc_layout(t: torch.Tensor, dim: int, name: str) -> tuple[dict[str, int], int | None]:
    """The kernels' arguments for B or C (`name`): strides (batch, group, N, L) and channels per group.

    Also returns the channels per group that constrain BLOCK_D, or None for a time-invariant (dim, N)
    operand: it reads as group = channel with no batch or L stride, so every channel of a program reads
    its own row and BLOCK_D is free. (batch, N, L) reads as one group of dim channels.
    """
    if t.dim() == 2:
        strides, per_group, varying = (0, t.stride(0), t.stride(1), 0), 1, False
    elif t.dim() == 3:
        strides, per_group, varying = (t.stride(0), 0, t.stride(1), t.stride(2)), dim, True
    else:
        strides, per_group, varying = tuple(t.stride()), dim // t.shape[1], True
    args = dict(zip((f"s_{name}b", f"s_{name}g", f"s_{name}n", f"s_{name}l"), strides, strict=True))
    args[f"{name.lower()}_per_group"] = per_group
    args[f"{name}_VARYING"] = varying
    return args, per_group if varying else None


def scan_blocks(
    dim: int, n: int, length: int, per_group: tuple[int | None, ...], device: torch.device,
    block_l: int | None = None,
) -> tuple[int, int, int]:
    """(BLOCK_D, BLOCK_N, BLOCK_L) for a scan launch; the backward must use the forward's BLOCK_L.

    BLOCK_D divides every input-dependent operand's channels per group (None: a time-invariant operand,
    no constraint), so that a program's channels share one group (its B/C gradients are then summed in
    registers before one atomic add per element).
    """
    block_n = max(2, triton.next_power_of_2(n))
    if device.type == "cuda":
        fit = GPU_TILE // (GPU_MAX_BLOCK_D * block_n)
        block_l = block_l or max(16, min(GPU_MAX_BLOCK_L, fit, triton.next_power_of_2(length)))
        block_d = max(1, min(GPU_MAX_BLOCK_D, GPU_TILE // (block_n * block_l)))
    else:
        block_d = min(CPU_BLOCK_D, triton.next_power_of_2(dim))
        block_l = block_l or CPU_BLOCK_L
    while block_d > 1 and any(p % block_d for p in per_group if p is not None and p < dim):
        block_d //= 2
    return block_d, block_n, block_l


def _contiguous(*tensors: torch.Tensor | None) -> list[torch.Tensor | None]:
    """A, D and delta_bias are read at flat offsets: make them contiguous (small; a no-op when they are)."""
    return [t if t is None else t.contiguous() for t in tensors]


def _scan_arguments(u, delta, A, B, C, D, z, delta_bias, softplus: bool, block_l: int | None):
    """Keyword arguments shared by the forward and backward launches, and the grid."""
    batch, dim, length = u.shape
    n = A.shape[1]
    B_args, b_group = _bc_layout(B, dim, "B")
    C_args, c_group = _bc_layout(C, dim, "C")
    block_d, block_n, block_l = scan_blocks(dim, n, length, (b_group, c_group), u.device, block_l)
    args = dict(
        u_ptr=u, delta_ptr=delta, A_ptr=A, B_ptr=B, C_ptr=C, D_ptr=D, z_ptr=z, bias_ptr=delta_bias,
        dim=dim, L=length, N=n,
        **_sequence_strides("u", u), **_sequence_strides("d", delta),
        **_sequence_strides("z", z if z is not None else u),  # unused without z
        **B_args, **C_args,
        HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None, SOFTPLUS=softplus,
        BLOCK_D=block_d, BLOCK_N=block_n, BLOCK_L=block_l,
    )
    return args, (batch, triton.cdiv(dim, block_d))


def scan_forward(u, delta, A, B, C, D, z, delta_bias, softplus: bool, save_chunks: bool,
                 block_l: int | None = None):
    """Launch the forward; return out (u's dtype), last state (batch, dim, N) float32, chunk entry states."""
    A, D, delta_bias = _contiguous(A, D, delta_bias)
    batch, dim, length = u.shape
    n = A.shape[1]
    args, grid = _scan_arguments(u, delta, A, B, C, D, z, delta_bias, softplus, block_l)
    block_l = args["BLOCK_L"]
    chunks = triton.cdiv(length, block_l)
    out = torch.empty(batch, dim, length, dtype=u.dtype, device=u.device)
    last = torch.empty(batch, dim, n, dtype=torch.float32, device=u.device)
    kept = chunks if save_chunks else 0
    chunk_states = torch.empty(batch, dim, kept, n, dtype=torch.float32, device=u.device)
    if length == 0:
        return out, last.zero_(), chunk_states, block_l
    with on_device(u.device):
        _selective_scan_fwd_kernel[grid](
            **args, out_ptr=out, last_ptr=last, chunk_ptr=chunk_states, SAVE_CHUNKS=save_chunks,
            num_warps=GPU_FWD_WARPS,
        )
    return out, last, chunk_states, block_l


def scan_backward(u, delta, A, B, C, D, z, delta_bias, softplus: bool, chunk_states, dout, dlast,
                  block_l: int):
    """Launch the backward; return (du, ddelta, dA, dB, dC, dD, dz, ddelta_bias), None for absent inputs."""
    A, D, delta_bias = _contiguous(A, D, delta_bias)
    batch, dim, length = u.shape
    n = A.shape[1]
    device = u.device
    dout = dout.contiguous()
    dlast = torch.zeros(batch, dim, n, device=device) if dlast is None else dlast.float().contiguous()
    args, grid = _scan_arguments(u, delta, A, B, C, D, z, delta_bias, softplus, block_l)
    b_var, c_var = args["B_VARYING"], args["C_VARYING"]

    def grad_buffer(varying, per_group):  # float32: the full (batch, G, N, L) to add into, or partials
        if varying:
            return torch.zeros(batch, dim // per_group, n, length, device=device)
        return torch.empty(batch, dim, n, device=device)

    du = torch.empty(batch, dim, length, dtype=u.dtype, device=device)  # contiguous, like dout
    ddelta = torch.empty(batch, dim, length, dtype=delta.dtype, device=device)
    dz = torch.empty(batch, dim, length, dtype=z.dtype, device=device) if z is not None else None
    dA = torch.empty(batch, dim, n, device=device)
    dB, dC = grad_buffer(b_var, args["b_per_group"]), grad_buffer(c_var, args["c_per_group"])
    dD = torch.empty(batch, dim, device=device) if D is not None else None
    dbias = torch.empty(batch, dim, device=device) if delta_bias is not None else None

    def grad_strides(name, grad, varying):  # the atomically added (batch, G, N, L) buffers only
        return dict(zip((f"s_{name}b", f"s_{name}g", f"s_{name}n", f"s_{name}l"),
                        grad.stride() if varying else (0, 0, 0, 0), strict=True))

    if length:
        with on_device(device):
            _selective_scan_bwd_kernel[grid](
                **args, chunk_ptr=chunk_states, dout_ptr=dout, dlast_ptr=dlast,
                du_ptr=du, ddelta_ptr=ddelta, dz_ptr=dz, dA_ptr=dA, dB_ptr=dB, dC_ptr=dC, dD_ptr=dD,
                dbias_ptr=dbias, **grad_strides("dB", dB, b_var), **grad_strides("dC", dC, c_var),
                num_warps=GPU_BWD_WARPS,
            )
    else:
        for t in (dA, dB, dC, dD, dbias):
            if t is not None:
                t.zero_()

    def finish_bc(grad, t, varying):
        grad = grad.reshape(t.shape) if varying else grad.sum(0)  # (batch, 1, N, L) -> (batch, N, L)
        return grad.to(t.dtype)

    return (
        du, ddelta, dA.sum(0), finish_bc(dB, B, b_var), finish_bc(dC, C, c_var),
        dD.sum(0) if dD is not None else None, dz, dbias.sum(0) if dbias is not None else None,
    )


def state_update(state, x, dt, A, B, C, D, z, dt_bias, softplus: bool) -> torch.Tensor:
    """Launch one decode step: `state` is updated in place; returns out (batch, dim) in x's dtype."""
    A, D, dt_bias = _contiguous(A, D, dt_bias)
    batch, dim, n = state.shape
    B3, C3 = (B[:, None] if B.dim() == 2 else B), (C[:, None] if C.dim() == 2 else C)  # (batch, G, N)
    out = torch.empty(batch, dim, dtype=x.dtype, device=x.device)
    block_n = max(2, triton.next_power_of_2(n))
    block_d = min(triton.next_power_of_2(dim), max(1, 512 // block_n) if x.is_cuda else 8)
    zz = z if z is not None else x  # its strides are unused without z
    grid = (batch, triton.cdiv(dim, block_d))
    with on_device(x.device):
        _state_update_kernel[grid](
            state_ptr=state, x_ptr=x, dt_ptr=dt, A_ptr=A, B_ptr=B3, C_ptr=C3, D_ptr=D, z_ptr=z,
            bias_ptr=dt_bias, out_ptr=out, dim=dim, N=n,
            s_sb=state.stride(0), s_sd=state.stride(1), s_sn=state.stride(2),
            s_xb=x.stride(0), s_xd=x.stride(1), s_tb=dt.stride(0), s_td=dt.stride(1),
            s_zb=zz.stride(0), s_zd=zz.stride(1),
            s_Bb=B3.stride(0), s_Bg=B3.stride(1), s_Bn=B3.stride(2), b_per_group=dim // B3.shape[1],
            s_Cb=C3.stride(0), s_Cg=C3.stride(1), s_Cn=C3.stride(2), c_per_group=dim // C3.shape[1],
            HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=dt_bias is not None, SOFTPLUS=softplus,
            BLOCK_D=block_d, BLOCK_N=block_n, num_warps=4,
        )
    return out
