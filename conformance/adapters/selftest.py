"""`--testee-selftest`: a few seconds that tell a port author whether the testee speaks the
protocol, before a full run turns a framing mistake into a hundred ERRORED checks.

    pytest conformance --impl="cmd:./my-testee" --testee-selftest
    python -m conformance.adapters.selftest "./my-testee"

It drives the testee by hand, line by line (not through CommandAdapter, which would kill it at
the first mistake), and checks what spec/testee.md asks of every testee: hello and its
capabilities, one JSON answer per line with the request's id, well-formed error answers,
`unsupported`, the tagged numbers, one real round trip against a local mock router, client
handles, shutdown, exit at end of input, and that stdout carries nothing but answers. Each
problem is one line saying what was expected and what came. Client behaviour the full run
judges (the kind of an error, warnings, files written) is shown as a note, never a failure.
"""

from __future__ import annotations

import json
import os
import queue
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TextIO

import pytest

from conformance.adapter import CAPABILITIES, IN_PROCESS_ONLY, KINDS, AdapterError
from conformance.adapters.cmd import (
    DEFAULT_TIMEOUT,
    MAX_ID,
    PROTOCOL,
    STARTUP_TIMEOUT,
    Channel,
    _clip,
    child_environment,
    parse_line,
    resolve_argv,
)

OK, FAIL, NOTE = "ok", "FAIL", "note"
EXIT_WAIT = 5.0  # seconds a testee may take to exit after shutdown or end of input
MODEL = "mock-model"
MESSAGES = [{"role": "user", "content": "Hello"}]
#: Seconds a real call may take here: a client without a key directory makes an RSA-4096
#: key pair first, which on a loaded machine can outlast the per-operation timeout.
CALL_PATIENCE = 60.0


@dataclass(frozen=True)
class Finding:
    """One line of the selftest's report."""

    status: str  # ok | FAIL | note
    step: str
    text: str

    def __str__(self) -> str:
        return f"  {self.status:<5} {self.step}: {self.text}"


class Stop(Exception):
    """The testee cannot go on (no answer, dead): later steps are skipped."""


class Selftest:
    """One selftest of one testee command."""

    def __init__(self, command: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.command = command
        self.timeout = timeout
        self.findings: list[Finding] = []
        self.argv = resolve_argv(command)
        self.env = child_environment(self.argv)
        self.workdir = tempfile.mkdtemp(prefix="nomyo-testee-selftest-")
        self.channel: Channel | None = None
        self.capabilities: set[str] = set()
        self._id = 0
        self._stray_steps: set[str] = set()

    # -- reporting ------------------------------------------------------------------------

    def ok(self, step: str, text: str) -> None:
        self.findings.append(Finding(OK, step, text))

    def fail(self, step: str, text: str) -> None:
        self.findings.append(Finding(FAIL, step, text))

    def note(self, step: str, text: str) -> None:
        self.findings.append(Finding(NOTE, step, text))

    @property
    def failed(self) -> bool:
        return any(f.status == FAIL for f in self.findings)

    # -- the channel ----------------------------------------------------------------------

    def _stray(self, step: str, line: bytes, after: str) -> None:
        if step in self._stray_steps:
            return  # one finding per step: the first stray line says enough
        self._stray_steps.add(step)
        hint = ""
        if line.strip() in (b"{", b"}", b"[", b"]") or line.startswith((b"  ", b"\t")):
            hint = " (one answer per line: do not pretty-print)"
        self.fail(
            step,
            f"stdout line {after} is not the answer: {_clip(line)}; stdout carries answers "
            f"only, logs go to stderr{hint}",
        )

    def _drain(self, step: str, after: str) -> None:
        """Lines already waiting before a request is sent are stray output."""
        assert self.channel is not None
        while True:
            try:
                line = self.channel.lines.get_nowait()
            except queue.Empty:
                return
            if not isinstance(line, bytes):  # end of output
                self.channel.lines.put(line)
                return
            self._stray(step, line, after)

    def ask(
        self,
        step: str,
        request: dict[str, Any],
        *,
        ident: int | None = None,
        patience: float | None = None,
    ) -> dict[str, Any]:
        """Send one request, return its answer; stray lines and a bad answer are FAILs."""
        channel = self.channel
        assert channel is not None
        self._drain(step, "before this request")
        if ident is None:
            self._id += 1
            ident = self._id
        request = {"id": ident, **request}
        op = request["op"]
        try:
            channel.send(json.dumps(request, allow_nan=False).encode("utf-8") + b"\n")
        except OSError:
            self.fail(step, f"the testee closed its stdin (or exited) before op {op!r}")
            raise Stop from None
        wait = self.timeout if patience is None else max(self.timeout, patience)
        deadline = time.monotonic() + wait
        while True:
            left = deadline - time.monotonic()
            try:
                line = channel.receive(max(left, 0.01))
            except queue.Empty:
                self.fail(step, f"no answer to op {op!r} within {wait:g} s" + self._tail())
                raise Stop from None
            if line is None:
                code = channel.wait(2)
                self.fail(step, f"the testee exited (status {code}) at op {op!r}" + self._tail())
                raise Stop
            try:
                answer = parse_line(line)
            except (ValueError, UnicodeDecodeError) as exc:
                if b"NaN" in line or b"Infinity" in line:
                    self.fail(
                        step,
                        f"answer to op {op!r} is not RFC 8259 JSON ({exc}); write non-finite "
                        'numbers as {"$float": "NaN"}',
                    )
                    raise Stop from None
                self._stray(step, line, f"at op {op!r}")
                continue
            if not isinstance(answer, dict) or answer.get("id") != ident:
                got = answer.get("id") if isinstance(answer, dict) else None
                if isinstance(answer, dict) and isinstance(got, int) and "ok" in answer:
                    self.fail(
                        step,
                        f"answer to op {op!r} carries id {got!r}, not the request's {ident} "
                        "(echo the id exactly, as an integer up to 2^53-1)",
                    )
                    return answer
                self._stray(step, line, f"at op {op!r}")
                continue
            self._check_shape(step, op, answer)
            return answer

    def _tail(self) -> str:
        tail = self.channel.stderr_tail(300) if self.channel is not None else ""
        return f"; stderr ends: {tail}" if tail else ""

    def _check_shape(self, step: str, op: str, answer: dict[str, Any]) -> None:
        if not isinstance(answer.get("ok"), bool):
            self.fail(step, f"answer to op {op!r} has no boolean 'ok': {_clip(repr(answer))}")
            return
        warnings = answer.get("warnings", [])
        if not isinstance(warnings, list) or not all(isinstance(w, str) for w in warnings):
            self.fail(step, f"'warnings' of the answer to op {op!r} must be a list of strings")
        if answer["ok"]:
            if "result" not in answer:
                self.fail(step, f"ok answer to op {op!r} has no 'result' member")
            return
        error = answer.get("error")
        if not isinstance(error, dict):
            self.fail(step, f"ok:false answer to op {op!r} has no 'error' object")
            return
        kind = error.get("kind")
        if kind not in KINDS:
            self.fail(
                step,
                f"error kind {kind!r} of op {op!r} is not a canonical kind "
                f"({', '.join(sorted(KINDS))})",
            )
        if not isinstance(error.get("message", ""), str):
            self.fail(step, f"error.message of op {op!r} must be a string")
        status = error.get("status_code")
        if status is not None and (not isinstance(status, int) or isinstance(status, bool)):
            self.fail(step, f"error.status_code of op {op!r} must be an integer or null")
        if not isinstance(error.get("type", ""), str):
            self.fail(step, f"error.type of op {op!r} must be a string")

    @staticmethod
    def error_of(answer: dict[str, Any]) -> dict[str, Any]:
        error = answer.get("error")
        return error if isinstance(error, dict) else {}

    # -- the steps ------------------------------------------------------------------------

    def run(self) -> list[Finding]:
        try:
            self.start()
            self.hello()
            self.unsupported()
            self.error_answer()
            with mock_server() as (url, router):
                self.round_trip(url, router)
                self.tagged_numbers(url, router)
                self.handles(url)
            self.shutdown()
            self.end_of_input()
            self.working_directory()
        except Stop:
            pass
        finally:
            if self.channel is not None:
                self.channel.close()
            shutil.rmtree(self.workdir, ignore_errors=True)
        return self.findings

    def start(self) -> None:
        try:
            self.channel = Channel(self.argv, self.workdir, self.env)
        except AdapterError as exc:
            self.fail("start", str(exc))
            raise Stop from None
        self.ok("start", f"{shlex.join(self.argv)} in a fresh directory")

    def hello(self) -> None:
        answer = self.ask("hello", {"op": "hello", "protocol": PROTOCOL}, patience=STARTUP_TIMEOUT)
        if answer.get("ok") is not True:
            self.fail("hello", f"hello must succeed, got error {self.error_of(answer)!r}")
            raise Stop
        info = answer.get("result")
        if not isinstance(info, dict):
            self.fail("hello", "hello's result must be an object {name, version, ...}")
            raise Stop
        problems = len(self.findings)
        if info.get("protocol") != PROTOCOL:
            self.fail("hello", f"protocol must be {PROTOCOL!r}, got {info.get('protocol')!r}")
        for key in ("name", "version", "language"):
            if not isinstance(info.get(key), str):
                self.fail("hello", f"{key} must be a string, got {info.get(key)!r}")
        declared = info.get("capabilities")
        if not isinstance(declared, list) or not all(isinstance(c, str) for c in declared):
            self.fail("hello", f"capabilities must be a list of strings, got {declared!r}")
            declared = []
        unknown = sorted(set(declared) - set(CAPABILITIES))
        if unknown:
            self.fail(
                "hello",
                f"unknown capabilities {', '.join(unknown)} (ignored: the checks needing what "
                f"you meant stay NOT APPLICABLE); known: {', '.join(sorted(CAPABILITIES))}",
            )
        inprocess = sorted(set(declared) & IN_PROCESS_ONLY)
        if inprocess:
            self.note("hello", f"{', '.join(inprocess)}: in-process only, ignored over cmd:")
        self.capabilities = set(declared) & set(CAPABILITIES) - IN_PROCESS_ONLY
        if len(self.findings) == problems:
            self.ok(
                "hello",
                f"{info.get('name')} {info.get('version')} ({info.get('language')}): "
                f"{', '.join(sorted(self.capabilities)) or 'no capabilities'}",
            )

    def unsupported(self) -> None:
        answer = self.ask("unsupported", {"op": "selftest.no_such_op"}, ident=MAX_ID)
        if answer.get("id") != MAX_ID:
            return  # reported by ask
        kind = self.error_of(answer).get("kind")
        if answer.get("ok") is not False or kind != "unsupported":
            self.fail(
                "unsupported",
                f"an unknown op must be answered ok:false with kind 'unsupported', got "
                f"{_clip(repr(answer))}",
            )
            return
        self.ok("unsupported", f"unknown op answered 'unsupported', id {MAX_ID} echoed exactly")

    def error_answer(self) -> None:
        config = {
            "base_url": "http://127.0.0.1:9",
            "allow_http": False,
            "selftest_future_option": None,  # a testee ignores config keys it does not know
        }
        answer = self.ask(
            "error answer",
            {"op": "create", "config": config, "model": MODEL, "messages": MESSAGES, "kwargs": {}},
        )
        error = self.error_of(answer)
        if answer.get("ok") is True:
            self.note(
                "error answer",
                "create with an http:// base URL and allow_http false succeeded (TLS-3 wants "
                "kind security; the full run judges it)",
            )
        elif error.get("kind") == "internal":
            self.fail(
                "error answer",
                f"kind internal ({error.get('type')}: {_clip(str(error.get('message')))}): "
                "map the client's exception types to kinds, and ignore unknown config keys",
            )
        elif error.get("kind") == "unsupported":
            self.fail("error answer", "create answered 'unsupported': create is required")
        elif error.get("kind") != "security":
            self.note(
                "error answer",
                f"kind {error.get('kind')!r} for an http:// URL without allow_http (TLS-3 "
                "wants security; the full run judges it)",
            )
        else:
            self.ok("error answer", "well-formed error answer (kind security)")

    def _client_failed(self, step: str, what: str, answer: dict[str, Any]) -> None:
        """A create that should have worked did not: a crash (internal) is the testee's
        problem; any other error is the client's, which the full run pins on a requirement."""
        error = self.error_of(answer)
        text = (
            f"{what} failed: {error.get('kind')} {error.get('status_code') or ''} "
            f"{_clip(str(error.get('message')))}"
        )
        if error.get("kind") in ("internal", "unsupported"):
            self.fail(step, text + " (map every exception the client raises to a kind)")
        else:
            self.note(step, text + " (client behaviour: the full run names the requirement)")

    def _config(self, url: str) -> dict[str, Any]:
        config: dict[str, Any] = {
            "base_url": url,
            "allow_http": True,
            "max_retries": 0,
            "timeout": 10.0,
            "retry_backoff": 0.01,
        }
        premade = os.environ.get("NOMYO_CONFORMANCE_CLIENT_KEY_DIR")
        if premade and "key_dir" in self.capabilities:
            config["key_dir"] = premade  # no 4096-bit key generation per client
        return config

    def round_trip(self, url: str, router: Any) -> None:
        kwargs = {"selftest_probe": {"$object": {"$float": "NaN"}}}
        answer = self.ask(
            "round trip",
            {
                "op": "create",
                "config": self._config(url),
                "model": MODEL,
                "messages": MESSAGES,
                "kwargs": kwargs,
            },
            patience=CALL_PATIENCE,
        )
        result = answer.get("result")
        if answer.get("ok") is not True:
            self._client_failed("round trip", "create against a local mock router", answer)
            return
        if not isinstance(result, dict) or result.get("object") != "chat.completion":
            self.fail("round trip", "create's result must be the chat.completion object")
            return
        self.ok("round trip", "create returned a chat.completion from a local mock router")
        payloads = [s.payload for s in router.seen if s.method == "POST"]
        probe = payloads[-1].get("selftest_probe") if payloads and payloads[-1] else None
        if probe == {"$float": "NaN"}:
            self.ok("tagged numbers", '{"$object": ...} unwrapped once, its content literal')
        elif isinstance(probe, dict) and "$object" in probe:
            self.fail("tagged numbers", 'the testee passed {"$object": {...}} on undecoded')
        else:
            self.note(
                "tagged numbers",
                f'an unknown parameter {{"$object": {{"$float": "NaN"}}}} reached the '
                f'router as {_clip(repr(probe))}, expected {{"$float": "NaN"}} (decode '
                "$object once, literally; or the client drops unknown parameters, REQ-4)",
            )
        if "warnings" in self.capabilities and not any(
            "insecure" in str(w).lower() for w in answer.get("warnings") or []
        ):
            self.note(
                "round trip",
                "capability 'warnings' declared, but no warning mentions 'insecure' for an "
                "http:// URL (TLS-4; the full run judges it)",
            )

    def tagged_numbers(self, url: str, router: Any) -> None:
        router.reset()
        answer = self.ask(
            "tagged numbers",
            {
                "op": "create",
                "config": self._config(url),
                "model": MODEL,
                "messages": MESSAGES,
                "kwargs": {"temperature": {"$float": "NaN"}},
            },
            patience=CALL_PATIENCE,
        )
        sent = [s for s in router.seen if s.method == "POST"]
        if any(b"$float" in (s.plaintext or b"") for s in sent):
            self.fail(
                "tagged numbers",
                'the testee passed {"$float": "NaN"} to the client as an object: decode it '
                "to the language's NaN (spec/testee.md)",
            )
        elif answer.get("ok") is False and self.error_of(answer).get("kind") == "value":
            self.ok("tagged numbers", '{"$float": "NaN"} decoded; the client refused NaN')
        else:
            self.note(
                "tagged numbers",
                "temperature NaN was not refused with kind value (REQ-11; the full run judges it)",
            )

    def handles(self, url: str) -> None:
        if "client_reuse" not in self.capabilities:
            self.note("client handles", "no client_reuse: client.open/close not tried")
            return
        opened = self.ask("client handles", {"op": "client.open", "config": self._config(url)})
        result = opened.get("result")
        handle = result.get("client") if isinstance(result, dict) else None
        if (
            opened.get("ok") is not True
            or not isinstance(handle, (str, int))
            or isinstance(handle, bool)
        ):
            self.fail(
                "client handles",
                f'client.open must answer {{"client": <string or number>}}, got '
                f"{_clip(repr(opened))}",
            )
            return
        used = self.ask(
            "client handles",
            {"op": "create", "client": handle, "model": MODEL, "messages": MESSAGES, "kwargs": {}},
            patience=CALL_PATIENCE,
        )
        if used.get("ok") is not True:
            self._client_failed("client handles", f"create through handle {handle!r}", used)
        described = self.ask("client.describe", {"op": "client.describe", "client": handle})
        forms = described.get("result")
        if described.get("ok") is True:
            if not isinstance(forms, list) or not all(isinstance(f, str) for f in forms):
                self.fail("client.describe", "the result must be a list of strings")
            elif "client_describe" not in self.capabilities:
                self.note("client.describe", "works: declare capability client_describe")
            else:
                self.ok("client.describe", f"{len(forms)} printed form(s)")
        elif self.error_of(described).get("kind") != "unsupported":
            self.fail("client.describe", "answer a list of strings, or kind 'unsupported'")
        elif "client_describe" in self.capabilities:
            self.fail("client.describe", "declared client_describe, but answered 'unsupported'")
        closed = self.ask("client handles", {"op": "client.close", "client": handle})
        if closed.get("ok") is not True:
            self.fail("client handles", f"client.close failed: {_clip(repr(closed))}")
        elif used.get("ok") is True:
            self.ok("client handles", "client.open, create through the handle, client.close")

    def shutdown(self) -> None:
        answer = self.ask("shutdown", {"op": "shutdown"})
        if answer.get("ok") is not True or answer.get("result") != {}:
            self.fail("shutdown", f"shutdown must answer ok with result {{}}, got {answer!r}")
        channel = self.channel
        assert channel is not None
        code = channel.wait(EXIT_WAIT)
        if code is None:
            self.fail("shutdown", f"the testee did not exit within {EXIT_WAIT:g} s of shutdown")
            return
        while True:
            try:
                line = channel.receive(1.0)
            except queue.Empty:
                break
            if line is None:
                break
            self._stray("shutdown", line, "after the shutdown answer")
        self.ok("shutdown", f"answered and exited (status {code})")

    def end_of_input(self) -> None:
        if self.channel is not None:
            self.channel.close()
        self.channel = Channel(self.argv, self.workdir, self.env)
        self.ask("end of input", {"op": "hello", "protocol": PROTOCOL}, patience=STARTUP_TIMEOUT)
        self.channel.close_stdin()
        if self.channel.wait(EXIT_WAIT) is None:
            self.fail(
                "end of input", f"the testee did not exit within {EXIT_WAIT:g} s of stdin closing"
            )
        else:
            self.ok("end of input", "exited when its stdin closed")

    def working_directory(self) -> None:
        left = []
        for root, dirs, files in os.walk(self.workdir):
            for name in dirs + files:
                left.append(os.path.relpath(os.path.join(root, name), self.workdir))
        if left:
            self.note(
                "working directory",
                f"the testee left {', '.join(sorted(left)[:5])} in its working directory "
                "(KEY-12: a client without key_dir writes no file; the full run judges it)",
            )


@contextmanager
def mock_server() -> Iterator[tuple[str, Any]]:
    """A mock router on loopback http: the suite's key when given, else a quick 2048-bit one."""
    from mock_router import MockRouter, serve

    key: Any = None
    path = os.environ.get("NOMYO_CONFORMANCE_SERVER_KEY")
    if path:
        from cryptography.hazmat.primitives import serialization

        with open(path, "rb") as handle:
            key = serialization.load_pem_private_key(handle.read(), password=None)
    router = MockRouter(server_key=key, key_size=2048) if key is None else MockRouter(key)
    with serve(router) as server:
        yield server.url, router


def run(command: str, timeout: float = DEFAULT_TIMEOUT, out: TextIO | None = None) -> int:
    """Selftest `command`, print the findings; 0 when nothing failed, else 1."""
    stream = out if out is not None else sys.stdout
    started = time.monotonic()
    test = Selftest(command, timeout)
    findings = test.run()
    print(f"testee selftest of {command!r} ({PROTOCOL}):", file=stream)
    for finding in findings:
        print(finding, file=stream)
    took = time.monotonic() - started
    problems = sum(1 for f in findings if f.status == FAIL)
    if problems:
        print(f"{problems} problem(s) in {took:.1f} s: fix them before a full run", file=stream)
        return 1
    print(
        f"the testee speaks {PROTOCOL} ({took:.1f} s); now run the suite without --testee-selftest",
        file=stream,
    )
    return 0


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> int | None:
    """With --testee-selftest: selftest the --impl=cmd: testee instead of running checks."""
    if not config.getoption("testee_selftest", False):
        return None
    impl = (config.getoption("impl") or "").strip()
    if not impl.startswith("cmd:") or not impl[4:].strip():
        raise pytest.UsageError(
            '--testee-selftest checks a subprocess testee: give --impl="cmd:COMMAND"'
        )
    try:
        return run(impl[4:].strip(), config.getoption("testee_timeout"))
    except AdapterError as exc:
        raise pytest.UsageError(f"--testee-selftest: {exc}") from None


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print('usage: python -m conformance.adapters.selftest "COMMAND"', file=sys.stderr)
        return 2
    try:
        return run(args[0])
    except AdapterError as exc:
        print(f"testee selftest: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
