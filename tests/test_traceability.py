"""Spec, checks and report can never drift apart.

The requirement list in ``spec/requirements.json`` is the one source of ids. Every testable
client MUST needs at least one conformance check naming it, and no check may name an id the
list does not have. The ids are read from the test items pytest actually collects (their
``req`` markers), not from text in a file: a marker in dead code, a check that fails to
collect, or a module pytest skips counts for nothing.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]

# Runs in a child interpreter: collect the conformance checks (nothing runs: --list-checks)
# and print each collected item's requirement ids as one JSON line.
COLLECT = textwrap.dedent(
    """
    import json, sys
    import pytest

    class Grab:
        def __init__(self):
            self.items = []

        @pytest.hookimpl(trylast=True)
        def pytest_collection_finish(self, session):
            for item in session.items:
                ids = [str(a) for m in item.iter_markers("req") for a in m.args]
                if ids:
                    self.items.append({"nodeid": item.nodeid, "req": ids})

    grab = Grab()
    code = pytest.main(
        ["conformance", "--list-checks", "-q", "-p", "no:cacheprovider"], plugins=[grab]
    )
    print("COLLECTED " + json.dumps({"code": int(code), "items": grab.items}))
    """
)


def _requirements() -> list[dict]:
    data = json.loads((ROOT / "spec" / "requirements.json").read_text(encoding="utf-8"))
    return data["requirements"]


def _in_force() -> list[dict]:
    return [r for r in _requirements() if not r.get("retired") and not r.get("replaced_by")]


@pytest.fixture(scope="module")
def collected() -> list[dict]:
    """The collected conformance checks with their requirement ids."""
    if not (ROOT / "conformance" / "checks").is_dir():
        pytest.fail("conformance/checks/ is missing: there are no conformance checks at all")
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"}
    proc = subprocess.run(
        [sys.executable, "-c", COLLECT],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("COLLECTED ")), None)
    assert line is not None, f"collection printed nothing:\n{proc.stdout[-3000:]}{proc.stderr}"
    data = json.loads(line.removeprefix("COLLECTED "))
    said = "\n".join(ln for ln in proc.stdout.splitlines() if not ln.startswith("COLLECTED "))
    assert data["code"] == 0, f"collecting the checks failed:\n{said[-3000:]}"
    assert data["items"], "no conformance check was collected"
    return data["items"]


def _named(items: list[dict]) -> dict[str, set[str]]:
    named: dict[str, set[str]] = {}
    for item in items:
        for rid in item["req"]:
            named.setdefault(rid, set()).add(item["nodeid"])
    return named


def test_checks_name_only_existing_requirements(collected: list[dict]) -> None:
    known = {r["id"] for r in _in_force()}
    unknown = {rid: sorted(n) for rid, n in _named(collected).items() if rid not in known}
    assert unknown == {}, f"checks name requirement ids not in force: {unknown}"


def test_every_testable_client_must_has_a_check(collected: list[dict]) -> None:
    named = _named(collected)
    uncovered = [
        r["id"]
        for r in _in_force()
        if r["level"] in ("MUST", "MUST NOT")
        and r["applies_to"] in ("client", "both")
        and r.get("testable", True)
        and r["id"] not in named
    ]
    assert uncovered == [], f"client MUSTs without a collected conformance check: {uncovered}"

