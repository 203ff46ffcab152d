"""The `cmd:` path: the testee protocol with the reference testee and with misbehaving fakes."""

from __future__ import annotations

import io
import json
import math
import os
import re
import stat
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conformance.adapter import AdapterError, ClientConfig
from conformance.adapters import selftest
from conformance.adapters.cmd import (
    CommandAdapter,
    NotJSON,
    decode_value,
    dump_line,
    encode_value,
    resolve_argv,
)
from conformance.adapters.cmd import TesteeHandle as Handle  # (no Test* name: not collected)
from conformance.checks.conftest import ClientPool
from tests.suite.test_suite_framework_support import ROOT, Run, write_suite

REFERENCE = "python -m nomyo_ref.testee"

# A testee in "another language": a strict JSON parser, answers hello, then what MODE says.
FAKE_TESTEE = """
import json, os, sys, time

def refuse(name):
    raise ValueError(name + " is not JSON")

MODE = sys.argv[1]
if MODE == "once":
    if os.path.exists("started"):
        sys.exit(4)  # every later start fails before hello
    open("started", "w").close()
CAPS = ["create", "python_api", "client_reuse"] + (["client_describe"] if MODE == "ok" else [])
for line in sys.stdin:
    req = json.loads(line, parse_constant=refuse)
    op = req["op"]
    def say(**answer):
        print(json.dumps({"id": req["id"], **answer}), flush=True)
    if op == "hello":
        say(ok=True, result={"name": "fake", "version": "0", "language": "none",
                             "protocol": "nomyo-testee/1", "capabilities": CAPS})
        continue
    if op == "shutdown":
        say(ok=True, result={})
        break
    if op == "client.open" and MODE in ("ok", "hang_once", "slow"):
        say(ok=True, result={"client": "c%d" % os.getpid()})
        continue
    if op == "client.describe":
        say(ok=True, result=["<FakeClient api_key=***>"])
        continue
    if MODE == "once":
        sys.exit(3)
    if MODE == "hang" or (MODE == "hang_once" and not os.path.exists("hung")):
        open("hung", "w").close()  # in the testee's own working directory
        time.sleep(60)
    elif MODE == "slow":
        time.sleep(2)
        say(ok=True, result={})
    elif MODE == "garbage":
        print("this is not json", flush=True)
    elif MODE == "chatty":
        print("DEBUG connecting to the router", flush=True)
        say(ok=True, result={})
    elif MODE == "oddkind":
        say(ok=False, error={"kind": "weird", "message": "m"})
    elif MODE == "cwd":
        open("written.txt", "w").close()
        say(ok=True, result={"cwd": os.getcwd()})
    elif MODE in ("ok", "hang_once"):
        say(ok=True, result={"request": req, "pid": os.getpid()})
    else:
        say(ok=False, error={"kind": "unsupported", "message": op + " not implemented"})
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

# The reference testee behind a recorder that parses every request line as strictly as a
# JavaScript, Go or Rust testee would, and notes what it could not parse.
STRICT_REFERENCE = """
import asyncio, json, logging, sys
from nomyo_ref import testee

LOG = open(sys.argv[1], "a")

def refuse(name):
    raise ValueError(name + " is not RFC 8259 JSON")

class Strict:
    def __init__(self, raw):
        self.raw = raw
    def readline(self):
        line = self.raw.readline()
        if line.strip():
            try:
                json.loads(line.decode("utf-8"), parse_constant=refuse)
                LOG.write("tagged\\n" if b'"$float"' in line else "ok\\n")
            except ValueError as exc:
                LOG.write("NOT JSON %s: %r\\n" % (exc, line[:200]))
            LOG.flush()
        return line

logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
asyncio.run(testee.serve(Strict(sys.stdin.buffer), sys.stdout.buffer))
"""


def _fake(tmp_path: Path, mode: str) -> str:
    script = tmp_path / "fake_testee.py"
    script.write_text(textwrap.dedent(FAKE_TESTEE))
    return f"{sys.executable} {script} {mode}"


@pytest.fixture(scope="module")
def keys_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Pre-made keys for the subprocess runs (a 4096-bit generation each would dominate)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from conformance.fixtures import write_client_keys

    base = tmp_path_factory.mktemp("keys")
    key = rsa.generate_private_key(public_exponent=65537, key_size=4096)
    (base / "server.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (base / "client").mkdir()
    write_client_keys(base / "client")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NOMYO_CONFORMANCE_SERVER_KEY", str(base / "server.pem"))
        patch.setenv("NOMYO_CONFORMANCE_CLIENT_KEY_DIR", str(base / "client"))
        yield


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cmd")


@pytest.fixture(scope="module")
def runs(base: Path, keys_env: None) -> Iterator[dict[str, Run]]:
    e2e = write_suite(base / "e2e", {"test_e2e.py": E2E_CHECKS})
    fake = _fake(e2e, "unsupported")
    strict = base / "strict_reference.py"
    strict.write_text(textwrap.dedent(STRICT_REFERENCE))
    args = ["--conformance-requirements=requirements.json"]
    started = {
        "reference": Run(e2e, f"--impl=cmd:{REFERENCE}", *args, "--conformance-report=ref"),
        "inprocess": Run(e2e, "--impl=nomyo_ref", *args, "--conformance-report=inproc"),
        "official": Run(e2e, "--impl=nomyo", *args, "--conformance-report=official"),
        "fake": Run(e2e, f"--impl=cmd:{fake}", *args, "--conformance-report=fake"),
        "pyargs": Run(base, "--pyargs", "conformance", "--impl=nomyo_ref", "--list-checks"),
        "selftest": Run(base, "--impl=cmd:python -m nomyo_ref.testee", "--testee-selftest"),
        # the whole suite through the strict recorder: everything the suite writes is JSON
        "strict": Run(
            ROOT,
            "conformance",
            "-q",
            f"--impl=cmd:python {strict} {base / 'strict.log'}",
            f"--conformance-report={base / 'strict'}",
            timeout=600.0,
        ),
    }
    yield started
    for run in started.values():
        if run.proc.poll() is None:
            run.proc.kill()
            run.proc.wait()


# -- end to end -------------------------------------------------------------------------------


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


def test_a_testee_without_create_fails_and_lacks_the_rest(runs: dict[str, Run]) -> None:
    result = runs["fake"].result()
    assert result.returncode != 0, result.output  # create is required
    verdicts = result.check_verdicts("fake")
    assert verdicts["test_e2e::test_round_trip"] == "ERRORED"
    assert verdicts["test_e2e::test_keys"] == "NOT APPLICABLE"
    assert result.report("fake")["implementation"]["capabilities"] == ["client_reuse", "create"]


def test_pyargs_from_another_directory(runs: dict[str, Run]) -> None:
    result = runs["pyargs"].result()
    assert result.returncode == 0, result.output
    assert re.search(r"^test_\w+::test_\w+\S*  [A-Z]+-\d+", result.stdout, re.MULTILINE)


def test_selftest_option_checks_the_reference_testee(runs: dict[str, Run]) -> None:
    result = runs["selftest"].result()
    assert result.returncode == 0, result.output
    assert "the testee speaks nomyo-testee/1" in result.stdout
    assert "FAIL" not in result.stdout
    assert " passed" not in result.stdout  # no check ran: the selftest stops pytest


def test_everything_the_suite_writes_is_strict_json(runs: dict[str, Run], base: Path) -> None:
    """A full run of the reference testee behind a strict parser: not one NaN literal."""
    result = runs["strict"].result()
    lines = (base / "strict.log").read_text().splitlines()
    assert [line for line in lines if line.startswith("NOT JSON")] == [], result.output[-2000:]
    assert lines.count("ok") > 300, "too few requests recorded: the run did not happen"
    assert "tagged" in lines, "no tagged non-finite number was sent (REQ-11 travels tagged)"


# -- the adapter, in process --------------------------------------------------------------------


def test_handshake_unsupported_op_and_describe() -> None:
    adapter = CommandAdapter(REFERENCE, timeout=30)
    try:
        assert adapter.name == "nomyo_ref"
        assert adapter.language == "python"
        assert {"create", "client_reuse", "pinning", "key_dir", "client_describe"} <= (
            adapter.capabilities
        )
        outcome = adapter.request("no.such.op")
        assert outcome.error is not None
        assert outcome.error.kind == "unsupported"
        refused = adapter.create(ClientConfig("http://127.0.0.1:9"), "m", [], {})
        assert refused.error is not None
        assert refused.error.kind == "security"  # http without allow_http: nothing sent
        config = ClientConfig("https://127.0.0.1:9", api_key="sk-secret-123")
        handle = adapter.open_client(config).result["client"]
        forms = adapter.describe_client(handle)
        assert forms.ok, forms
        assert len(forms.result) == 4
        assert all(isinstance(f, str) and "sk-secret-123" not in f for f in forms.result)
    finally:
        adapter.close()
    assert adapter._channel is None


def test_describe_is_unsupported_without_the_capability(tmp_path: Path) -> None:
    adapter = CommandAdapter(_fake(tmp_path, "hang_once"), timeout=5)
    try:
        handle = adapter.open_client(ClientConfig("http://x")).result["client"]
        outcome = adapter.describe_client(handle)
        assert outcome.error is not None
        assert outcome.error.kind == "unsupported"
    finally:
        adapter.close()


def test_a_hang_costs_one_check_and_the_pool_reopens(tmp_path: Path) -> None:
    adapter = CommandAdapter(_fake(tmp_path, "hang_once"), timeout=1.0)
    pool = ClientPool(adapter)
    config = ClientConfig("http://x")
    try:
        adapter.begin_check()
        first = pool.client(config).result["client"]
        assert first.generation == adapter.generation
        started = time.monotonic()
        with pytest.raises(AdapterError, match=r"did not answer op 'create' \(id \d+\) within 1 s"):
            adapter.create(config, "m", [], {}, client=first)
        with pytest.raises(AdapterError, match="killed earlier in this check"):
            adapter.create(config, "m", [], {})  # no second timeout within the check
        assert time.monotonic() - started < 5
        assert adapter.generation == first.generation + 1
        adapter.begin_check()  # the next check: a fresh process and a fresh pooled client
        second = pool.client(config).result["client"]
        assert second.generation == adapter.generation
        assert second.value != first.value  # opened in the new process
        outcome = adapter.create(config, "m", [], {}, client=second)
        assert outcome.ok, outcome
        with pytest.raises(AdapterError, match="since been killed"):
            adapter.create(config, "m", [], {}, client=first)  # never a stale handle
        assert pool.client(config).result["client"] is second  # kept while valid
    finally:
        pool.close()
        adapter.close()


def test_an_exited_testee_restarts_without_poisoning_the_check(tmp_path: Path) -> None:
    adapter = CommandAdapter(_fake(tmp_path, "ok"), timeout=5)
    try:
        adapter.begin_check()
        before = adapter.generation
        assert adapter._channel is not None
        adapter._channel.proc.kill()
        adapter._channel.proc.wait()
        assert adapter.generation == before + 1  # noticed without an operation
        assert adapter.create(ClientConfig("http://x"), "m", [], {}).ok  # restarted
    finally:
        adapter.close()


def test_a_testee_that_cannot_restart_is_given_up(tmp_path: Path) -> None:
    adapter = CommandAdapter(_fake(tmp_path, "once"), timeout=5)
    config = ClientConfig("http://x")
    try:
        with pytest.raises(
            AdapterError, match=r"exited \(status 3\) instead of answering op 'create'"
        ):
            adapter.create(config, "m", [], {})
        for _ in range(3):
            with pytest.raises(
                AdapterError, match=r"exited \(status 4\) instead of answering op 'hello'"
            ):
                adapter.create(config, "m", [], {})
        with pytest.raises(AdapterError, match="failed to start 3 times in a row"):
            adapter.create(config, "m", [], {})
    finally:
        adapter.close()


def test_garbage_stray_stdout_and_unknown_kinds(tmp_path: Path) -> None:
    garbage = CommandAdapter(_fake(tmp_path, "garbage"), timeout=10)
    try:
        with pytest.raises(AdapterError, match=r"not a JSON answer.*'this is not json'"):
            garbage.create(ClientConfig("http://x"), "m", [], {})
    finally:
        garbage.close()
    chatty = CommandAdapter(_fake(tmp_path, "chatty"), timeout=10)
    try:
        with pytest.raises(AdapterError, match=r"DEBUG connecting.*logs go to stderr"):
            chatty.create(ClientConfig("http://x"), "m", [], {})
    finally:
        chatty.close()
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
        with pytest.raises(AdapterError, match="since been killed"):
            adapter.create(None, "m", [], {}, client=Handle(0, "c1"))
    finally:
        adapter.close()


def test_per_operation_timeout_can_be_raised(tmp_path: Path) -> None:
    adapter = CommandAdapter(_fake(tmp_path, "slow"), timeout=0.5)
    try:
        with adapter.operation_timeout(10):
            assert adapter.create(ClientConfig("http://x"), "m", [], {}).ok
        assert adapter.request("create", timeout=10, model="m", messages=[], kwargs={}).ok
        assert adapter.timeout == 0.5
        with pytest.raises(AdapterError, match=r"within 0\.5 s"):
            adapter.create(ClientConfig("http://x"), "m", [], {})
    finally:
        adapter.close()


def test_the_testee_runs_in_its_own_fresh_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = tmp_path / "bin" / "testee"
    script.parent.mkdir()
    script.write_text(f"#!{sys.executable}\n" + textwrap.dedent(FAKE_TESTEE))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.chdir(tmp_path)
    adapter = CommandAdapter("./bin/testee cwd", timeout=10)  # relative to the suite's cwd
    try:
        workdir = adapter.workdir
        assert workdir is not None
        assert Path(workdir).is_dir()
        assert os.listdir(workdir) == []
        outcome = adapter.create(ClientConfig("http://x"), "m", [], {})
        assert outcome.result["cwd"] == os.path.realpath(workdir)
        assert os.listdir(workdir) == ["written.txt"]  # seen where the suite can look
        assert not (tmp_path / "written.txt").exists()
    finally:
        adapter.close()
    assert not Path(workdir).exists()  # the suite's directory, removed at the end


def test_relative_arguments_are_resolved(tmp_path: Path) -> None:
    (tmp_path / "dist").mkdir()
    (tmp_path / "dist" / "testee.js").write_text("")
    argv = resolve_argv("node dist/testee.js --flag=1 create", str(tmp_path))
    assert argv == ["node", str(tmp_path / "dist" / "testee.js"), "--flag=1", "create"]
    assert resolve_argv("./t", str(tmp_path)) == [str(tmp_path / "t")]
    assert resolve_argv("python -m x", str(tmp_path))[0] == sys.executable
    with pytest.raises(AdapterError, match="needs a command"):
        resolve_argv("  ", str(tmp_path))


# -- JSON on the wire ---------------------------------------------------------------------------


def _strict(line: bytes) -> object:
    def refuse(name: str) -> object:
        raise ValueError(name)

    return json.loads(line, parse_constant=refuse)


def test_non_finite_numbers_travel_tagged() -> None:
    request = {
        "kwargs": {"temperature": math.nan, "top_p": math.inf, "x": [-math.inf, 1.5]},
        "literal": {"$float": "NaN"},
        "nested": {"$object": 1},
        "normal": {"$float": "NaN", "other": 1},
    }
    line = dump_line(request)
    wire = _strict(line)  # a strict parser accepts it
    assert b"NaN" not in line.replace(b'"NaN"', b"")
    assert wire["kwargs"]["temperature"] == {"$float": "NaN"}
    assert wire["kwargs"]["x"][0] == {"$float": "-Infinity"}
    assert wire["literal"] == {"$object": {"$float": "NaN"}}  # a real object is escaped
    decoded = decode_value(wire)
    assert math.isnan(decoded["kwargs"]["temperature"])
    assert decoded["kwargs"]["top_p"] == math.inf
    assert decoded["literal"] == {"$float": "NaN"}
    assert decoded["nested"] == {"$object": 1}
    assert decoded["normal"] == {"$float": "NaN", "other": 1}


def test_values_without_json_form_are_not_sent(tmp_path: Path) -> None:
    with pytest.raises(NotJSON, match=r"kwargs\.x: a value of type bytes"):
        encode_value({"kwargs": {"x": b"raw"}})
    with pytest.raises(NotJSON, match="key of type int"):
        encode_value({1: "a"})
    adapter = CommandAdapter(_fake(tmp_path, "ok"), timeout=10)
    try:
        outcome = adapter.create(ClientConfig("http://x"), "m", [], {"stop": {"a", "b"}})
        assert outcome.error is not None
        assert outcome.error.kind == "unsupported"  # NOT APPLICABLE over cmd:, never sent
        echoed = adapter.create(ClientConfig("http://x"), "m", [], {"t": math.nan})
        assert math.isnan(echoed.result["request"]["kwargs"]["t"])  # tagged both ways
    finally:
        adapter.close()


def test_reference_testee_decodes_tags_and_refuses_nan_literals() -> None:
    adapter = CommandAdapter(REFERENCE, timeout=30)
    try:
        config = ClientConfig("http://127.0.0.1:9", allow_http=True)
        outcome = adapter.create(
            config, "m", [{"role": "user", "content": "x"}], {"temperature": math.nan}
        )
        assert outcome.error is not None
        assert outcome.error.kind == "value"  # NaN reached the client, refused before sending
        assert adapter._channel is not None
        adapter._channel.send(b'{"id": 99999, "op": "hello", "protocol": NaN}\n')
        line = adapter._channel.receive(10)
        answer = json.loads(line or b"{}")
        assert answer["ok"] is False
        assert answer["error"]["kind"] == "internal"
        assert "not RFC 8259 JSON" in answer["error"]["message"]
    finally:
        adapter.close()


# -- the selftest -------------------------------------------------------------------------------


def test_selftest_names_each_protocol_problem(tmp_path: Path) -> None:
    out = io.StringIO()
    assert selftest.run(_fake(tmp_path, "garbage"), timeout=5, out=out) == 1
    text = out.getvalue()
    assert "FAIL  unsupported: stdout line at op 'selftest.no_such_op' is not the answer" in text
    assert "'this is not json'; stdout carries answers only, logs go to stderr" in text
    assert "FAIL  hello: unknown capabilities" not in text
    assert "note  hello: python_api: in-process only, ignored over cmd:" in text
    out = io.StringIO()
    assert selftest.run(_fake(tmp_path, "hang"), timeout=1, out=out) == 1
    assert "FAIL  unsupported: no answer to op 'selftest.no_such_op' within 1 s" in out.getvalue()


def test_root_is_the_repository() -> None:
    assert (ROOT / "spec" / "testee.md").is_file()
