"""Where kernels may run (kernels/runtime.py), and the lazy, side-effect-free `kernels` package."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import kernels
from kernels.runtime import check_dtype, check_launchable, check_same_device, interpreter_enabled

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("value", "enabled"), [("1", True), ("true", True), ("0", False), ("", False)])
def test_interpreter_enabled_reads_the_variable(monkeypatch, value, enabled):
    monkeypatch.setenv("TRITON_INTERPRET", value)
    assert interpreter_enabled() is enabled


def test_interpreter_disabled_when_unset(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    assert interpreter_enabled() is False


def test_cpu_runs_through_the_interpreter(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert check_launchable("op", a=torch.ones(2), b=torch.ones(3)) == torch.device("cpu")


def test_cpu_without_interpreter_says_how_to_run(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(RuntimeError, match=r"op: got CPU tensors.*CUDA device.*TRITON_INTERPRET=1.*op_ref"):
        check_launchable("op", a=torch.ones(2))


def test_missing_optional_tensors_are_ignored(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert check_launchable("op", a=torch.ones(2), bias=None) == torch.device("cpu")


def test_tensors_on_different_devices_are_named():
    with pytest.raises(ValueError, match="op: all tensors must be on one device, got a on cpu, b on meta"):
        check_launchable("op", a=torch.ones(2), b=torch.ones(2, device="meta"))


def test_check_same_device_returns_the_device_and_skips_absent_tensors():
    assert check_same_device("op", a=torch.ones(2), b=None, c=torch.zeros(1)) == torch.device("cpu")
    assert check_same_device("op", a=torch.ones(2, device="meta")) == torch.device("meta")
    with pytest.raises(ValueError, match="op: got no tensor"):
        check_same_device("op", a=None)


def test_references_share_the_device_check():
    """The selective-scan reference refuses mixed devices with the same message as the kernels."""
    u = torch.randn(1, 2, 3)
    args = dict(u=u, delta=torch.rand(1, 2, 3), A=-torch.rand(2, 4), B=torch.randn(2, 4), C=torch.randn(2, 4))
    with pytest.raises(ValueError, match="selective_scan_ref: all tensors must be on one device, got .*A on meta"):
        kernels.selective_scan_ref(**{**args, "A": args["A"].to("meta")})


def test_other_devices_are_refused(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    with pytest.raises(RuntimeError, match="op: tensors on meta are not supported"):
        check_launchable("op", a=torch.ones(2, device="meta"))


@pytest.mark.parametrize(
    "dtype, accepted", [(torch.float32, True), (torch.float16, True), (torch.float64, False), (torch.int64, False)]
)
def test_check_dtype_accepts_exactly_the_allowed_dtypes(dtype, accepted):
    x = torch.ones(2, dtype=dtype)
    if accepted:
        assert check_dtype("op", "x", x, (torch.float32, torch.float16)) is None
    else:
        with pytest.raises(TypeError, match="op: x has dtype .* it must be one of float32, float16$"):
            check_dtype("op", "x", x, (torch.float32, torch.float16))


def test_check_dtype_names_argument_and_allowed_dtypes():
    expected = "op: x has dtype int64; through the interpreter it must be one of float32$"
    with pytest.raises(TypeError, match=expected):
        check_dtype("op", "x", torch.ones(2, dtype=torch.int64), (torch.float32,))


def test_bfloat16_is_gpu_only():
    allowed = (torch.float32, torch.bfloat16)
    expected = "x has dtype bfloat16; through the interpreter it must be one of float32$"
    with pytest.raises(TypeError, match=expected):
        check_dtype("op", "x", torch.ones(2, dtype=torch.bfloat16), allowed)
    assert check_dtype("op", "x", torch.ones(2, dtype=torch.bfloat16, device="meta"), allowed) is None  # off CPU


def test_check_dtype_names_the_device():
    with pytest.raises(TypeError, match="on meta it must be one of float32"):
        check_dtype("op", "w", torch.ones(2, dtype=torch.float64, device="meta"), (torch.float32,))


def test_import_kernels_does_not_import_triton():
    code = (
        "import sys, kernels; "
        "assert 'triton' not in sys.modules, 'import kernels imported triton'; "
        "assert not [m for m in sys.modules if m.startswith('kernels.ops')]; "
        "print(kernels.__file__)"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()).resolve() == ROOT / "kernels" / "__init__.py"


def test_unknown_name_lists_the_ops():
    with pytest.raises(AttributeError, match=r"no attribute 'nonexistent'; it offers .*rms_norm.*softmax"):
        kernels.nonexistent  # noqa: B018


def test_public_names_resolve_lazily_to_callables():
    assert {"softmax", "softmax_ref", "rms_norm", "rms_norm_ref"} <= set(dir(kernels))
    for name in ("softmax", "softmax_ref", "rms_norm", "rms_norm_ref"):
        assert callable(getattr(kernels, name))
    assert kernels.rms_norm.__module__ == "kernels.ops.rms_norm.triton"
    assert kernels.rms_norm_ref.__module__ == "kernels.ops.rms_norm.ref"


def run_python(code: str, **env_changes: str | None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    for name, value in env_changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)


def test_turning_the_interpreter_on_after_the_kernels_were_imported_is_reported():
    """TRITON_INTERPRET=1 set after a kernel module was imported (off) cannot take effect: say so clearly."""
    code = """
import os, torch, kernels
from kernels.runtime import interpreter_enabled
kernels.softmax  # imports kernels/ops/softmax/triton.py: its kernels are decorated now, for compilation
assert interpreter_enabled() is False
os.environ["TRITON_INTERPRET"] = "1"
for attempt in (interpreter_enabled, lambda: kernels.softmax(torch.ones(2, 3))):
    try:
        attempt()
        print("no error")
    except RuntimeError as err:
        print("RuntimeError:", err)
"""
    done = run_python(code, TRITON_INTERPRET=None)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 2, done.stdout
    for line in lines:  # the check itself, and a kernel called on CPU tensors
        assert line.startswith("RuntimeError: TRITON_INTERPRET=1 was set after the kernels were imported"), line
        assert "restart the kernel or process" in line


def test_the_interpreter_on_before_the_import_runs_cpu_tensors():
    code = """
import torch, kernels
x = torch.randn(3, 5)
assert torch.allclose(kernels.softmax(x), kernels.softmax_ref(x), atol=1e-6)
print("ok")
"""
    done = run_python(code, TRITON_INTERPRET="1")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
