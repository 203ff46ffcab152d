"""A tiny raw HTTP/1.1 server on loopback for fault injection (silence, trickles, floods).

Each accepted connection is handed to ``handler(conn)``; ``conn`` reads request heads and
bodies and writes raw bytes, counting what was written. The server records every connection
and every request line, so tests can count attempts. Connections are closed when the handler
returns or the peer goes away.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field


@dataclass
class RawConnection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    server: RawServer

    async def read_request(self) -> tuple[str, dict[str, str], bytes] | None:
        """(request line, headers, body) of the next request, or None at EOF."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        lines = head.decode("latin-1").split("\r\n")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0") or 0)
        body = await self.reader.readexactly(length) if length else b""
        self.server.requests.append(lines[0])
        return lines[0], headers, body

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()
        self.server.bytes_sent += len(data)

    async def wait_closed_by_peer(self) -> None:
        """Read until the client goes away (discarding), so the server never closes first."""
        with contextlib.suppress(ConnectionError):
            while await self.reader.read(65536):
                pass


Handler = Callable[[RawConnection], Awaitable[None]]


@dataclass
class RawServer:
    handler: Handler
    connections: int = 0
    requests: list[str] = field(default_factory=list)
    bytes_sent: int = 0
    port: int = 0
    _server: asyncio.AbstractServer | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self.handler(RawConnection(reader, writer, self))
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


@contextlib.asynccontextmanager
async def raw_server(handler: Handler) -> AsyncIterator[RawServer]:
    state = RawServer(handler)
    server = await asyncio.start_server(state._serve, "127.0.0.1", 0)
    state._server = server
    state.port = server.sockets[0].getsockname()[1]
    try:
        yield state
    finally:
        server.close()
        for task in list(state._tasks):
            task.cancel()
        await asyncio.sleep(0.05)
        await server.wait_closed()


def response_head(status: int, reason: str, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status} {reason}"] + [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def key_answer(pem: str) -> bytes:
    body = pem.encode("ascii")
    return response_head(200, "OK", {"Content-Type": "text/plain; charset=utf-8",
                                     "Content-Length": str(len(body))}) + body
