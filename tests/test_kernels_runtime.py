"""Where kernels may run (kernels/runtime.py), and the lazy, side-effect-free `kernels` package."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import kernels
from kernels.runtime import check_dtype, check_launchable, interpreter_enabled

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


def test_other_devices_are_refused(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    with pytest.raises(RuntimeError, match="op: tensors on meta are not supported"):
        check_launchable("op", a=torch.ones(2, device="meta"))


def test_check_dtype_accepts_allowed():
    check_dtype("op", "x", torch.ones(2, dtype=torch.float16), (torch.float32, torch.float16))


def test_check_dtype_names_argument_and_allowed_dtypes():
    expected = "op: x has dtype int64; through the interpreter it must be one of float32$"
    with pytest.raises(TypeError, match=expected):
        check_dtype("op", "x", torch.ones(2, dtype=torch.int64), (torch.float32,))


def test_bfloat16_is_gpu_only():
    allowed = (torch.float32, torch.bfloat16)
    expected = "x has dtype bfloat16; through the interpreter it must be one of float32$"
    with pytest.raises(TypeError, match=expected):
        check_dtype("op", "x", torch.ones(2, dtype=torch.bfloat16), allowed)
    check_dtype("op", "x", torch.ones(2, dtype=torch.bfloat16, device="meta"), allowed)  # off CPU: allowed


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
