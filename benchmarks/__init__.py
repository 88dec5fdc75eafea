"""Benchmarks of the ledger against the machine's physical limits and against peers.

Run ``python -m benchmarks run [--scale small|full] [--only NAME] [--json FILE]``;
see benchmarks/README.md. Nothing here is imported by the ``ledger`` package.
"""
