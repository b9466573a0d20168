"""Benchmarks run by `labctl bench` (never part of the timed test suite)."""
