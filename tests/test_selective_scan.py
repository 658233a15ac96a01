"""kernels.selective_scan: the Triton scan, the chunked PyTorch scan and the decode step against the
sequential reference (forward, gradients by autograd through the reference, last state, bad input).

On CPU the Triton kernels run through the interpreter (conftest sets TRITON_INTERPRET=1), whose associative
scan costs one Python call per element: shapes stay tiny and L = 37 spans three chunks of BLOCK_L = 16.
"""

import pytest
import torch

import kernels
from kernels import (
    selective_scan,
    selective_scan_chunked,
    selective_scan_ref,
    selective_state_update,
    selective_state_update_ref,
)

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
BATCH, DIM, N, LENGTH, GROUPS = 2, 4, 4, 37, 2
TOL = dict(atol=1e-4, rtol=1e-4)
GRAD_TOL = dict(atol=2e-4, rtol=1e-3)
NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")

ALL = dict(D=True, z=True, delta_bias=True, delta_softplus=True, return_last_state=True)
NONE = dict(D=False, z=False, delta_bias=False, delta_softplus=False, return_last_state=False)


def make_bc(form: str, batch: int, dim: int, n: int, length: int) -> torch.Tensor:
    shapes = {"invariant": (dim, n), "variable": (batch, n, length), "grouped": (batch, GROUPS, n, length)}
    return torch.randn(shapes[form], device=DEVICE)


def make_inputs(b_form, c_form=None, options=ALL, batch=BATCH, dim=DIM, n=N, length=LENGTH,
                dtype=torch.float32, seed=0):
    """Random scan arguments (inputs in `dtype`, parameters in float32) and the flags, as one kwargs dict."""
    torch.manual_seed(seed)
    softplus = options["delta_softplus"]
    # softplus(delta) lands near 0.3; without softplus delta is drawn positive, as Mamba's always is
    delta = torch.randn(batch, dim, length, device=DEVICE) * 0.5 - 1 if softplus else (
        torch.rand(batch, dim, length, device=DEVICE) * 0.5 + 0.02)
    args = dict(
        u=torch.randn(batch, dim, length, device=DEVICE).to(dtype),
        delta=delta.to(dtype),
        A=-torch.exp(torch.randn(dim, n, device=DEVICE) * 0.5),  # negative: a decaying state
        B=make_bc(b_form, batch, dim, n, length).to(dtype),
        C=make_bc(c_form or b_form, batch, dim, n, length).to(dtype),
        D=torch.randn(dim, device=DEVICE) if options["D"] else None,
        z=torch.randn(batch, dim, length, device=DEVICE).to(dtype) if options["z"] else None,
        delta_bias=torch.randn(dim, device=DEVICE) * 0.3 if options["delta_bias"] else None,
    )
    return dict(args, delta_softplus=softplus, return_last_state=options["return_last_state"])


def as_pair(result, kwargs):
    return result if kwargs["return_last_state"] else (result, None)


def check_forward(fn, kwargs, tol=TOL, **extra):
    out, last = as_pair(fn(**kwargs, **extra), kwargs)
    out_ref, last_ref = as_pair(selective_scan_ref(**kwargs), kwargs)
    assert out.shape == out_ref.shape and out.dtype == out_ref.dtype == kwargs["u"].dtype
    torch.testing.assert_close(out.float(), out_ref.float(), **tol)
    if kwargs["return_last_state"]:
        assert last.shape == (kwargs["u"].shape[0], *kwargs["A"].shape) and last.dtype == torch.float32
        torch.testing.assert_close(last, last_ref, **tol)


def check_gradients(fn, kwargs, **extra):
    """Gradients of fn for every tensor input (and through last_state) against autograd of the reference."""
    names = [k for k in NAMES if kwargs[k] is not None]

    def run(f):
        leaves = {k: kwargs[k].detach().clone().requires_grad_() for k in names}
        result = f(**{**kwargs, **leaves}, **extra) if f is fn else f(**{**kwargs, **leaves})
        out, last = as_pair(result, kwargs)
        torch.manual_seed(1)
        loss = (out * torch.randn_like(out)).sum()
        if last is not None:
            loss = loss + (last * torch.randn_like(last)).sum()
        return dict(zip(names, torch.autograd.grad(loss, [leaves[k] for k in names]), strict=True))

    grads, grads_ref = run(fn), run(selective_scan_ref)
    for name in names:
        assert grads[name].shape == kwargs[name].shape and grads[name].dtype == kwargs[name].dtype, name
        label = lambda message, k=name: f"gradient of {k}: {message}"
        torch.testing.assert_close(grads[name], grads_ref[name], **GRAD_TOL, msg=label)


# ------------------------------------------------------------------- an independent step-by-step oracle


def scan_by_hand(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                 return_last_state=False):
    """mamba-ssm's recurrence one (batch, channel) at a time, in float64, written here from the definition:

    dt = softplus(delta + bias); h_t = exp(dt A) h_{t-1} + dt B_t u_t; y_t = <h_t, C_t> + D u_t; y *= silu(z).
    B_t / C_t of channel d: row d of a (dim, N) operand (time-invariant), column t of a (batch, N, L) one,
    or of group d // (dim / G) of a (batch, G, N, L) one.
    """
    batch, dim, length = u.shape
    u, delta, A, B, C = (t.double() for t in (u, delta, A, B, C))

    def operand(M, b, d, t):
        if M.dim() == 2:
            return M[d]
        if M.dim() == 3:
            return M[b, :, t]
        return M[b, d // (dim // M.shape[1]), :, t]

    out = torch.zeros(batch, dim, length, dtype=torch.float64, device=u.device)
    last = torch.zeros(batch, dim, A.shape[1], dtype=torch.float64, device=u.device)
    for b in range(batch):
        for d in range(dim):
            h = torch.zeros(A.shape[1], dtype=torch.float64, device=u.device)
            for t in range(length):
                dt = delta[b, d, t] + (delta_bias[d].double() if delta_bias is not None else 0.0)
                if delta_softplus:
                    dt = torch.log1p(torch.exp(dt))
                h = torch.exp(dt * A[d]) * h + dt * operand(B, b, d, t) * u[b, d, t]
                y = (h * operand(C, b, d, t)).sum()
                if D is not None:
                    y = y + D[d].double() * u[b, d, t]
                if z is not None:
                    y = y * torch.sigmoid(z[b, d, t].double()) * z[b, d, t].double()
                out[b, d, t] = y
            last[b, d] = h
    return (out, last) if return_last_state else out


FORMS = [("invariant", "invariant"), ("grouped", "grouped"), ("invariant", "grouped"), ("grouped", "variable")]


@pytest.mark.parametrize("scan", [selective_scan_ref, selective_scan_chunked, selective_scan],
                         ids=["reference", "chunked", "triton"])
@pytest.mark.parametrize("b_form, c_form", FORMS, ids=[f"B_{b}-C_{c}" for b, c in FORMS])
def test_grouped_and_time_invariant_forms_equal_a_loop_written_here(scan, b_form, c_form):
    kwargs = make_inputs(b_form, c_form, options=ALL, length=21)
    out, last = scan(**kwargs)
    out_hand, last_hand = scan_by_hand(**kwargs)
    torch.testing.assert_close(out.double(), out_hand, **TOL)
    torch.testing.assert_close(last.double(), last_hand, **TOL)


@pytest.mark.parametrize("form", ["invariant", "grouped"])
def test_reference_gradients_equal_those_of_the_loop_written_here(form):
    """The reference is the gradients' oracle for the kernels: check it against the loop's (float64)."""
    kwargs = make_inputs(form, options=ALL, length=9)
    names = [k for k in NAMES if kwargs[k] is not None]

    def grads(scan, dtype):
        leaves = {k: kwargs[k].detach().to(dtype).requires_grad_() for k in names}
        out, last = scan(**{**kwargs, **leaves})
        g = torch.Generator().manual_seed(1)  # the same float32 weights for both
        w_out, w_last = (torch.randn(t.shape, generator=g).to(t.device, t.dtype) for t in (out, last))
        loss = (out * w_out).sum() + (last * w_last).sum()
        return torch.autograd.grad(loss, [leaves[k] for k in names])

    for name, got, want in zip(names, grads(selective_scan_ref, torch.float32), grads(scan_by_hand, torch.float64),
                               strict=True):
        scale = want.abs().max().item()  # float32 against float64: compare at the gradient's scale
        torch.testing.assert_close(got.double(), want, atol=1e-5 * scale, rtol=1e-5,
                                   msg=lambda m, k=name: f"gradient of {k}: {m}")


def test_grouped_decode_step_equals_the_loop_written_here():
    kwargs = make_inputs("grouped", options=ALL, length=6)
    out_hand, last_hand = scan_by_hand(**kwargs)
    for update in (selective_state_update, selective_state_update_ref):
        state = torch.zeros(BATCH, DIM, N, device=DEVICE)
        ys = [update(state, kwargs["u"][..., t], kwargs["delta"][..., t], kwargs["A"], kwargs["B"][..., t],
                     kwargs["C"][..., t], kwargs["D"], kwargs["z"][..., t], kwargs["delta_bias"], dt_softplus=True)
              for t in range(6)]
        torch.testing.assert_close(torch.stack(ys, dim=-1).double(), out_hand, **TOL)
        torch.testing.assert_close(state.double(), last_hand, **TOL)


# ------------------------------------------------------------------------------------- Triton scan, forward


@pytest.mark.parametrize("options", [ALL, NONE], ids=["all_options", "no_options"])
@pytest.mark.parametrize("form", ["invariant", "variable", "grouped"])
def test_triton_forward_matches_reference(form, options):
    check_forward(selective_scan, make_inputs(form, options=options))


@pytest.mark.parametrize(
    "b_form, c_form, options",
    [
        ("invariant", "grouped", dict(NONE, D=True, return_last_state=True)),
        ("variable", "invariant", dict(NONE, z=True, delta_bias=True)),
    ],
    ids=["invariant_B_grouped_C_D", "variable_B_invariant_C_z_bias"],
)
def test_triton_forward_mixed_forms_and_options(b_form, c_form, options):
    check_forward(selective_scan, make_inputs(b_form, c_form, options))


def test_triton_forward_single_padded_chunk_and_strided_input():
    kwargs = make_inputs("variable", options=ALL, length=21)
    kwargs["u"] = kwargs["u"].transpose(1, 2).contiguous().transpose(1, 2)  # same values, L not innermost
    check_forward(selective_scan, kwargs, block_l=32)


def test_triton_forward_float16():
    kwargs = make_inputs("grouped", options=ALL, dtype=torch.float16)
    check_forward(selective_scan, kwargs, tol=dict(atol=2e-2, rtol=2e-2))


# ----------------------------------------------------------------------------------- Triton scan, gradients


@pytest.mark.parametrize("form", ["invariant", "variable", "grouped"])
def test_triton_gradients_match_autograd_of_reference(form):
    check_gradients(selective_scan, make_inputs(form, options=ALL))


def test_triton_gradients_without_options():
    check_gradients(selective_scan, make_inputs("grouped", "invariant", options=NONE))


# ------------------------------------------------------------------------------------------- chunked scan


@pytest.mark.parametrize("chunk_size", [1, 5, 16, 64])
@pytest.mark.parametrize("form", ["invariant", "variable", "grouped"])
def test_chunked_matches_reference(form, chunk_size):
    kwargs = make_inputs(form, options=ALL, dim=6, n=5)
    check_forward(selective_scan_chunked, kwargs, chunk_size=chunk_size)
    check_gradients(selective_scan_chunked, kwargs, chunk_size=chunk_size)


def test_chunked_without_options_and_mixed_forms():
    kwargs = make_inputs("variable", "grouped", options=NONE)
    check_forward(selective_scan_chunked, kwargs, chunk_size=8)
    check_gradients(selective_scan_chunked, kwargs, chunk_size=8)


def test_chunked_is_stable_under_strong_decay():
    """delta * A = -200 per step: a plain cumulative-sum trick would need exp(+10000); chunked must not."""
    kwargs = make_inputs("variable", options=NONE, length=200)
    kwargs["delta"] = torch.full_like(kwargs["delta"], 20.0)
    kwargs["A"] = torch.full_like(kwargs["A"], -10.0)
    out = selective_scan_chunked(**kwargs, chunk_size=64)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, selective_scan_ref(**kwargs), **TOL)


def test_chunked_float16_returns_input_dtype():
    kwargs = make_inputs("variable", options=ALL, dtype=torch.float16)
    check_forward(selective_scan_chunked, kwargs, tol=dict(atol=1e-2, rtol=1e-2))


# -------------------------------------------------------------------------------------------- decode step


@pytest.mark.parametrize("form", ["variable", "grouped"])
@pytest.mark.parametrize("update", [selective_state_update, selective_state_update_ref])
def test_state_update_steps_like_the_scan(update, form):
    """Feeding the tokens one at a time through the decode step reproduces the scan's outputs and state."""
    kwargs = make_inputs(form, options=ALL, length=9)
    out_ref, last_ref = selective_scan_ref(**kwargs)
    state = torch.zeros(BATCH, DIM, N, device=DEVICE)
    ys = [
        update(state, kwargs["u"][..., t], kwargs["delta"][..., t], kwargs["A"], kwargs["B"][..., t],
               kwargs["C"][..., t], kwargs["D"], kwargs["z"][..., t], kwargs["delta_bias"], dt_softplus=True)
        for t in range(9)
    ]
    torch.testing.assert_close(torch.stack(ys, dim=-1), out_ref, **TOL)
    torch.testing.assert_close(state, last_ref, **TOL)


def test_state_update_continues_a_prefill_with_half_inputs():
    """Prefill with the scan's last state, then one step: the Triton step equals the reference step."""
    kwargs = make_inputs("variable", options=NONE, length=8)
    _, state = selective_scan_ref(**dict(kwargs, return_last_state=True))
    x, dt, z = (torch.randn(BATCH, DIM, device=DEVICE).half() for _ in range(3))
    B, C = torch.randn(BATCH, N, device=DEVICE), torch.randn(BATCH, N, device=DEVICE)
    state_ref = state.clone()
    y = selective_state_update(state, x, dt, kwargs["A"], B, C, z=z, dt_softplus=True)
    y_ref = selective_state_update_ref(state_ref, x, dt, kwargs["A"], B, C, z=z, dt_softplus=True)
    assert y.dtype == torch.float16
    torch.testing.assert_close(y, y_ref, atol=1e-2, rtol=1e-2)
    torch.testing.assert_close(state, state_ref, **TOL)


# -------------------------------------------------------------------------------------------- bad input

SCANS = [selective_scan, selective_scan_ref, selective_scan_chunked]


@pytest.mark.parametrize("scan", SCANS, ids=lambda f: f.__name__)
@pytest.mark.parametrize(
    "change, error, match",
    [
        (dict(u=torch.randn(2, 4)), ValueError, r"u must have shape \(batch, dim, L\)"),
        (dict(delta=torch.rand(2, 4, 36)), ValueError, r"delta must have shape \(batch, dim, L\)"),
        (dict(A=-torch.rand(5, 4)), ValueError, r"A must have shape \(dim, N\) with dim=4"),
        (dict(A=-torch.rand(4, 4, dtype=torch.float64)), TypeError, "A must be float32, got float64"),
        (dict(B=torch.randn(2, 3, 4, 37)), ValueError, "dim=4 is not divisible by the number of groups G=3"),
        (dict(C=torch.randn(2, 5, 37)), ValueError, r"C must have shape \(dim, N\), \(batch, N, L\)"),
        (dict(D=torch.randn(3)), ValueError, r"D must have shape \(dim,\)"),
        (dict(delta_bias=torch.randn(4).double()), TypeError, "delta_bias must be float32"),
        (dict(z=torch.randn(2, 4, 37).half()), TypeError, "z must have u's dtype float32, got float16"),
        (dict(u=torch.randn(2, 4, 37).double()), TypeError, "u must be float32, float16 or bfloat16"),
        (dict(u=torch.randn(2, 4, 37, device="meta")), ValueError, "all tensors must be on one device"),
    ],
    ids=["u_rank", "delta_shape", "A_dim", "A_dtype", "groups", "C_shape", "D_shape", "bias_dtype",
         "z_dtype", "u_dtype", "device"],
)
def test_bad_scan_input_is_named(scan, change, error, match):
    kwargs = make_inputs("variable", options=ALL)
    kwargs = {k: (v.to(DEVICE) if isinstance(v, torch.Tensor) and v.device.type != "meta" else v)
              for k, v in {**kwargs, **change}.items()}
    with pytest.raises(error, match=match):
        scan(**kwargs)


UPDATES = [selective_state_update, selective_state_update_ref]


@pytest.mark.parametrize("update", UPDATES, ids=lambda f: f.__name__)
@pytest.mark.parametrize(
    "change, error, match",
    [
        (dict(state=torch.zeros(2, 4)), ValueError, r"state must have shape \(batch, dim, N\)"),
        (dict(x=torch.randn(2, 5)), ValueError, r"x must have shape \(batch, dim\)"),
        (dict(B=torch.randn(2, 3, 4)), ValueError, "dim=4 is not divisible by the number of groups G=3 of B"),
        (dict(A=-torch.rand(4, 4).half()), TypeError, "A must be float32, got float16"),
        (dict(dt=torch.randn(2, 4).half()), TypeError, "dt must have x's dtype float32"),
        (dict(x=torch.randn(2, 4, device="meta")), ValueError, "all tensors must be on one device"),
    ],
    ids=["state_rank", "x_shape", "groups", "A_dtype", "dt_dtype", "device"],
)
def test_bad_state_update_input_is_named(update, change, error, match):
    args = dict(state=torch.zeros(2, 4, 4), x=torch.randn(2, 4), dt=torch.randn(2, 4), A=-torch.rand(4, 4),
                B=torch.randn(2, 4), C=torch.randn(2, 4))
    args = {k: (v.to(DEVICE) if v.device.type != "meta" else v) for k, v in {**args, **change}.items()}
    with pytest.raises(error, match=match):
        update(**args)


def test_bad_block_l_and_chunk_size():
    kwargs = make_inputs("variable", options=NONE)
    with pytest.raises(ValueError, match="block_l must be a power of two >= 16, got 24"):
        selective_scan(**kwargs, block_l=24)
    with pytest.raises(ValueError, match="chunk_size must be >= 1, got 0"):
        selective_scan_chunked(**kwargs, chunk_size=0)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the interpreter guard concerns CPU tensors")
def test_cpu_tensors_without_interpreter_get_a_clear_error(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    kwargs = make_inputs("variable", options=NONE)
    with pytest.raises(RuntimeError, match="Triton compiles for CUDA only.*selective_scan_ref"):
        selective_scan(**kwargs)
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    with pytest.raises(TypeError, match="B has dtype bfloat16; through the interpreter"):
        selective_scan(**dict(kwargs, B=kwargs["B"].bfloat16()))


def test_kernels_selective_scan_is_the_op():
    """`kernels.selective_scan` is the function (no module shares its name)."""
    kwargs = make_inputs("variable", options=NONE, length=5)
    torch.testing.assert_close(kernels.selective_scan(**kwargs), selective_scan_ref(**kwargs), **TOL)
    assert kernels.selective_state_update_ref is selective_state_update_ref


# ------------------------------------------------------------------------------------------------ GPU only


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("form", ["variable", "grouped", "invariant"])
def test_gpu_larger_shapes(form, dtype):
    kwargs = make_inputs(form, options=ALL, batch=2, dim=64, n=16, length=300, dtype=dtype)
    check_forward(selective_scan, kwargs, tol=TOL if dtype == torch.float32 else dict(atol=5e-2, rtol=5e-2))
    if dtype == torch.float32:
        check_gradients(selective_scan, kwargs)
