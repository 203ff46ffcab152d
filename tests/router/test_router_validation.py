"""One test per server-side rule: the right status and a detail naming what was wrong."""

from __future__ import annotations

import base64
import copy
import json
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from mock_router import MockRouter

from .wire import POST_PATH, b64, headers_for, pem_of, seal

pytestmark = pytest.mark.asyncio(loop_scope="session")

CHAT = {"model": "test-model", "messages": [{"role": "user", "content": "hello"}]}

Mutation = Callable[[dict[str, str], dict[str, Any]], bytes | None]


def _del(d: dict[str, Any], dotted: str) -> None:
    *parents, last = dotted.split(".")
    for p in parents:
        d = d[p]
    del d[last]


def _set(d: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for p in parents:
        d = d[p]
    d[last] = value


async def send(http: httpx.AsyncClient, router: MockRouter, client_pem: str, *,
               plaintext: bytes | None = None, headers: Callable[[dict[str, str]], None] | None
               = None, package: Callable[[dict[str, Any]], None] | None = None,
               body: bytes | None = None) -> httpx.Response:
    h = headers_for(client_pem, str(uuid.uuid4()))
    pkg = seal(router.public_key_pem, plaintext if plaintext is not None
               else json.dumps(CHAT).encode())
    if headers:
        headers(h)
    if package:
        package(pkg)
    content = body if body is not None else json.dumps(pkg).encode()
    return await http.post(POST_PATH, content=content, headers=h)


async def test_valid_request_is_answered(http, router, wire):
    r = await send(http, router, wire.pem)
    assert r.status_code == 200, r.text


# -- headers ------------------------------------------------------------------------------
def _drop_header(name: str) -> Callable[[dict[str, str]], None]:
    return lambda h: h.pop(name)


def _header(name: str, value: str) -> Callable[[dict[str, str]], None]:
    return lambda h: h.__setitem__(name, value)


HEADER_CASES = [
    ("no payload id", _drop_header("X-Payload-ID"), 400, "X-Payload-ID"),
    ("empty payload id", _header("X-Payload-ID", ""), 400, "X-Payload-ID"),
    ("long payload id", _header("X-Payload-ID", "a" * 129), 400, "X-Payload-ID"),
    ("payload id with space", _header("X-Payload-ID", "a b"), 400, "visible ASCII"),
    ("no public key", _drop_header("X-Public-Key"), 400, "missing X-Public-Key"),
    ("garbage public key", _header("X-Public-Key", "not%20a%20key"), 400, "PEM"),
    ("public key not utf-8", _header("X-Public-Key", "%ff%fe"), 400, "UTF-8"),
    ("unknown tier", _header("X-Security-Tier", "ultra"), 400, "X-Security-Tier"),
    ("tier wrong case", _header("X-Security-Tier", "HIGH"), 400, "X-Security-Tier"),
    ("wrong content type", _header("Content-Type", "application/json"), 415, "Content-Type"),
    ("no content type", _drop_header("Content-Type"), 415, "Content-Type"),
]


@pytest.mark.parametrize(("mutate", "status", "needle"),
                         [c[1:] for c in HEADER_CASES], ids=[c[0] for c in HEADER_CASES])
async def test_header_rules(http, router, wire, mutate, status, needle):
    r = await send(http, router, wire.pem, headers=mutate)
    assert r.status_code == status, r.text
    assert needle in r.json()["detail"]
    assert router.seen[-1].refusal == r.json()["detail"]
    assert router.seen[-1].status == status


async def test_small_client_key_refused(http, router, small_key):
    r = await send(http, router, pem_of(small_key))
    assert r.status_code == 400
    assert "too small" in r.json()["detail"]


async def test_non_rsa_client_key_refused(http, router):
    pem = pem_of_any(ec.generate_private_key(ec.SECP256R1()))
    r = await send(http, router, pem)
    assert r.status_code == 400
    assert "not an RSA" in r.json()["detail"]


def pem_of_any(key: Any) -> str:
    from cryptography.hazmat.primitives import serialization

    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


@pytest.mark.parametrize("escape_slash", [False, True])
async def test_public_key_percent_decoding_either_way(http, router, wire, escape_slash):
    h = headers_for(wire.pem, str(uuid.uuid4()), escape_slash=escape_slash)
    body = json.dumps(seal(router.public_key_pem, json.dumps(CHAT).encode())).encode()
    r = await http.post(POST_PATH, content=body, headers=h)
    assert r.status_code == 200, r.text
    assert router.seen[-1].client_public_key_pem == wire.pem


# -- body / package -----------------------------------------------------------------------
BODY_CASES = [
    ("empty body", b"", 400, "empty"),
    ("not json", b"{nope", 400, "not valid JSON"),
    ("not utf-8", b"\xff\xfe{}", 400, "not UTF-8"),
    ("json array", b"[]", 400, "not a JSON object"),
    ("deep nesting", b"[" * 100_000 + b"]" * 100_000, 400, "JSON"),
]


@pytest.mark.parametrize(("body", "status", "needle"),
                         [c[1:] for c in BODY_CASES], ids=[c[0] for c in BODY_CASES])
async def test_body_rules(http, router, wire, body, status, needle):
    r = await send(http, router, wire.pem, body=body)
    assert r.status_code == status, r.text
    assert needle in r.json()["detail"]


FIELDS = ["version", "algorithm", "encrypted_payload", "encrypted_aes_key", "key_algorithm",
          "payload_algorithm", "encrypted_payload.ciphertext", "encrypted_payload.nonce",
          "encrypted_payload.tag"]


@pytest.mark.parametrize("field", FIELDS)
async def test_missing_package_field(http, router, wire, field):
    r = await send(http, router, wire.pem, package=lambda p: _del(p, field))
    assert r.status_code == 400
    assert f"'{field}' is missing" in r.json()["detail"]


@pytest.mark.parametrize("field", [f for f in FIELDS if f != "encrypted_payload"])
async def test_package_field_wrong_type(http, router, wire, field):
    r = await send(http, router, wire.pem, package=lambda p: _set(p, field, 1))
    assert r.status_code == 400
    assert f"'{field}' must be a string" in r.json()["detail"]


async def test_encrypted_payload_not_object(http, router, wire):
    r = await send(http, router, wire.pem, package=lambda p: _set(p, "encrypted_payload", "x"))
    assert r.status_code == 400
    assert "'encrypted_payload' must be an object" in r.json()["detail"]


@pytest.mark.parametrize(("field", "value"), [
    ("version", "0.9"), ("algorithm", "hybrid-aes128-rsa2048"),
    ("key_algorithm", "RSA-OAEP-SHA1"), ("payload_algorithm", "AES-128-GCM")])
async def test_wrong_algorithm_values(http, router, wire, field, value):
    r = await send(http, router, wire.pem, package=lambda p: _set(p, field, value))
    assert r.status_code == 400
    detail = r.json()["detail"]
    assert field in detail
    assert value in detail


@pytest.mark.parametrize("field", ["encrypted_aes_key", "encrypted_payload.ciphertext",
                                   "encrypted_payload.nonce", "encrypted_payload.tag"])
@pytest.mark.parametrize("bad", ["@@@@", "QUJDRA", "QU JD", "QUJD\n", "-_-_"])
async def test_bad_base64(http, router, wire, field, bad):
    r = await send(http, router, wire.pem, package=lambda p: _set(p, field, bad))
    assert r.status_code == 400
    assert f"{field.split('.')[-1]} is not valid base64" in r.json()["detail"]


@pytest.mark.parametrize(("field", "size"), [("nonce", 16), ("nonce", 0), ("tag", 12),
                                             ("tag", 32)])
async def test_nonce_and_tag_lengths(http, router, wire, field, size):
    r = await send(http, router, wire.pem,
                   package=lambda p: _set(p, f"encrypted_payload.{field}", b64(b"\0" * size)))
    assert r.status_code == 400
    assert f"{field} must be" in r.json()["detail"]


async def test_tag_appended_to_ciphertext_is_refused(http, router, wire):
    def append(p: dict[str, Any]) -> None:
        inner = p["encrypted_payload"]
        ct = base64.b64decode(inner["ciphertext"]) + base64.b64decode(inner["tag"])
        inner["ciphertext"] = b64(ct)
    r = await send(http, router, wire.pem, package=append)
    assert r.status_code == 400
    assert r.json()["detail"] == "decryption failed"


@pytest.mark.parametrize("what", ["aes key to another key", "ciphertext", "tag", "nonce"])
async def test_decryption_failures_are_opaque(http, router, wire, other_server_key, what):
    def mutate(p: dict[str, Any]) -> None:
        if what == "aes key to another key":
            other = seal(pem_of(other_server_key), b"{}")
            p["encrypted_aes_key"] = other["encrypted_aes_key"]
        else:
            raw = bytearray(base64.b64decode(p["encrypted_payload"][what]))
            raw[0] ^= 1
            p["encrypted_payload"][what] = b64(bytes(raw))
    r = await send(http, router, wire.pem, package=mutate)
    assert r.status_code == 400
    assert r.json() == {"detail": "decryption failed"}


async def test_rsa_wrapped_key_of_wrong_length(http, router, wire):
    from cryptography.hazmat.primitives import serialization

    from .wire import OAEP
    pub = serialization.load_pem_public_key(router.public_key_pem.encode())
    assert isinstance(pub, rsa.RSAPublicKey)
    r = await send(http, router, wire.pem,
                   package=lambda p: _set(p, "encrypted_aes_key", b64(pub.encrypt(b"k" * 16,
                                                                                   OAEP))))
    assert r.status_code == 400
    assert r.json() == {"detail": "decryption failed"}


# -- plaintext ----------------------------------------------------------------------------
def _chat(**changes: Any) -> bytes:
    d = copy.deepcopy(CHAT)
    for k, v in changes.items():
        if v is ...:
            d.pop(k)
        else:
            d[k] = v
    return json.dumps(d).encode()


PLAINTEXT_CASES = [
    ("not utf-8", b"\xff{}", 400, "not UTF-8"),
    ("not json", b"hello", 400, "not valid JSON"),
    ("json list", b"[1]", 400, "not a JSON object"),
    ("no model", _chat(model=...), 400, "'model' is missing"),
    ("model not string", _chat(model=3), 400, "'model' must be"),
    ("model empty", _chat(model=""), 400, "'model' must be"),
    ("no messages", _chat(messages=...), 400, "'messages' is missing"),
    ("messages object", _chat(messages={}), 400, "'messages' must be"),
    ("messages empty", _chat(messages=[]), 400, "'messages' must be"),
    ("message not object", _chat(messages=[1]), 400, "messages[0] must be an object"),
    ("message without role", _chat(messages=[{"content": "x"}]), 400, "messages[0].role"),
    ("stream true", _chat(stream=True), 400, "streaming is not supported"),
    ("stream not bool", _chat(stream="yes"), 400, "'stream' must be a boolean"),
    ("n zero", _chat(n=0), 400, "'n'"),
    ("max_tokens zero", _chat(max_tokens=0), 400, "max_tokens"),
    ("stop number", _chat(stop=5), 400, "'stop'"),
    ("tools not list", _chat(tools={}), 400, "'tools'"),
    ("tool without name", _chat(tools=[{"type": "function", "function": {}}]), 400, "tools[0]"),
    ("tool_choice unknown", _chat(tools=[{"type": "function", "function": {"name": "f"}}],
                                  tool_choice={"type": "function", "function": {"name": "g"}}),
     400, "tool_choice"),
    ("tool_choice garbage", _chat(tool_choice="sometimes"), 400, "tool_choice"),
]


@pytest.mark.parametrize(("plaintext", "status", "needle"),
                         [c[1:] for c in PLAINTEXT_CASES], ids=[c[0] for c in PLAINTEXT_CASES])
async def test_plaintext_rules(http, router, wire, plaintext, status, needle):
    r = await send(http, router, wire.pem, plaintext=plaintext)
    assert r.status_code == status, r.text
    assert needle in r.json()["detail"]
    assert router.seen[-1].plaintext == plaintext


async def test_stream_false_is_fine(http, router, wire):
    r = await send(http, router, wire.pem, plaintext=_chat(stream=False))
    assert r.status_code == 200, r.text


# -- sizes --------------------------------------------------------------------------------
async def test_plaintext_over_10_mib(http, router, wire):
    big = _chat(messages=[{"role": "user", "content": "x" * (10 * 1024 * 1024)}])
    r = await send(http, router, wire.pem, plaintext=big)
    assert r.status_code == 413
    assert "plaintext too large" in r.json()["detail"]


async def test_plaintext_just_under_10_mib_is_answered(http, router, wire):
    base = len(_chat(messages=[{"role": "user", "content": ""}]))
    fits = _chat(messages=[{"role": "user", "content": "x" * (10 * 1024 * 1024 - base)}])
    assert len(fits) == 10 * 1024 * 1024
    r = await send(http, router, wire.pem, plaintext=fits)
    assert r.status_code == 200, r.text[:200]


async def test_body_over_16_mib_refused_by_content_length(http, router, wire):
    r = await send(http, router, wire.pem, body=b"x" * (16 * 1024 * 1024 + 1))
    assert r.status_code == 413
    assert "too large" in r.json()["detail"]
    assert router.seen[-1].body == b""  # not read


async def test_chunked_body_over_16_mib_is_cut_off(http, router, wire):
    sent = 0

    async def chunks():
        nonlocal sent
        for _ in range(40):  # 40 MiB offered, the router must stop well before
            sent += 1
            yield b"x" * (1024 * 1024)

    h = headers_for(wire.pem, str(uuid.uuid4()))
    r = await http.post(POST_PATH, content=chunks(), headers=h)
    assert r.status_code == 413
    assert "too large" in r.json()["detail"]
    assert sent <= 18


# -- authentication and tier policy -------------------------------------------------------
@pytest.fixture
def keyed_router(server_key):
    return MockRouter(server_key, api_keys=["k1", "k2"],
                      tier_policy={"maximum": ["model-a"], "standard": "model-a,test-model"})


@pytest.fixture
async def keyed_http(keyed_router):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=keyed_router.app),
                                 base_url="http://router.test") as c:
        yield c


@pytest.mark.parametrize(("auth", "status", "needle"), [
    (None, 401, "missing API key"),
    ("Bearer nope", 401, "invalid API key"),
    ("Basic azE6", 401, "Bearer"),
    ("Bearer ", 401, "Bearer"),
    ("Bearer k1", 200, None),
    ("bearer k2", 200, None),
])
async def test_api_keys(keyed_http, keyed_router, wire, auth, status, needle):
    def set_auth(h: dict[str, str]) -> None:
        if auth is not None:
            h["Authorization"] = auth
    r = await send(keyed_http, keyed_router, wire.pem, headers=set_auth)
    assert r.status_code == status, r.text
    if needle:
        assert needle in r.json()["detail"]


@pytest.mark.parametrize(("tier", "model", "status"), [
    ("maximum", "model-b", 403), ("maximum", "model-a", 200), ("high", "model-b", 200),
    (None, "model-b", 403), (None, "test-model", 200), ("standard", "model-a", 200)])
async def test_tier_policy(keyed_http, keyed_router, wire, tier, model, status):
    def hdrs(h: dict[str, str]) -> None:
        h["Authorization"] = "Bearer k1"
        if tier:
            h["X-Security-Tier"] = tier
    r = await send(keyed_http, keyed_router, wire.pem, headers=hdrs,
                   plaintext=_chat(model=model))
    assert r.status_code == status, r.text
    if status == 403:
        assert "not allowed" in r.json()["detail"]
        assert model not in r.json()["detail"]  # the model is decrypted plaintext (LOG-5)


async def test_tier_policy_with_unknown_tier_is_refused(server_key):
    with pytest.raises(ValueError, match="unknown security tier"):
        MockRouter(server_key, tier_policy={"ultra": ["m"]})


# -- other paths --------------------------------------------------------------------------
@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/nowhere", 404), ("GET", POST_PATH, 405), ("POST", "/pki/public_key", 405),
    ("GET", "/_mock/seen", 404)])
async def test_other_paths_answer_json_detail(http, router, method, path, status):
    r = await http.request(method, path)
    assert r.status_code == status
    assert isinstance(r.json()["detail"], str)


# -- raw ASGI: what httpx would not send ---------------------------------------------------
async def raw_post(router: MockRouter, headers: list[tuple[bytes, bytes]],
                   body: bytes = b"") -> tuple[int, bytes]:
    sent: list[dict[str, Any]] = []
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": POST_PATH, "raw_path": POST_PATH.encode(),
             "query_string": b"", "root_path": "", "headers": headers,
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await router.app(scope, receive, send)
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


@pytest.mark.parametrize(("value", "status", "needle"), [
    (b"abc", 400, b"Content-Length is not a number"),
    (b"-5", 400, b"negative"),
    (b"99999999999999999999", 413, b"too large"),
])
async def test_bad_content_length(router, value, status, needle):
    code, body = await raw_post(router, [(b"content-length", value)])
    assert code == status
    assert needle in body


async def test_repeated_headers_are_joined_and_refused(router, wire):
    pid = str(uuid.uuid4()).encode()
    code, body = await raw_post(router, [(b"x-payload-id", pid), (b"x-payload-id", pid),
                                         (b"content-type", b"application/octet-stream")])
    assert code == 400
    assert b"X-Payload-ID" in body
    assert router.seen[-1].headers["x-payload-id"] == f"{pid.decode()}, {pid.decode()}"


async def test_client_keys_are_parsed_once(http, router, wire):
    from mock_router.crypto import parse_client_public_key

    await send(http, router, wire.pem)
    before = parse_client_public_key.cache_info().hits
    await send(http, router, wire.pem)
    assert parse_client_public_key.cache_info().hits == before + 1


async def test_private_key_work_does_not_block_the_event_loop(http, router, wire, monkeypatch):
    import asyncio
    import time

    from mock_router import app as app_module

    real = app_module.crypto.decrypt

    def slow_decrypt(*args: Any) -> bytes:
        time.sleep(2.0)  # long, so a loaded machine cannot blur blocked and not blocked
        return real(*args)

    monkeypatch.setattr(app_module.crypto, "decrypt", slow_decrypt)
    slow = asyncio.create_task(send(http, router, wire.pem))
    await asyncio.sleep(0.05)
    start = time.monotonic()
    key = await http.get("/pki/public_key")
    assert key.status_code == 200
    assert time.monotonic() - start < 1.5  # answered while the decryption was running
    assert not slow.done()
    assert (await slow).status_code == 200


async def test_client_disconnect_mid_body_is_not_a_500(router, wire):
    sent: list[dict[str, Any]] = []
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": POST_PATH, "raw_path": b"",
             "query_string": b"", "root_path": "", "headers": [],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
    messages = [{"type": "http.request", "body": b"{", "more_body": True},
                {"type": "http.disconnect"}]

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await router.app(scope, receive, send)
    assert sent[0]["status"] == 400
    assert router.seen[-1].refusal == "client disconnected before the body was complete"
