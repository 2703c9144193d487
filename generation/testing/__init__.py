"""Checkpoint builders and reference helpers for tests and benchmarks (never the product)."""
