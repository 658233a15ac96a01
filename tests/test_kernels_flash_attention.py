"""kernels.flash_attention against its PyTorch reference, and the reference against torch SDPA.

On CPU the kernels run through the Triton interpreter (tests/conftest.py sets TRITON_INTERPRET=1), so every
shape here is tiny; sizes that are not multiples of the 16-wide interpreter blocks exercise the edges.
"""

import math

import pytest
import torch
import torch.nn.functional as F

import kernels.ops.flash_attention.triton as fa
from kernels import attention_mask, flash_attention, flash_attention_forward, flash_attention_ref

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
TOL = {torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 3e-2}


def make_qkv(B, Hq, Hkv, T, S, D, dtype=torch.float32, seed=0, device=DEVICE):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, Hq, T, D, generator=g).to(device, dtype)
    k = torch.randn(B, Hkv, S, D, generator=g).to(device, dtype)
    v = torch.randn(B, Hkv, S, D, generator=g).to(device, dtype)
    return q, k, v


def outputs_and_grads(fn, q, k, v, do, **kwargs):
    q, k, v = (t.detach().clone().requires_grad_(True) for t in (q, k, v))
    out = fn(q, k, v, **kwargs)
    out.backward(do)
    return out.detach(), q.grad, k.grad, v.grad


def _named(name):
    return lambda message: f"{name}: {message}"


def assert_matches_reference(q, k, v, tol, **kwargs):
    do = torch.randn(q.shape, generator=torch.Generator().manual_seed(1)).to(q.device, q.dtype)
    got = outputs_and_grads(flash_attention, q, k, v, do, **kwargs)
    want = outputs_and_grads(flash_attention_ref, q, k, v, do, **kwargs)
    for name, a, b in zip(("out", "dq", "dk", "dv"), got, want, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape, name
        assert torch.isfinite(a).all(), f"{name} has non-finite values"
        # half precision: the error grows with the values (dk, dv sum over many query rows)
        atol = tol if q.dtype == torch.float32 else tol * max(1.0, b.float().abs().max().item())
        torch.testing.assert_close(a.float(), b.float(), atol=atol, rtol=tol, msg=_named(name))


# (B, Hq, Hkv, T, S, D, causal, window)
CASES = [
    (1, 2, 1, 37, 37, 16, False, None),
    (1, 2, 1, 37, 37, 16, True, None),
    (1, 4, 1, 37, 37, 16, True, 3),  # multi-query
    (1, 4, 2, 37, 37, 32, True, 10),
    (1, 2, 2, 1, 23, 16, True, None),  # decoding: one query at the end
    (1, 2, 2, 1, 23, 16, False, None),
    (1, 2, 1, 17, 40, 16, True, None),  # chunked prefill: T < S
    (1, 2, 1, 17, 40, 16, True, 7),
    (1, 2, 2, 23, 50, 32, False, None),
    (1, 2, 1, 37, 37, 16, True, 1),
    (1, 2, 1, 37, 37, 16, True, 64),  # window longer than the sequence
    (1, 2, 1, 64, 64, 16, True, 20),
    (1, 2, 1, 40, 17, 16, True, None),  # T > S: the first rows see no key
    (1, 2, 1, 40, 17, 16, True, 4),
]


@pytest.mark.parametrize("B,Hq,Hkv,T,S,D,causal,window", CASES)
def test_float32_matches_reference(B, Hq, Hkv, T, S, D, causal, window):
    q, k, v = make_qkv(B, Hq, Hkv, T, S, D)
    assert_matches_reference(q, k, v, 1e-4, causal=causal, window=window)


@pytest.mark.parametrize(
    "B,Hq,Hkv,T,S,D,causal,window",
    [
        (1, 2, 1, 37, 37, 16, False, None),
        (1, 4, 2, 37, 37, 32, True, None),
        (1, 2, 1, 17, 40, 16, True, 5),
        (2, 2, 2, 29, 29, 16, True, 3),
    ],
)
def test_float16_matches_reference(B, Hq, Hkv, T, S, D, causal, window):
    q, k, v = make_qkv(B, Hq, Hkv, T, S, D, dtype=torch.float16)
    assert_matches_reference(q, k, v, 1e-2, causal=causal, window=window)


@pytest.mark.parametrize("block_m,block_n", [(32, 16), (16, 32)])
@pytest.mark.parametrize("causal,window", [(False, None), (True, 5), (True, 20)])
def test_uneven_block_shapes(monkeypatch, block_m, block_n, causal, window):
    """Query and key blocks of different sizes: the skipped / masked / unmasked tile ranges still line up."""
    if DEVICE == "cuda":
        pytest.skip("block sizes are picked by the autotuner on a GPU")
    monkeypatch.setattr(fa, "INTERPRETER_BLOCK_M", block_m)
    monkeypatch.setattr(fa, "INTERPRETER_BLOCK_N", block_n)
    q, k, v = make_qkv(1, 2, 1, 45, 53, 16)
    assert_matches_reference(q, k, v, 1e-4, causal=causal, window=window)


def test_window_covering_everything_equals_causal():
    q, k, v = make_qkv(1, 2, 1, 37, 37, 16)
    wide = flash_attention(q, k, v, causal=True, window=37)
    torch.testing.assert_close(wide, flash_attention_ref(q, k, v, causal=True), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(wide, flash_attention(q, k, v, causal=True, window=1000), atol=0, rtol=0)


def test_window_one_attends_only_to_itself():
    """window=1 keeps only the query's own key: each output row is the same row of v (of its kv head)."""
    q, k, v = make_qkv(1, 4, 2, 37, 37, 16)
    out = flash_attention(q, k, v, causal=True, window=1)
    torch.testing.assert_close(out, v.repeat_interleave(2, dim=1), atol=1e-6, rtol=1e-6)


def test_skipped_tiles_are_never_read():
    """Keys that no query can see are NaN: tiles holding only those keys must be skipped, not masked.

    One block of 16 queries at positions 48..63 with window 16 sees keys 33..63, so the key tiles 0..31
    are outside every window. Reading them would put NaN into the output (0 * NaN) and into their dk.
    """
    q, k, v = make_qkv(1, 2, 1, 16, 64, 16)
    k_bad, v_bad = k.clone(), v.clone()
    k_bad[:, :, :32] = float("nan")
    v_bad[:, :, :32] = float("nan")
    do = torch.randn(q.shape, generator=torch.Generator().manual_seed(1)).to(q.device)
    out, dq, dk, dv = outputs_and_grads(flash_attention, q, k_bad, v_bad, do, causal=True, window=16)
    want = outputs_and_grads(flash_attention_ref, q, k, v, do, causal=True, window=16)
    seen = (out, dq, dk[:, :, 32:], dv[:, :, 32:])  # (dk and dv of the visible keys only)
    for name, a, b in zip(("out", "dq", "dk", "dv"), seen, want, strict=True):
        b = b[:, :, 32:] if name in ("dk", "dv") else b
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4, msg=_named(name))
    assert torch.equal(dk[:, :, :32], torch.zeros_like(dk[:, :, :32]))
    assert torch.equal(dv[:, :, :32], torch.zeros_like(dv[:, :, :32]))


def test_empty_rows_give_zeros_and_finite_grads():
    """T > S with causal: rows before the first key output 0, have logsumexp -inf, and get no NaN in grads."""
    T, S = 40, 17
    q, k, v = make_qkv(1, 2, 1, T, S, 16)
    do = torch.randn(q.shape, generator=torch.Generator().manual_seed(1)).to(q.device)
    out, dq, dk, dv = outputs_and_grads(flash_attention, q, k, v, do, causal=True)
    empty = T - S  # rows 0 .. T-S-1 sit at negative positions
    assert torch.equal(out[:, :, :empty], torch.zeros_like(out[:, :, :empty]))
    assert torch.equal(dq[:, :, :empty], torch.zeros_like(dq[:, :, :empty]))
    assert all(torch.isfinite(t).all() for t in (out, dq, dk, dv))
    _, lse = flash_attention_forward(q, k, v, causal=True)
    assert lse.shape == (1, 2, T) and lse.dtype == torch.float32
    assert torch.isneginf(lse[:, :, :empty]).all()
    scores = q @ k.repeat_interleave(2, dim=1).transpose(-1, -2) / math.sqrt(16)
    scores = scores.masked_fill(~attention_mask(T, S, causal=True, device=q.device), float("-inf"))
    want = torch.logsumexp(scores, -1)  # (1, 2, T)
    torch.testing.assert_close(lse[:, :, empty:], want[:, :, empty:], atol=1e-5, rtol=1e-5)


# exp2 overflows to inf (harmlessly) in padded key rows whose results are never stored
@pytest.mark.filterwarnings("ignore:overflow encountered in exp2:RuntimeWarning")
@pytest.mark.parametrize("dtype,scale", [(torch.float32, None), (torch.float16, 2500.0)])
def test_extreme_logits_stay_finite(dtype, scale):
    """Scores around +-1e4 (softmax close to one-hot): no overflow, and the same result as the reference."""
    q, k, v = make_qkv(1, 2, 1, 37, 37, 16, dtype=dtype)
    if scale is None:
        q = q * 1e4  # with scale 1/sqrt(16), score std = 1e4
    scores = (q.float() @ k.float().transpose(-1, -2)).abs().amax() * (scale or 0.25)
    assert scores > 1e4
    do = torch.randn(q.shape, generator=torch.Generator().manual_seed(1)).to(q.device, dtype)
    got = outputs_and_grads(flash_attention, q, k, v, do, causal=True, scale=scale)
    want = outputs_and_grads(flash_attention_ref, q, k, v, do, causal=True, scale=scale)
    for name, a, b in zip(("out", "dq", "dk", "dv"), got, want, strict=True):
        assert torch.isfinite(a).all(), name
        tol = 1e-2 * max(1.0, b.float().abs().max().item())
        torch.testing.assert_close(a.float(), b.float(), atol=tol, rtol=1e-2, msg=_named(name))


def test_strided_inputs():
    """q, k, v as (B, T, H, D) tensors viewed as (B, H, T, D): the kernels follow the strides."""
    g = torch.Generator().manual_seed(0)
    q = torch.randn(1, 21, 2, 16, generator=g).to(DEVICE).transpose(1, 2)
    k = torch.randn(1, 21, 1, 16, generator=g).to(DEVICE).transpose(1, 2)
    v = torch.randn(1, 21, 1, 16, generator=g).to(DEVICE).transpose(1, 2)
    assert not q.is_contiguous()
    assert_matches_reference(q, k, v, 1e-4, causal=True, window=6)


def test_sum_backward_and_package_name():
    """A broadcast upstream gradient (from .sum(), stride 0) works; `kernels.flash_attention` is the op."""
    import kernels

    q, k, v = make_qkv(1, 2, 1, 9, 9, 16)
    q_ref = q.clone().requires_grad_()
    q.requires_grad_()
    kernels.flash_attention(q, k, v, causal=True).sum().backward()
    flash_attention_ref(q_ref, k, v, causal=True).sum().backward()
    torch.testing.assert_close(q.grad, q_ref.grad, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("causal,window", [(False, None), (True, None), (True, 5)])
@pytest.mark.parametrize("Hq,Hkv", [(2, 2), (4, 1)])
def test_reference_matches_sdpa(causal, window, Hq, Hkv):
    """The reference against torch's scaled_dot_product_attention (explicit mask, GQA by enable_gqa)."""
    q, k, v = make_qkv(2, Hq, Hkv, 19, 26, 16)
    do = torch.randn(q.shape, generator=torch.Generator().manual_seed(1)).to(q.device)
    mask = attention_mask(19, 26, causal, window, device=q.device)

    def sdpa(q, k, v, causal, window):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=Hq != Hkv)

    got = outputs_and_grads(flash_attention_ref, q, k, v, do, causal=causal, window=window)
    want = outputs_and_grads(sdpa, q, k, v, do, causal=causal, window=window)
    for name, a, b in zip(("out", "dq", "dk", "dv"), got, want, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5, msg=_named(name))


def test_attention_mask_convention():
    """Bottom-right alignment and the window p - W < j <= p, spelled out on a small case."""
    mask = attention_mask(2, 5, causal=True, window=2)  # queries at positions 3 and 4
    assert mask.tolist() == [[False, False, True, True, False], [False, False, False, True, True]]
    assert attention_mask(3, 2, causal=True).tolist() == [[False, False], [True, False], [True, True]]


def _bad_inputs():
    q, k, v = make_qkv(1, 2, 1, 8, 8, 16)
    randn = lambda *shape: torch.randn(*shape, device=DEVICE)
    return [
        (dict(q=q[0]), ValueError, r"q must have 4 dims"),
        (dict(v=v[:, :, :4]), ValueError, r"k and v must have the same shape"),
        (dict(k=k.expand(2, -1, -1, -1), v=v.expand(2, -1, -1, -1)), ValueError, r"same batch size"),
        (dict(k=randn(1, 1, 8, 32), v=randn(1, 1, 8, 32)), ValueError, r"same head dim"),
        (dict(q=randn(1, 3, 8, 16), k=randn(1, 2, 8, 16), v=randn(1, 2, 8, 16)), ValueError,
         r"divisible by the number of kv heads"),
        (dict(window=0, causal=True), ValueError, r"window must be >= 1"),
        (dict(window=4), ValueError, r"requires causal=True"),
        (dict(window=2.5, causal=True), TypeError, r"window must be an int"),
        (dict(k=k.half()), TypeError, r"share one dtype"),
        (dict(q=q.double(), k=k.double(), v=v.double()), TypeError, r"q has dtype float64"),
        (dict(q=randn(1, 2, 8, 24), k=randn(1, 1, 8, 24), v=randn(1, 1, 8, 24)), ValueError,
         r"head dim D must be one of"),
        (dict(v=torch.empty(1, 1, 8, 16, device="meta")), ValueError, r"one device"),
    ]


@pytest.mark.parametrize("index", range(12))
def test_bad_inputs_raise_clear_errors(index):
    q, k, v = make_qkv(1, 2, 1, 8, 8, 16)
    kwargs, error, match = _bad_inputs()[index]
    args = dict(q=q, k=k, v=v, causal=False, window=None)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        flash_attention(**args)


@pytest.mark.skipif(DEVICE == "cuda", reason="bfloat16 runs on the GPU")
def test_bfloat16_is_rejected_by_the_interpreter():
    q, k, v = (t.bfloat16() for t in make_qkv(1, 2, 1, 8, 8, 16, device="cpu"))
    with pytest.raises(TypeError, match=r"through the interpreter it must be one of"):
        flash_attention(q, k, v)


@pytest.mark.parametrize("op", [flash_attention, flash_attention_ref], ids=["kernel", "reference"])
@pytest.mark.parametrize(
    "scale, error, match",
    [
        (0.0, ValueError, r"scale must be finite and > 0 \(None means 1 / sqrt\(D\)\), got 0.0"),
        (-0.25, ValueError, r"scale must be finite and > 0 .*got -0.25"),
        (float("inf"), ValueError, r"scale must be finite and > 0 .*got inf"),
        ("0.25", TypeError, r"scale must be None or a real number, got str '0.25'"),
        (torch.tensor(0.25), TypeError, r"scale must be None or a real number, got Tensor"),
    ],
)
def test_bad_scale_is_named(op, scale, error, match):
    q, k, v = make_qkv(1, 2, 1, 8, 8, 16)
    with pytest.raises(error, match=rf"{op.__name__}: {match}"):
        op(q, k, v, causal=True, scale=scale)


def test_reference_rejects_bad_window_too():
    q, k, v = make_qkv(1, 2, 1, 8, 8, 16, device="cpu")
    with pytest.raises(ValueError, match=r"requires causal=True"):
        flash_attention_ref(q, k, v, window=3)


def test_cpu_without_interpreter_raises(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    q, k, v = make_qkv(1, 2, 1, 8, 8, 16, device="cpu")
    with pytest.raises(RuntimeError, match=r"TRITON_INTERPRET=1"):
        flash_attention(q, k, v)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize(
    "Hq,Hkv,T,S,D,causal,window",
    [
        (4, 4, 1000, 1000, 128, False, None),
        (8, 2, 1000, 1000, 128, True, None),
        (8, 2, 777, 1500, 64, True, 256),
        (4, 1, 2048, 2048, 64, True, 100),
        (4, 2, 1, 1025, 128, True, None),
        (4, 4, 300, 200, 32, True, 50),
    ],
)
def test_gpu_matches_reference(dtype, Hq, Hkv, T, S, D, causal, window):
    q, k, v = make_qkv(2, Hq, Hkv, T, S, D, dtype=dtype)
    assert_matches_reference(q, k, v, TOL[dtype], causal=causal, window=window)


@pytest.mark.gpu
@pytest.mark.parametrize("causal", [False, True])
def test_gpu_float32_and_sdpa(causal):
    q, k, v = make_qkv(2, 8, 2, 513, 513, 64)
    assert_matches_reference(q, k, v, 1e-4, causal=causal)
    q, k, v = (t.half() for t in (q, k, v))
    want = F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=True)
    torch.testing.assert_close(flash_attention(q, k, v, causal=causal), want, atol=1e-2, rtol=1e-2)
