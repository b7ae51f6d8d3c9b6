"""Benchmarks: positions recorded through the web action path against a raw Temporal baseline, in one run."""
