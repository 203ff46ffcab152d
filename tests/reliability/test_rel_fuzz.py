"""Hostile input, fuzzed with hypothesis (counts: CI / NOMYO_THOROUGH=1).

* Router: packages made by nomyo_ref's ``encrypt_payload`` and nomyo_ref's own headers,
  mutated (bytes, JSON fields, base64 contents, headers), posted in-process: never a 5xx,
  every refusal is a 4xx ``{"detail": str}``, and the router still serves a valid call after.
* Client, sans-IO core: arbitrary status and body bytes into ``error_for_status`` and
  ``parse_server_key``; arbitrary and mutated valid response packages into ``open_response``.
* Client, I/O shell: arbitrary status, headers (Retry-After, Content-Type, ...) and bodies
  answered to ``send_secure_request`` through an httpx MockTransport.
  Only documented exceptions come out: nomyo_ref's classes and ValueError, never KeyError,
  TypeError, AttributeError, IndexError, UnicodeError, JSONDecodeError or binascii.Error,
  and no call hangs.
* Header injection: CR/LF/NUL/non-ASCII in api_key, security_tier, payload id → ValueError
  before anything is sent (the router saw nothing).
* An oversized request body (Content-Length: 1 GiB, a few bytes sent) over a real socket gets
  413 promptly, without the router waiting for or reading the body.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import time
import uuid
import warnings
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nomyo_ref
from mock_router import POST_PATH, MockRouter, serve
from nomyo_ref import SecureChatCompletion, SecureCompletionClient, protocol
from nomyo_ref import crypto as ref_crypto
from tests.reliability.conftest import scaled

API_KEY = "fuzz-api-key"
CHAT = {"model": "m", "messages": [{"role": "user", "content": "fuzz me"}]}


def fuzz_settings(ci: int, thorough: int) -> settings:
    return settings(max_examples=scaled(ci, thorough), deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture,
                                           HealthCheck.data_too_large])


DOCUMENTED = (nomyo_ref.APIError, nomyo_ref.SecurityError, ValueError)
LEAKS = (KeyError, TypeError, AttributeError, IndexError, UnicodeError,
         json.JSONDecodeError, binascii.Error, RecursionError)


def assert_documented(exc: BaseException) -> None:
    assert isinstance(exc, DOCUMENTED), f"undocumented {type(exc).__name__}: {exc!r}"
    assert not isinstance(exc, LEAKS), f"leaked {type(exc).__name__}: {exc!r}"
    assert isinstance(str(exc), str)


# --- strategies ---------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                  max_size=4),
    max_leaves=12)

FIELDS = ["version", "algorithm", "encrypted_aes_key", "key_algorithm", "payload_algorithm",
          "encrypted_payload", "processed_at", "encrypted_payload.ciphertext",
          "encrypted_payload.nonce", "encrypted_payload.tag"]


@st.composite
def mutated(draw: st.DrawFn, body: bytes) -> bytes:
    """A mutation of a valid package: raw bytes, or JSON fields, or base64 contents."""
    kind = draw(st.sampled_from(["flip", "truncate", "insert", "replace", "field",
                                 "delete", "b64", "duplicate"]))
    if kind == "flip":
        i = draw(st.integers(0, len(body) - 1))
        return body[:i] + bytes([body[i] ^ draw(st.integers(1, 255))]) + body[i + 1:]
    if kind == "truncate":
        return body[:draw(st.integers(0, len(body) - 1))]
    if kind == "insert":
        i = draw(st.integers(0, len(body)))
        return body[:i] + draw(st.binary(min_size=1, max_size=16)) + body[i:]
    if kind == "replace":
        return draw(st.binary(max_size=256))
    package = json.loads(body)
    name = draw(st.sampled_from(FIELDS))
    parent, key = (package["encrypted_payload"], name.split(".")[1]) if "." in name \
        else (package, name)
    if kind == "field":
        parent[key] = draw(json_values)
    elif kind == "delete":
        parent.pop(key, None)
    elif kind == "b64":
        parent[key] = base64.b64encode(draw(st.binary(max_size=600))).decode()
    else:  # a duplicate key after the real one (JSON's last one wins in Python)
        text = json.dumps(package)[:-1] + f', "{key}": ' + json.dumps(draw(json_values)) + "}"
        return text.encode()
    return json.dumps(package).encode()


header_bytes = st.binary(max_size=80).map(
    lambda b: b.replace(b"\r", b"").replace(b"\n", b"").replace(b"\x00", b""))


# --- the router, in-process ------------------------------------------------------------------

class RouterHarness:
    """One router, one loop, one nomyo_ref client wired to the router in-process."""

    def __init__(self, server_key: rsa.RSAPrivateKey, client_key: rsa.RSAPrivateKey) -> None:
        self.router = MockRouter(server_key, api_keys=[API_KEY], max_seen=64)
        self.loop = asyncio.new_event_loop()
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.router.app),
                                      base_url="http://router.test")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            self.client = SecureCompletionClient("http://router.test", allow_http=True)
        self.client._http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.router.app))
        self.client.private_key = client_key
        self.client.public_key_pem = nomyo_ref.keys.public_pem(client_key)
        # a handful of valid packages made by nomyo_ref itself
        self.packages = [self.run(self.client.encrypt_payload(
            {**CHAT, "messages": [{"role": "user", "content": f"valid {i}"}]}))
            for i in range(4)]

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(asyncio.wait_for(coro, 30))

    def headers(self) -> dict[str, str]:
        request = protocol.build_chat_request("http://router.test", b"", str(uuid.uuid4()),
                                              self.client.public_key_pem or "", API_KEY,
                                              "standard")
        return dict(request.headers)

    def post(self, body: bytes, headers: dict[str, Any]) -> httpx.Response:
        return self.run(self.http.post(POST_PATH, content=body, headers=headers))

    def close(self) -> None:
        self.run(self.http.aclose())
        self.run(self.client.aclose())
        self.loop.close()


@pytest.fixture(scope="module")
def harness(rel_server_key: rsa.RSAPrivateKey,
            rel_client_key: rsa.RSAPrivateKey) -> Iterator[RouterHarness]:
    h = RouterHarness(rel_server_key, rel_client_key)
    yield h
    h.close()


def assert_still_serving(h: RouterHarness) -> None:
    pid = str(uuid.uuid4())
    answer = h.run(h.client.send_secure_request(CHAT, pid, API_KEY, "high"))
    assert answer["_metadata"]["payload_id"] == pid


HEADER_NAMES = ["X-Payload-ID", "X-Public-Key", "Content-Type", "Authorization",
                "X-Security-Tier"]


@fuzz_settings(300, 5000)
@given(data=st.data())
def test_router_survives_mutated_nomyo_ref_requests(harness: RouterHarness,
                                                    data: st.DataObject) -> None:
    body = data.draw(st.sampled_from(harness.packages))
    headers: dict[str, Any] = harness.headers()
    target = data.draw(st.sampled_from(["body", "header", "both"]))
    if target in ("body", "both"):
        body = data.draw(mutated(body))
    if target in ("header", "both"):
        name = data.draw(st.sampled_from(HEADER_NAMES))
        if data.draw(st.booleans()):
            headers.pop(name)
        else:
            headers[name] = data.draw(header_bytes)
    answer = harness.post(body, headers)
    assert answer.status_code < 500, (answer.status_code, answer.text[:200])
    if answer.status_code != 200:
        detail = answer.json()["detail"]
        assert isinstance(detail, str)
        assert detail


def test_router_still_serves_after_fuzzing(harness: RouterHarness) -> None:
    assert_still_serving(harness)


# --- the client's sans-IO core -------------------------------------------------------------

@pytest.fixture(scope="module")
def bound_package(rel_client_key: rsa.RSAPrivateKey) -> tuple[bytes, str]:
    pid = str(uuid.uuid4())
    completion = {"id": "c", "object": "chat.completion", "created": 1, "model": "m",
                  "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                               "finish_reason": "stop"}],
                  "_metadata": {"payload_id": pid, "security_tier": "standard"}}
    body = ref_crypto.encrypt_package(json.dumps(completion).encode(),
                                      rel_client_key.public_key())
    return body, pid


def test_the_bound_package_opens(bound_package: tuple[bytes, str],
                                 rel_client_key: rsa.RSAPrivateKey) -> None:
    body, pid = bound_package
    assert protocol.open_response(body, pid, rel_client_key)["_metadata"]["payload_id"] == pid


@fuzz_settings(300, 20_000)
@given(data=st.data())
def test_open_response_raises_only_documented_exceptions(
        bound_package: tuple[bytes, str], rel_client_key: rsa.RSAPrivateKey,
        data: st.DataObject) -> None:
    body, pid = bound_package
    fuzzed = data.draw(st.one_of(mutated(body), st.binary(max_size=512),
                                 json_values.map(lambda v: json.dumps(v).encode())))
    started = time.monotonic()
    try:
        result = protocol.open_response(fuzzed, pid, rel_client_key)
    except BaseException as exc:
        assert_documented(exc)
    else:
        assert result["_metadata"]["payload_id"] == pid
    assert time.monotonic() - started < 5


@fuzz_settings(300, 20_000)
@given(status=st.integers(100, 599), body=st.one_of(
    st.binary(max_size=2048), json_values.map(lambda v: json.dumps(v).encode()),
    st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass"))))
def test_error_for_status_and_key_parsing_never_leak(status: int, body: bytes) -> None:
    error = protocol.error_for_status(status, body)
    assert isinstance(error, nomyo_ref.APIError)
    assert error.status_code == status
    assert isinstance(error.message, str)
    assert error.message
    assert isinstance(error.error_details, dict)
    try:
        protocol.parse_server_key(status, body)
    except BaseException as exc:
        assert_documented(exc)


# --- the client's I/O shell ------------------------------------------------------------------

class ShellHarness:
    """A nomyo_ref client whose transport answers whatever the current example says."""

    def __init__(self, server_key: rsa.RSAPrivateKey, client_key: rsa.RSAPrivateKey) -> None:
        self.loop = asyncio.new_event_loop()
        self.key_pem = nomyo_ref.keys.public_pem(server_key)
        self.answer: httpx.Response = httpx.Response(500)
        self.posts = 0
        self.sleeps: list[float] = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            self.client = SecureCompletionClient("http://router.test", allow_http=True,
                                                 max_retries=2, retry_after_cap=5.0)
        self.client._http = httpx.AsyncClient(transport=httpx.MockTransport(self.handle))
        self.client.private_key = client_key
        self.client.public_key_pem = nomyo_ref.keys.public_pem(client_key)

        async def no_sleep(seconds: float) -> None:
            self.sleeps.append(seconds)

        self.client._sleep = no_sleep

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/pki/public_key"):
            return httpx.Response(200, text=self.key_pem)
        self.posts += 1
        return self.answer


@pytest.fixture(scope="module")
def shell(rel_server_key: rsa.RSAPrivateKey,
          rel_client_key: rsa.RSAPrivateKey) -> Iterator[ShellHarness]:
    h = ShellHarness(rel_server_key, rel_client_key)
    yield h
    h.loop.run_until_complete(h.client.aclose())
    h.loop.close()


header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=40)


@fuzz_settings(200, 5000)
@given(data=st.data())
def test_send_secure_request_handles_any_answer(shell: ShellHarness,
                                                data: st.DataObject) -> None:
    pid = str(uuid.uuid4())
    status = data.draw(st.one_of(st.sampled_from([200, 400, 401, 403, 404, 429, 500, 502,
                                                  503, 504]), st.integers(100, 599)))
    if status == 200 and data.draw(st.booleans()):
        completion = {"choices": [], "_metadata": {"payload_id": data.draw(
            st.sampled_from([pid, "other", ""]))}}
        valid = ref_crypto.encrypt_package(json.dumps(completion).encode(),
                                           shell.client.private_key.public_key())
        body = data.draw(st.one_of(st.just(valid), mutated(valid)))
    else:
        body = data.draw(st.one_of(st.binary(max_size=1024),
                                   json_values.map(lambda v: json.dumps(v).encode())))
    headers = {"Retry-After": data.draw(st.one_of(header_text, st.integers(-10, 10**9).map(
        str))).encode("latin-1"), "Content-Type": data.draw(header_text).encode("latin-1")}
    shell.answer = httpx.Response(status, headers=headers, content=body)
    shell.posts = 0
    shell.sleeps.clear()
    try:
        result = shell.loop.run_until_complete(asyncio.wait_for(
            shell.client.send_secure_request(CHAT, pid), 10))
    except BaseException as exc:
        assert not isinstance(exc, asyncio.TimeoutError), "the call hung"  # noqa: PT017
        assert_documented(exc)
    else:
        assert status == 200
        assert result["_metadata"]["payload_id"] == pid
    assert shell.posts <= 3 + 1  # max_retries + 1, or a rotation resend after a 400
    assert all(0 <= s <= 5.0 for s in shell.sleeps), shell.sleeps  # capped Retry-After


# --- header injection ------------------------------------------------------------------------

BAD_CHARS = ["\r", "\n", "\r\n", "\x00", "é", "\u2028", " ", "\t", "\x7f", "\x85", "😀"]


@st.composite
def with_bad_char(draw: st.DrawFn) -> str:
    text = draw(st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=30))
    i = draw(st.integers(0, len(text)))
    return text[:i] + draw(st.sampled_from(BAD_CHARS)) + text[i:]


def _inject(harness: RouterHarness, where: str, bad: str) -> None:
    if where == "api_key":
        SecureChatCompletion("http://router.test", allow_http=True, api_key=bad)
    elif where == "tier":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            chat = SecureChatCompletion("http://router.test", allow_http=True)
        chat.client = harness.client  # wired to the in-process router
        harness.run(chat.create("m", [{"role": "user", "content": "x"}], security_tier=bad))
    elif where == "call_key":
        harness.run(harness.client.send_secure_request(CHAT, str(uuid.uuid4()), bad))
    else:
        harness.run(harness.client.send_secure_request(CHAT, bad))


@fuzz_settings(200, 3000)
@given(bad=with_bad_char(), where=st.sampled_from(["api_key", "tier", "call_key", "pid"]))
def test_header_injection_refused_before_sending(harness: RouterHarness, bad: str,
                                                 where: str) -> None:
    harness.router.reset()
    with pytest.raises(ValueError, match=r"api_key|security_tier|payload_id") as info:
        _inject(harness, where, bad)
    assert not isinstance(info.value, LEAKS)
    if where in ("api_key", "call_key") and len(bad) > 4:
        assert bad not in str(info.value), "the error message repeats the API key"
    assert harness.router.seen == [], "something reached the router"


# --- oversized request bodies over a real socket -------------------------------------------

async def test_router_refuses_1gib_content_length_without_reading(
        rel_server_key: rsa.RSAPrivateKey, fast_client_keys: list[int]) -> None:
    router = MockRouter(rel_server_key)
    with serve(router) as server:
        reader, writer = await asyncio.open_connection(server.host, server.port)
        started = time.monotonic()
        writer.write(b"POST /v1/chat/secure_completion HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: application/octet-stream\r\nX-Payload-ID: abc\r\n"
                     b"Content-Length: 1073741824\r\n\r\n{\"version\"")
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 5)
        elapsed = time.monotonic() - started
        writer.close()
        assert status_line.startswith(b"HTTP/1.1 413"), status_line
        assert elapsed < 2.0, elapsed
        # chunked (no Content-Length): refused once 16 MiB were read, never the whole stream
        reader, writer = await asyncio.open_connection(server.host, server.port)
        writer.write(b"POST /v1/chat/secure_completion HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: application/octet-stream\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        chunk = b"100000\r\n" + b"0" * 0x100000 + b"\r\n"
        async def pump() -> None:
            try:
                for _ in range(64):  # offers 64 MiB
                    writer.write(chunk)
                    await writer.drain()
            except ConnectionError:
                pass

        pumping = asyncio.create_task(pump())
        status_line = await asyncio.wait_for(reader.readline(), 20)
        pumping.cancel()
        writer.close()
        assert status_line.startswith(b"HTTP/1.1 413"), status_line
        # How much the client gets to send is a race: uvicorn reads and discards the unread
        # rest of a refused stream to keep the connection usable, so on a loaded machine all
        # 64 MiB may go through. What the router itself reads is bounded, and asserted
        # deterministically in-process (tests/router: test_chunked_body_over_16_mib_is_cut_off);
        # here the refusal must name the limit, and nothing past it may have been kept.
        refused = [s for s in router.seen if s.status == 413 and s.refusal
                   and "too large" in s.refusal]
        assert len(refused) == 2, [(s.status, s.refusal) for s in router.seen]
        assert all(len(s.body) <= 16 * 1024 * 1024 for s in refused)
        # and it keeps serving
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            async with SecureChatCompletion(server.url, allow_http=True) as chat:
                reply = await chat.create("m", [{"role": "user", "content": "alive"}])
        assert reply["choices"][0]["message"]["content"] == "alive"
    print(f"\n1 GiB Content-Length: 413 after {elapsed * 1000:.0f} ms")
