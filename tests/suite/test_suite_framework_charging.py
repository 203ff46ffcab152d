"""Verdicts from evidence: per-requirement charging, BLOCKED, and runs that judged nothing.

Each scenario is a real pytest run of a throwaway suite (see test_suite_framework_support),
so the plugin is judged the way users meet it: exit status, report.json, terminal text.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.suite.test_suite_framework_support import Run, stub_args, write_suite

CHARGED = """
import pytest
from hypothesis import given, strategies as st

from conformance import expect
from conformance.adapter import ClientConfig

CFG = ClientConfig("http://stub.invalid")


@pytest.mark.req("AAA-1", "AAA-2", "AAA-3")
def test_three_clauses(impl):
    with expect.clause("AAA-1"):
        expect.equal(1, 2, "first clause")
    with expect.clause("AAA-2"):
        expect.equal(1, 1, "second clause")
    with expect.clause("AAA-3"):
        expect.equal("x", "y", "third clause")


@pytest.mark.req("BBB-1", "BBB-3")
@given(n=st.integers(min_value=0, max_value=100))
def test_hypothesis_clause(impl, n):
    with expect.clause("BBB-1"):
        expect.true(n < 5, "n < 5", n)
    with expect.clause("BBB-3"):
        expect.true(True, "never false", n)


@pytest.mark.req("CCC-1")
def test_blocked(impl):
    expect.blocked("AAA-1", "no completion to look at")


@pytest.mark.req("AAA-2", "BBB-1")
def test_judged_then_blocked(impl):
    with expect.clause("AAA-2"):
        expect.equal(1, 1, "judged before the block")
    expect.blocked("AAA-1", "the rest needs AAA-1")


@pytest.mark.req("BBB-2")
def test_empty_evidence(impl):
    expect.evidence([], "a recorded request")
"""

FOREIGN_CLAUSE = """
import pytest
from conformance import expect

@pytest.mark.req("AAA-1")
def test_foreign(impl):
    with expect.clause("AAA-2"):
        pass

@pytest.mark.req("AAA-1")
def test_ok(impl):
    pass
"""

UNCONFIRMED = """
import pytest
from conformance import expect

@pytest.mark.req("AAA-1")
def test_passes(impl):
    pass

@pytest.mark.req("AAA-2")
def test_blocked_by_a_pass(impl):
    expect.blocked("AAA-1", "claims AAA-1 is broken")
"""

NULL_TESTEE = """
import pytest
from conformance import expect
from conformance.adapter import ClientConfig

CFG = ClientConfig("http://stub.invalid")

@pytest.mark.req("AAA-1")
def test_create(impl):
    expect.ok(impl.create(CFG, "m", [], {"mode": "unsupported"}))

@pytest.mark.req("AAA-2")
def test_error_check(impl):
    expect.error(impl.create(CFG, "m", [], {"mode": "unsupported"}), kind="security")

@pytest.mark.req("CCC-1")
def test_keys(impl):
    expect.ok(impl.generate_keys("."))
"""

ALL_NOT_APPLICABLE = """
import pytest
from conformance import expect

@pytest.mark.req("CCC-1")
def test_keys(impl):
    expect.ok(impl.generate_keys("."))
"""

KNOWN = """
import pytest
from conformance import expect

@pytest.mark.req("AAA-1")
def test_known(impl):
    expect.equal(1, 2)

@pytest.mark.req("AAA-2")
def test_fine(impl):
    pass
"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Run]]:
    base = tmp_path_factory.mktemp("charging")
    started: dict[str, Run] = {}

    def start(name: str, files: dict[str, str], *args: str) -> Path:
        directory = write_suite(base / name, files)
        started[name] = Run(directory, *stub_args("--conformance-report=out", *args))
        return directory

    start("charged", {"test_charged.py": CHARGED})
    start("foreign", {"test_foreign.py": FOREIGN_CLAUSE})
    start("unconfirmed", {"test_unconfirmed.py": UNCONFIRMED})
    start("null", {"test_null.py": NULL_TESTEE})
    start("all_na", {"test_na.py": ALL_NOT_APPLICABLE})
    known = base / "known"
    known.mkdir()
    (known / "expected.txt").write_text("test_known::test_known  # a known defect\n")
    start("known", {"test_known.py": KNOWN}, "--expected-failures=expected.txt")
    yield started
    for run in started.values():
        if run.proc.poll() is None:
            run.proc.kill()


def _charges(result, check_id: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    checks = {c["id"]: c for c in result.report()["checks"]}
    return {rid: c["verdict"] for rid, c in checks[check_id]["charges"].items()}


def test_a_failed_clause_fails_only_its_requirement(runs: dict[str, Run]) -> None:
    result = runs["charged"].result()
    assert result.returncode == 1, result.output
    assert _charges(result, "test_charged::test_three_clauses") == {
        "AAA-1": "FAIL",
        "AAA-2": "PASS",
        "AAA-3": "NON-STRICT",  # the second defect of the same check is still seen
    }
    verdicts = result.requirement_verdicts()
    assert (verdicts["AAA-2"], verdicts["AAA-3"]) == ("PASS", "NON-STRICT")


def test_each_requirement_shows_its_own_message(runs: dict[str, Run]) -> None:
    result = runs["charged"].result()
    check = {c["id"]: c for c in result.report()["checks"]}["test_charged::test_three_clauses"]
    assert "first clause" in check["charges"]["AAA-1"]["message"]
    assert "third clause" not in check["charges"]["AAA-1"]["message"]
    assert "third clause" in check["charges"]["AAA-3"]["message"]


def test_hypothesis_failure_blocks_the_clauses_it_never_reached(runs: dict[str, Run]) -> None:
    result = runs["charged"].result()
    charges = _charges(result, "test_charged::test_hypothesis_clause")
    assert charges == {"BBB-1": "FAIL", "BBB-3": "BLOCKED"}
    check = {c["id"]: c for c in result.report()["checks"]}["test_charged::test_hypothesis_clause"]
    assert check["charges"]["BBB-3"]["blocked_by"] == "BBB-1"
    assert "n=5" in (check["example"] or "")  # still shrunk to the minimal example


def test_blocked_names_its_root_cause_first(runs: dict[str, Run]) -> None:
    result = runs["charged"].result()
    report = result.report()
    assert result.requirement_verdicts()["CCC-1"] == "BLOCKED"
    causes = {c["requirement"]: c for c in report["root_causes"]}
    assert causes["AAA-1"]["blocks_checks"] == [
        "test_charged::test_blocked",
        "test_charged::test_judged_then_blocked",
    ]
    assert causes["AAA-1"]["verdict"] == "FAIL"
    assert "fix AAA-1 first (FAIL): it blocks 2 checks of BBB-1, CCC-1" in result.stdout


def test_a_block_keeps_the_clauses_judged_before_it(runs: dict[str, Run]) -> None:
    result = runs["charged"].result()
    charges = _charges(result, "test_charged::test_judged_then_blocked")
    assert charges == {"AAA-2": "PASS", "BBB-1": "BLOCKED"}


def test_empty_evidence_never_passes(runs: dict[str, Run]) -> None:
    result = runs["charged"].result()
    checks = {c["id"]: c for c in result.report()["checks"]}
    empty = checks["test_charged::test_empty_evidence"]
    assert empty["verdict"] == "FAIL"
    assert "nothing observed" in empty["message"]


def test_clause_naming_a_foreign_id_is_a_defect_of_the_check(runs: dict[str, Run]) -> None:
    result = runs["foreign"].result()
    assert result.returncode == 1, result.output
    check = {c["id"]: c for c in result.report()["checks"]}["test_foreign::test_foreign"]
    assert check["verdict"] == "ERRORED"
    assert "not among the check's requirement ids" in check["message"]


def test_block_by_a_requirement_that_passed_fails_the_run(runs: dict[str, Run]) -> None:
    result = runs["unconfirmed"].result()
    assert result.returncode == 1, result.output
    assert "unconfirmed" in result.stdout
    assert result.report()["summary"]["problems"]


def test_a_testee_that_implements_nothing_fails_the_run(runs: dict[str, Run]) -> None:
    result = runs["null"].result()
    assert result.returncode == 1, result.output
    checks = {c["id"]: c for c in result.report()["checks"]}
    assert checks["test_null::test_create"]["verdict"] == "ERRORED"
    assert "create answered 'unsupported'" in checks["test_null::test_create"]["message"]
    assert checks["test_null::test_error_check"]["verdict"] == "ERRORED"
    assert checks["test_null::test_keys"]["verdict"] == "NOT APPLICABLE"
    assert result.report()["summary"]["headline"] == "not judged: no check passed"


def test_a_run_where_nothing_passed_fails(runs: dict[str, Run]) -> None:
    result = runs["all_na"].result()
    assert result.returncode == 1, result.output
    assert "no check passed" in result.stdout


def test_headline_says_known_failures_honestly(runs: dict[str, Run]) -> None:
    result = runs["known"].result()
    assert result.returncode == 0, result.output  # listed: does not fail the run
    assert result.report()["summary"]["headline"] == "not conforming: 1 known failure"
    assert "verdict: not conforming: 1 known failure" in result.stdout
