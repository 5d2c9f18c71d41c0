"""Benchmarks for tractor_reg: ``python -m bench`` (see ``bench/README.md``).

``bench.discovery`` measures registrar lookups and ``find_actor`` against a bare trio +
msgspec request/response echo over the same transport, side by side in one run.
``bench._roles`` holds the server and client processes the benchmark starts.
"""
