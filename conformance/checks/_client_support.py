"""Helpers of the client-behaviour checks (errors, retries, discovery, TLS, keys, logging).

Servers the session's mock router cannot be: a TLS front with a certificate for another
name or only old TLS versions, and a server that trickles its answer. Plus: a `connection`
kind that must come from the port's own APIConnectionError, logging captured from every
logger of the port whatever level it pinned, and the files a testee writes into its own
working directory. Nothing here imports an implementation (the independence rule).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import select
import socket
import ssl
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from conformance import expect
from conformance.adapter import Adapter, ErrorInfo, Outcome, operation_timeout
from conformance.checks._support import MODEL, NO_POST, expect_kind, messages

# ---------------------------------------------------------------------------------------------
# connection errors


def _class_of(type_name: str) -> type | None:
    """The class a `module.Qualname` type name designates, if importable."""
    module_name, _, qualname = type_name.rpartition(".")
    while module_name:
        try:
            found: Any = importlib.import_module(module_name)
        except ImportError:
            head, _, tail = module_name.rpartition(".")
            module_name, qualname = head, f"{tail}.{qualname}"
            continue
        for part in qualname.split("."):
            found = getattr(found, part, None)
        return found if isinstance(found, type) else None
    return None


def _port_class(impl: Adapter, name: str) -> type | None:
    module = getattr(impl, "module", None)
    value = getattr(module, name, None) if module is not None else None
    if value is not None and not isinstance(value, type):
        value = getattr(value, name, None)  # a same-named submodule (the official layout)
    return value if isinstance(value, type) else None


def connection_error(impl: Adapter, outcome: Outcome, what: str = "") -> ErrorInfo:
    """The outcome is kind `connection`, status_code None; for an in-process Python port the
    exception must be (a subclass of) the port's own APIConnectionError: a built-in
    ConnectionError or an httpx exception mapped to `connection` by an adapter is not one."""
    error = expect_kind(outcome, "connection", what)
    expect.equal(error.status_code, None, f"{what}: status_code" if what else "status_code")
    wanted = _port_class(impl, "APIConnectionError") if "python_api" in impl.capabilities else None
    if wanted is not None:
        raised = _class_of(error.type_name)
        expect.true(
            raised is not None and issubclass(raised, wanted),
            f"{wanted.__module__}.{wanted.__qualname__} (or a subclass)",
            f"{error.type_name or 'an unnamed type'}: {error.message[:120]}",
        )
    return error


# ---------------------------------------------------------------------------------------------
# a TLS front: a TLS server of our choosing in front of the plain http mock router


def _old_tls(context: ssl.SSLContext) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = ssl.TLSVersion.TLSv1_1
    context.set_ciphers("DEFAULT:@SECLEVEL=0")


@dataclass
class TLSFront:
    """What `tls_front` yields: the https URL, the CA to trust, and what happened."""

    url: str
    ca_path: str
    host: str
    port: int
    accepted: int = 0
    handshakes: list[str] = field(default_factory=list)  # TLS versions of completed handshakes
    failures: list[str] = field(default_factory=list)  # handshake errors (server side)


def _pump(a: socket.socket, b: socket.socket, stop: threading.Event) -> None:
    """Copy bytes both ways until either side closes."""
    sockets = [a, b]
    try:
        while not stop.is_set():
            readable, _, _ = select.select(sockets, [], [], 0.2)
            for sock in readable:
                data = sock.recv(65536)
                if not data:
                    return
                (b if sock is a else a).sendall(data)
    except (OSError, ssl.SSLError):
        return


@contextlib.contextmanager
def tls_front(
    upstream_url: str,
    *,
    names: tuple[str, ...] = ("127.0.0.1",),
    bind: str = "127.0.0.1",
    old_versions_only: bool = False,
) -> Iterator[TLSFront]:
    """A TLS server on `bind` forwarding every byte to the plain http server `upstream_url`.

    Its certificate (from a fresh CA written to a temporary ca.pem) is issued for `names`
    only: a certificate for another name than the URL's host is how a missing host name check
    shows. `old_versions_only` offers TLS 1.0 and 1.1 and nothing newer.
    """
    import trustme

    upstream = urlsplit(upstream_url)
    target = (upstream.hostname or "127.0.0.1", upstream.port or 80)
    ca = trustme.CA()
    cert = ca.issue_cert(*names)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(context)
    if old_versions_only:
        _old_tls(context)
    folder = tempfile.mkdtemp(prefix="conformance-tls-front-")
    ca_path = os.path.join(folder, "ca.pem")
    ca.cert_pem.write_to_path(ca_path)
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((bind, 0))
    listener.listen(16)
    listener.settimeout(0.2)
    port = listener.getsockname()[1]
    url_host = f"[{bind}]" if ":" in bind else bind
    front = TLSFront(f"https://{url_host}:{port}", ca_path, bind, port)
    stop = threading.Event()
    workers: list[threading.Thread] = []

    def serve_one(raw: socket.socket) -> None:
        try:
            raw.settimeout(10)
            wrapped = context.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError) as exc:
            front.failures.append(f"{type(exc).__name__}: {exc}")
            raw.close()
            return
        front.handshakes.append(str(wrapped.version()))
        try:
            with socket.create_connection(target, timeout=10) as plain:
                wrapped.settimeout(None)
                plain.settimeout(None)
                _pump(wrapped, plain, stop)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                wrapped.close()

    def accept_loop() -> None:
        while not stop.is_set():
            try:
                raw, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            front.accepted += 1
            worker = threading.Thread(target=serve_one, args=(raw,), daemon=True)
            workers.append(worker)
            worker.start()

    acceptor = threading.Thread(target=accept_loop, name="conformance-tls-front", daemon=True)
    acceptor.start()
    try:
        yield front
    finally:
        stop.set()
        acceptor.join(timeout=5)
        listener.close()
        for worker in workers:
            worker.join(timeout=2)
        with contextlib.suppress(OSError):
            os.remove(ca_path)
            os.rmdir(folder)


def old_tls_servable(front: TLSFront) -> str | None:
    """None when a TLS 1.1 handshake with `front` works here; else why not (the local
    OpenSSL may refuse to speak TLS below 1.2 at all, then TLS-10 cannot be judged)."""
    client = ssl.create_default_context(cafile=front.ca_path)
    try:
        _old_tls(client)
        with (
            socket.create_connection((front.host, front.port), timeout=5) as raw,
            client.wrap_socket(raw, server_hostname=front.host) as tls,
        ):
            version = tls.version()
    except (OSError, ssl.SSLError, ValueError) as exc:
        return f"this OpenSSL ({ssl.OPENSSL_VERSION}) cannot make a TLS 1.1 handshake: {exc}"
    finally:
        front.accepted = 0
        front.handshakes.clear()
        front.failures.clear()
    if version not in ("TLSv1", "TLSv1.1"):
        return f"the probe negotiated {version}, not TLS 1.0/1.1"
    return None


def ipv6_loopback() -> bool:
    """Whether ::1 can be bound here."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


# ---------------------------------------------------------------------------------------------
# a server that stalls or trickles its answer (ERR-10, DISC-5, API-21)


@dataclass
class SlowServer:
    """What `slow_server` yields: its URL and the request lines it received."""

    url: str
    requests: list[str] = field(default_factory=list)


def _read_request(conn: socket.socket) -> str | None:
    """Read one HTTP/1.1 request (head and Content-Length body); its request line."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length" and value.strip().isdigit():
            length = int(value.strip())
    while len(rest) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        rest += chunk
    return lines[0]


def _answer(conn: socket.socket, status: str, content_type: str, body: bytes) -> None:
    head = f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}"
    conn.sendall(head.encode("ascii") + b"\r\n\r\n" + body)


@contextlib.contextmanager
def slow_server(
    key_pem: str,
    stall: str,
    *,
    trickle: bool = False,
    interval: float = 0.25,
    hold: float = 7.0,
) -> Iterator[SlowServer]:
    """An http server, separate from the mock router (a stalled request there would be
    recorded into a later check), that stalls one endpoint: `stall` is "key" (the key
    fetch) or "post". The other endpoint answers at once: the key fetch with `key_pem`, the
    POST with a 503. The stalled one sends nothing for `hold` seconds (then closes), or with
    `trickle` a 200 whose body comes one byte every `interval` s, each byte well within any
    per-read timeout (only a bound on the whole answer ends that exchange). A client whose
    timeout works fails long before `hold`; one without ends after it, and a check sees why.
    """
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.2)
    server = SlowServer(f"http://127.0.0.1:{listener.getsockname()[1]}")
    stop = threading.Event()

    def stalled(conn: socket.socket, is_key: bool) -> None:
        if trickle:
            kind = "text/plain" if is_key else "application/json"
            conn.sendall(
                f"HTTP/1.1 200 OK\r\nContent-Type: {kind}\r\nContent-Length: 240\r\n\r\n".encode(
                    "ascii"
                )
            )
        deadline = time.monotonic() + hold
        while not stop.is_set() and time.monotonic() < deadline:
            if trickle:
                conn.sendall(b" ")
            stop.wait(interval)

    def serve_one(conn: socket.socket) -> None:
        with conn:
            conn.settimeout(30)
            try:
                while not stop.is_set():
                    line = _read_request(conn)
                    if line is None:
                        return
                    server.requests.append(line)
                    is_key = line.startswith("GET ") and "/pki/public_key" in line
                    if is_key == (stall == "key"):
                        stalled(conn, is_key)
                        return
                    if is_key:
                        _answer(conn, "200 OK", "text/plain", key_pem.encode("ascii"))
                    else:
                        _answer(
                            conn,
                            "503 Service Unavailable",
                            "application/json",
                            b'{"detail": "not this time"}',
                        )
            except OSError:
                return

    def accept_loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=serve_one, args=(conn,), daemon=True).start()

    acceptor = threading.Thread(target=accept_loop, name="conformance-slow-server", daemon=True)
    acceptor.start()
    try:
        yield server
    finally:
        stop.set()
        acceptor.join(timeout=5)
        listener.close()


def stalled_call(
    impl: Adapter, call: Any, make_config: Any, key_pem: str, stall: str, *, trickle: bool = False
) -> None:
    """A server that accepts the request and then says nothing: with timeout=1 s the call
    ends with APIConnectionError within 5 s, not when the server gives up 7 s later
    (ERR-10 for the POST, DISC-5 for the key fetch: the caller's id, one per check).
    With `trickle` the answer starts at once and then comes a byte every 0.25 s: only a
    timeout on the whole exchange ends it (API-21)."""
    method = "GET" if stall == "key" else "POST"
    with slow_server(key_pem, stall, trickle=trickle) as server, operation_timeout(impl, 30):
        config = make_config(base_url=server.url, timeout=1.0)
        started = time.monotonic()
        outcome = call(model=MODEL, messages=messages(), config=config)
        took = time.monotonic() - started
        if not any(r.startswith(method) for r in server.requests):
            blocker = "DISC-1" if stall == "key" else NO_POST
            expect.blocked(blocker, f"no {method} reached the server ({outcome})")
    connection_error(impl, outcome, f"stalled {stall}")
    expect.true(took < 5.0, "the call to end within 5 s (timeout 1 s)", f"{took:.1f} s")


@contextlib.contextmanager
def answer_times(router: Any) -> Iterator[dict[int, float]]:
    """When the router answered each request (by `SeenRequest.seq`): the record keeps
    arrival times only, and a wait between two attempts measured from one arrival to the
    next includes the router's own work on the first. The router adds a request to its
    record just before it answers; this wraps that call for the block."""
    record = router.record
    original = record.add
    times: dict[int, float] = {}

    def add(seen: Any) -> None:
        times[seen.seq] = time.time()
        original(seen)

    record.add = add
    try:
        yield times
    finally:
        del record.add  # back to the class's method


# ---------------------------------------------------------------------------------------------
# logging of the port, whatever level it pinned


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._seen: set[int] = set()

    def emit(self, record: logging.LogRecord) -> None:
        if id(record) not in self._seen:  # a record reaches us once per logger it passes
            self._seen.add(id(record))
            self.records.append(record)


def _port_packages(impl: Adapter) -> set[str]:
    names = {name.split(".")[0] for name in getattr(impl, "loggers", ()) if name}
    module = getattr(impl, "module", None)
    if module is not None:
        names.add(module.__name__.split(".")[0])
    return names


@contextlib.contextmanager
def port_logs(impl: Adapter) -> Iterator[list[logging.LogRecord]]:
    """Every log record emitted meanwhile, at DEBUG: the root and every logger of the port
    (the adapter's `loggers` and every logger under the port's package names) are set to
    DEBUG, enabled, and given our handler directly, so a package that pins its own logger at
    INFO, or stops propagation, is still heard. Everything is restored afterwards."""
    handler = _Collect()
    packages = _port_packages(impl)
    manager = logging.Logger.manager
    names = set(getattr(impl, "loggers", ()))
    names.update(
        name
        for name in list(manager.loggerDict)
        if any(name == p or name.startswith(p + ".") for p in packages)
    )
    targets = [logging.getLogger()] + [logging.getLogger(n) for n in sorted(names) if n]
    saved = [(lg, lg.level, lg.disabled) for lg in targets]
    previous_disable = manager.disable
    logging.disable(logging.NOTSET)
    for lg in targets:
        lg.setLevel(logging.DEBUG)
        lg.disabled = False
        lg.addHandler(handler)
    try:
        yield handler.records
    finally:
        for lg, level, disabled in saved:
            lg.removeHandler(handler)
            lg.setLevel(level)
            lg.disabled = disabled
        logging.disable(previous_disable)


# ---------------------------------------------------------------------------------------------
# files a client writes


def in_process(impl: Adapter) -> bool:
    """Whether the implementation runs in the suite's process (a cmd: testee has a workdir
    of its own): only then can a check see its umask, its file calls, its environment."""
    return getattr(impl, "workdir", None) is None


@dataclass
class FileCall:
    """One file-system call the port made: "create" (with the mode the file was created
    with, umask 0 assumed), "rename" (path -> target) or "chmod"."""

    op: str
    path: str
    mode: int | None = None
    target: str | None = None


_RECORDERS: list[list[FileCall]] = []
_HOOKED = False


def _audit(event: str, args: tuple[Any, ...]) -> None:
    """Never raises: an exception here would surface inside the port's own file call."""
    if not _RECORDERS:
        return
    with contextlib.suppress(Exception):  # a record we cannot read is no record
        _record(_RECORDERS[-1], event, args)


def _record(calls: list[FileCall], event: str, args: tuple[Any, ...]) -> None:
    if any(isinstance(a, int) and not isinstance(a, bool) for a in args[:1]):
        return  # a file descriptor (os.fdopen, fchmod): the creation was recorded by name
    if event == "open" and len(args) == 3 and args[1] is not None:
        path, _, flags = args  # builtins.open: created with 0o666 (it takes no mode)
        if isinstance(flags, int) and flags & os.O_CREAT:
            calls.append(FileCall("create", os.fsdecode(path), 0o666))
    elif event in ("os.rename", "os.replace") and len(args) >= 2:
        calls.append(FileCall("rename", os.fsdecode(args[0]), target=os.fsdecode(args[1])))
    elif event == "os.chmod" and len(args) >= 2 and not isinstance(args[0], int):
        calls.append(FileCall("chmod", os.fsdecode(args[0]), int(args[1])))


@contextlib.contextmanager
def file_calls() -> Iterator[list[FileCall]]:
    """The files the in-process port creates (and the mode it creates them with), renames
    and chmods meanwhile, with the umask at 0 so a creation mode is the file's mode.

    builtins.open is seen through the audit hook (it creates with 0o666); os.open (what
    tempfile, an opener and careful code use) through a wrapper that sees its mode argument.
    The audit hook is installed once per process and records only inside this block.
    """
    global _HOOKED
    import sys

    if not _HOOKED:
        sys.addaudithook(_audit)
        _HOOKED = True
    calls: list[FileCall] = []
    original_open = os.open

    def recording_open(path: Any, flags: int, mode: int = 0o777, *args: Any, **kw: Any) -> int:
        if flags & os.O_CREAT and not args and not kw.get("dir_fd"):
            name = os.fsdecode(path)
            if calls and calls[-1].op == "create" and calls[-1].path == name:
                calls.pop()  # builtins.open(opener=...): the opener's mode is the real one
            calls.append(FileCall("create", name, mode))
        return original_open(path, flags, mode, *args, **kw)

    _RECORDERS.append(calls)
    os.open = recording_open  # type: ignore[assignment]
    saved_umask = os.umask(0)
    try:
        yield calls
    finally:
        os.umask(saved_umask)
        os.open = original_open
        _RECORDERS.remove(calls)


def creation_modes(calls: list[FileCall], final: str) -> tuple[int | None, list[str]]:
    """The permission bits any file whose content ends up at `final` (the file itself, or a
    temporary file renamed to it) was created with (OR-ed; None: no creation seen), and the
    calls that got it there."""
    final = os.path.abspath(final)
    names = {final}
    for call in reversed(calls):  # follow renames backwards to the files they came from
        if call.op == "rename" and call.target and os.path.abspath(call.target) in names:
            names.add(os.path.abspath(call.path))
    combined: int | None = None
    story: list[str] = []
    for call in calls:
        if os.path.abspath(call.path) not in names:
            continue
        text = f"{call.op} {os.path.basename(call.path)}"
        if call.mode is not None:
            text += f" {oct(call.mode & 0o777)}"
        if call.target:
            text += f" -> {os.path.basename(call.target)}"
        story.append(text)
        if call.op == "create" and call.mode is not None:
            combined = (combined or 0) | (call.mode & 0o777)
    return combined, story


def tree(folder: str | Path) -> set[str]:
    """Every path under `folder` (relative), directories included."""
    base = Path(folder)
    if not base.is_dir():
        return set()
    return {str(p.relative_to(base)) for p in base.rglob("*")}
