"""Run the GPU benchmarks and write one CSV per benchmark under benchmarks/results/.

    python -m benchmarks.gpu                  # every benchmarks/gpu/bench_*.py
    python -m benchmarks.gpu softmax rms_norm # only these

Each benchmark module defines `run() -> list[dict]`; every row gets the GPU name and the torch and
triton versions. Needs a CUDA GPU: the benchmarks time compiled kernels, which the interpreter cannot.
"""

from __future__ import annotations

import argparse
import csv
import importlib
import sys
from pathlib import Path

import torch

from benchmarks import RESULTS, discover
from benchmarks.gpu import common


def available() -> list[str]:
    """Names of the benchmark modules (bench_<name>.py -> <name>)."""
    return discover("benchmarks.gpu", "run")


def write_csv(name: str, rows: list[dict]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.csv"
    fields = list(dict.fromkeys(key for row in rows for key in row))
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help=f"benchmarks to run (default: all of {available()})")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("benchmarks.gpu needs a CUDA GPU; the committed CSVs under benchmarks/results/ are from one.")
        return 2
    unknown = sorted(set(args.names) - set(available()))
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; available: {available()}")
    env = common.environment()
    for name in args.names or available():
        module = importlib.import_module(f"benchmarks.gpu.bench_{name}")
        rows = [{**env, **row} for row in module.run()]
        path = write_csv(name, rows)
        shown = path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path
        print(f"{name}: {len(rows)} rows -> {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
