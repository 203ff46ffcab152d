"""The real suite against the real implementations, as a user runs it.

`pytest conformance --impl=nomyo_ref` must pass every requirement; the reference testee over
the `cmd:` path must reach the same verdicts wherever it can be judged; the official client
must pass with its shipped expected-failures file (which must not go stale); and `-n 2` must
not change a verdict. The four runs start together and are awaited by the tests below.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.suite.test_suite_framework_support import ROOT, Run

TESTEE = "cmd:python -m nomyo_ref.testee"
# What a subprocess testee cannot offer: the Python object itself, and its log records.
IN_PROCESS_ONLY = {"python_api", "log_capture"}
RUNS = {
    "reference": ("--impl=nomyo_ref",),
    "testee": (f"--impl={TESTEE}",),
    "official": ("--impl=nomyo",),
    "parallel": ("--impl=nomyo_ref", "-n", "2"),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, tuple[Run, Path]]]:
    base = tmp_path_factory.mktemp("real")
    started = {
        name: (Run(ROOT, "conformance", *args, "-q", f"--conformance-report={base / name}",
                   timeout=900.0), base / name)
        for name, args in RUNS.items()
    }
    yield started
    for run, _ in started.values():
        if run.proc.poll() is None:
            run.proc.kill()
            run.proc.wait()


def _finished(runs: dict[str, tuple[Run, Path]], name: str) -> tuple[int, str, dict[str, Any]]:
    run, directory = runs[name]
    result = run.result()
    report = json.loads((directory / "report.json").read_text(encoding="utf-8"))
    return result.returncode, result.output[-4000:], report


def _verdicts(report: dict[str, Any]) -> dict[str, str]:
    return {check["id"]: check["verdict"] for check in report["checks"]}


def test_reference_client_passes_every_requirement(runs: dict[str, tuple[Run, Path]]) -> None:
    code, output, report = _finished(runs, "reference")
    assert code == 0, output
    counts = report["summary"]["requirements"]
    assert not {"FAIL", "ERRORED", "NON-STRICT"} & {v for v, n in counts.items() if n}, counts
    assert set(_verdicts(report).values()) == {"PASS"}, output


def test_reference_testee_reaches_the_same_verdicts(runs: dict[str, tuple[Run, Path]]) -> None:
    code, output, report = _finished(runs, "testee")
    assert code == 0, output
    _, _, reference = _finished(runs, "reference")
    assert report["implementation"]["name"] == "nomyo_ref"
    over_pipe, in_process = _verdicts(report), _verdicts(reference)
    assert over_pipe.keys() == in_process.keys()
    differences = {
        check: (in_process[check], verdict)
        for check, verdict in over_pipe.items()
        if verdict != in_process[check]
    }
    lacking = IN_PROCESS_ONLY - set(report["implementation"]["capabilities"])
    assert lacking == IN_PROCESS_ONLY
    # The only allowed difference: a check needing an in-process capability is not applicable.
    assert all(pair == ("PASS", "NOT APPLICABLE") for pair in differences.values()), differences
    judged = [v for v in over_pipe.values() if v == "PASS"]
    assert len(judged) > 0.8 * len(over_pipe), "the testee path judged too little"


def test_official_client_passes_with_its_expected_failures(
    runs: dict[str, tuple[Run, Path]],
) -> None:
    code, output, report = _finished(runs, "official")
    assert code == 0, output
    expected = report["expected_failures"]
    assert str(expected["file"]).endswith("nomyo.txt")
    assert expected["unexpected_passes"] == []
    assert expected["stale"] == []
    assert len(expected["listed_failures"]) >= 10, "the official client's findings vanished"
    assert report["implementation"]["version"] == "0.2.9"


def test_parallel_run_gives_the_same_verdicts(runs: dict[str, tuple[Run, Path]]) -> None:
    code, output, report = _finished(runs, "parallel")
    assert code == 0, output
    _, _, serial = _finished(runs, "reference")
    assert _verdicts(report) == _verdicts(serial)
