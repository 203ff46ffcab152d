"""The `cmd:` path judged end to end with a port the suite has never seen.

tests/suite/foreign_port.py is an independent client behind the testee protocol, run as its
own process. Without a defect the suite must find nothing; with each wire-level defect the
set of failing requirements must be exactly the set that defect breaks (not merely contain
it), nothing may be ERRORED by an earlier restart, and a hang must cost one check.

The runs start together (two cores) and most are narrowed with --req to the requirement
families a defect can touch; the defect-free and the tag runs are full runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.suite.test_suite_framework_support import ROOT, Run

PORT = "python -m tests.suite.foreign_port"
FAILING = ("FAIL", "NON-STRICT", "ERRORED")

#: What each defect breaks, as the spec words it: the failing requirement ids, as a set.
EXPECTED: dict[str, set[str]] = {
    "none": set(),
    # no `tag` member, tag appended to the ciphertext: the package layout and nothing else
    "tag_appended": {"ENC-3", "PKG-5"},
    # 32 hex digits instead of a UUID 4 in canonical form
    "pid_not_uuid": {"PID-1", "PID-2"},
    # downgraded or unbound answers accepted
    "no_answer_checks": {"CHK-3", "CHK-4", "CHK-20", "PID-5", "PID-6", "PID-7", "TIER-9"},
    # every non-200 is kind api without a status: the status table and the status attribute
    "one_error_class": {"ERR-1", "ERR-2", "ERR-3", "ERR-5", "ERR-6", "ERR-8", "ERR-11"}
    | {"DISC-4", "DISC-8"},
    # the dropped connection hangs: that one check ERRORED, nothing else
    "hang_on_drop": {"ERR-10"},
    # breaks the testee protocol, not the NOMYO protocol: every call is ERRORED, nothing FAILs
    "stdout_logging": {"HDR-6", "HDR-7"},
    # writes ./client_keys/ into the testee's own working directory, which the suite watches
    "keys_in_cwd": {"KEY-12"},
}
#: The checks a defect's run is narrowed to (None: the whole suite).
NARROW: dict[str, str | None] = {
    "none": None,
    "tag_appended": None,
    "pid_not_uuid": "PID-*,HDR-*",
    "no_answer_checks": "CHK-*,PID-*,TIER-*,RSP-10,RTY-5",
    "one_error_class": "ERR-*,DISC-*,RTY-*,TLS-11",
    # ERR-10's dropped connection hangs; the HDR checks after it reuse the client pool (and
    # load a key pair, none makes one: a 4096-bit generation could outlast HANG_TIMEOUT)
    "hang_on_drop": "ERR-*,HDR-6,HDR-7,HDR-8,HDR-11",
    "stdout_logging": "HDR-6,HDR-7",
    "keys_in_cwd": "KEY-12",
}
HANG_TIMEOUT = "8"  # --testee-timeout of the hang run: the hang costs this once


def _keys(base: Path) -> dict[str, str]:
    """A server key and a client key directory made once, shared by every run."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from conformance.fixtures import write_client_keys

    server = base / "server.pem"
    key = rsa.generate_private_key(public_exponent=65537, key_size=4096)
    server.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    client = base / "client_keys"
    client.mkdir()
    write_client_keys(client)
    return {
        "NOMYO_CONFORMANCE_SERVER_KEY": str(server),
        "NOMYO_CONFORMANCE_CLIENT_KEY_DIR": str(client),
    }


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, tuple[Run, Path]]]:
    base = tmp_path_factory.mktemp("foreign")
    started: dict[str, tuple[Run, Path]] = {}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in _keys(base).items():
            patch.setenv(name, value)
        for defect, narrow in NARROW.items():
            impl = PORT if defect == "none" else f"{PORT} --defect={defect}"
            args = [
                "conformance",
                f"--impl=cmd:{impl}",
                "-q",
                f"--conformance-report={base / defect}",
            ]
            if narrow is not None:
                args.append(f"--req={narrow}")
            if defect == "hang_on_drop":
                args.append(f"--testee-timeout={HANG_TIMEOUT}")
            started[defect] = (Run(ROOT, *args, timeout=300.0), base / defect)
    yield started
    for run, _ in started.values():
        if run.proc.poll() is None:
            run.proc.kill()
            run.proc.wait()


def _report(runs: dict[str, tuple[Run, Path]], defect: str) -> tuple[str, dict[str, Any]]:
    run, directory = runs[defect]
    result = run.result()
    path = directory / "report.json"
    assert path.is_file(), result.output[-3000:]
    return result.output[-3000:], json.loads(path.read_text(encoding="utf-8"))


def _failing(report: dict[str, Any]) -> dict[str, str]:
    return {r["id"]: r["verdict"] for r in report["requirements"] if r["verdict"] in FAILING}


def _errored(report: dict[str, Any]) -> dict[str, str]:
    return {c["id"]: c["message"] for c in report["checks"] if c["verdict"] == "ERRORED"}


def _difference(defect: str, failing: dict[str, str]) -> str:
    extra = sorted(set(failing) - EXPECTED[defect])
    missing = sorted(EXPECTED[defect] - set(failing))
    return f"{defect}: extra {[(i, failing[i]) for i in extra]}, missing {missing}"


def test_the_port_without_defects_passes(runs: dict[str, tuple[Run, Path]]) -> None:
    output, report = _report(runs, "none")
    assert _failing(report) == {}, output
    assert _errored(report) == {}, output
    assert report["implementation"]["name"] == "foreign-port"
    passed = [c for c in report["checks"] if c["verdict"] == "PASS"]
    assert len(passed) > 100, f"only {len(passed)} checks passed: the path proves little"


@pytest.mark.parametrize(
    "defect",
    ["tag_appended", "pid_not_uuid", "no_answer_checks", "one_error_class", "keys_in_cwd"],
)
def test_each_defect_fails_exactly_its_requirements(
    runs: dict[str, tuple[Run, Path]], defect: str
) -> None:
    output, report = _report(runs, defect)
    assert _errored(report) == {}, output
    failing = _failing(report)
    assert set(failing) == EXPECTED[defect], _difference(defect, failing)


def test_a_hang_costs_one_check(runs: dict[str, tuple[Run, Path]]) -> None:
    _, report = _report(runs, "hang_on_drop")
    errored = _errored(report)
    assert len(errored) == 1, errored
    (message,) = errored.values()
    assert "did not answer op 'create'" in message
    assert f"within {HANG_TIMEOUT} s" in message
    failing = _failing(report)
    assert set(failing) == EXPECTED["hang_on_drop"], _difference("hang_on_drop", failing)
    # the checks after the hang ran on a fresh testee and a fresh pooled client
    later = [c for c in report["checks"] if c["id"].startswith("test_headers::")]
    assert later, "no check ran after the hang"
    assert all(c["verdict"] == "PASS" for c in later), later


def test_stdout_logging_errors_with_a_message_that_says_so(
    runs: dict[str, tuple[Run, Path]],
) -> None:
    _, report = _report(runs, "stdout_logging")
    assert set(_failing(report).values()) == {"ERRORED"}, _failing(report)
    assert set(_failing(report)) == EXPECTED["stdout_logging"]
    for message in _errored(report).values():
        assert "'httpclient: GET http://127.0.0.1:" in message
        assert "stdout carries answers only; logs go to stderr" in message


def test_stdout_logging_is_named_by_the_selftest(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "conformance.adapters.selftest",
            f"{PORT} --defect=stdout_logging",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "FAIL  round trip: stdout line at op 'create' is not the answer" in done.stdout
    assert "httpclient: GET" in done.stdout
    assert "logs go to stderr" in done.stdout
