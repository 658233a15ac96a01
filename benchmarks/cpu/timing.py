"""The one CPU timer of the benchmarks: torch.utils.benchmark.Timer, with process CPU time beside wall-clock.

    timing = measure(lambda: model(ids), min_run_time=2.0)
    print(timing.median_wall, timing.median_cpu, timing.output.shape)

`Timer.blocked_autorange` runs the call once to size its blocks (that call warms up and is not counted),
then times blocks of calls until `min_run_time` seconds are measured (at least one block). Wall-clock is
the Timer's; process CPU time is read around each call as well: with one thread it barely moves when
other programs share the machine, while wall-clock does. Both are per call, one value per block.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.benchmark import Timer


@dataclass
class Timing:
    wall: list[float]  # seconds per call, one value per measured block
    cpu: list[float]  # process CPU seconds per call, same blocks
    output: Any  # what the last call returned

    @property
    def best_wall(self) -> float:
        return min(self.wall)

    @property
    def best_cpu(self) -> float:
        return min(self.cpu)

    @property
    def median_wall(self) -> float:
        return statistics.median(self.wall)

    @property
    def median_cpu(self) -> float:
        return statistics.median(self.cpu)


def measure(fn: Callable[..., Any], setup: Callable[[], tuple] | None = None, min_run_time: float = 0.0) -> Timing:
    """Time fn(*setup()) with torch.utils.benchmark.Timer at torch's current thread count.

    setup (untimed) runs before each block and returns the call's arguments (fresh tensors, say);
    min_run_time=0 measures a single block after the warm-up call, for calls that take long.
    """
    if min_run_time < 0:
        raise ValueError(f"min_run_time must be >= 0 seconds, got {min_run_time}")
    box: dict[str, Any] = {"cpu": [], "out": None}
    timer = Timer(
        stmt="start = process_time()\nbox['out'] = fn(*args)\nbox['cpu'].append(process_time() - start)",
        setup="args = make_args()",
        globals={"fn": fn, "make_args": setup or tuple, "box": box, "process_time": time.process_time},
        num_threads=torch.get_num_threads(),
    )
    cpu_per_block: list[float] = []

    def after_block(number: int, _seconds: float) -> None:  # called by the Timer after each measured block
        cpu_per_block.append(sum(box["cpu"][-number:]) / number)

    measurement = timer.blocked_autorange(min_run_time=min_run_time, callback=after_block)
    return Timing(list(measurement.times), cpu_per_block, box["out"])


def run_report(report: Callable[[], None], argv: list[str] | None, description: str) -> None:
    """Parse `--threads` from argv (none by default, so `python -m benchmarks.cpu` can call it), run report()
    with that many torch CPU threads, and restore the previous count afterwards."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: steadier if shared)")
    args = parser.parse_args([] if argv is None else argv)
    threads_before = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        report()
    finally:
        torch.set_num_threads(threads_before)
