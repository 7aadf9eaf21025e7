"""Benchmarks: one script per measurement (run them as files), and `python -m benchmarks.gpu_acceptance`."""
