"""Fixtures for tests and benchmarks, never a product fallback: checkpoint builders
(random weights, locally trained tokenizers) and reference helpers that drive
transformers' own ``generate``."""
