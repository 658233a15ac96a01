"""The package layout of COURSE.md: who may import what, and which references run without triton."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# A meta-path finder that makes `import triton` fail, as on macOS where no triton wheel exists.
BLOCK_TRITON = """
import importlib.abc, sys
class _NoTriton(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "triton" or name.startswith("triton."):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
        return None
sys.meta_path.insert(0, _NoTriton())
"""


def imported_modules(path: Path) -> set[str]:
    """Top-level names of every module `path` imports (absolute imports, at any depth in the file)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def package_files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def test_only_minimodels_hf_imports_transformers():
    offenders = [
        str(path.relative_to(ROOT)) for path in package_files("minimodels")
        if not path.relative_to(ROOT).parts[1] == "hf"
        and any(name.split(".")[0] == "transformers" for name in imported_modules(path))
    ]
    assert offenders == [], f"only minimodels/hf may import transformers; these do too: {offenders}"


def test_the_import_scan_sees_nested_imports(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from transformers.models import llama\n    import triton.language as tl\n")
    assert {"transformers.models", "triton.language"} <= imported_modules(sample)


def test_kernels_never_import_minimodels():
    offenders = [str(p.relative_to(ROOT)) for p in package_files("kernels")
                 if any(n.split(".")[0] == "minimodels" for n in imported_modules(p))]
    assert offenders == [], f"kernels must not import minimodels: {offenders}"


def test_triton_is_imported_only_by_the_triton_files():
    offenders = [str(p.relative_to(ROOT)) for p in package_files("kernels") + package_files("minimodels")
                 if any(n.split(".")[0] == "triton" for n in imported_modules(p))
                 and not p.name.startswith("triton")]
    assert offenders == [], f"only kernels/ops/<op>/triton*.py may import triton: {offenders}"


def run_without_triton(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("TRITON_INTERPRET", None)
    return subprocess.run([sys.executable, "-c", BLOCK_TRITON + code], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_the_blocker_really_blocks_triton():
    done = run_without_triton("import triton")
    assert done.returncode != 0 and "blocked by the test" in done.stderr


def test_every_reference_runs_without_triton():
    code = """
import torch, kernels
torch.manual_seed(0)
x = torch.randn(3, 8)
print(kernels.softmax_ref(x).sum(-1))
print(kernels.rms_norm_ref(x, torch.ones(8)).shape)
q = torch.randn(1, 2, 5, 16); k = torch.randn(1, 1, 5, 16)
print(kernels.flash_attention_ref(q, k, k, causal=True).shape)
b, d, n, L = 1, 4, 3, 6
args = dict(u=torch.randn(b, d, L), delta=torch.rand(b, d, L), A=-torch.rand(d, n),
            B=torch.randn(b, n, L), C=torch.randn(b, n, L))
y_ref = kernels.selective_scan_ref(**args)
y_chunked = kernels.selective_scan_chunked(**args)
assert torch.allclose(y_ref, y_chunked, atol=1e-5)
state = torch.zeros(b, d, n)
print(kernels.selective_state_update_ref(state, torch.randn(b, d), torch.rand(b, d), args["A"],
      torch.randn(b, n), torch.randn(b, n)).shape)
print(kernels.attention_mask(3, 5).shape)
import minimodels
from minimodels import Llama, LlamaConfig, MambaLM, MambaConfig
print(Llama(LlamaConfig())(torch.zeros(1, 4, dtype=torch.long)).shape)
print(MambaLM(MambaConfig(vocab_size=32, d_model=16, n_layers=1))(torch.zeros(1, 4, dtype=torch.long)).shape)
import sys
assert "triton" not in sys.modules
print("ok")
"""
    done = run_without_triton(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("ok")


def test_a_kernel_without_triton_fails_with_the_import_error():
    done = run_without_triton("import torch, kernels\nkernels.softmax(torch.randn(2, 3))")
    assert done.returncode != 0
    assert "ModuleNotFoundError" in done.stderr and "triton" in done.stderr


@pytest.mark.parametrize("name", ["GPT", "GPTConfig", "Llama", "LlamaConfig", "MambaLM", "MambaConfig", "Seq2Seq",
                                  "from_hf", "train", "TrainConfig", "generate", "generate_cached", "load_corpus",
                                  "CharTokenizer", "save_checkpoint", "load_checkpoint"])
def test_public_names_stay_at_the_top_level(name):
    import minimodels

    assert name in minimodels.__all__ and callable(getattr(minimodels, name))
