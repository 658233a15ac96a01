"""FlashAttention in Triton, forward and backward: causal, sliding window and grouped-query attention.

Naive attention writes the (T, S) score matrix to memory. Here one program owns a block of BLOCK_M query
rows, keeps it on chip, and walks over the keys in tiles of BLOCK_N with an online softmax (a running row
max m and a running sum l, rescaled whenever m grows), so memory is O(T * D) instead of O(T * S). The
backward recomputes the attention probabilities from q, k and the saved logsumexp instead of storing them.

Semantics (shared by `flash_attention` and `flash_attention_ref`):
- q (B, Hq, T, D); k and v (B, Hkv, S, D) with Hq divisible by Hkv. Query head h reads kv head
  h // (Hq // Hkv) (grouped-query attention; multi-query when Hkv = 1); k and v are never repeated.
- scale defaults to 1 / sqrt(D).
- Queries are aligned to the END of the keys (bottom-right): query row i sits at absolute position
  p = i + (S - T), so T < S is the decoding / chunked-prefill case.
- causal=True: the query at position p attends to the keys j <= p.
- window=W (an int >= 1, only with causal=True) keeps the keys p - W < j <= p: the W most recent
  positions including the query's own (Hugging Face Mistral's sliding-window convention).
- A query row whose mask is empty (only possible when T > S with causal) outputs zeros; its logsumexp
  is -inf, handled without NaN in the forward and the backward.
- Output (B, Hq, T, D) in q's dtype; arithmetic is float32 inside the kernels (float32 inputs multiply
  in full float32, not TF32). Inputs may be strided views: the kernels follow their strides, and a view
  whose D axis is not contiguous is copied contiguous first.
- D must be a power of two between 16 and 128 (16, 32, 64, 128); other head dims raise a ValueError
  (they are not padded).

Tiles that the causal / window mask empties are skipped: each program computes its loop range from the
block indices. Tiles that the mask fills completely run without the elementwise mask; only the boundary
tiles (window edge, diagonal, sequence end) apply it.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.ops.flash_attention.ref import HEAD_DIMS, check_arguments
from kernels.runtime import check_dtype, check_launchable, on_device, record_kernel_import

record_kernel_import()  # the kernels below are decorated now, compiled or interpreted

DTYPES = (torch.float16, torch.bfloat16, torch.float32)

# Block sizes under the interpreter (tl.dot needs >= 16 in every dimension). Module constants, so that
# tests can change them; on a GPU the autotuner picks among the configs below.
INTERPRETER_BLOCK_M = 16
INTERPRETER_BLOCK_N = 16

_LOG2E = tl.constexpr(1.4426950408889634)  # exp(x) = exp2(x * log2(e))
_LN2 = tl.constexpr(0.6931471805599453)


# ----------------------------------------------------------------------------------------------------
# Loop ranges: which tiles run, and which of them need the elementwise mask
# ----------------------------------------------------------------------------------------------------


@triton.jit
def _key_range(start_m, T, S, window, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
               CAUSAL: tl.constexpr, WINDOWED: tl.constexpr):
    """Key ranges of query block start_m: [lo, full_lo) and [full_hi, hi) masked, [full_lo, full_hi) not.

    Every bound except hi is a multiple of BLOCK_N (or equals hi); key tiles outside [lo, hi) are skipped.
    """
    first = start_m * BLOCK_M + (S - T)  # absolute position of the block's first query row
    last = first + BLOCK_M - 1
    lo = first * 0
    hi = lo + S
    full_lo = lo
    full_hi = hi // BLOCK_N * BLOCK_N
    if CAUSAL:  # keys j <= p: stop after the diagonal; keys <= first are seen by every row
        hi = tl.minimum(tl.maximum(last + 1, 0), S)
        full_hi = tl.minimum(tl.maximum(first + 1, 0), S) // BLOCK_N * BLOCK_N
    if WINDOWED:  # keys j > p - W: start at the first tile the window reaches
        lo = tl.maximum(first - window + 1, 0) // BLOCK_N * BLOCK_N
        full_lo = (tl.maximum(last - window + 1, 0) + BLOCK_N - 1) // BLOCK_N * BLOCK_N
    full_lo = tl.minimum(tl.maximum(full_lo, lo), hi)
    full_hi = tl.minimum(tl.maximum(full_hi, full_lo), hi)
    return lo, full_lo, full_hi, hi


@triton.jit
def _query_range(start_n, T, S, window, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                 CAUSAL: tl.constexpr, WINDOWED: tl.constexpr):
    """Query-row ranges that see key block start_n, split like `_key_range` (multiples of BLOCK_M)."""
    first = start_n * BLOCK_N - (S - T)  # row index of the query at the block's first key position
    last = first + BLOCK_N - 1
    lo = first * 0
    hi = lo + T
    full_lo = lo
    full_hi = hi
    if CAUSAL:  # rows with p >= key: start at the diagonal; rows with p >= the block's last key see it all
        lo = tl.minimum(tl.maximum(first, 0), T) // BLOCK_M * BLOCK_M
        full_lo = (tl.minimum(tl.maximum(last, 0), T) + BLOCK_M - 1) // BLOCK_M * BLOCK_M
    if WINDOWED:  # rows with p < key + W: stop where the window has slid past the block
        hi = tl.minimum(tl.maximum(last + window, 0), T)
        full_hi = tl.maximum(first + window, 0) // BLOCK_M * BLOCK_M
    full_lo = tl.minimum(tl.maximum(full_lo, lo), hi)
    full_hi = tl.minimum(tl.maximum(full_hi, full_lo), hi)
    return lo, full_lo, full_hi, hi


# ----------------------------------------------------------------------------------------------------
# Forward
# ----------------------------------------------------------------------------------------------------


@triton.jit
def _visible(keys, pos, S, window, CAUSAL: tl.constexpr, WINDOWED: tl.constexpr):
    """True where a query at absolute position `pos` may see the key at position `keys` (shapes broadcast):
    keys inside the sequence, not after the query (causal), and inside its window of the W latest."""
    keep = keys < S
    if CAUSAL:
        keep = keep & (keys <= pos)
    if WINDOWED:
        keep = keep & (keys > pos - window)
    return keep


@triton.jit
def _load_kv_tile(k_base, v_base, stride_ks, stride_vs, offs_n, offs_d, S, MASKED: tl.constexpr):
    """The (BLOCK_N, D) key and value tiles at rows offs_n; rows past S read as zeros on masked tiles."""
    k_ptrs = k_base + offs_n[:, None] * stride_ks + offs_d[None, :]
    v_ptrs = v_base + offs_n[:, None] * stride_vs + offs_d[None, :]
    if MASKED:
        k = tl.load(k_ptrs, mask=offs_n[:, None] < S, other=0.0)
        v = tl.load(v_ptrs, mask=offs_n[:, None] < S, other=0.0)
    else:
        k = tl.load(k_ptrs)
        v = tl.load(v_ptrs)
    return k, v


@triton.jit
def _fwd_tiles(acc, l_i, m_i, q, k_base, v_base, stride_ks, stride_vs, pos, lo, hi, S, window, qk_scale,
               HEAD_DIM: tl.constexpr, BLOCK_N: tl.constexpr, CAUSAL: tl.constexpr, WINDOWED: tl.constexpr,
               MASKED: tl.constexpr, DOT_PRECISION: tl.constexpr):
    """Online softmax over the key tiles [lo, hi): update the running max m, sum l and output acc."""
    offs_d = tl.arange(0, HEAD_DIM)
    for start_n in range(lo, hi, BLOCK_N):
        start_n = tl.multiple_of(start_n, BLOCK_N)
        offs_n = start_n + tl.arange(0, BLOCK_N)
        k, v = _load_kv_tile(k_base, v_base, stride_ks, stride_vs, offs_n, offs_d, S, MASKED)  # (BLOCK_N, D)
        qk = tl.dot(q, tl.trans(k), input_precision=DOT_PRECISION) * qk_scale  # (BLOCK_M, BLOCK_N), base 2
        if MASKED:
            keep = _visible(offs_n[None, :], pos[:, None], S, window, CAUSAL, WINDOWED)  # (BLOCK_M, BLOCK_N)
            qk = tl.where(keep, qk, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(qk, 1))
            m_shift = tl.where(m_new == float("-inf"), 0.0, m_new)  # a row with no key yet: avoid -inf - -inf
        else:
            m_new = tl.maximum(m_i, tl.max(qk, 1))
            m_shift = m_new
        p = tl.math.exp2(qk - m_shift[:, None])  # (BLOCK_M, BLOCK_N)
        alpha = tl.math.exp2(m_i - m_shift)  # rescales what was summed under the old max
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None]
        acc = tl.dot(p.to(v.dtype), v, acc, input_precision=DOT_PRECISION)
        m_i = m_new
    return acc, l_i, m_i


@triton.jit
def _fwd_kernel(Q, K, V, O, LSE2,
                stride_qb, stride_qh, stride_qt, stride_kb, stride_kh, stride_ks,
                stride_vb, stride_vh, stride_vs, stride_ob, stride_oh, stride_ot,
                H, T, S, GROUP, window, qk_scale, Q_BUCKET, K_BUCKET,
                HEAD_DIM: tl.constexpr, CAUSAL: tl.constexpr, WINDOWED: tl.constexpr,
                DOT_PRECISION: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """One program: BLOCK_M query rows of one (batch, head). Writes O and the base-2 logsumexp."""
    start_m = tl.num_programs(0) - 1 - tl.program_id(0)  # the longest (last, under causal) blocks start first
    h = tl.program_id(1).to(tl.int64)
    b = tl.program_id(2).to(tl.int64)
    h_kv = h // GROUP
    q_base = Q + b * stride_qb + h * stride_qh
    k_base = K + b * stride_kb + h_kv * stride_kh
    v_base = V + b * stride_vb + h_kv * stride_vh
    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    q = tl.load(q_base + offs_m[:, None] * stride_qt + offs_d[None, :], mask=offs_m[:, None] < T, other=0.0)
    pos = offs_m + (S - T)  # absolute query positions (bottom-right alignment)

    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], tl.float32)
    lo, full_lo, full_hi, hi = _key_range(start_m, T, S, window, BLOCK_M, BLOCK_N, CAUSAL, WINDOWED)
    # window edge (masked), fully visible tiles (no mask), diagonal and sequence end (masked)
    acc, l_i, m_i = _fwd_tiles(acc, l_i, m_i, q, k_base, v_base, stride_ks, stride_vs, pos, lo, full_lo,
                               S, window, qk_scale, HEAD_DIM, BLOCK_N, CAUSAL, WINDOWED, True, DOT_PRECISION)
    acc, l_i, m_i = _fwd_tiles(acc, l_i, m_i, q, k_base, v_base, stride_ks, stride_vs, pos, full_lo, full_hi,
                               S, window, qk_scale, HEAD_DIM, BLOCK_N, CAUSAL, WINDOWED, False, DOT_PRECISION)
    acc, l_i, m_i = _fwd_tiles(acc, l_i, m_i, q, k_base, v_base, stride_ks, stride_vs, pos, full_hi, hi,
                               S, window, qk_scale, HEAD_DIM, BLOCK_N, CAUSAL, WINDOWED, True, DOT_PRECISION)

    empty = l_i == 0.0  # rows that saw no key: output 0, logsumexp -inf
    l_safe = tl.where(empty, 1.0, l_i)
    out = acc / l_safe[:, None]
    lse2 = tl.where(empty, float("-inf"), m_i + tl.math.log2(l_safe))
    o_base = O + b * stride_ob + h * stride_oh
    tl.store(o_base + offs_m[:, None] * stride_ot + offs_d[None, :], out.to(O.dtype.element_ty),
             mask=offs_m[:, None] < T)
    row = (b * H + h) * T  # LSE2 is a contiguous (B, H, T) float32 tensor
    tl.store(LSE2 + row + offs_m, lse2, mask=offs_m < T)


# ----------------------------------------------------------------------------------------------------
# Backward
# ----------------------------------------------------------------------------------------------------


@triton.jit
def _bwd_delta_kernel(O, DO, DELTA, stride_ob, stride_oh, stride_ot, stride_db, stride_dh, stride_dt, H, T,
                      HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr):
    """delta = rowsum(dO * O), the term that softmax's backward subtracts: dS = P * (dP - delta)."""
    start_m = tl.program_id(0)
    h = tl.program_id(1).to(tl.int64)
    b = tl.program_id(2).to(tl.int64)
    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    rows = offs_m[:, None] < T
    o_ptrs = O + b * stride_ob + h * stride_oh + offs_m[:, None] * stride_ot + offs_d[None, :]
    do_ptrs = DO + b * stride_db + h * stride_dh + offs_m[:, None] * stride_dt + offs_d[None, :]
    o = tl.load(o_ptrs, mask=rows, other=0.0)  # (BLOCK_M, D)
    do = tl.load(do_ptrs, mask=rows, other=0.0)
    delta = tl.sum(o.to(tl.float32) * do.to(tl.float32), 1)  # (BLOCK_M,)
    tl.store(DELTA + (b * H + h) * T + offs_m, delta, mask=offs_m < T)


@triton.jit
def _load_row_stats(LSE2, DELTA, row, offs_m, T):
    """Saved base-2 logsumexp (an empty row's -inf becomes +inf, so that its P is 0) and delta."""
    lse2 = tl.load(LSE2 + row + offs_m, mask=offs_m < T, other=0.0)
    lse2 = tl.where(lse2 == float("-inf"), float("inf"), lse2)
    delta = tl.load(DELTA + row + offs_m, mask=offs_m < T, other=0.0)
    return lse2, delta


@triton.jit
def _dkdv_tiles(dk, dv, k, v, q_base, do_base, LSE2, DELTA, row, stride_qt, stride_dt, offs_n, lo, hi, T, S,
                window, qk_scale, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, CAUSAL: tl.constexpr,
                WINDOWED: tl.constexpr, MASKED: tl.constexpr, DOT_PRECISION: tl.constexpr):
    """Accumulate dk and dv of one key block over the query tiles [lo, hi) of one query head."""
    offs_d = tl.arange(0, HEAD_DIM)
    for start_m in range(lo, hi, BLOCK_M):
        start_m = tl.multiple_of(start_m, BLOCK_M)
        offs_m = start_m + tl.arange(0, BLOCK_M)
        rows = offs_m[:, None] < T  # rows past T load as 0 (q = dO = delta = 0): they add nothing
        q = tl.load(q_base + offs_m[:, None] * stride_qt + offs_d[None, :], mask=rows, other=0.0)  # (BM, D)
        do = tl.load(do_base + offs_m[:, None] * stride_dt + offs_d[None, :], mask=rows, other=0.0)
        lse2, delta = _load_row_stats(LSE2, DELTA, row, offs_m, T)
        qk_t = tl.dot(k, tl.trans(q), input_precision=DOT_PRECISION) * qk_scale  # (BLOCK_N, BLOCK_M)
        p_t = tl.math.exp2(qk_t - lse2[None, :])  # recomputed probabilities, transposed
        if MASKED:
            pos = offs_m + (S - T)
            p_t = tl.where(_visible(offs_n[:, None], pos[None, :], S, window, CAUSAL, WINDOWED), p_t, 0.0)
        dv = tl.dot(p_t.to(do.dtype), do, dv, input_precision=DOT_PRECISION)  # dV += P^T dO
        dp_t = tl.dot(v, tl.trans(do), input_precision=DOT_PRECISION)  # (BLOCK_N, BLOCK_M) = (dO V^T)^T
        ds_t = p_t * (dp_t - delta[None, :])
        dk = tl.dot(ds_t.to(q.dtype), q, dk, input_precision=DOT_PRECISION)  # dK += dS^T Q (scaled later)
    return dk, dv


@triton.jit
def _bwd_dkdv_kernel(Q, K, V, DO, LSE2, DELTA, DK, DV,
                     stride_qb, stride_qh, stride_qt, stride_kb, stride_kh, stride_ks,
                     stride_vb, stride_vh, stride_vs, stride_db, stride_dh, stride_dt,
                     stride_dkb, stride_dkh, stride_dks, stride_dvb, stride_dvh, stride_dvs,
                     H, H_KV, T, S, GROUP, window, sm_scale, qk_scale, Q_BUCKET, K_BUCKET,
                     HEAD_DIM: tl.constexpr, CAUSAL: tl.constexpr, WINDOWED: tl.constexpr,
                     DOT_PRECISION: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """One program: dk, dv of BLOCK_N keys of one (batch, kv head), summed over the heads of its group.

    The program owns its rows of dk and dv, so no atomics are needed.
    """
    start_n = tl.program_id(0)
    h_kv = tl.program_id(1).to(tl.int64)
    b = tl.program_id(2).to(tl.int64)
    offs_n = start_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    keys = offs_n[:, None] < S
    kv_row = offs_n[:, None]
    k_ptrs = K + b * stride_kb + h_kv * stride_kh + kv_row * stride_ks + offs_d[None, :]
    v_ptrs = V + b * stride_vb + h_kv * stride_vh + kv_row * stride_vs + offs_d[None, :]
    k = tl.load(k_ptrs, mask=keys, other=0.0)  # (BLOCK_N, D), kept on chip for the whole program
    v = tl.load(v_ptrs, mask=keys, other=0.0)
    dk = tl.zeros([BLOCK_N, HEAD_DIM], tl.float32)
    dv = tl.zeros([BLOCK_N, HEAD_DIM], tl.float32)
    lo, full_lo, full_hi, hi = _query_range(start_n, T, S, window, BLOCK_M, BLOCK_N, CAUSAL, WINDOWED)
    for g in range(GROUP):
        h = h_kv * GROUP + g
        q_base = Q + b * stride_qb + h * stride_qh
        do_base = DO + b * stride_db + h * stride_dh
        row = (b * H + h) * T
        dk, dv = _dkdv_tiles(dk, dv, k, v, q_base, do_base, LSE2, DELTA, row, stride_qt, stride_dt, offs_n,
                             lo, full_lo, T, S, window, qk_scale,
                             HEAD_DIM, BLOCK_M, CAUSAL, WINDOWED, True, DOT_PRECISION)
        dk, dv = _dkdv_tiles(dk, dv, k, v, q_base, do_base, LSE2, DELTA, row, stride_qt, stride_dt, offs_n,
                             full_lo, full_hi, T, S, window, qk_scale,
                             HEAD_DIM, BLOCK_M, CAUSAL, WINDOWED, False, DOT_PRECISION)
        dk, dv = _dkdv_tiles(dk, dv, k, v, q_base, do_base, LSE2, DELTA, row, stride_qt, stride_dt, offs_n,
                             full_hi, hi, T, S, window, qk_scale,
                             HEAD_DIM, BLOCK_M, CAUSAL, WINDOWED, True, DOT_PRECISION)
    dk = dk * sm_scale
    dk_ptrs = DK + b * stride_dkb + h_kv * stride_dkh + kv_row * stride_dks + offs_d[None, :]
    dv_ptrs = DV + b * stride_dvb + h_kv * stride_dvh + kv_row * stride_dvs + offs_d[None, :]
    tl.store(dk_ptrs, dk.to(DK.dtype.element_ty), mask=keys)
    tl.store(dv_ptrs, dv.to(DV.dtype.element_ty), mask=keys)


@triton.jit
def _dq_tiles(dq, q, do, lse2, delta, k_base, v_base, stride_ks, stride_vs, pos, lo, hi, S, window, qk_scale,
              HEAD_DIM: tl.constexpr, BLOCK_N: tl.constexpr, CAUSAL: tl.constexpr, WINDOWED: tl.constexpr,
              MASKED: tl.constexpr, DOT_PRECISION: tl.constexpr):
    """Accumulate dq of one query block over the key tiles [lo, hi)."""
    offs_d = tl.arange(0, HEAD_DIM)
    for start_n in range(lo, hi, BLOCK_N):
        start_n = tl.multiple_of(start_n, BLOCK_N)
        offs_n = start_n + tl.arange(0, BLOCK_N)
        k, v = _load_kv_tile(k_base, v_base, stride_ks, stride_vs, offs_n, offs_d, S, MASKED)  # (BLOCK_N, D)
        qk = tl.dot(q, tl.trans(k), input_precision=DOT_PRECISION) * qk_scale  # (BLOCK_M, BLOCK_N)
        p = tl.math.exp2(qk - lse2[:, None])
        if MASKED:
            p = tl.where(_visible(offs_n[None, :], pos[:, None], S, window, CAUSAL, WINDOWED), p, 0.0)
        dp = tl.dot(do, tl.trans(v), input_precision=DOT_PRECISION)  # (BLOCK_M, BLOCK_N)
        ds = p * (dp - delta[:, None])
        dq = tl.dot(ds.to(k.dtype), k, dq, input_precision=DOT_PRECISION)  # dQ += dS K (scale applied later)
    return dq


@triton.jit
def _bwd_dq_kernel(Q, K, V, DO, LSE2, DELTA, DQ,
                   stride_qb, stride_qh, stride_qt, stride_kb, stride_kh, stride_ks,
                   stride_vb, stride_vh, stride_vs, stride_db, stride_dh, stride_dt,
                   stride_dqb, stride_dqh, stride_dqt,
                   H, T, S, GROUP, window, sm_scale, qk_scale, Q_BUCKET, K_BUCKET,
                   HEAD_DIM: tl.constexpr, CAUSAL: tl.constexpr, WINDOWED: tl.constexpr,
                   DOT_PRECISION: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """One program: dq of BLOCK_M query rows of one (batch, head), over the key tiles they can see."""
    start_m = tl.num_programs(0) - 1 - tl.program_id(0)  # the longest blocks start first
    h = tl.program_id(1).to(tl.int64)
    b = tl.program_id(2).to(tl.int64)
    h_kv = h // GROUP
    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    rows = offs_m[:, None] < T
    q_row = offs_m[:, None]
    q_ptrs = Q + b * stride_qb + h * stride_qh + q_row * stride_qt + offs_d[None, :]
    do_ptrs = DO + b * stride_db + h * stride_dh + q_row * stride_dt + offs_d[None, :]
    q = tl.load(q_ptrs, mask=rows, other=0.0)  # (BLOCK_M, D), kept on chip for the whole program
    do = tl.load(do_ptrs, mask=rows, other=0.0)
    lse2, delta = _load_row_stats(LSE2, DELTA, (b * H + h) * T, offs_m, T)
    pos = offs_m + (S - T)
    k_base = K + b * stride_kb + h_kv * stride_kh
    v_base = V + b * stride_vb + h_kv * stride_vh
    dq = tl.zeros([BLOCK_M, HEAD_DIM], tl.float32)
    lo, full_lo, full_hi, hi = _key_range(start_m, T, S, window, BLOCK_M, BLOCK_N, CAUSAL, WINDOWED)
    dq = _dq_tiles(dq, q, do, lse2, delta, k_base, v_base, stride_ks, stride_vs, pos, lo, full_lo,
                   S, window, qk_scale, HEAD_DIM, BLOCK_N, CAUSAL, WINDOWED, True, DOT_PRECISION)
    dq = _dq_tiles(dq, q, do, lse2, delta, k_base, v_base, stride_ks, stride_vs, pos, full_lo, full_hi,
                   S, window, qk_scale, HEAD_DIM, BLOCK_N, CAUSAL, WINDOWED, False, DOT_PRECISION)
    dq = _dq_tiles(dq, q, do, lse2, delta, k_base, v_base, stride_ks, stride_vs, pos, full_hi, hi,
                   S, window, qk_scale, HEAD_DIM, BLOCK_N, CAUSAL, WINDOWED, True, DOT_PRECISION)
    dq = dq * sm_scale
    dq_ptrs = DQ + b * stride_dqb + h * stride_dqh + q_row * stride_dqt + offs_d[None, :]
    tl.store(dq_ptrs, dq.to(DQ.dtype.element_ty), mask=rows)


# ----------------------------------------------------------------------------------------------------
# GPU launch configs: autotuned per head dim, mask kind and sequence-length bucket
# ----------------------------------------------------------------------------------------------------


def _configs(shapes: list[tuple[int, int, int, int]]) -> list[triton.Config]:
    return [triton.Config({"BLOCK_M": m, "BLOCK_N": n}, num_warps=w, num_stages=s) for m, n, w, s in shapes]


_TUNE_KEY = ["HEAD_DIM", "CAUSAL", "WINDOWED", "DOT_PRECISION", "Q_BUCKET", "K_BUCKET"]
# (BLOCK_M, BLOCK_N, num_warps, num_stages), separately for D <= 64 and D = 128: at D = 128 the register
# file is the limit (the candidates were chosen to compile for sm_90 without spilling registers), and
# BLOCK_M = 16 serves decoding (T = 1).
_CONFIGS = {
    # forward: large query blocks (q and the output accumulator stay in registers), 32-128 keys per tile
    ("fwd", "small"): [(128, 64, 4, 3), (128, 64, 8, 3), (128, 128, 8, 3), (128, 32, 4, 4), (64, 64, 4, 3),
                       (16, 64, 4, 2)],
    ("fwd", "large"): [(128, 64, 8, 3), (128, 64, 8, 2), (128, 32, 8, 3), (64, 32, 4, 3), (16, 64, 4, 2)],
    # dk/dv: a program holds BLOCK_N keys (k, v, dk, dv) and streams small query tiles
    ("dkdv", "small"): [(32, 128, 8, 3), (32, 64, 4, 3), (64, 64, 4, 2), (64, 128, 8, 2), (16, 64, 4, 2)],
    ("dkdv", "large"): [(16, 64, 8, 2), (32, 64, 8, 2), (64, 64, 8, 2), (16, 32, 4, 2), (32, 32, 4, 2)],
    # dq: a program holds BLOCK_M queries (q, dO, dq) and streams small key tiles
    ("dq", "small"): [(128, 32, 8, 3), (64, 32, 4, 3), (64, 64, 4, 2), (128, 64, 8, 2), (16, 32, 4, 2)],
    ("dq", "large"): [(64, 32, 8, 2), (128, 32, 8, 2), (32, 32, 4, 2), (64, 16, 4, 2), (16, 32, 4, 2)],
}
_KERNELS = {"fwd": _fwd_kernel, "dkdv": _bwd_dkdv_kernel, "dq": _bwd_dq_kernel}
_TUNED = {
    (name, size): triton.autotune(_configs(shapes), key=_TUNE_KEY)(_KERNELS[name])
    for (name, size), shapes in _CONFIGS.items()
}


def _launch(name: str, grid, **args) -> None:
    """Autotuned launch on CUDA; fixed small blocks under the interpreter (no timing on CPU)."""
    if args["Q"].device.type == "cuda":
        _TUNED[name, "small" if args["HEAD_DIM"] <= 64 else "large"][grid](**args)
    else:
        blocks = {"BLOCK_M": INTERPRETER_BLOCK_M, "BLOCK_N": INTERPRETER_BLOCK_N}
        _KERNELS[name][grid(blocks)](**args, **blocks)


def _bucket(n: int) -> int:
    """Sequence-length bucket for the autotuner's key: powers of two up to 4096."""
    return min(triton.next_power_of_2(n), 4096)


def _strides(name: str, t: torch.Tensor, row: str) -> dict[str, int]:
    """The kernels' stride_<name>b, stride_<name>h, stride_<name><row> of a (B, H, rows, D) tensor (unit D stride)."""
    return {f"stride_{name}b": t.stride(0), f"stride_{name}h": t.stride(1), f"stride_{name}{row}": t.stride(2)}


def _shared(q, k, causal: bool, window: int | None, scale: float) -> dict:
    """Arguments every forward and backward launch takes: sizes, mask, scale, autotuner buckets."""
    T, S = q.shape[2], k.shape[2]
    return dict(
        Q=q, K=k, T=T, S=S, GROUP=q.shape[1] // k.shape[1], window=window or 0, qk_scale=scale * _LOG2E.value,
        Q_BUCKET=_bucket(T), K_BUCKET=_bucket(S), HEAD_DIM=q.shape[3], CAUSAL=causal,
        WINDOWED=window is not None, DOT_PRECISION=_dot_precision(q.dtype),
        **_strides("q", q, "t"), **_strides("k", k, "s"),
    )


def _forward(q, k, v, causal: bool, window: int | None, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Launch the forward kernel; return the output and the base-2 logsumexp (B, Hq, T) float32."""
    B, H, T, D = q.shape
    out = torch.empty((B, H, T, D), dtype=q.dtype, device=q.device)
    lse2 = torch.empty((B, H, T), dtype=torch.float32, device=q.device)
    grid = lambda meta: (triton.cdiv(T, meta["BLOCK_M"]), H, B)
    _launch("fwd", grid, **_shared(q, k, causal, window, scale), V=v, O=out, LSE2=lse2, H=H,
            **_strides("v", v, "s"), **_strides("o", out, "t"))
    return out, lse2


def _backward(q, k, v, out, lse2, do, causal: bool, window: int | None, scale: float):
    """Launch delta, dk/dv and dq kernels; return dq, dk, dv in the inputs' dtype."""
    B, H, T, D = q.shape
    H_KV, S = k.shape[1], k.shape[2]
    delta = torch.empty((B, H, T), dtype=torch.float32, device=q.device)
    block = 64 if q.device.type == "cuda" else INTERPRETER_BLOCK_M
    _bwd_delta_kernel[(triton.cdiv(T, block), H, B)](
        O=out, DO=do, DELTA=delta, **_strides("o", out, "t"), **_strides("d", do, "t"), H=H, T=T,
        HEAD_DIM=D, BLOCK_M=block,
    )
    dq = torch.empty((B, H, T, D), dtype=q.dtype, device=q.device)
    dk = torch.empty((B, H_KV, S, D), dtype=k.dtype, device=k.device)
    dv = torch.empty((B, H_KV, S, D), dtype=v.dtype, device=v.device)
    common = dict(**_shared(q, k, causal, window, scale), V=v, DO=do, LSE2=lse2, DELTA=delta, H=H, sm_scale=scale,
                  **_strides("v", v, "s"), **_strides("d", do, "t"))
    _launch("dkdv", lambda meta: (triton.cdiv(S, meta["BLOCK_N"]), H_KV, B), **common, DK=dk, DV=dv, H_KV=H_KV,
            **_strides("dk", dk, "s"), **_strides("dv", dv, "s"))
    _launch("dq", lambda meta: (triton.cdiv(T, meta["BLOCK_M"]), H, B), **common, DQ=dq,
            **_strides("dq", dq, "t"))
    return dq, dk, dv


def _dot_precision(dtype: torch.dtype) -> str:
    """float32 inputs multiply in full precision (not TF32), so float32 results match the reference."""
    return "ieee" if dtype == torch.float32 else "tf32"



class _FlashAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, causal, window, scale):
        with on_device(q.device):
            out, lse2 = _forward(q, k, v, causal, window, scale)
        ctx.save_for_backward(q, k, v, out, lse2)  # no (T, S) matrix: the backward recomputes it
        ctx.causal, ctx.window, ctx.scale = causal, window, scale
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, do):
        q, k, v, out, lse2 = ctx.saved_tensors
        with on_device(q.device):
            dq, dk, dv = _backward(q, k, v, out, lse2, do.contiguous(), ctx.causal, ctx.window, ctx.scale)
        return dq, dk, dv, None, None, None


def _prepare(op: str, q, k, v, causal: bool, window, scale):
    """Validate the inputs; return them with a unit stride on the head dim, and the scale."""
    scale = check_arguments(op, q, k, v, causal, window, scale)
    check_launchable(op, q=q, k=k, v=v)
    check_dtype(op, "q", q, DTYPES)
    for name, t in (("k", k), ("v", v)):
        if t.dtype != q.dtype:
            raise TypeError(f"{op}: q, k and v must share one dtype, got q {q.dtype} and {name} {t.dtype}")
    D = q.shape[-1]
    if D not in HEAD_DIMS:
        raise ValueError(f"{op}: head dim D must be one of {HEAD_DIMS} (a power of two, not padded), got {D}")
    q, k, v = (t if t.stride(-1) == 1 else t.contiguous() for t in (q, k, v))
    for name, t in (("q", q), ("k", k), ("v", v)):  # row offsets inside one (batch, head) are 32-bit
        if t.shape[2] * t.stride(2) >= 2**31:
            raise ValueError(f"{op}: {name} is too long for 32-bit row offsets (length {t.shape[2]}, "
                             f"row stride {t.stride(2)})")
    return q, k, v, scale


def flash_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    causal: bool = False,
    window: int | None = None,
    scale: float | None = None,
) -> torch.Tensor:
    """softmax(q k^T * scale + mask) v with the tiled Triton kernels, differentiable in q, k and v.

    q (B, Hq, T, D), k and v (B, Hkv, S, D) -> (B, Hq, T, D) in q's dtype. See the module docstring for
    the exact semantics (bottom-right aligned queries, causal, sliding window, GQA, empty rows).
    """
    q, k, v, scale = _prepare("flash_attention", q, k, v, bool(causal), window, scale)
    return _FlashAttention.apply(q, k, v, bool(causal), window, scale)


def flash_attention_forward(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    causal: bool = False,
    window: int | None = None,
    scale: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward only, returning (output, logsumexp): the two tensors the backward keeps besides q, k, v.

    logsumexp (B, Hq, T) float32 is the natural-log normalizer of each query row's softmax (-inf for an
    empty row); the kernels store it in base 2.
    """
    q, k, v, scale = _prepare("flash_attention_forward", q, k, v, bool(causal), window, scale)
    with torch.no_grad(), on_device(q.device):
        out, lse2 = _forward(q, k, v, bool(causal), window, scale)
    return out, lse2 * _LN2.value

