"""The distribution's three packages import, and the checker side stays independent."""

import importlib
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["nomyo_ref", "mock_router", "conformance"])
def test_package_imports(name: str) -> None:
    assert importlib.import_module(name).__doc__


def test_checker_never_imports_reference_client() -> None:
    """mock_router and conformance (outside its adapters) must not import nomyo_ref."""
    pattern = re.compile(r"^\s*(from|import)\s+nomyo_ref\b", re.MULTILINE)
    offenders = [
        str(path.relative_to(ROOT))
        for package in ("mock_router", "conformance")
        for path in (ROOT / package).rglob("*.py")
        if "adapters" not in path.relative_to(ROOT).parts and pattern.search(path.read_text())
    ]
    assert offenders == []
