"""Faults against the reference client over real loopback sockets.

Each fault ends in the documented exception (CONTRACTS/spec 13: APIConnectionError for network
failures and timeouts, the status table otherwise, ValueError/SecurityError for bad 200
bodies) within a bound derived from the configured timeout and backoff; retries are bounded
(attempts counted in ``router.seen`` or by a raw server); and once the client is closed no
socket of this process is left open (counted in /proc/self/fd).
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from mock_router import DROPPED, KEY_PATH, POST_PATH, MockRouter, Scenario, serve
from nomyo_ref import (
    APIConnectionError,
    APIError,
    AuthenticationError,
    RateLimitError,
    SecureChatCompletion,
    SecurityError,
    ServerError,
    ServiceUnavailableError,
)
from nomyo_ref import crypto as ref_crypto
from nomyo_ref import keys as ref_keys
from tests.reliability.conftest import open_sockets
from tests.reliability.rawhttp import RawConnection, key_answer, raw_server, response_head

pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning"),
              pytest.mark.usefixtures("fast_client_keys")]

MESSAGES = [{"role": "user", "content": "fault test"}]
BACKOFF = 0.01


def chat_for(url: str, **options: Any) -> SecureChatCompletion:
    options.setdefault("retry_backoff", BACKOFF)
    return SecureChatCompletion(url, allow_http=True, **options)


async def assert_no_sockets_left(baseline: int, within: float = 3.0) -> None:
    """Poll until this process holds no more sockets than ``baseline``."""
    deadline = time.monotonic() + within
    while open_sockets() > baseline:
        if time.monotonic() > deadline:
            raise AssertionError(f"{open_sockets() - baseline} socket(s) left open")
        await asyncio.sleep(0.02)


@pytest.fixture
async def served(rel_server_key: rsa.RSAPrivateKey) -> AsyncIterator[tuple[MockRouter, str]]:
    router = MockRouter(rel_server_key)
    with serve(router) as server:
        yield router, server.url


def posts(router: MockRouter) -> list[Any]:
    return [s for s in router.seen if s.path == POST_PATH]


def gets(router: MockRouter) -> list[Any]:
    return [s for s in router.seen if s.path == KEY_PATH]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- network failures -----------------------------------------------------------------------

async def test_connection_refused() -> None:
    baseline = open_sockets()
    chat = chat_for(f"http://127.0.0.1:{free_port()}", max_retries=2, timeout=2.0)
    started = time.monotonic()
    with pytest.raises(APIConnectionError) as info:
        await chat.create("m", MESSAGES)
    elapsed = time.monotonic() - started
    await chat.aclose()
    assert info.value.status_code is None
    # 3 attempts, backoffs of 0.01 and 0.02 s (+ jitter): nowhere near the timeout.
    assert elapsed < 2.0, elapsed
    await assert_no_sockets_left(baseline)


async def test_dropped_mid_body_is_retried_then_connection_error(
        served: tuple[MockRouter, str]) -> None:
    router, url = served
    baseline = open_sockets()
    chat = chat_for(url, max_retries=2, timeout=5.0)
    router.push(Scenario.drop(times=3))
    started = time.monotonic()
    with pytest.raises(APIConnectionError):
        await chat.create("m", MESSAGES)
    elapsed = time.monotonic() - started
    assert [p.status for p in posts(router)] == [DROPPED] * 3  # max_retries + 1 attempts
    # one drop then a normal answer: the retry recovers
    router.reset()
    router.push(Scenario.drop())
    reply = await chat.create("m", [{"role": "user", "content": "after drop"}])
    assert reply["choices"][0]["message"]["content"] == "after drop"
    assert [p.status for p in posts(router)] == [DROPPED, 200]
    await chat.aclose()
    assert elapsed < 5.0, elapsed
    await assert_no_sockets_left(baseline)


async def test_silent_server_times_out_per_attempt() -> None:
    async def silent(conn: RawConnection) -> None:
        await conn.wait_closed_by_peer()  # accept, read, never answer

    async with raw_server(silent) as server:
        baseline = open_sockets()
        chat = chat_for(server.url, max_retries=1, timeout=0.5)
        started = time.monotonic()
        with pytest.raises(APIConnectionError):
            await asyncio.wait_for(chat.create("m", MESSAGES), 10)
        elapsed = time.monotonic() - started
        await chat.aclose()
        assert server.connections == 2, server.connections  # max_retries + 1 attempts
        assert 0.9 <= elapsed < 0.5 * 2 + 1.5, elapsed
        await assert_no_sockets_left(baseline)


TRICKLE_INTERVAL = 0.1


async def _trickle_body(conn: RawConnection) -> None:
    await conn.read_request()
    await conn.send(response_head(200, "OK", {"Content-Length": "60000"}))  # under the key cap
    while True:
        await conn.send(b"x")
        await asyncio.sleep(TRICKLE_INTERVAL)


async def _trickle_head(conn: RawConnection) -> None:
    await conn.read_request()
    for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 100000:
        await conn.send(bytes([byte]))
        await asyncio.sleep(TRICKLE_INTERVAL)


@pytest.mark.parametrize("trickle", [_trickle_body, _trickle_head], ids=["body", "head"])
async def test_trickle_is_bounded_by_the_timeout(trickle: Any) -> None:
    """httpx timeouts are per read; nomyo_ref's ``timeout`` is per attempt (API-17)."""
    timeout = 0.5
    async with raw_server(trickle) as server:
        chat = chat_for(server.url, max_retries=0, timeout=timeout)
        started = time.monotonic()
        try:
            with pytest.raises(APIConnectionError):
                # generous outer bound: one attempt must end within timeout (+ slack)
                await asyncio.wait_for(chat.create("m", MESSAGES), timeout + 2.0)
        finally:
            await chat.aclose()
        elapsed = time.monotonic() - started
        assert timeout * 0.9 <= elapsed < timeout + 1.5, elapsed


# --- status storms and Retry-After --------------------------------------------------------

@pytest.mark.parametrize(("status", "exc_type"), [
    (503, ServiceUnavailableError), (500, ServerError), (502, APIError), (504, APIError),
    (429, RateLimitError)])
@pytest.mark.parametrize("max_retries", [0, 2])
async def test_status_storm_gives_exactly_max_retries_plus_one_attempts(
        served: tuple[MockRouter, str], status: int, exc_type: type[Exception],
        max_retries: int) -> None:
    router, url = served
    baseline = open_sockets()
    chat = chat_for(url, max_retries=max_retries, timeout=5.0)
    router.push(Scenario.status(status, {"detail": "storm"}, times=50))
    started = time.monotonic()
    with pytest.raises(exc_type) as info:
        await chat.create("m", MESSAGES)
    elapsed = time.monotonic() - started
    await chat.aclose()
    assert type(info.value) is exc_type
    assert info.value.status_code == status
    assert len(posts(router)) == max_retries + 1
    assert len(gets(router)) == 1
    assert elapsed < 2.0, elapsed
    await assert_no_sockets_left(baseline)


@pytest.mark.parametrize("value", ["86400", "1" + "0" * 400], ids=["one-day", "10**400"])
async def test_huge_retry_after_is_capped(served: tuple[MockRouter, str], value: str) -> None:
    router, url = served
    cap = 0.5
    chat = chat_for(url, max_retries=1, timeout=5.0, retry_after_cap=cap)
    await chat.create("m", MESSAGES)  # key fetched, connection warm
    router.reset()
    router.push(Scenario.status(503, {"detail": "later"}, headers={"Retry-After": value}))
    started = time.monotonic()
    reply = await chat.create("m", [{"role": "user", "content": "capped"}])
    waited = time.monotonic() - started
    await chat.aclose()
    assert reply["choices"][0]["message"]["content"] == "capped"
    assert len(posts(router)) == 2
    print(f"\nRetry-After {value[:8]} with retry_after_cap={cap}: call took {waited:.3f}s")
    assert cap * 0.9 <= waited < cap + 1.0, waited


@pytest.mark.parametrize("value", ["-5", "soon", "1e9", "NaN", "inf", "0x10", "", "3 4",
                                   "\xb2", "-0.5",
                                   "Wed, 21 Oct 2015 07:28:00 GMT"])
async def test_garbage_retry_after_is_ignored(served: tuple[MockRouter, str],
                                              value: str) -> None:
    router, url = served
    chat = chat_for(url, max_retries=1, timeout=5.0, retry_after_cap=30.0)
    await chat.create("m", MESSAGES)
    router.reset()
    router.push(Scenario.status(503, {"detail": "later"}, headers={"Retry-After": value}))
    started = time.monotonic()
    reply = await chat.create("m", [{"role": "user", "content": "ignored"}])
    waited = time.monotonic() - started
    await chat.aclose()
    assert reply["choices"][0]["message"]["content"] == "ignored"
    assert len(posts(router)) == 2
    assert waited < 1.0, waited  # the computed backoff (0.01 s), not the garbage


# --- server key rotation ------------------------------------------------------------------

async def test_rotated_server_key_is_refetched_once(served: tuple[MockRouter, str],
                                                    rel_other_key: rsa.RSAPrivateKey) -> None:
    router, url = served
    chat = chat_for(url, max_retries=0, timeout=5.0)
    await chat.create("m", MESSAGES)
    router.rotate_key(rel_other_key)
    reply = await chat.create("m", [{"role": "user", "content": "after rotation"}])
    second = await chat.create("m", [{"role": "user", "content": "cached again"}])
    await chat.aclose()
    assert reply["choices"][0]["message"]["content"] == "after rotation"
    assert second["choices"][0]["message"]["content"] == "cached again"
    assert [p.status for p in posts(router)] == [200, 400, 200, 200]
    assert len(gets(router)) == 2  # the first fetch and exactly one re-fetch


# --- bad 200 bodies -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def valid_response_package(rel_client_key: rsa.RSAPrivateKey) -> bytes:
    completion = {"id": "x", "object": "chat.completion", "choices": [],
                  "_metadata": {"payload_id": "not-the-request"}}
    return ref_crypto.encrypt_package(json.dumps(completion).encode(),
                                      rel_client_key.public_key())


async def test_truncated_response_bodies(served: tuple[MockRouter, str],
                                         valid_response_package: bytes) -> None:
    router, url = served
    body = valid_response_package
    cuts = sorted({0, 1, 2, 10, 30, len(body) // 4, len(body) // 2, len(body) - 60,
                   len(body) - 30, len(body) - 2, len(body) - 1, len(body)})
    chat = chat_for(url, max_retries=2, timeout=5.0)
    outcomes: dict[int, str] = {}
    for cut in cuts:
        router.reset()
        router.push(Scenario.status(200, body=body[:cut], content_type="application/json"))
        with pytest.raises((ValueError, SecurityError)) as info:
            await chat.create("m", MESSAGES)
        outcomes[cut] = type(info.value).__name__
        assert len(posts(router)) == 1, "a bad 200 must not be retried (RTY-5)"
    await chat.aclose()
    # the full package decrypts but is bound to another id: SecurityError (binding)
    assert outcomes[len(body)] == "SecurityError"


CAP = 32 * 1024 * 1024  # nomyo_ref.protocol.MAX_RESPONSE_BYTES


async def _oversized(conn: RawConnection, status: int, declared: bool, pem: str) -> None:
    while True:
        request = await conn.read_request()
        if request is None:
            return
        if request[0].startswith("GET"):
            await conn.send(key_answer(pem))
            continue
        reason = {200: "OK", 401: "Unauthorized", 503: "Service Unavailable"}[status]
        if declared:
            await conn.send(response_head(status, reason, {"Content-Length": str(1 << 34)}))
            chunk = b"0" * 65536
            while True:
                await conn.send(chunk)
        else:
            await conn.send(response_head(status, reason, {"Transfer-Encoding": "chunked"}))
            chunk = b"10000\r\n" + b"0" * 65536 + b"\r\n"
            while True:
                await conn.send(chunk)


@pytest.mark.parametrize(("status", "declared", "exc_type"), [
    (200, True, ValueError), (200, False, ValueError),
    (401, True, AuthenticationError), (401, False, AuthenticationError),
    (503, False, ServiceUnavailableError)],
    ids=["200-16GiB-declared", "200-endless-chunked", "401-16GiB-declared",
         "401-endless-chunked", "503-endless-chunked"])
async def test_oversized_bodies_end_cleanly_without_reading_them(
        rel_server_key: rsa.RSAPrivateKey, status: int, declared: bool,
        exc_type: type[Exception]) -> None:
    pem = ref_keys.public_pem(rel_server_key)

    async def handler(conn: RawConnection) -> None:
        await _oversized(conn, status, declared, pem)

    async with raw_server(handler) as server:
        baseline = open_sockets()
        chat = chat_for(server.url, max_retries=1, timeout=5.0)
        started = time.monotonic()
        with pytest.raises(exc_type) as info:
            await asyncio.wait_for(chat.create("m", MESSAGES), 30)
        elapsed = time.monotonic() - started
        await chat.aclose()
        await assert_no_sockets_left(baseline)
        print(f"\n{status} {'declared 16 GiB' if declared else 'endless chunked'}: "
              f"{type(info.value).__name__} after {elapsed:.2f}s, server wrote "
              f"{server.bytes_sent / 2**20:.1f} MiB")
    assert type(info.value) is exc_type
    if status == 200:
        # reading stops at the cap (32 MiB) or before (declared length): never the 16 GiB
        assert server.bytes_sent < CAP + 32 * 2**20
        assert len([r for r in server.requests if r.startswith("POST")]) == 1
    else:
        # error bodies are truncated at 64 KiB: the server could only fill socket buffers
        # (a few MiB per connection on loopback), never stream its endless body
        assert server.bytes_sent < 64 * 2**20
    assert elapsed < 10.0
