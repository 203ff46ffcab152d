"""Spec, checks and report can never drift apart.

The requirement list in ``spec/requirements.json`` is the one source of ids. Every testable
client MUST needs at least one conformance check naming it, and no check may name an id the
list does not have. The ids are read from the check modules' source (``@pytest.mark.req``),
so this test needs no implementation and no server.
"""

from __future__ import annotations

import ast
import json
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
CHECKS = ROOT / "conformance" / "checks"


def _requirements() -> list[dict]:
    data = json.loads((ROOT / "spec" / "requirements.json").read_text(encoding="utf-8"))
    return [r for r in data["requirements"] if not r.get("retired")]


def _is_req_marker(node: ast.expr) -> bool:
    """True for ``pytest.mark.req`` / ``mark.req`` as a call's function."""
    return isinstance(node, ast.Attribute) and node.attr == "req" and (
        isinstance(node.value, ast.Attribute) and node.value.attr == "mark"
    )


def _ids_named_by_checks() -> dict[str, set[str]]:
    """Map each requirement id to the check modules whose ``req`` markers name it."""
    named: dict[str, set[str]] = {}
    for path in sorted(CHECKS.glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and _is_req_marker(node.func):
                for arg in node.args:
                    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                        named.setdefault(arg.value, set()).add(path.name)
    return named


@pytest.fixture(scope="module")
def named() -> dict[str, set[str]]:
    if not CHECKS.is_dir():
        pytest.fail("conformance/checks/ is missing: there are no conformance checks at all")
    return _ids_named_by_checks()


def test_checks_name_only_existing_requirements(named: dict[str, set[str]]) -> None:
    known = {r["id"] for r in _requirements()}
    unknown = {rid: sorted(mods) for rid, mods in named.items() if rid not in known}
    assert unknown == {}, f"checks name requirement ids the spec does not have: {unknown}"


def test_every_testable_client_must_has_a_check(named: dict[str, set[str]]) -> None:
    uncovered = [
        r["id"]
        for r in _requirements()
        if r["level"] in ("MUST", "MUST NOT")
        and r["applies_to"] in ("client", "both")
        and r.get("testable", True)
        and r["id"] not in named
    ]
    assert uncovered == [], f"client MUSTs without a conformance check: {uncovered}"
