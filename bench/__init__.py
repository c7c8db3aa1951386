"""Benchmarks: one module per benchmark, run by `make bench` (bench/run_all.py)."""
