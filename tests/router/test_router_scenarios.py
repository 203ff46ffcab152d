"""The normal answer, each scenario, key rotation, the record, faults and logging."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import time
import uuid

import httpx
import pytest
from cryptography.exceptions import InvalidTag

from mock_router import DROPPED, KEY_PATH, MockRouter, Scenario

from .wire import POST_PATH, WireClient, open_package

pytestmark = pytest.mark.asyncio(loop_scope="session")

CHAT = {"model": "test-model", "messages": [{"role": "user", "content": "ping pong"}]}


async def test_normal_answer_is_a_full_v1_response(http, router, wire):
    res = await wire.create(http, CHAT, tier="high")
    assert res.response.status_code == 200
    assert res.response.headers["content-type"] == "application/json"
    pkg = res.package
    assert pkg is not None
    assert {k: pkg[k] for k in ("version", "algorithm", "key_algorithm",
                                "payload_algorithm")} == {
        "version": "1.0", "algorithm": "hybrid-aes256-rsa4096",
        "key_algorithm": "RSA-OAEP-SHA256", "payload_algorithm": "AES-256-GCM"}
    assert isinstance(pkg["processed_at"], int)
    assert len(base64.b64decode(pkg["encrypted_payload"]["nonce"])) == 12
    assert len(base64.b64decode(pkg["encrypted_payload"]["tag"])) == 16
    out = res.completion
    assert out["id"] == "chatcmpl-" + hashlib.sha256(res.payload_id.encode()).hexdigest()[:24]
    assert isinstance(out["created"], int)
    assert out["model"] == "test-model"
    assert out["choices"][0]["message"]["content"] == "ping pong"
    meta = out["_metadata"]
    assert meta["payload_id"] == res.payload_id
    assert meta["processed_at"] == pkg["processed_at"]
    assert meta["is_encrypted"] is True
    assert meta["response_status"] == "success"
    assert meta["security_tier"] == "high"
    assert set(meta["memory_protection"]) == {"platform", "memory_locking", "secure_zeroing",
                                              "core_dump_prevention"}
    assert meta["cuda_device"]["available"] is False
    assert len(meta["cuda_device"]["device_hash"]) == 64
    int(meta["cuda_device"]["device_hash"], 16)


async def test_default_tier_is_standard(http, wire):
    res = await wire.create(http, CHAT)
    assert res.completion["_metadata"]["security_tier"] == "standard"


async def test_fresh_key_and_nonce_per_answer(http, wire):
    a = (await wire.create(http, CHAT)).package
    b = (await wire.create(http, CHAT)).package
    assert a is not None
    assert b is not None
    assert a["encrypted_payload"]["nonce"] != b["encrypted_payload"]["nonce"]
    assert a["encrypted_aes_key"] != b["encrypted_aes_key"]


async def test_seen_records_everything(http, router, wire):
    res = await wire.create(http, {**CHAT, "temperature": 0.5}, api_key="secret", tier="maximum")
    get, post = router.seen
    assert (get.method, get.path, get.status) == ("GET", KEY_PATH, 200)
    assert (post.method, post.path, post.status) == ("POST", POST_PATH, 200)
    assert post.payload_id == res.payload_id
    assert post.headers["x-payload-id"] == res.payload_id
    assert post.headers["authorization"] == "Bearer secret"
    assert post.security_tier == "maximum"
    assert post.client_public_key_pem == wire.pem
    assert post.payload == {**CHAT, "temperature": 0.5}
    assert json.loads(post.plaintext) == post.payload
    assert post.package == json.loads(post.body)
    assert post.refusal is None
    assert post.scenario is None
    assert get.time <= post.time
    router.reset()
    assert router.seen == []


async def test_seen_is_bounded(server_key, wire):
    router = MockRouter(server_key, max_seen=3)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=router.app),
                                 base_url="http://r") as http:
        for _ in range(5):
            await http.get(KEY_PATH)
    assert len(router.seen) == 3
    assert router.record.dropped == 2


# -- scenarios ---------------------------------------------------------------------------
@pytest.mark.parametrize(("body", "ctype", "expected"), [
    ({"detail": "busy"}, "application/json", b'{"detail": "busy"}'),
    ("plain words", "text/plain; charset=utf-8", b"plain words"),
    (b"\x00\x01", "application/octet-stream", b"\x00\x01"),
    (None, None, b""),
])
async def test_status_scenario(http, router, wire, body, ctype, expected):
    router.push(Scenario.status(503, body, headers={"Retry-After": "7"}))
    res = await wire.create(http, CHAT)
    assert res.response.status_code == 503
    assert res.response.content == expected
    assert res.response.headers.get("content-type") == ctype
    assert res.response.headers["retry-after"] == "7"
    assert router.seen[-1].status == 503
    assert router.seen[-1].scenario == "status"
    assert router.seen[-1].payload == CHAT  # still decrypted for the record
    assert (await wire.create(http, CHAT)).response.status_code == 200  # used up


async def test_status_scenario_content_type_override(http, router, wire):
    router.push(Scenario.status(400, "<html>", content_type="text/html"))
    res = await wire.create(http, CHAT)
    assert res.response.headers["content-type"] == "text/html"


async def test_times_and_fifo(http, router, wire):
    router.push(Scenario.status(429, times=2), Scenario.status(500))
    codes = [(await wire.create(http, CHAT)).response.status_code for _ in range(4)]
    assert codes == [429, 429, 500, 200]


async def test_key_endpoint_scenarios(http, router, wire):
    router.push(Scenario.status(503, {"detail": "down"}, path=KEY_PATH),
                Scenario.status(200, "not a pem", path=KEY_PATH))
    first = await http.get(KEY_PATH)
    assert first.status_code == 503
    assert first.json() == {"detail": "down"}
    second = await http.get(KEY_PATH)
    assert second.status_code == 200
    assert second.text == "not a pem"
    third = await http.get(KEY_PATH)
    assert third.text == router.public_key_pem
    assert third.headers["content-type"] == "text/plain; charset=utf-8"


async def test_key_scenario_does_not_touch_post(http, router, wire):
    router.push(Scenario.status(503, path=KEY_PATH))
    pem = router.public_key_pem
    res = await wire.create(http, CHAT, server_pem=pem)
    assert res.response.status_code == 200
    assert (await http.get(KEY_PATH)).status_code == 503


@pytest.mark.parametrize(("value", "present"), [("someone-else", True), (None, False)])
async def test_payload_id_scenario(http, router, wire, value, present):
    router.push(Scenario.payload_id(value))
    meta = (await wire.create(http, CHAT)).completion["_metadata"]
    assert ("payload_id" in meta) is present
    if present:
        assert meta["payload_id"] == value
    assert meta["is_encrypted"] is True


async def test_no_metadata(http, router, wire):
    router.push(Scenario.no_metadata())
    out = (await wire.create(http, CHAT)).completion
    assert "_metadata" not in out
    assert out["choices"]


@pytest.mark.parametrize("field", ["ciphertext", "tag", "nonce", "encrypted_aes_key"])
async def test_tamper(http, router, wire, field):
    router.push(Scenario.tamper(field))
    res = await wire.create(http, CHAT, decrypt=False)
    assert res.response.status_code == 200
    with pytest.raises((InvalidTag, ValueError)):
        open_package(wire.key, res.response.json())


async def test_package_overrides(http, router, wire):
    router.push(Scenario.package(version="0.9", processed_at=None, extra=[1]))
    res = await wire.create(http, CHAT, decrypt=False)
    pkg = res.response.json()
    assert pkg["version"] == "0.9"
    assert "processed_at" not in pkg
    assert pkg["extra"] == [1]
    json.loads(open_package(wire.key, pkg))  # still decrypts


async def test_plaintext_scenario(http, router, wire):
    router.push(Scenario.plaintext(b"\xffnot json"))
    res = await wire.create(http, CHAT)
    assert res.plaintext == b"\xffnot json"


async def test_wrong_recipient(http, router, wire):
    router.push(Scenario.wrong_recipient())
    res = await wire.create(http, CHAT, decrypt=False)
    assert res.response.status_code == 200
    with pytest.raises(ValueError, match="Decryption failed"):
        open_package(wire.key, res.response.json())


async def test_completion_scenario(http, router, wire):
    obj = {"id": "x", "object": "chat.completion", "choices": [], "_metadata": {"extra": 1}}
    router.push(Scenario.completion(obj))
    res = await wire.create(http, CHAT)
    out = res.completion
    assert out["id"] == "x"
    assert out["choices"] == []
    assert out["_metadata"]["payload_id"] == res.payload_id
    assert out["_metadata"]["extra"] == 1
    assert obj["_metadata"] == {"extra": 1}  # the pushed object is not changed


async def test_delay(http, router, wire):
    pem = router.public_key_pem
    router.push(Scenario.delay(0.3))
    start = time.monotonic()
    res = await wire.create(http, CHAT, server_pem=pem)
    assert time.monotonic() - start >= 0.3
    assert res.response.status_code == 200
    assert router.seen[-1].scenario == "delay"


async def test_drop_in_process_raises_remote_protocol_error(http, router, wire):
    router.push(Scenario.drop())
    with pytest.raises(httpx.RemoteProtocolError):
        await wire.create(http, CHAT)
    assert router.seen[-1].status == DROPPED
    assert router.seen[-1].scenario == "drop"
    assert (await wire.create(http, CHAT)).response.status_code == 200


async def test_scenario_constructor_errors():
    with pytest.raises(ValueError, match="tamper field"):
        Scenario.tamper("version")
    with pytest.raises(ValueError, match="times"):
        Scenario.status(500, times=0)
    with pytest.raises(ValueError, match="only applies"):
        Scenario("tamper", {"field": "tag"}, 1, KEY_PATH)
    with pytest.raises(ValueError, match="status code"):
        Scenario.status(99)
    with pytest.raises(ValueError, match="delay"):
        Scenario.delay(-1)


async def test_rotate_key(http, router, wire, other_server_key):
    old_pem, old_fp = router.public_key_pem, router.fingerprint
    new_fp = router.rotate_key(other_server_key)
    assert new_fp == router.fingerprint != old_fp
    stale = await wire.create(http, CHAT, server_pem=old_pem)
    assert stale.response.status_code == 400
    assert stale.response.json() == {"detail": "decryption failed"}
    fresh = await wire.create(http, CHAT)
    assert fresh.response.status_code == 200
    assert router.public_key_pem != old_pem


async def test_fingerprint_is_sha256_of_spki_der(router):
    from cryptography.hazmat.primitives import serialization
    der = router.server_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert router.fingerprint == hashlib.sha256(der).hexdigest()


async def test_key_file_round_trip(tmp_path, server_key):
    path = tmp_path / "keys" / "server.pem"
    made = MockRouter.from_key_file(path, create=True, key_size=2048)
    assert path.stat().st_mode & 0o777 == 0o600
    again = MockRouter.from_key_file(path)
    assert again.fingerprint == made.fingerprint
    saved = MockRouter(server_key).save_key(tmp_path / "s.pem")
    assert MockRouter.from_key_file(saved).fingerprint == MockRouter(server_key).fingerprint
    with pytest.raises(FileNotFoundError):
        MockRouter.from_key_file(tmp_path / "missing.pem")


# -- faults, latency, model script --------------------------------------------------------
async def _codes(router: MockRouter, wire: WireClient, count: int) -> list[int]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=router.app),
                                 base_url="http://r") as http:
        pem = router.public_key_pem
        return [(await wire.create(http, CHAT, server_pem=pem)).response.status_code
                for _ in range(count)]


async def test_failure_rate_is_seeded(server_key, wire):
    a = await _codes(MockRouter(server_key, failure_rate=0.5, failure_status=502, seed=7),
                     wire, 12)
    b = await _codes(MockRouter(server_key, failure_rate=0.5, failure_status=502, seed=7),
                     wire, 12)
    assert a == b
    assert set(a) == {200, 502}
    assert await _codes(MockRouter(server_key, failure_rate=1.0), wire, 2) == [503, 503]


async def test_latency(server_key, wire):
    router = MockRouter(server_key, latency=0.2)
    start = time.monotonic()
    assert await _codes(router, wire, 1) == [200]
    assert time.monotonic() - start >= 0.2


async def test_model_script(server_key, wire):
    router = MockRouter(server_key, model=["scripted"])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=router.app),
                                 base_url="http://r") as http:
        res = await wire.create(http, CHAT)
    assert res.completion["choices"][0]["message"]["content"] == "scripted"


# -- logging ------------------------------------------------------------------------------
async def test_one_log_line_per_request_without_secrets(http, router, wire, caplog):
    secret = "SECRET-" + uuid.uuid4().hex
    caplog.set_level(logging.DEBUG)
    res = await wire.create(http, {"model": secret, "messages": [
        {"role": "user", "content": secret}]}, api_key=secret + "-key")
    router.push(Scenario.status(500))
    await wire.create(http, CHAT, server_pem=router.public_key_pem, payload_id="bad id")
    ours = [r for r in caplog.records if r.name == "mock_router"]
    assert len(ours) == 3
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert secret not in text
    assert router.public_key_pem.splitlines()[1] not in text
    assert wire.pem.splitlines()[1] not in text
    assert res.payload_id in ours[1].getMessage()
    assert "refused" in ours[2].getMessage()
    assert "500" in ours[2].getMessage()


async def test_policy_refusal_log_omits_model_name(server_key, wire, caplog):
    router = MockRouter(server_key, tier_policy={"maximum": ["allowed"]})
    caplog.set_level(logging.INFO, logger="mock_router")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=router.app),
                                 base_url="http://r") as http:
        res = await wire.create(http, {**CHAT, "model": "hidden-model-name"}, tier="maximum")
    assert res.response.status_code == 403
    # neither the answer nor the log quotes the decrypted model name (LOG-5)
    assert "hidden-model-name" not in res.response.json()["detail"]
    assert "security tier 'maximum'" in res.response.json()["detail"]
    assert "hidden-model-name" not in caplog.text
    assert "not allowed" in caplog.text


async def test_seen_is_in_arrival_order_even_when_answers_finish_out_of_order(http, router,
                                                                              wire):
    import asyncio

    pem = router.public_key_pem
    router.push(Scenario.delay(0.3))
    slow = asyncio.create_task(wire.create(http, CHAT, server_pem=pem, payload_id="slow"))
    await asyncio.sleep(0.05)
    fast = await wire.create(http, CHAT, server_pem=pem, payload_id="fast")
    assert not slow.done()  # the delayed answer does not hold up the event loop
    await slow
    assert fast.response.status_code == 200
    assert [s.payload_id for s in router.seen] == ["slow", "fast"]


# -- other key wraps and Content-Types (ENC-6, CHK-14) ------------------------------------
def _unwrap_with(name: str):
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    sha1 = hashes.SHA1()  # noqa: S303 - the refused paddings, on purpose
    return {
        "oaep-sha1": padding.OAEP(mgf=padding.MGF1(sha1), algorithm=sha1, label=None),
        "oaep-mgf1-sha1": padding.OAEP(mgf=padding.MGF1(sha1), algorithm=hashes.SHA256(),
                                       label=None),
        "oaep-label": padding.OAEP(mgf=padding.MGF1(hashes.SHA256()),
                                   algorithm=hashes.SHA256(), label=b"nomyo"),
        "pkcs1v15": padding.PKCS1v15(),
    }[name]


@pytest.mark.parametrize("name", ["oaep-sha1", "oaep-mgf1-sha1", "oaep-label", "pkcs1v15"])
async def test_key_wrap_scenario(http, router, wire, name):
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    router.push(Scenario.key_wrap(name))
    res = await wire.create(http, CHAT, decrypt=False)
    assert res.response.status_code == 200
    pkg = res.response.json()
    assert pkg["key_algorithm"] == "RSA-OAEP-SHA256"  # everything else stays correct
    with pytest.raises(ValueError, match="Decryption failed"):
        open_package(wire.key, pkg)  # not OAEP-SHA-256
    aes_key = wire.key.decrypt(base64.b64decode(pkg["encrypted_aes_key"]), _unwrap_with(name))
    inner = pkg["encrypted_payload"]
    sealed = base64.b64decode(inner["ciphertext"]) + base64.b64decode(inner["tag"])
    out = json.loads(AESGCM(aes_key).decrypt(base64.b64decode(inner["nonce"]), sealed, None))
    assert out["_metadata"]["payload_id"] == res.payload_id
    assert out["choices"][0]["message"]["content"] == "ping pong"
    assert router.seen[-1].scenario == "key_wrap"
    assert (await wire.create(http, CHAT)).response.status_code == 200  # used up


@pytest.mark.parametrize("value", ["text/plain", "application/octet-stream", None])
async def test_content_type_scenario(http, router, wire, value):
    router.push(Scenario.content_type(value))
    res = await wire.create(http, CHAT)
    assert res.response.status_code == 200
    assert res.response.headers.get("content-type") == value
    assert res.completion["_metadata"]["payload_id"] == res.payload_id
    assert router.seen[-1].scenario == "content_type"


async def test_new_scenario_constructor_errors_and_descriptions():
    with pytest.raises(ValueError, match="key wrap padding"):
        Scenario.key_wrap("oaep-sha256")
    with pytest.raises(ValueError, match="content-type"):
        Scenario.content_type("text/plain\n")
    for sc in (Scenario.key_wrap("pkcs1v15"), Scenario.content_type(None),
               Scenario.content_type("text/plain")):
        assert Scenario.from_description(sc.describe()) == sc


# -- the wire checks of spec 1.0.1: PKG-10 receiver side, PKG-11, PID-6, PID-7 ---------------

def _strict(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


@pytest.mark.parametrize("how", ["non-alphabet", "space", "newline"])
@pytest.mark.parametrize("field", ["ciphertext", "tag", "nonce", "encrypted_aes_key"])
async def test_tamper_base64_text_only(http, router, wire, field, how):
    """The value's text gains a foreign character in the middle of its data; a lenient
    decoder (skipping it) still reads the genuine bytes, a strict one refuses."""
    router.push(Scenario.tamper(field, how=how))
    res = await wire.create(http, CHAT, decrypt=False)
    assert res.response.status_code == 200
    pkg = res.response.json()
    holder = pkg if field == "encrypted_aes_key" else pkg["encrypted_payload"]
    inserted = {"non-alphabet": "*", "space": " ", "newline": "\r\n"}[how]
    assert inserted in holder[field]
    with pytest.raises(ValueError, match=r"base64|Non-base64|padding|Incorrect"):
        _strict(holder[field])
    lenient = json.loads(open_package(wire.key, pkg))  # b64decode skips the character
    assert lenient["_metadata"]["payload_id"] == res.payload_id


async def test_tamper_strip_padding_of_the_tag(http, router, wire):
    router.push(Scenario.tamper("tag", how="strip-padding"))
    res = await wire.create(http, CHAT, decrypt=False)
    pkg = res.response.json()
    tag = pkg["encrypted_payload"]["tag"]
    assert len(tag) == 22
    assert "=" not in tag
    with pytest.raises(ValueError, match=r"padding|Incorrect"):
        _strict(tag)
    pkg["encrypted_payload"]["tag"] = tag + "=="  # the genuine answer once re-padded
    assert json.loads(open_package(wire.key, pkg))["_metadata"]["payload_id"] == res.payload_id


@pytest.mark.parametrize(("transform", "expected"), [
    ("upper", lambda pid: pid.upper()),
    ("strip-hyphens", lambda pid: pid.replace("-", "")),
    ("pad-space", lambda pid: pid + " "),
    ("truncate", lambda pid: pid[:-1]),
])
async def test_payload_id_like(http, router, wire, transform, expected):
    router.push(Scenario.payload_id_like(transform))
    res = await wire.create(http, CHAT)
    got = res.completion["_metadata"]["payload_id"]
    assert got == expected(res.payload_id) != res.payload_id


async def test_transform_payload_id_never_returns_the_id():
    from mock_router.scenarios import transform_payload_id

    assert transform_payload_id("ABC-1", "upper") == "abc-1"
    assert transform_payload_id("123", "upper") == "12"
    assert transform_payload_id("abc", "strip-hyphens") == "ab"
    assert transform_payload_id("a", "truncate") == ""


async def test_payload_member_inside_encrypted_payload(http, router, wire):
    router.push(Scenario.payload_member("x_future", {"a": [1]}))
    res = await wire.create(http, CHAT)
    inner = res.package["encrypted_payload"]
    assert inner["x_future"] == {"a": [1]}
    assert set(inner) == {"ciphertext", "nonce", "tag", "x_future"}
    assert res.completion["_metadata"]["payload_id"] == res.payload_id


async def test_payload_id_with_a_top_level_member(http, router, wire):
    from mock_router import REQUEST_ID

    router.push(Scenario.payload_id("someone-else", top_level=REQUEST_ID),
                Scenario.package(payload_id=REQUEST_ID),
                Scenario.metadata(payload_id=REQUEST_ID, security_tier="high"))
    res = await wire.create(http, CHAT)
    assert res.package["payload_id"] == res.payload_id
    assert res.completion["_metadata"]["payload_id"] == "someone-else"
    res = await wire.create(http, CHAT)
    assert res.package["payload_id"] == res.payload_id
    assert res.completion["_metadata"]["payload_id"] == res.payload_id
    res = await wire.create(http, CHAT)
    assert "payload_id" not in res.package
    assert res.completion["_metadata"]["payload_id"] == res.payload_id


async def test_wire_101_scenarios_answer_a_refused_request(http, router, wire):
    """always=True: the answers are built from the headers alone."""
    from mock_router import REQUEST_ID

    router.push(Scenario.tamper("tag", how="strip-padding", always=True),
                Scenario.payload_id_like("upper", always=True),
                Scenario.payload_member("x", 1, always=True),
                Scenario.payload_id("other", top_level=REQUEST_ID, always=True))
    answers = []
    for _ in range(4):
        pid = str(uuid.uuid4())
        r = await http.post(POST_PATH, content=b"{}",
                            headers={"X-Payload-ID": pid, "X-Public-Key": wire.pem,
                                     "Content-Type": "application/octet-stream"})
        assert r.status_code == 200, r.text
        assert router.seen[-1].valid is False
        answers.append((pid, r.json()))
    (_, a0), (p1, a1), (_, a2), (p3, a3) = answers
    assert len(a0["encrypted_payload"]["tag"]) == 22
    assert json.loads(open_package(wire.key, a1))["_metadata"]["payload_id"] == p1.upper()
    assert a2["encrypted_payload"]["x"] == 1
    assert a3["payload_id"] == p3
    assert json.loads(open_package(wire.key, a3))["_metadata"]["payload_id"] == "other"


async def test_wire_101_constructor_errors_and_descriptions():
    from mock_router import REQUEST_ID

    with pytest.raises(ValueError, match="tamper how"):
        Scenario.tamper("tag", how="rot13")
    with pytest.raises(ValueError, match="tag only"):
        Scenario.tamper("nonce", how="strip-padding")
    with pytest.raises(ValueError, match="payload id transform"):
        Scenario.payload_id_like("lower")
    with pytest.raises(ValueError, match="adds a member"):
        Scenario.payload_member("tag", "AAAA")
    with pytest.raises(TypeError):
        Scenario.payload_member(3, "x")  # type: ignore[arg-type]
    for sc in (Scenario.tamper("tag", how="strip-padding", always=True),
               Scenario.tamper("nonce", how="newline"), Scenario.tamper("tag"),
               Scenario.payload_id_like("pad-space", times=2),
               Scenario.payload_member("x_future", [1, None], always=True),
               Scenario.payload_id("x", top_level=REQUEST_ID),
               Scenario.payload_id(None)):
        assert Scenario.from_description(sc.describe()) == sc
    assert "how" not in Scenario.tamper("tag").describe()
