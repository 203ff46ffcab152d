"""Helpers of the framework tests: throwaway check suites run by a real pytest subprocess.

Each scenario writes a tiny requirements list, a stub adapter and a few check modules into a
temporary directory and runs `python -m pytest` there, so the plugin is exercised exactly as
users meet it (entry point, options, exit status, files). Runs start in the background so a
test module can have several in flight on the two cores. (No tests in this module.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

REQUIREMENTS = {
    "version": "test",
    "requirements": [
        {"id": "AAA-1", "level": "MUST", "section": "1", "summary": "must one"},
        {"id": "AAA-2", "level": "MUST", "section": "1", "summary": "must two"},
        {"id": "AAA-3", "level": "SHOULD", "section": "1", "summary": "should three"},
        {"id": "BBB-1", "level": "MUST", "section": "2", "summary": "must b one"},
        {"id": "BBB-2", "level": "MUST", "section": "2", "summary": "never checked"},
        {"id": "BBB-3", "level": "MUST", "section": "2", "summary": "crashes"},
        {"id": "CCC-1", "level": "MUST", "section": "3", "summary": "not applicable here"},
        {"id": "CCC-2", "level": "MUST", "section": "3", "summary": "beyond any black box",
         "testable": False},
    ],
}

STUB_ADAPTER = '''
from conformance.adapter import Adapter, ErrorInfo, Outcome


class StubAdapter(Adapter):
    """Answers create() as kwargs["mode"] says: ok, unsupported, internal, or an error kind."""

    name = "stub"
    version = "9.9"
    language = "python"
    capabilities = frozenset({"create"})

    def create(self, config, model, messages, kwargs=None, *, client=None):
        mode = (kwargs or {}).get("mode", "ok")
        if mode == "ok":
            return Outcome.success({"model": model})
        if mode == "unsupported":
            return Outcome.unsupported("create")
        return Outcome.failure(ErrorInfo(mode, "boom", 400))
'''

# One check per verdict (AAA-1: PASS + FAIL -> FAIL; AAA-3 SHOULD -> NON-STRICT; BBB-1
# hypothesis FAIL with its minimal example; BBB-2 no check; BBB-3 ERRORED twice; CCC-1 N/A;
# CCC-2 not testable).
MIXED_CHECKS = """
import pytest
from hypothesis import given, strategies as st

from conformance import expect
from conformance.adapter import ClientConfig

CFG = ClientConfig("http://stub.invalid")


@pytest.mark.req("AAA-1")
def test_pass(impl):
    expect.ok(impl.create(CFG, "m", [], {"mode": "ok"}))


@pytest.mark.req("AAA-1", "AAA-2")
def test_must_fails(impl):
    expect.error(impl.create(CFG, "m", [], {"mode": "ok"}), kind="security")


@pytest.mark.req("AAA-3")
def test_should_fails(impl):
    expect.equal(1, 2, "the answer")


@pytest.mark.req("BBB-1")
@given(n=st.integers(min_value=0, max_value=1000))
def test_hypothesis_fails(impl, n):
    expect.true(n < 7, "n < 7", n)


@pytest.fixture
def broken():
    raise RuntimeError("fixture crashed")


@pytest.mark.req("BBB-3")
def test_fixture_errors(impl, broken):
    pass


@pytest.mark.req("BBB-3")
def test_internal_kind(impl):
    expect.ok(impl.create(CFG, "m", [], {"mode": "internal"}))


@pytest.mark.req("CCC-1")
@pytest.mark.requires("pinning")
def test_needs_pinning(impl):
    raise AssertionError("a check needing a missing capability must not run")


@pytest.mark.req("CCC-1")
def test_unsupported(impl):
    expect.ok(impl.generate_keys("."))
"""

EXPECTED_MIXED = {
    "requirements": {
        "AAA-1": "FAIL",
        "AAA-2": "FAIL",
        "AAA-3": "NON-STRICT",
        "BBB-1": "FAIL",
        "BBB-2": "no check",
        "BBB-3": "ERRORED",
        "CCC-1": "NOT APPLICABLE",
        "CCC-2": "not testable",
    },
    "checks": {
        "test_mixed::test_pass": "PASS",
        "test_mixed::test_must_fails": "FAIL",
        "test_mixed::test_should_fails": "NON-STRICT",
        "test_mixed::test_hypothesis_fails": "FAIL",
        "test_mixed::test_fixture_errors": "ERRORED",
        "test_mixed::test_internal_kind": "ERRORED",
        "test_mixed::test_needs_pinning": "NOT APPLICABLE",
        "test_mixed::test_unsupported": "NOT APPLICABLE",
    },
}


@dataclass
class Result:
    """A finished pytest run."""

    returncode: int
    stdout: str
    stderr: str
    directory: Path

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def report(self, name: str = "out") -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.directory / name / "report.json").read_text())
        return data

    def requirement_verdicts(self, name: str = "out") -> dict[str, str]:
        return {r["id"]: r["verdict"] for r in self.report(name)["requirements"]}

    def check_verdicts(self, name: str = "out") -> dict[str, str]:
        return {c["id"]: c["verdict"] for c in self.report(name)["checks"]}


class Run:
    """A pytest subprocess started now, waited for on `.result()`."""

    def __init__(self, directory: Path, *args: str, timeout: float = 120.0) -> None:
        self.directory = directory
        self.timeout = timeout
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(directory), str(ROOT)])
        env.pop("PYTEST_ADDOPTS", None)
        env.pop("PYTEST_XDIST_WORKER", None)
        self.proc = subprocess.Popen(
            # --assert=plain: with PYTHONDONTWRITEBYTECODE set, rewriting hypothesis's
            # modules in every run would cost more than the run itself.
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--assert=plain", *args],
            cwd=directory,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self._result: Result | None = None

    def result(self) -> Result:
        if self._result is None:
            out, err = self.proc.communicate(timeout=self.timeout)
            self._result = Result(self.proc.returncode, out, err, self.directory)
        return self._result


def write_suite(directory: Path, files: dict[str, str]) -> Path:
    """A throwaway suite: requirements.json, stub_adapter.py and the given files."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "requirements.json").write_text(json.dumps(REQUIREMENTS))
    (directory / "stub_adapter.py").write_text(STUB_ADAPTER)
    for name, text in files.items():
        (directory / name).write_text(textwrap.dedent(text))
    return directory


def stub_args(*extra: str) -> list[str]:
    """Options for a run against the stub adapter and the throwaway requirements."""
    return [
        "--impl=stub_adapter:StubAdapter",
        "--conformance-requirements=requirements.json",
        *extra,
    ]
