"""Benchmarks of the course: `benchmarks.cpu` (`make bench`) and `benchmarks.gpu` (`make bench-gpu`).

Benchmarks are not tests: each prints ratios measured in one run against a baseline from the same run.
GPU benchmarks write CSVs (GPU name, driver, torch and triton versions in every row) under
benchmarks/results/, which notebooks 06, 07 and 09 plot.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def discover(package: str, attribute: str) -> list[str]:
    """Names <name> of the `bench_<name>.py` modules of `package` that define `attribute`."""
    folder = Path(importlib.import_module(package).__file__).parent
    names = [m.name for m in pkgutil.iter_modules([str(folder)]) if m.name.startswith("bench_")]
    return sorted(n[len("bench_"):] for n in names
                  if hasattr(importlib.import_module(f"{package}.{n}"), attribute))
