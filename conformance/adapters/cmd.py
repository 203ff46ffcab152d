"""`--impl="cmd:COMMAND"`: a testee in any language, over JSON lines (spec/testee.md).

The suite starts COMMAND in a fresh temporary working directory of its own (`workdir`), says
hello, then sends one request line and reads one answer line at a time. What can go wrong
with a foreign process is contained here, so one misbehaving operation costs one check:

- a testee that does not answer within the per-operation timeout, exits, or writes anything
  but its answer to stdout is killed; the operation raises AdapterError (the check is
  ERRORED) and the next operation starts a new process with a new `hello`;
- a kill bumps `generation`: client handles of the dead process are refused, and the checks'
  client pool opens fresh clients instead of reusing them;
- within one check (`begin_check`), later operations after a kill fail at once instead of
  paying the timeout again (hypothesis would otherwise replay a hang many times);
- only RFC 8259 JSON is written: non-finite floats travel tagged (`{"$float": "NaN"}`), and a
  value JSON cannot carry (bytes, a set, an object) makes the operation `unsupported`.
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import os
import queue
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import IO, Any

from conformance.adapter import (
    CAPABILITIES,
    CLIENT_DESCRIBE,
    CREATE,
    IN_PROCESS_ONLY,
    KINDS,
    Adapter,
    AdapterError,
    ClientConfig,
    ErrorInfo,
    Kind,
    Outcome,
)

PROTOCOL = "nomyo-testee/1"
#: Seconds to wait for one answer: well below common client timeouts (30-60 s), well above
#: what a correct port needs (make_config gives clients a 10 s timeout).
DEFAULT_TIMEOUT = 20.0
#: Seconds a starting testee may take to answer hello (a JVM, a cold cache, a loaded machine).
STARTUP_TIMEOUT = 30.0
#: A testee that fails to start (or to answer hello) this often in a row is not started again.
MAX_FAILED_STARTS = 3
#: Largest request id: every JSON parser reads integers up to 2**53 - 1 exactly.
MAX_ID = 2**53 - 1
FLOAT_TAG = "$float"
OBJECT_TAG = "$object"
_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
_EOF = object()


# -- the wire: RFC 8259 JSON only ------------------------------------------------------------


class NotJSON(ValueError):
    """A value the suite wanted to send has no JSON form (bytes, set, object, non-str key)."""


def _float_name(value: float) -> str:
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


def encode_value(value: Any, where: str = "request") -> Any:
    """`value` with non-finite floats tagged (spec/testee.md, "Numbers JSON cannot carry").

    `{"$float": "NaN" | "Infinity" | "-Infinity"}` stands for the number; a real object whose
    only member is named "$float" or "$object" is wrapped as `{"$object": {...}}` so the tag
    is never ambiguous. Raises NotJSON, naming where, for a value JSON cannot carry.
    """
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {FLOAT_TAG: _float_name(value)}
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise NotJSON(f"{where}: a key of type {type(key).__name__} is not JSON")
            out[key] = encode_value(item, f"{where}.{key}")
        if len(out) == 1 and next(iter(out)) in (FLOAT_TAG, OBJECT_TAG):
            return {OBJECT_TAG: out}
        return out
    if isinstance(value, (list, tuple)):
        return [encode_value(item, f"{where}[{i}]") for i, item in enumerate(value)]
    raise NotJSON(f"{where}: a value of type {type(value).__name__} has no JSON form")


def decode_value(value: Any) -> Any:
    """The inverse of encode_value (answers may carry tagged numbers too)."""
    if isinstance(value, list):
        return [decode_value(item) for item in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        ((key, item),) = value.items()
        if key == FLOAT_TAG and item in _NON_FINITE:
            return _NON_FINITE[item]
        if key == OBJECT_TAG and isinstance(item, dict):
            return {k: decode_value(v) for k, v in item.items()}
    return {k: decode_value(v) for k, v in value.items()}


def dump_line(obj: Mapping[str, Any]) -> bytes:
    """One request line: tagged, then strict RFC 8259 JSON (allow_nan=False), UTF-8."""
    text = json.dumps(encode_value(obj), allow_nan=False, ensure_ascii=False)
    return text.encode("utf-8") + b"\n"


def _refuse_constant(name: str) -> Any:
    raise ValueError(f'{name} is not JSON (RFC 8259); send {{"$float": "{name}"}}')


def parse_line(line: bytes) -> Any:
    """Parse one answer line strictly (NaN/Infinity literals refused, like other languages)."""
    return json.loads(line.decode("utf-8"), parse_constant=_refuse_constant)


def _clip(data: bytes | str, limit: int = 120) -> str:
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    text = text.rstrip("\r\n")
    return repr(text if len(text) <= limit else text[:limit] + "...")


# -- one process ------------------------------------------------------------------------------


def resolve_argv(command: str, cwd: str | None = None) -> list[str]:
    """The argv of COMMAND, made independent of the testee's own working directory.

    A leading `python`/`python3` is the interpreter running the suite. A relative program
    path (`./my-testee`, `build/testee`) and relative arguments naming existing files
    (`node dist/testee.js`) are resolved against the suite's working directory, because the
    testee itself starts elsewhere (a fresh temporary directory).
    """
    base = cwd or os.getcwd()
    argv = shlex.split(command)
    if not argv:
        raise AdapterError('cmd: needs a command, e.g. --impl="cmd:./my-testee"')
    if argv[0] in ("python", "python3"):
        argv[0] = sys.executable
    elif not os.path.isabs(argv[0]) and ("/" in argv[0] or os.sep in argv[0]):
        argv[0] = os.path.normpath(os.path.join(base, argv[0]))
    for i, arg in enumerate(argv[1:], start=1):
        if arg.startswith("-") or os.path.isabs(arg):
            continue
        candidate = os.path.join(base, arg)
        if ("/" in arg or os.sep in arg or "." in arg) and os.path.exists(candidate):
            argv[i] = os.path.normpath(candidate)
    return argv


def child_environment(argv: list[str], cwd: str | None = None) -> dict[str, str]:
    """The testee's environment: the suite's, unbuffered; for a Python testee the suite's
    working directory leads PYTHONPATH, so `python -m pkg.testee` finds what it would have
    found when started there."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if argv and argv[0] == sys.executable:
        here = cwd or os.getcwd()
        rest = env.get("PYTHONPATH")
        env["PYTHONPATH"] = here + (os.pathsep + rest if rest else "")
    return env


class Channel:
    """One testee process: its pipes, a reader thread, its stderr kept in a temporary file."""

    def __init__(self, argv: list[str], cwd: str, env: Mapping[str, str]) -> None:
        self._stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - lives with the process
        self.lines: queue.Queue[Any] = queue.Queue()
        try:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                cwd=cwd,
                env=dict(env),
            )
        except OSError as exc:
            self._stderr.close()
            raise AdapterError(f"cannot start testee {shlex.join(argv)!r}: {exc}") from exc
        threading.Thread(target=self._read, name="testee-stdout", daemon=True).start()

    def _read(self) -> None:
        stream = self.proc.stdout
        try:
            if stream is not None:
                for line in iter(stream.readline, b""):
                    self.lines.put(line)
        except (OSError, ValueError):  # closed under us by a kill
            pass
        self.lines.put(_EOF)

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def send(self, data: bytes) -> None:
        """Write one line (OSError when the testee closed its stdin or died)."""
        stdin = self.proc.stdin
        if stdin is None:
            raise OSError("no stdin")
        stdin.write(data)
        stdin.flush()

    def receive(self, timeout: float) -> bytes | None:
        """The next stdout line, None at end of output; queue.Empty after `timeout` s."""
        item = self.lines.get(timeout=timeout)
        return None if item is _EOF else item  # type: ignore[no-any-return]

    def close_stdin(self) -> None:
        with contextlib.suppress(OSError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()

    def wait(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stderr_tail(self, limit: int = 400, lines: int = 4) -> str:
        """The last few lines the testee wrote to stderr, on one line (a traceback's last
        lines name the error; the testee never writes secrets there: spec/testee.md)."""
        try:
            self._stderr.seek(0, os.SEEK_END)
            size = self._stderr.tell()
            self._stderr.seek(max(0, size - 4 * limit))
            text = self._stderr.read().decode("utf-8", "replace")
        except (OSError, ValueError):
            return ""
        kept = [line.strip() for line in text.splitlines() if line.strip()][-lines:]
        joined = " | ".join(kept)
        return joined if len(joined) <= limit else "..." + joined[-limit:]

    def kill(self) -> None:
        if self.alive:
            self.proc.kill()
        self.wait(5)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()

    def close(self) -> None:
        self.kill()
        with contextlib.suppress(OSError):
            self._stderr.close()


# -- the adapter ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TesteeHandle:
    """A client handle of one testee process (generation): stale once that process is gone."""

    generation: int
    value: Any


class CommandAdapter(Adapter):
    """Drives a subprocess testee (spec/testee.md)."""

    def __init__(self, command: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        if timeout <= 0:
            raise AdapterError(f"--testee-timeout must be positive, got {timeout:g}")
        self.command = command
        self.argv = resolve_argv(command)
        self.env = child_environment(self.argv)
        self.timeout = timeout
        self.language = "unknown"
        self.workdir = tempfile.mkdtemp(prefix="nomyo-testee-")
        self._lock = threading.RLock()
        self._channel: Channel | None = None
        self._generation = 1
        self._next_id = 0
        self._closed = False
        self._tracking = False  # begin_check() was called: kills poison the rest of a check
        self._killed_in_check: str | None = None
        self._failed_starts = 0
        self._last_start_error = ""
        self.kills = 0
        try:
            self._start()
        except AdapterError:
            self.close()
            raise

    # -- process --------------------------------------------------------------------------

    def _start(self) -> None:
        if self._failed_starts >= MAX_FAILED_STARTS:
            raise AdapterError(
                f"the testee failed to start {self._failed_starts} times in a row; not tried "
                f"again (last: {self._last_start_error})"
            )
        try:
            self._hello()
        except AdapterError as exc:
            self._failed_starts += 1
            self._last_start_error = str(exc)
            raise
        self._failed_starts = 0

    def _hello(self) -> None:
        self._channel = Channel(self.argv, self.workdir, self.env)
        wait = max(self.timeout, STARTUP_TIMEOUT)
        answer = self._exchange_locked({"op": "hello", "protocol": PROTOCOL}, wait)
        if answer.get("ok") is not True:
            self._retire("refused hello")
            raise AdapterError(f"testee refused hello: {answer.get('error')!r}")
        info = answer.get("result")
        if not isinstance(info, dict) or info.get("protocol") != PROTOCOL:
            self._retire("wrong protocol")
            got = info.get("protocol") if isinstance(info, dict) else info
            raise AdapterError(f"testee hello: protocol must be {PROTOCOL!r}, got {got!r}")
        declared = info.get("capabilities", [])
        if not isinstance(declared, list) or not all(isinstance(c, str) for c in declared):
            self._retire("bad capabilities")
            raise AdapterError("testee hello: capabilities must be a list of strings")
        self.name = str(info.get("name", "testee"))
        self.version = str(info.get("version", "unknown"))
        self.language = str(info.get("language", "unknown"))
        # In-process capabilities mean nothing across a pipe; unknown names are ignored
        # (--testee-selftest lists them).
        self.capabilities = frozenset(
            c for c in declared if c in CAPABILITIES and c not in IN_PROCESS_ONLY
        ) | {CREATE}

    def _retire(self, why: str, *, failed: bool = True) -> None:
        """Kill the process (if any); its client handles become stale. A process killed for
        failing an operation (`failed`) is not restarted within the same check."""
        channel, self._channel = self._channel, None
        if channel is None:
            return
        channel.close()
        self._generation += 1
        self.kills += 1
        if failed and self._tracking:
            self._killed_in_check = why

    def _fail(self, message: str) -> AdapterError:
        """Kill the testee and describe why, with the end of its stderr."""
        channel = self._channel
        tail = channel.stderr_tail() if channel is not None else ""
        self._retire(message)
        return AdapterError(message + (f"; testee stderr ends: {tail}" if tail else ""))

    @property
    def generation(self) -> int:
        """Bumped by every kill or exit of the testee: handles from before are stale."""
        with self._lock:
            if self._channel is not None and not self._channel.alive:
                self._retire("exited", failed=False)
            return self._generation

    def begin_check(self) -> None:
        """A new check starts: a testee killed during the previous one may restart now."""
        with self._lock:
            self._tracking = True
            self._killed_in_check = None

    @contextlib.contextmanager
    def operation_timeout(self, seconds: float) -> Iterator[None]:
        with self._lock:
            saved, self.timeout = self.timeout, float(seconds)
        try:
            yield
        finally:
            with self._lock:
                self.timeout = saved

    # -- one exchange ---------------------------------------------------------------------

    def _exchange(
        self,
        request: dict[str, Any],
        *,
        handles: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Send one request, read its answer; AdapterError for anything off-protocol.

        `handles` are client handles to put into the request (field -> TesteeHandle); they
        are checked against the live process after any restart, never before.
        """
        with self._lock:
            if self._closed:
                raise AdapterError("the testee adapter is closed")
            if self._killed_in_check is not None:
                raise AdapterError(
                    f"the testee was killed earlier in this check ({self._killed_in_check}); "
                    "it restarts for the next check"
                )
            if self._channel is None or not self._channel.alive:
                self._retire("exited", failed=False)  # between operations: just restart
                self._start()
            for field, handle in (handles or {}).items():
                request[field] = self._unwrap(handle)
            return self._exchange_locked(request, self.timeout if timeout is None else timeout)

    def _exchange_locked(self, request: dict[str, Any], timeout: float) -> dict[str, Any]:
        channel = self._channel
        assert channel is not None
        self._next_id = self._next_id + 1 if self._next_id < MAX_ID else 1
        request = {"id": self._next_id, **request}
        op = request["op"]
        what = f"op {op!r} (id {request['id']})"
        data = dump_line(request)  # NotJSON before anything is written
        try:
            channel.send(data)
        except OSError as exc:
            code = channel.wait(2)
            raise self._fail(
                f"testee closed its stdin before {what}"
                + (f" (exit status {code})" if code is not None else f": {exc}")
            ) from None
        try:
            line = channel.receive(timeout)
        except queue.Empty:
            raise self._fail(
                f"testee did not answer {what} within {timeout:g} s (killed)"
            ) from None
        if line is None:
            code = channel.wait(5)
            raise self._fail(f"testee exited (status {code}) instead of answering {what}")
        try:
            answer = parse_line(line)
        except (ValueError, UnicodeDecodeError):
            raise self._fail(
                f"testee wrote a line to stdout that is not a JSON answer, at {what}: "
                f"{_clip(line)} (stdout carries answers only; logs go to stderr)"
            ) from None
        if not isinstance(answer, dict) or "id" not in answer:
            raise self._fail(
                f"testee answered {what} with {_clip(line)}: an answer is a JSON object with "
                "the request's id"
            )
        if answer["id"] != request["id"] or isinstance(answer["id"], bool):
            raise self._fail(
                f"testee answered {what} with id {answer['id']!r}: {_clip(line)} (stray "
                "stdout output, or an answer out of order)"
            )
        if not isinstance(answer.get("ok"), bool):
            raise self._fail(f"testee answer to {what} has no boolean 'ok': {_clip(line)}")
        return answer

    def _call(
        self,
        op: str,
        *,
        handles: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        **fields: Any,
    ) -> Outcome:
        try:
            answer = self._exchange({"op": op, **fields}, handles=handles, timeout=timeout)
        except NotJSON as exc:
            return Outcome.failure(
                ErrorInfo(Kind.UNSUPPORTED.value, f"{exc}: cannot be sent to a testee (cmd:)")
            )
        return self._outcome(op, answer)

    def request(self, op: str, *, timeout: float | None = None, **fields: Any) -> Outcome:
        """Any operation by name (a check may use ops newer than this adapter's methods);
        `timeout` overrides the per-operation wait for this one call."""
        handles = {k: v for k, v in fields.items() if isinstance(v, TesteeHandle)}
        plain = {k: v for k, v in fields.items() if k not in handles}
        return self._wrap(self._call(op, handles=handles, timeout=timeout, **plain))

    @staticmethod
    def _outcome(op: str, answer: Mapping[str, Any]) -> Outcome:
        raw_warnings = answer.get("warnings") or []
        if not isinstance(raw_warnings, list):
            raise AdapterError(f"testee answer to op {op!r}: 'warnings' must be a list")
        warnings = tuple(str(w) for w in raw_warnings)
        if answer["ok"] is True:
            return Outcome.success(decode_value(answer.get("result")), warnings)
        error = answer.get("error")
        if not isinstance(error, dict):
            raise AdapterError(f"testee answer to op {op!r} is ok:false without an error object")
        kind = str(error.get("kind", ""))
        message = str(error.get("message", ""))
        if kind not in KINDS:
            message = f"testee used unknown kind {kind!r}: {message}"
            kind = Kind.INTERNAL.value
        status = error.get("status_code")
        return Outcome.failure(
            ErrorInfo(
                kind=kind,
                message=message,
                status_code=status
                if isinstance(status, int) and not isinstance(status, bool)
                else None,
                details=decode_value(error.get("details")),
                type_name=str(error.get("type", "")),
            ),
            warnings,
        )

    # -- handles --------------------------------------------------------------------------

    def _wrap(self, outcome: Outcome) -> Outcome:
        result = outcome.result
        if outcome.ok and isinstance(result, dict) and "client" in result:
            wrapped = dict(result, client=TesteeHandle(self._generation, result["client"]))
            return Outcome.success(wrapped, outcome.warnings)
        return outcome

    def _unwrap(self, handle: Any) -> Any:
        if not isinstance(handle, TesteeHandle):
            raise AdapterError(f"not a client handle of this testee: {handle!r}")
        if handle.generation != self._generation:
            raise AdapterError(
                "client handle of a testee process that has since been killed or has exited "
                "(open a new client)"
            )
        return handle.value

    # -- operations -----------------------------------------------------------------------

    def open_client(self, config: ClientConfig) -> Outcome:
        return self._wrap(self._call("client.open", config=config.to_json()))

    def create(
        self,
        config: ClientConfig | None,
        model: str,
        messages: Any,
        kwargs: Mapping[str, Any] | None = None,
        *,
        client: Any = None,
    ) -> Outcome:
        fields: dict[str, Any] = {"model": model, "messages": messages}
        fields["kwargs"] = dict(kwargs or {})
        if client is not None:
            return self._call("create", handles={"client": client}, **fields)
        if config is None:
            raise AdapterError("create needs a config or a client")
        return self._call("create", config=config.to_json(), **fields)

    def close_client(self, handle: Any) -> None:
        with self._lock:
            stale = not isinstance(handle, TesteeHandle) or handle.generation != self.generation
            if stale or self._closed or self._channel is None:
                return  # nothing to close: the process that held it is gone
            self._call("client.close", handles={"client": handle})

    def describe_client(self, handle: Any) -> Outcome:
        if CLIENT_DESCRIBE not in self.capabilities:
            return Outcome.unsupported("client.describe")
        outcome = self._call("client.describe", handles={"client": handle})
        if outcome.ok and not (
            isinstance(outcome.result, list) and all(isinstance(s, str) for s in outcome.result)
        ):
            raise AdapterError(
                f"testee answer to client.describe must be a list of strings, got "
                f"{_clip(repr(outcome.result))}"
            )
        return outcome

    def generate_keys(self, directory: str, password: str | None = None) -> Outcome:
        return self._call("keys.generate", directory=directory, password=password)

    def load_keys(
        self,
        private_key_path: str,
        public_key_path: str | None = None,
        password: str | None = None,
    ) -> Outcome:
        return self._call(
            "keys.load",
            private_key_path=private_key_path,
            public_key_path=public_key_path,
            password=password,
        )

    def encrypt_payload(
        self, config: ClientConfig | None, payload: Any, *, client: Any = None
    ) -> Outcome:
        fields: dict[str, Any] = {"payload": payload}
        handles = {"client": client} if client is not None else {}
        if client is None and config is not None:
            fields["config"] = config.to_json()
        outcome = self._wrap(self._call("encrypt_payload", handles=handles, **fields))
        if outcome.ok and isinstance(outcome.result, dict) and "body_b64" in outcome.result:
            result = dict(outcome.result)
            try:
                result["body"] = base64.b64decode(result.pop("body_b64"), validate=True)
            except (ValueError, TypeError) as exc:
                raise AdapterError(
                    f"testee encrypt_payload: body_b64 is not base64 ({exc})"
                ) from None
            return Outcome.success(result, outcome.warnings)
        return outcome

    def decrypt_response(self, body: bytes, payload_id: str, *, client: Any) -> Outcome:
        return self._call(
            "decrypt_response",
            handles={"client": client},
            body_b64=base64.b64encode(body).decode("ascii"),
            payload_id=payload_id,
        )

    def close(self) -> None:
        with self._lock:
            channel = self._channel
            if channel is not None and channel.alive and not self._closed:
                with contextlib.suppress(AdapterError, NotJSON):
                    self._exchange_locked({"op": "shutdown"}, min(self.timeout, 5.0))
                channel.close_stdin()
                channel.wait(5)
            if self._channel is not None:
                self._channel.close()
                self._channel = None
            self._closed = True
            if self.workdir is not None:
                shutil.rmtree(self.workdir, ignore_errors=True)
