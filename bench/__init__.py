"""Benchmarks.

Each script runs the thing measured and a baseline in the same run (a bare endpoint, the download
alone, the naive loop) and prints ratios, never absolute thresholds. Run them with
``python -m bench.<name>``.
"""
