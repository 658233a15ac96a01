"""CPU timing of the chunked PyTorch selective scan against the sequential reference.

    python -m benchmarks.cpu selective_scan

Batch 2, dim 64, N 16, L 1024, float32, input-dependent B and C, with D, z, delta_bias and softplus (a
Mamba layer's call). Prints the median milliseconds per call of the forward and of forward + backward
for both (`benchmarks.cpu.timing.measure`), and the speedup, all measured in this run (torch's default
thread count).
"""

from __future__ import annotations

import torch

from benchmarks.cpu.timing import measure
from kernels import selective_scan_chunked, selective_scan_ref

BATCH, DIM, STATE, LENGTH = 2, 64, 16, 1024
MIN_RUN_S = {"chunked": 2.0, "reference": 0.0}  # the reference's backward takes seconds: one timed call


def make_inputs(seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    randn = lambda *shape: torch.randn(*shape, generator=g)
    return dict(
        u=randn(BATCH, DIM, LENGTH),
        delta=randn(BATCH, DIM, LENGTH) * 0.5 - 1,
        A=-torch.exp(randn(DIM, STATE) * 0.5),
        B=randn(BATCH, STATE, LENGTH),
        C=randn(BATCH, STATE, LENGTH),
        D=randn(DIM),
        z=randn(BATCH, DIM, LENGTH),
        delta_bias=randn(DIM) * 0.1,
        delta_softplus=True,
    )


def median_ms(scan, inputs: dict, backward: bool, min_run_time: float) -> float:
    """Median wall-clock milliseconds of one call (and its backward), on inputs made fresh for each block."""

    def fresh_inputs():
        return ({k: (v.clone().requires_grad_(backward) if isinstance(v, torch.Tensor) else v)
                 for k, v in inputs.items()},)

    def call(leaves):
        if backward:
            scan(**leaves).sum().backward()
        else:
            with torch.no_grad():
                scan(**leaves)

    return measure(call, setup=fresh_inputs, min_run_time=min_run_time).median_wall * 1e3


def main() -> list[dict]:
    inputs = make_inputs()
    torch.testing.assert_close(selective_scan_chunked(**inputs), selective_scan_ref(**inputs), atol=1e-4, rtol=1e-4)
    print(f"selective scan on CPU: batch {BATCH}, dim {DIM}, N {STATE}, L {LENGTH}, float32, "
          f"{torch.get_num_threads()} threads")
    rows = []
    for mode, backward in (("forward", False), ("forward+backward", True)):
        chunked = median_ms(selective_scan_chunked, inputs, backward, MIN_RUN_S["chunked"])
        ref = median_ms(selective_scan_ref, inputs, backward, MIN_RUN_S["reference"])
        rows.append(dict(mode=mode, chunked_ms=chunked, ref_ms=ref, speedup=ref / chunked))
        print(f"{mode:>17}: chunked {chunked:8.1f} ms   sequential reference {ref:8.1f} ms   "
              f"speedup {ref / chunked:5.1f}x")
    return rows


if __name__ == "__main__":
    main()
