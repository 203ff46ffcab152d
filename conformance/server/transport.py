"""HTTP to the router under test, every request counted against the profile's budget.

The live profile promises a bounded number of requests at a gentle pace: the one place
that sends anything enforces it, so no check can exceed it by accident. Redirects are never
followed (a check sees exactly what the router answered).
"""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import httpx

from conformance.server.options import ServerOptions

KEY_PATH = "/pki/public_key"
POST_PATH = "/v1/chat/secure_completion"
# The live profile: at most this many requests (README, section server), one every PACE s.
LIVE_BUDGET = 60
LIVE_PACE = 0.25
TIMEOUT = 60.0
MAX_429_RETRIES = 2
MAX_RETRY_AFTER = 10.0


class BudgetExhausted(RuntimeError):
    """A check wanted to send more than the live profile allows (a defect of the suite)."""


@dataclass(frozen=True)
class Answer:
    """One HTTP answer: status, headers (lower-case names), body, time taken."""

    status: int
    headers: dict[str, str]
    body: bytes
    elapsed: float = 0.0
    secrets: tuple[str, ...] = field(default=(), repr=False)  # never quoted in messages

    @property
    def media_type(self) -> str:
        return self.headers.get("content-type", "").split(";", 1)[0].strip().lower()

    def json(self) -> Any:
        """The body as JSON, or None when it is not JSON."""
        try:
            return json.loads(self.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return None

    @property
    def detail(self) -> str | None:
        """The `detail` string of a {"detail": "..."} body, else None."""
        value = self.json()
        if isinstance(value, dict) and isinstance(value.get("detail"), str):
            return value["detail"]
        return None

    def raw_text(self, limit: int = 4096) -> str:
        """The body as text, for checks that search it (never for messages)."""
        return self.body[:limit].decode("utf-8", errors="replace")

    def redact(self, text: str) -> str:
        """`text` without the API key, whatever the router echoed (LOG-7 judges the echo)."""
        for secret in self.secrets:
            text = text.replace(secret, "<redacted>")
        return text

    def text(self, limit: int = 300) -> str:
        text = self.redact(self.body.decode("utf-8", errors="replace"))
        return text if len(text) <= limit else text[:limit] + f"... ({len(self.body)} bytes)"

    def describe(self) -> str:
        """`400 {"detail": "..."}` for messages (bodies of error answers only: never secrets)."""
        if self.status == 200:
            return f"200 ({len(self.body)} bytes, Content-Type {self.media_type or 'none'})"
        return f"{self.status} {self.text()!r}"


def ssl_context(ca: str | None) -> ssl.SSLContext:
    """The system trust store, or exactly the given CA file (like a client's ca_bundle)."""
    if ca is None:
        return ssl.create_default_context()
    return ssl.create_default_context(cafile=ca)


def tls_context(options: ServerOptions) -> ssl.SSLContext | None:
    """The TLS context for an https router (None for plain http)."""
    return ssl_context(options.ca) if options.url.startswith("https:") else None


def verify_for(options: ServerOptions) -> ssl.SSLContext | bool:
    """What httpx verifies with: the context for https (made only then: loading the trust
    store costs a tenth of a second), nothing for a plain-http router."""
    return ssl_context(options.ca) if options.url.startswith("https:") else False


class Transport:
    """Sends requests to the router; counts them (`sent`) and keeps to the live budget."""

    def __init__(self, options: ServerOptions) -> None:
        self.options = options
        self.sent = 0
        self._lock = threading.Lock()
        self._last = 0.0
        self._context = verify_for(options)
        self._client = httpx.Client(verify=self._context, timeout=TIMEOUT,
                                    follow_redirects=False)

    @property
    def budget(self) -> int | None:
        return LIVE_BUDGET if self.options.live else None

    def count(self, n: int = 1) -> None:
        """Account for `n` requests about to be sent (raises past the live budget)."""
        with self._lock:
            if self.budget is not None and self.sent + n > self.budget:
                raise BudgetExhausted(
                    f"the live profile sends at most {self.budget} requests; this check "
                    f"would send request {self.sent + n}"
                )
            self.sent += n
            if self.options.live:
                wait = self._last + LIVE_PACE - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                self._last = time.monotonic()

    def close(self) -> None:
        self._client.close()

    def get_key(self) -> Answer:
        return self._send("GET", KEY_PATH, (), b"")

    def post(self, headers: Sequence[tuple[str, bytes]], body: bytes) -> Answer:
        return self._send("POST", POST_PATH, headers, body)

    def _send(self, method: str, path: str, headers: Sequence[tuple[str, bytes]],
              body: bytes) -> Answer:
        for attempt in range(MAX_429_RETRIES + 1):
            self.count()
            started = time.perf_counter()
            response = self._client.request(
                method, self.options.url + path,
                headers=[(k.encode("ascii"), v) for k, v in headers],
                content=body if method == "POST" else None,
            )
            answer = self.own(_answer(response, time.perf_counter() - started))
            if answer.status != 429 or attempt == MAX_429_RETRIES:
                return answer
            time.sleep(_retry_after(answer))
        raise AssertionError("unreachable")  # pragma: no cover

    def post_many(self, requests: Sequence[tuple[Sequence[tuple[str, bytes]], bytes]]
                  ) -> list[Answer]:
        """Send all `requests` at once (one connection each), answers in the same order."""
        self.count(len(requests))

        async def one(client: httpx.AsyncClient, headers: Sequence[tuple[str, bytes]],
                      body: bytes) -> Answer:
            started = time.perf_counter()
            response = await client.post(
                self.options.url + POST_PATH,
                headers=[(k.encode("ascii"), v) for k, v in headers], content=body)
            return _answer(response, time.perf_counter() - started)

        async def all_at_once() -> list[Answer]:
            limits = httpx.Limits(max_connections=len(requests))
            async with httpx.AsyncClient(verify=self._context, timeout=TIMEOUT,
                                         limits=limits, follow_redirects=False) as client:
                return list(await asyncio.gather(*(one(client, h, b) for h, b in requests)))

        return [self.own(a) for a in asyncio.run(all_at_once())]

    def own(self, answer: Answer) -> Answer:
        """The answer, told which secret its messages must never quote."""
        key = self.options.api_key
        return replace(answer, secrets=(key,)) if key else answer


def _answer(response: httpx.Response, elapsed: float) -> Answer:
    headers: dict[str, str] = {}
    for name, value in response.headers.multi_items():
        key = name.lower()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return Answer(response.status_code, headers, response.content, elapsed)


def _retry_after(answer: Answer) -> float:
    try:
        return min(max(float(answer.headers.get("retry-after", "1")), 0.0), MAX_RETRY_AFTER)
    except ValueError:
        return 1.0
