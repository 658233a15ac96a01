"""GPU benchmarks of the kernels (`python -m kernels.bench`); results land in results/ as CSV."""
