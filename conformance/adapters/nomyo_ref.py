"""The built-in `nomyo_ref` adapter: the reference client, driven through its public API only.

It is the one place on the checker side that imports nomyo_ref (the independence rule), and
it drives it exactly as any Python port would be driven.
"""

from __future__ import annotations

import importlib

from conformance.adapters.seed_port import CAPS_ALL, SeedPortAdapter


class NomyoRefAdapter(SeedPortAdapter):
    """nomyo_ref in-process: every capability, every ClientConfig field."""

    name = "nomyo_ref"
    capabilities = CAPS_ALL

    def __init__(self) -> None:
        super().__init__(importlib.import_module("nomyo_ref"))


def make() -> NomyoRefAdapter:
    return NomyoRefAdapter()
