"""Benchmarks of nomyo_ref and mock_router: ``python -m tests.bench [--json] [--rounds N]``.

Every figure is a ratio against a floor or a peer measured side by side in the same run, so
the numbers stay meaningful on a shared, noisy machine. Nothing here asserts a timing; the one
test (``test_bench_smoke.py``) only proves the command produces every figure.
"""
