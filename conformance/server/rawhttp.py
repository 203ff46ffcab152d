"""HTTP/1.1 over a plain socket, for the two body-size checks no HTTP client can make (SRV-2).

A router must refuse a body over 16 MiB without reading it whole. Two ways to ask: declare a
Content-Length over the limit and send no body at all (the answer must come anyway), or
stream a chunked body past the limit and keep the connection open (the answer must come
while the client is still sending). Either way a router that waits for the whole body never
answers within the timeout, which is the failure the check reports.
"""

from __future__ import annotations

import select
import socket
import ssl
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass

from conformance.server.transport import POST_PATH, Answer

CHUNK = 64 * 1024


@dataclass(frozen=True)
class RawResult:
    """What happened: the answer (None when none came in time) and the body bytes sent."""

    answer: Answer | None
    sent: int
    waited: float


def _connect(url: str, context: ssl.SSLContext | None, timeout: float) -> socket.socket:
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or "localhost"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    sock = socket.create_connection((host, port), timeout=timeout)
    if parts.scheme == "https":
        assert context is not None
        sock = context.wrap_socket(sock, server_hostname=host)
    return sock


def _head(url: str, headers: Sequence[tuple[str, bytes]], framing: str) -> bytes:
    parts = urllib.parse.urlsplit(url)
    lines = [f"POST {parts.path}{POST_PATH} HTTP/1.1".encode(),
             f"Host: {parts.netloc}".encode(), framing.encode(), b"Connection: close"]
    lines.extend(name.encode("ascii") + b": " + value for name, value in headers)
    return b"\r\n".join(lines) + b"\r\n\r\n"


def _early(sock: socket.socket) -> bytes:
    """Bytes of an answer that has started to come (b"" when none has). Over TLS, readable
    may mean a session ticket only: a non-blocking read tells the two apart."""
    if not select.select([sock], [], [], 0)[0] and not (
        isinstance(sock, ssl.SSLSocket) and sock.pending()
    ):
        return b""
    sock.setblocking(False)
    try:
        return sock.recv(65536) or b"\0"  # b"\0": closed (never part of an answer)
    except (ssl.SSLWantReadError, BlockingIOError):
        return b""
    finally:
        sock.setblocking(True)


def _read_answer(sock: socket.socket, deadline: float, data: bytes = b"") -> Answer | None:
    """Read one answer (status line, headers, body by Content-Length or to the close)."""
    while b"\r\n\r\n" not in data:
        chunk = _recv(sock, deadline)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    try:
        status = int(lines[0].split()[1])
    except (IndexError, ValueError):
        return None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = headers.get("content-length")
    while length is None or len(body) < int(length):
        chunk = _recv(sock, deadline)
        if not chunk:
            break
        body += chunk
    if length is not None:
        body = body[: int(length)]
    return Answer(status, headers, body)


def _recv(sock: socket.socket, deadline: float) -> bytes:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        return b""
    sock.settimeout(remaining)
    try:
        return sock.recv(65536)
    except (TimeoutError, OSError):
        return b""


def declared_oversize(url: str, headers: Sequence[tuple[str, bytes]], length: int,
                      context: ssl.SSLContext | None, timeout: float = 15.0) -> RawResult:
    """Declare `length` bytes, send none, and wait for the answer."""
    started = time.monotonic()
    with _connect(url, context, timeout) as sock:
        sock.sendall(_head(url, headers, f"Content-Length: {length}"))
        answer = _read_answer(sock, started + timeout)
    return RawResult(answer, 0, time.monotonic() - started)


def streamed_oversize(url: str, headers: Sequence[tuple[str, bytes]], total: int,
                      context: ssl.SSLContext | None, timeout: float = 15.0) -> RawResult:
    """Stream `total` bytes chunked (never ending the body); stop when the answer starts."""
    started = time.monotonic()
    sent = 0
    block = b"x" * CHUNK
    early = b""
    with _connect(url, context, timeout) as sock:
        sock.sendall(_head(url, headers, "Transfer-Encoding: chunked"))
        try:
            while sent < total and not (early := _early(sock)):
                size = min(CHUNK, total - sent)
                sock.sendall(f"{size:x}\r\n".encode() + block[:size] + b"\r\n")
                sent += size
        except OSError:
            pass  # the router closed its side: its answer may be waiting
        answer = _read_answer(sock, started + timeout, early.rstrip(b"\0"))
    return RawResult(answer, sent, time.monotonic() - started)
