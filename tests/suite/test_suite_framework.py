"""The conformance framework judged through real pytest runs of throwaway suites.

Runs of one module start together (module fixture `runs`) and are awaited by the tests that
read them, so the dozen subprocesses overlap on the two cores.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.suite.test_suite_framework_support import (
    EXPECTED_MIXED,
    MIXED_CHECKS,
    Run,
    stub_args,
    write_suite,
)

EF_CHECKS = """
import pytest
from conformance import expect

@pytest.mark.req("AAA-1")
def test_listed_fails():
    expect.equal(1, 2)

@pytest.mark.req("AAA-1")
def test_listed_passes():
    pass

@pytest.mark.req("AAA-2")
def test_new_failure():
    expect.equal("a", "b")

@pytest.mark.req("AAA-2")
def test_ok():
    pass
"""

LIST_CHECKS = """
import pathlib
import pytest

@pytest.mark.req("AAA-1", "AAA-2")
@pytest.mark.requires("pinning")
def test_alpha():
    pathlib.Path("ran.txt").write_text("ran")

@pytest.mark.req("BBB-1")
@pytest.mark.parametrize("x", [1, 2])
def test_beta(x):
    pathlib.Path("ran.txt").write_text("ran")
"""


def _ef_file(directory: Path, lines: str) -> str:
    path = directory / "expected.txt"
    path.write_text(lines)
    return str(path)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Run]]:
    """Start every run of this module at once; tests wait for the ones they read."""
    base = tmp_path_factory.mktemp("framework")
    mixed = write_suite(base / "mixed", {"test_mixed.py": MIXED_CHECKS})
    started: dict[str, Run] = {}

    def start(name: str, directory: Path, *args: str) -> None:
        started[name] = Run(directory, *args)

    start("mixed", mixed, *stub_args("--conformance-report=out"))
    start("mixed_xdist", mixed, *stub_args("--conformance-report=out_x", "-n", "2"))
    start("mixed_strict", mixed, *stub_args("--strict-should", "-k", "should"))
    start("req", mixed, *stub_args("--req=AAA-*", "--conformance-report=out_req"))
    start("unknown_impl", mixed, "--impl=no_such_impl")
    start("req_unmatched", mixed, *stub_args("--req=AAA-1,ZZZ-*"))
    start("no_impl", mixed, "--conformance-requirements=requirements.json")
    bad = write_suite(base / "bad", {"test_bad.py": (
        "import pytest\n@pytest.mark.req('AAA-1', 'NOPE-9')\ndef test_x():\n    pass\n"
    )})  # fmt: skip
    start("unknown_req", bad, *stub_args())
    start("unknown_req_xdist", bad, *stub_args("-n", "2"))
    listing = write_suite(base / "listing", {"test_listing.py": LIST_CHECKS})
    start("list", listing, *stub_args("--list-checks"))
    plain = write_suite(base / "plain", {"test_plain.py": "def test_plain():\n    pass\n"})
    start("inert", plain)

    # expected failures: listed failure, listed-but-passing, stale entry, update
    ef_ok = write_suite(base / "ef_ok", {"test_ef.py": EF_CHECKS})
    start("ef_ok", ef_ok, *stub_args(
        "--expected-failures=" + _ef_file(ef_ok, (
            "# known\n\ntest_ef::test_listed_fails  # off by one\n"
            "test_ef::test_new_failure  # letters\n"
        )), "--conformance-report=out",
    ))  # fmt: skip
    ef_pass = write_suite(base / "ef_pass", {"test_ef.py": EF_CHECKS})
    start("ef_pass", ef_pass, *stub_args(
        "--expected-failures=" + _ef_file(ef_pass, (
            "test_ef::test_listed_fails  # off by one\ntest_ef::test_new_failure\n"
            "test_ef::test_listed_passes  # was broken\n"
        )),
    ))  # fmt: skip
    ef_stale = write_suite(base / "ef_stale", {"test_ef.py": EF_CHECKS})
    start("ef_stale", ef_stale, *stub_args(
        "--expected-failures=" + _ef_file(ef_stale, (
            "test_ef::test_listed_fails\ntest_ef::test_new_failure\n"
            "test_ef::test_gone  # removed check\n"
            "test_other_module::test_elsewhere  # module not collected: not stale\n"
        )),
    ))  # fmt: skip
    start("ef_stale_xdist", ef_stale, *stub_args(
        "-n", "2", "--expected-failures=" + str(ef_stale / "expected.txt"),
    ))  # fmt: skip
    ef_update = write_suite(base / "ef_update", {"test_ef.py": EF_CHECKS})
    start("ef_update", ef_update, *stub_args(
        "--update-expected-failures",
        "--expected-failures=" + _ef_file(ef_update, (
            "test_ef::test_listed_fails  # off by one\n"
            "test_ef::test_listed_passes  # was broken\n"
            "test_ef::test_gone  # removed check\n"
            "test_other_module::test_elsewhere  # kept: not run\n"
        )),
    ))  # fmt: skip
    yield started
    for run in started.values():
        if run.proc.poll() is None:
            run.proc.kill()
            run.proc.wait()


def test_unknown_impl_is_a_usage_error_listing_builtins(runs: dict[str, Run]) -> None:
    result = runs["unknown_impl"].result()
    assert result.returncode == 4, result.output
    assert "unknown implementation 'no_such_impl'" in result.output
    assert "nomyo_ref" in result.output
    assert "nomyo (" in result.output
    assert "cmd:COMMAND" in result.output


def test_checks_without_impl_are_a_usage_error(runs: dict[str, Run]) -> None:
    result = runs["no_impl"].result()
    assert result.returncode == 4, result.output
    assert "conformance checks need --impl" in result.output


def test_unknown_requirement_id_is_a_collection_error(runs: dict[str, Run]) -> None:
    for name, status in (("unknown_req", 2), ("unknown_req_xdist", 1)):  # xdist says 1
        result = runs[name].result()
        assert result.returncode == status, result.output
        assert "ERROR collecting test_bad.py" in result.output
        assert "test_x: unknown requirement id 'NOPE-9'" in result.output


def test_plugin_is_inert_for_ordinary_tests(runs: dict[str, Run]) -> None:
    result = runs["inert"].result()
    assert result.returncode == 0, result.output
    assert "1 passed" in result.output
    assert "conformance verdict" not in result.output
    assert "conformance:" not in result.output  # no report header either


def test_verdict_per_requirement_is_worst_of_its_checks(runs: dict[str, Run]) -> None:
    result = runs["mixed"].result()
    assert result.returncode == 1, result.output  # MUST failures fail the run
    assert result.requirement_verdicts() == EXPECTED_MIXED["requirements"]
    assert result.check_verdicts() == EXPECTED_MIXED["checks"]


def test_missing_capability_and_unsupported_are_not_applicable(runs: dict[str, Run]) -> None:
    result = runs["mixed"].result()
    checks = {c["id"]: c for c in result.report()["checks"]}
    pinning = checks["test_mixed::test_needs_pinning"]
    assert pinning["verdict"] == "NOT APPLICABLE"
    assert "lacks capability pinning" in pinning["message"]
    assert "must not run" not in result.output
    assert checks["test_mixed::test_unsupported"]["verdict"] == "NOT APPLICABLE"
    assert "NOT APPLICABLE" in checks["test_mixed::test_unsupported"]["message"]


def test_failure_quotes_expected_actual_and_minimal_example(runs: dict[str, Run]) -> None:
    result = runs["mixed"].result()
    checks = {c["id"]: c for c in result.report()["checks"]}
    must = checks["test_mixed::test_must_fails"]["message"]
    assert must.startswith("expected <error security>, actual <result"), must
    hyp = checks["test_mixed::test_hypothesis_fails"]
    assert hyp["message"] == "expected <n < 7>, actual <7>"
    assert hyp["example"] is not None
    assert "n=7" in hyp["example"]
    assert "impl=" not in hyp["example"]  # fixtures are not inputs
    assert "RuntimeError: fixture crashed" in checks["test_mixed::test_fixture_errors"]["message"]


def test_terminal_summary_puts_must_failures_first(runs: dict[str, Run]) -> None:
    out = runs["mixed"].result().stdout
    section = out[out.index("conformance verdict: stub 9.9") :]
    order = [
        m.group(2)
        for m in re.finditer(r"^(FAIL|ERRORED|NON-STRICT|no check|PASS|NOT APPLICABLE)\s+(\S+-\d+)",
                             section, re.MULTILINE)
    ]  # fmt: skip
    assert order == ["AAA-1", "AAA-2", "BBB-1", "BBB-3", "AAA-3", "CCC-1"]
    assert re.search(r"^no check .*\n\s+BBB-2$", section, re.MULTILINE)
    assert section.index("BBB-2") < section.index("CCC-1")
    assert "must one" in section  # the requirement's text is quoted
    assert "expected <n < 7>, actual <7>" in section


def test_should_failures_fail_the_run_only_with_strict_should(runs: dict[str, Run]) -> None:
    strict = runs["mixed_strict"].result()
    assert strict.returncode == 1, strict.output
    assert "1 failed" in strict.output


def test_json_and_html_reports(runs: dict[str, Run]) -> None:
    result = runs["mixed"].result()
    report = result.report()
    assert report["format"] == "nomyo-conformance-report/1"
    assert report["implementation"]["name"] == "stub"
    assert report["implementation"]["impl"] == "stub_adapter:StubAdapter"
    assert report["summary"]["must_failed"] is True
    assert report["summary"]["requirements"]["FAIL"] == 3
    assert "LOG checks" in report["note"]
    page = (result.directory / "out" / "report.html").read_text()
    for rid in EXPECTED_MIXED["requirements"]:
        assert rid in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)  # self-contained
    assert "<link" not in page


def test_merged_page_shows_implementations_side_by_side(
    runs: dict[str, Run], tmp_path: Path
) -> None:
    import json

    from conformance.report.__main__ import main

    result = runs["mixed"].result()
    other = json.loads((result.directory / "out" / "report.json").read_text())
    other["implementation"]["name"] = "second-port"
    second = tmp_path / "second.json"
    second.write_text(json.dumps(other))
    page = tmp_path / "both.html"
    assert main(["merge", str(result.directory / "out"), str(second), "-o", str(page)]) == 0
    text = page.read_text()
    assert "<th>stub 9.9<div class='lvl'>--impl=stub_adapter:StubAdapter</div></th>" in text
    assert "<th>second-port 9.9<" in text


def test_xdist_gives_the_serial_verdict(runs: dict[str, Run]) -> None:
    serial, parallel = runs["mixed"].result(), runs["mixed_xdist"].result()
    assert parallel.returncode == serial.returncode, parallel.output
    assert parallel.requirement_verdicts("out_x") == serial.requirement_verdicts()
    assert parallel.check_verdicts("out_x") == serial.check_verdicts()


def test_req_option_narrows_the_run(runs: dict[str, Run]) -> None:
    result = runs["req"].result()
    verdicts = result.check_verdicts("out_req")
    assert set(verdicts) == {
        "test_mixed::test_pass",
        "test_mixed::test_must_fails",
        "test_mixed::test_should_fails",
    }
    assert set(result.requirement_verdicts("out_req")) == {"AAA-1", "AAA-2", "AAA-3"}
    assert "deselected" in result.output


def test_req_pattern_matching_nothing_is_a_usage_error(runs: dict[str, Run]) -> None:
    result = runs["req_unmatched"].result()
    assert result.returncode == 4, result.output
    assert "--req ZZZ-*: matches no requirement id" in result.output


def test_list_checks_prints_ids_and_runs_nothing(runs: dict[str, Run]) -> None:
    result = runs["list"].result()
    assert result.returncode == 0, result.output
    assert "test_listing::test_alpha  AAA-1,AAA-2  requires: pinning" in result.stdout
    assert "test_listing::test_beta[1]  BBB-1" in result.stdout
    assert "test_listing::test_beta[2]  BBB-1" in result.stdout
    assert not (result.directory / "ran.txt").exists()


def test_listed_expected_failures_do_not_fail_the_run(runs: dict[str, Run]) -> None:
    result = runs["ef_ok"].result()
    assert result.returncode == 0, result.output
    checks = {c["id"]: c for c in result.report()["checks"]}
    assert checks["test_ef::test_listed_fails"]["verdict"] == "FAIL"
    assert checks["test_ef::test_listed_fails"]["expected_failure"] == "off by one"
    assert "2 xfailed" in result.output


def test_listed_check_that_passes_fails_the_run(runs: dict[str, Run]) -> None:
    result = runs["ef_pass"].result()
    assert result.returncode == 1, result.output
    assert "test_ef::test_listed_passes is listed" in result.output
    assert "--update-expected-failures" in result.output


@pytest.mark.parametrize("name", ["ef_stale", "ef_stale_xdist"])
def test_stale_expected_failure_fails_the_run(runs: dict[str, Run], name: str) -> None:
    result = runs[name].result()
    assert result.returncode == 1, result.output
    stale = result.output.split("stale expected-failure entries", 1)[1].splitlines()[0]
    assert "test_ef::test_gone" in stale
    assert "test_other_module::test_elsewhere" not in stale


def test_update_rewrites_the_list_keeping_reasons(runs: dict[str, Run]) -> None:
    result = runs["ef_update"].result()
    assert "expected failures rewritten" in result.output, result.output
    lines = [
        line
        for line in (result.directory / "expected.txt").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert lines == [
        "test_ef::test_listed_fails  # off by one",
        "test_ef::test_new_failure  # TODO: explain (FAIL AAA-2)",
        "test_other_module::test_elsewhere  # kept: not run",
    ]
