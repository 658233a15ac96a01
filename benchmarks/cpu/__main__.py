"""Run every CPU benchmark (`python -m benchmarks.cpu [name ...]`): each `bench_<name>.py` with a `main()`."""

from __future__ import annotations

import importlib
import sys

import torch

from benchmarks import discover


def main(argv: list[str]) -> int:
    available = discover("benchmarks.cpu", "main")
    names = argv or available
    unknown = sorted(set(names) - set(available))
    if unknown:
        print(f"unknown benchmark(s) {unknown}; available: {available}", file=sys.stderr)
        return 2
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for name in names:
        print(f"\n== {name} ==", flush=True)
        importlib.import_module(f"benchmarks.cpu.bench_{name}").main()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
