"""Makes `pytest conformance` work where the pytest11 entry point is not registered.

Normally the plugin arrives through the `nomyo_conformance` entry point; from a plain source
tree (package importable, distribution not installed) this conftest registers it, once.
"""

from __future__ import annotations

import importlib

import pytest


def pytest_addoption(parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager) -> None:
    plugin = importlib.import_module("conformance.plugin")
    if pluginmanager.is_registered(plugin) or pluginmanager.has_plugin("nomyo_conformance"):
        return
    pluginmanager.register(plugin, "conformance.plugin")
