"""The `cmd:` path: the testee protocol with the reference testee and with misbehaving fakes."""

from __future__ import annotations

import re
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from conformance.adapter import AdapterError, ClientConfig
from conformance.adapters.cmd import CommandAdapter
from tests.suite.test_suite_framework_support import ROOT, Run, write_suite

REFERENCE = "python -m nomyo_ref.testee"

# A testee in "another language": answers hello, then whatever MODE says.
FAKE_TESTEE = """
import json, sys, time
MODE = sys.argv[1]
for line in sys.stdin:
    req = json.loads(line)
    if req["op"] == "hello":
        result = {"name": "fake", "version": "0", "language": "none",
                  "protocol": "nomyo-testee/1", "capabilities": ["create", "python_api"]}
        print(json.dumps({"id": req["id"], "ok": True, "result": result}), flush=True)
        continue
    if req["op"] == "shutdown":
        print(json.dumps({"id": req["id"], "ok": True, "result": {}}), flush=True)
        break
    if MODE == "hang":
        time.sleep(60)
    elif MODE == "garbage":
        print("this is not json", flush=True)
    elif MODE == "oddkind":
        error = {"kind": "weird", "message": "m"}
        print(json.dumps({"id": req["id"], "ok": False, "error": error}), flush=True)
    else:
        error = {"kind": "unsupported", "message": req["op"] + " not implemented"}
        print(json.dumps({"id": req["id"], "ok": False, "error": error}), flush=True)
"""

E2E_CHECKS = """
import json
import pytest
from conformance import expect

@pytest.mark.req("AAA-1")
def test_round_trip(call, router):
    result = expect.ok(call(messages=[{"role": "user", "content": "ping"}]))
    assert result["object"] == "chat.completion"
    posts = [s for s in router.seen if s.method == "POST"]
    assert len(posts) == 1
    assert json.loads(posts[0].plaintext)["messages"][0]["content"] == "ping"

@pytest.mark.req("AAA-2")
def test_reused_client(open_client, call):
    handle = expect.ok(open_client())["client"]
    expect.ok(call(client=handle))
    expect.ok(call(client=handle))

@pytest.mark.req("CCC-1")
@pytest.mark.requires("key_files")
def test_keys(impl, tmp_path):
    paths = expect.ok(impl.generate_keys(str(tmp_path / "k")))
    loaded = expect.ok(impl.load_keys(paths["private_key_path"]))
    assert "BEGIN PUBLIC KEY" in loaded["public_key_pem"]
"""


def _fake(tmp_path: Path, mode: str) -> str:
    script = tmp_path / "fake_testee.py"
    script.write_text(textwrap.dedent(FAKE_TESTEE))
    return f"{sys.executable} {script} {mode}"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Run]]:
    base = tmp_path_factory.mktemp("cmd")
    e2e = write_suite(base / "e2e", {"test_e2e.py": E2E_CHECKS})
    fake = _fake(e2e, "unsupported")
    args = ["--conformance-requirements=requirements.json"]
    started = {
        "reference": Run(e2e, f"--impl=cmd:{REFERENCE}", *args, "--conformance-report=ref"),
        "inprocess": Run(e2e, "--impl=nomyo_ref", *args, "--conformance-report=inproc"),
        "official": Run(e2e, "--impl=nomyo", *args, "--conformance-report=official"),
        "fake": Run(e2e, f"--impl=cmd:{fake}", *args, "--conformance-report=fake"),
        "pyargs": Run(base, "--pyargs", "conformance", "--impl=nomyo_ref", "--list-checks"),
    }
    yield started
    for run in started.values():
        if run.proc.poll() is None:
            run.proc.kill()
            run.proc.wait()


def test_reference_testee_end_to_end(runs: dict[str, Run]) -> None:
    result = runs["reference"].result()
    assert result.returncode == 0, result.output
    report = result.report("ref")
    assert report["implementation"]["name"] == "nomyo_ref"  # from the handshake
    assert report["implementation"]["impl"] == f"cmd:{REFERENCE}"
    assert "python_api" not in report["implementation"]["capabilities"]
    assert result.check_verdicts("ref") == {
        "test_e2e::test_round_trip": "PASS",
        "test_e2e::test_reused_client": "PASS",
        "test_e2e::test_keys": "PASS",
    }


def test_builtin_nomyo_ref_gives_the_same_verdicts(runs: dict[str, Run]) -> None:
    inproc, reference = runs["inprocess"].result(), runs["reference"].result()
    assert inproc.returncode == 0, inproc.output
    assert inproc.check_verdicts("inproc") == reference.check_verdicts("ref")


def test_builtin_official_client_round_trip(runs: dict[str, Run]) -> None:
    result = runs["official"].result()
    report = result.report("official")
    assert report["implementation"]["name"] == "nomyo"
    assert report["implementation"]["version"] == "0.2.9"
    assert "pinning" not in report["implementation"]["capabilities"]
    assert result.check_verdicts("official")["test_e2e::test_round_trip"] == "PASS", result.output


def test_unsupported_operations_are_not_applicable(runs: dict[str, Run]) -> None:
    result = runs["fake"].result()
    assert result.returncode == 0, result.output
    verdicts = result.check_verdicts("fake")
    assert set(verdicts.values()) == {"NOT APPLICABLE"}, verdicts
    assert result.report("fake")["implementation"]["capabilities"] == ["create"]


def test_pyargs_from_another_directory(runs: dict[str, Run]) -> None:
    result = runs["pyargs"].result()
    assert result.returncode == 0, result.output
    assert re.search(r"^test_\w+::test_\w+\S*  [A-Z]+-\d+", result.stdout, re.MULTILINE)


def test_handshake_and_unsupported_op_in_process() -> None:
    adapter = CommandAdapter(REFERENCE, timeout=30)
    try:
        assert adapter.name == "nomyo_ref"
        assert adapter.language == "python"
        assert {"create", "client_reuse", "pinning"} <= adapter.capabilities
        outcome = adapter._call("no.such.op")
        assert outcome.error is not None
        assert outcome.error.kind == "unsupported"
        refused = adapter.create(ClientConfig("http://127.0.0.1:9"), "m", [], {})
        assert refused.error is not None
        assert refused.error.kind == "security"  # http without allow_http: nothing sent
    finally:
        adapter.close()
    assert adapter._proc is None


def test_a_hanging_testee_is_killed_and_restarted(tmp_path: Path) -> None:
    adapter = CommandAdapter(_fake(tmp_path, "hang"), timeout=1.0)
    try:
        first = adapter._proc
        with pytest.raises(AdapterError, match="did not answer op 'create' within 1 s"):
            adapter.create(ClientConfig("http://x"), "m", [], {})
        assert first is not None
        assert first.poll() is not None  # killed
        with pytest.raises(AdapterError):
            adapter.create(ClientConfig("http://x"), "m", [], {})
        assert adapter._generation == 2  # restarted with a fresh hello
    finally:
        adapter.close()


def test_garbage_and_unknown_kinds(tmp_path: Path) -> None:
    garbage = CommandAdapter(_fake(tmp_path, "garbage"), timeout=10)
    try:
        with pytest.raises(AdapterError, match="not JSON"):
            garbage.create(ClientConfig("http://x"), "m", [], {})
    finally:
        garbage.close()
    odd = CommandAdapter(_fake(tmp_path, "oddkind"), timeout=10)
    try:
        outcome = odd.create(ClientConfig("http://x"), "m", [], {})
        assert outcome.error is not None
        assert outcome.error.kind == "internal"
        assert "unknown kind 'weird'" in outcome.error.message
    finally:
        odd.close()


def test_stale_handles_are_refused(tmp_path: Path) -> None:
    adapter = CommandAdapter(_fake(tmp_path, "hang"), timeout=1.0)
    try:
        from conformance.adapters.cmd import TesteeHandle

        with pytest.raises(AdapterError, match="restarted"):
            adapter.create(None, "m", [], {}, client=TesteeHandle(0, "c1"))
    finally:
        adapter.close()


def test_root_is_the_repository() -> None:
    assert (ROOT / "spec" / "testee.md").is_file()
