"""`--impl="cmd:COMMAND"`: a testee in any language, over JSON lines (spec/testee.md).

The suite starts COMMAND, says hello, then sends one request line and reads one answer line
at a time. A testee that does not answer within the timeout is killed (the check is
ERRORED) and restarted for the next check; handles from a dead testee are refused.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import queue
import shlex
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO, Any

from conformance.adapter import (
    CAPABILITIES,
    KINDS,
    Adapter,
    AdapterError,
    ClientConfig,
    ErrorInfo,
    Kind,
    Outcome,
)

PROTOCOL = "nomyo-testee/1"
_EOF = object()


@dataclass(frozen=True)
class TesteeHandle:
    """A client handle of one testee process (generation): stale after a restart."""

    generation: int
    value: Any


class CommandAdapter(Adapter):
    """Drives a subprocess testee."""

    def __init__(self, command: str, timeout: float = 60.0) -> None:
        self.command = command
        self.argv = self._argv(command)
        self.timeout = timeout
        self.language = "unknown"
        self._lock = threading.RLock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._lines: queue.Queue[Any] = queue.Queue()
        self._stderr: IO[bytes] | None = None
        self._generation = 0
        self._next_id = 0
        self._closed = False
        self._start()

    @staticmethod
    def _argv(command: str) -> list[str]:
        argv = shlex.split(command)
        if not argv:
            raise AdapterError("cmd: needs a command")
        if argv[0] in ("python", "python3"):
            argv[0] = sys.executable  # "python" means the interpreter running the suite
        return argv

    # -- process --------------------------------------------------------------------------

    def _start(self) -> None:
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the testee
        try:
            self._proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        except OSError as exc:
            raise AdapterError(f"cannot start testee {self.command!r}: {exc}") from exc
        self._generation += 1
        self._lines = queue.Queue()
        threading.Thread(
            target=self._read, args=(self._proc.stdout, self._lines), daemon=True
        ).start()
        answer = self._exchange({"op": "hello", "protocol": PROTOCOL})
        if not answer.get("ok"):
            raise AdapterError(f"testee refused hello: {answer.get('error')}")
        info = answer.get("result")
        if not isinstance(info, dict) or info.get("protocol") != PROTOCOL:
            raise AdapterError(f"testee hello answer is not {PROTOCOL}: {info!r}")
        self.name = str(info.get("name", "testee"))
        self.version = str(info.get("version", "unknown"))
        self.language = str(info.get("language", "unknown"))
        declared = info.get("capabilities", [])
        if not isinstance(declared, list):
            raise AdapterError("testee hello: capabilities must be a list")
        # In-process capabilities mean nothing across a pipe.
        self.capabilities = frozenset(
            c for c in declared if c in CAPABILITIES and c not in ("python_api", "log_capture")
        ) | {"create"}

    @staticmethod
    def _read(stream: IO[bytes] | None, lines: queue.Queue[Any]) -> None:
        try:
            if stream is not None:
                for line in iter(stream.readline, b""):
                    lines.put(line)
        except (OSError, ValueError):  # closed under us by a kill
            pass
        lines.put(_EOF)

    def _stderr_tail(self, limit: int = 2000) -> str:
        if self._stderr is None:
            return ""
        try:
            self._stderr.seek(0, os.SEEK_END)
            size = self._stderr.tell()
            self._stderr.seek(max(0, size - limit))
            return self._stderr.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()

    def _exchange(self, request: dict[str, Any]) -> dict[str, Any]:
        """Send one request, read its answer; AdapterError for anything off-protocol."""
        with self._lock:
            if self._closed:
                raise AdapterError("the testee adapter is closed")
            if self._proc is None or self._proc.poll() is not None:
                self._kill()
                self._start()
            proc = self._proc
            assert proc is not None
            assert proc.stdin is not None
            self._next_id += 1
            request = {"id": self._next_id, **request}
            op = request["op"]
            try:
                proc.stdin.write(json.dumps(request).encode("utf-8") + b"\n")
                proc.stdin.flush()
            except OSError as exc:
                self._kill()
                raise AdapterError(f"testee closed its input at op {op}: {exc}") from exc
            try:
                line = self._lines.get(timeout=self.timeout)
            except queue.Empty:
                self._kill()
                raise AdapterError(
                    f"testee did not answer op {op!r} within {self.timeout:g} s (killed); "
                    f"stderr tail: {self._stderr_tail()}"
                ) from None
            if line is _EOF:
                code = proc.wait(timeout=5)
                self._kill()
                raise AdapterError(
                    f"testee exited (status {code}) at op {op!r}; stderr tail: "
                    f"{self._stderr_tail()}"
                )
            try:
                answer = json.loads(line)
            except ValueError as exc:
                self._kill()
                raise AdapterError(
                    f"testee answered op {op!r} with a line that is not JSON: {line[:200]!r}"
                ) from exc
            if not isinstance(answer, dict) or answer.get("id") != request["id"]:
                self._kill()
                raise AdapterError(f"testee answer to op {op!r} has the wrong id: {answer!r}")
            return answer

    def _call(self, op: str, **fields: Any) -> Outcome:
        return self._outcome(self._exchange({"op": op, **fields}))

    @staticmethod
    def _outcome(answer: Mapping[str, Any]) -> Outcome:
        warnings = tuple(str(w) for w in answer.get("warnings") or ())
        if answer.get("ok") is True:
            return Outcome.success(answer.get("result"), warnings)
        error = answer.get("error")
        if not isinstance(error, dict):
            raise AdapterError(f"testee answer has neither ok:true nor an error: {answer!r}")
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
                status_code=status if isinstance(status, int) else None,
                details=error.get("details"),
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
            raise AdapterError(f"not a handle of this testee: {handle!r}")
        if handle.generation != self._generation:
            raise AdapterError("client handle of a testee process that has since been restarted")
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
            fields["client"] = self._unwrap(client)
        elif config is not None:
            fields["config"] = config.to_json()
        else:
            raise AdapterError("create needs a config or a client")
        return self._call("create", **fields)

    def close_client(self, handle: Any) -> None:
        if isinstance(handle, TesteeHandle) and handle.generation == self._generation:
            self._call("client.close", client=handle.value)

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
        if client is not None:
            fields["client"] = self._unwrap(client)
        elif config is not None:
            fields["config"] = config.to_json()
        outcome = self._wrap(self._call("encrypt_payload", **fields))
        if outcome.ok and isinstance(outcome.result, dict) and "body_b64" in outcome.result:
            result = dict(outcome.result)
            result["body"] = base64.b64decode(result.pop("body_b64"))
            return Outcome.success(result, outcome.warnings)
        return outcome

    def decrypt_response(self, body: bytes, payload_id: str, *, client: Any) -> Outcome:
        return self._call(
            "decrypt_response",
            client=self._unwrap(client),
            body_b64=base64.b64encode(body).decode("ascii"),
            payload_id=payload_id,
        )

    def close(self) -> None:
        with self._lock:
            proc = self._proc
            if proc is not None and proc.poll() is None:
                self.timeout = min(self.timeout, 5.0)  # a polite goodbye, not another wait
                with contextlib.suppress(AdapterError):
                    self._exchange({"op": "shutdown"})
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=5)
            self._kill()
            self._closed = True
            if self._stderr is not None:
                self._stderr.close()
                self._stderr = None
