"""warmgate's benchmarks (`make bench`, `python -m bench`): measurements with a same-run
baseline for every figure, never timed tests. See bench/README.md."""
