"""The course's `kernels` package must not be taken for Hugging Face's `kernels` by transformers."""

import importlib.metadata
import subprocess
import sys


def test_distribution_metadata_maps_kernels_to_this_project():
    owners = importlib.metadata.packages_distributions().get("kernels", [])
    assert "minimodels" in owners, f"`kernels` maps to {owners}; install the project (`make venv`)"


def test_transformers_does_not_think_hf_kernels_is_installed():
    code = (
        "import sys; from transformers.utils import is_kernels_available; "
        "print(is_kernels_available(), 'kernels.softmax' in sys.modules, 'triton' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False", "False"], out
