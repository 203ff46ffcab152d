"""Adapters: the one place where the checker side drives an implementation.

Built-ins: `nomyo_ref` (the reference client, in-process) and `nomyo` (the official client
from PyPI, in-process). `conformance.adapters.cmd` drives a testee in any language
(spec/testee.md); `conformance.adapters.seed_port.SeedPortAdapter` fits any Python port that
follows the seed API.
"""
