"""Spec 1.0.1 on the router's side: duplicates (SRV-20), implicit rejection (SRV-22), base64
(PKG-10), the client key's form (SRV-24, SRV-25), repeated headers (SRV-26), stream (SRV-35),
Content-Encoding (SRV-38), the grace period after a rotation (SRV-36); and the refusal codes
every refusal carries."""

from __future__ import annotations

import base64
import json
import urllib.parse
import uuid
from typing import Any, ClassVar

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

import mock_router.crypto
from mock_router import (
    FAULT_REQUIREMENTS,
    NOTE_CODES,
    REFUSAL_CODES,
    REFUSAL_REQUIREMENTS,
    VARIANT_CODES,
    MockRouter,
)
from mock_router.validation import Refusal

from .test_router_validation import send
from .wire import POST_PATH, b64, headers_for, open_package, pem_of, seal

pytestmark = pytest.mark.asyncio(loop_scope="session")

CHAT = {"model": "test-model", "messages": [{"role": "user", "content": "hello"}]}


def _last(router: MockRouter) -> Any:
    return router.seen[-1]


# -- SRV-20: duplicate member names ------------------------------------------------------
@pytest.mark.parametrize("where", ["top", "inner"])
async def test_duplicate_member_in_the_package_is_refused(http, router, wire, where):
    pkg = seal(router.public_key_pem, json.dumps(CHAT).encode())
    text = json.dumps(pkg)
    if where == "top":  # the same value twice: only a duplicate check can notice
        body = '{"version": "1.0", ' + text[1:]
    else:
        nonce = json.dumps(pkg["encrypted_payload"]["nonce"])
        body = text.replace('"encrypted_payload": {', '"encrypted_payload": {"nonce": '
                            + nonce + ", ", 1)
    r = await http.post(POST_PATH, content=body.encode(),
                        headers=headers_for(wire.pem, str(uuid.uuid4())))
    assert r.status_code == 400
    assert "duplicate member name" in r.json()["detail"]
    assert _last(router).refusal_code == "package_duplicate_member"
    assert _last(router).package is not None  # still recorded, the last value winning


async def test_duplicate_member_in_the_plaintext_is_refused(http, router, wire):
    plaintext = b'{"model": "test-model", "model": "test-model", "messages": ' \
                b'[{"role": "user", "content": "hi"}]}'
    r = await send(http, router, wire.pem, plaintext=plaintext)
    assert r.status_code == 400
    assert "duplicate member name" in r.json()["detail"]
    seen = _last(router)
    assert seen.refusal_code == "plaintext_duplicate_member"
    assert seen.plaintext == plaintext
    assert seen.fault.requirements == ("REQ-1",)


async def test_nested_duplicate_in_the_plaintext_is_refused(http, router, wire):
    plaintext = b'{"model": "m", "messages": [{"role": "user", "role": "user", ' \
                b'"content": "hi"}]}'
    r = await send(http, router, wire.pem, plaintext=plaintext)
    assert r.status_code == 400
    assert _last(router).refusal_code == "plaintext_duplicate_member"


# -- SRV-22: implicit rejection ----------------------------------------------------------
class _SpyAESGCM:
    """Records the keys GCM is asked to open with, then does the real work."""

    keys: ClassVar[list[bytes]] = []

    def __init__(self, key: bytes) -> None:
        self.keys.append(key)
        self._real = _REAL_AESGCM(key)

    def decrypt(self, nonce: bytes, data: bytes, aad: bytes | None) -> bytes:
        return self._real.decrypt(nonce, data, aad)

    def encrypt(self, nonce: bytes, data: bytes, aad: bytes | None) -> bytes:
        return self._real.encrypt(nonce, data, aad)

    @staticmethod
    def generate_key(bit_length: int) -> bytes:
        return _REAL_AESGCM.generate_key(bit_length)


_REAL_AESGCM = mock_router.crypto.AESGCM


@pytest.mark.parametrize("wrapped", ["garbage of the modulus length", "short", "16-byte key"])
async def test_unwrap_failure_still_takes_the_gcm_path(http, router, wire, monkeypatch, wrapped):
    """Whatever fails first, RSA or GCM, the router runs GCM (under a random 32-byte key when
    the AES key did not unwrap) and answers the same 400."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    def mutate(pkg: dict[str, Any]) -> None:
        if wrapped == "short":
            pkg["encrypted_aes_key"] = b64(b"\x01" * 16)
        elif wrapped == "16-byte key":
            oaep = padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(), None)
            pkg["encrypted_aes_key"] = b64(router.server_key.public_key().encrypt(b"k" * 16,
                                                                                  oaep))
        else:
            pkg["encrypted_aes_key"] = b64(b"\x01" * (router.server_key.key_size // 8))

    _SpyAESGCM.keys = []
    monkeypatch.setattr(mock_router.crypto, "AESGCM", _SpyAESGCM)
    r = await send(http, router, wire.pem, package=mutate)
    assert (r.status_code, r.json()) == (400, {"detail": "decryption failed"})
    assert len(_SpyAESGCM.keys) == 1
    assert len(_SpyAESGCM.keys[0]) == 32
    assert _SpyAESGCM.keys[0] != b"k" * 16
    assert _last(router).refusal_code == "decryption_failed"


async def test_gcm_failure_gives_the_same_answer(http, router, wire):
    def mutate(pkg: dict[str, Any]) -> None:
        tag = bytearray(base64.b64decode(pkg["encrypted_payload"]["tag"]))
        tag[0] ^= 1
        pkg["encrypted_payload"]["tag"] = b64(bytes(tag))

    r = await send(http, router, wire.pem, package=mutate)
    assert (r.status_code, r.json()) == (400, {"detail": "decryption failed"})


async def test_implicit_rejection_never_accepts_a_random_key(server_key, monkeypatch):
    """Even if the random key opened the box (2**-128), a package whose key did not unwrap is
    refused."""
    class Opens(_SpyAESGCM):
        def decrypt(self, nonce: bytes, data: bytes, aad: bytes | None) -> bytes:
            return b"{}"

    monkeypatch.setattr(mock_router.crypto, "AESGCM", Opens)
    with pytest.raises(mock_router.crypto.DecryptionFailed):
        mock_router.crypto.decrypt(server_key, b"\x00" * 256, b"", b"\x00" * 12, b"\x00" * 16)


# -- PKG-10: base64 ----------------------------------------------------------------------
def _canonical(value: str) -> bool:
    return base64.b64encode(base64.b64decode(value, validate=True)).decode() == value


async def test_router_output_is_canonical_base64(http, router, wire):
    for text in ("", "a", "ab", "abc", "hello world"):
        res = await wire.create(http, {**CHAT, "messages": [{"role": "user", "content": text}]})
        pkg = res.package
        assert pkg is not None
        for value in (pkg["encrypted_aes_key"], *pkg["encrypted_payload"].values()):
            assert _canonical(value), value
            assert len(value) % 4 == 0


def _set_inner(name: str, transform) -> Any:
    def mutate(pkg: dict[str, Any]) -> None:
        pkg["encrypted_payload"][name] = transform(pkg["encrypted_payload"][name])
    return mutate


@pytest.mark.parametrize(("case", "mutate"), [
    ("tag missing padding", _set_inner("tag", lambda v: v.rstrip("="))),
    ("tag extra padding", _set_inner("tag", lambda v: v + "==")),
    ("tag url-safe", _set_inner("tag", lambda v: v.replace("+", "-").replace("/", "_") + "-")),
    ("nonce with newline", _set_inner("nonce", lambda v: v[:8] + "\n" + v[8:])),
    ("nonce with space", _set_inner("nonce", lambda v: v + " ")),
    ("padding inside", _set_inner("tag", lambda v: v[:4] + "====" + v[4:])),
])
async def test_non_alphabet_and_bad_padding_are_refused(http, router, wire, case, mutate):
    r = await send(http, router, wire.pem, package=mutate)
    assert r.status_code == 400, case
    assert "not valid base64" in r.json()["detail"]
    assert _last(router).refusal_code == "base64_invalid"
    assert _last(router).fault.requirements == ("PKG-6",)


def _dirty_padding_bits(value: str) -> str:
    """Set the unused low bits of the last character before '==' (same bytes decoded)."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    assert value.endswith("==")
    last = alphabet.index(value[-3])
    return value[:-3] + alphabet[last | 0b1111] + "=="


async def test_non_canonical_padding_bits_are_accepted_and_noted(http, router, wire):
    """PKG-10 lets a receiver accept non-zero unused bits (MAY refuse): this one accepts and
    records the deviation for the client's judge."""
    r = await send(http, router, wire.pem, package=_set_inner("tag", _dirty_padding_bits))
    assert r.status_code == 200, r.text
    seen = _last(router)
    assert seen.notes == ("base64_noncanonical",)
    assert [f.code for f in seen.faults] == ["base64_noncanonical"]
    assert seen.faults[0].requirements == ("PKG-10",)
    assert seen.fault is None  # not refused


async def test_extra_package_members_are_ignored_and_noted(http, router, wire):
    def mutate(pkg: dict[str, Any]) -> None:
        pkg["encrypted_payload"]["aad"] = ""
    r = await send(http, router, wire.pem, package=mutate)
    assert r.status_code == 200, r.text  # PKG-11: ignored
    assert _last(router).notes == ("package_extra_member",)


# -- SRV-24, SRV-25: the client key's form -------------------------------------------------
def _quoted(text: str) -> str:
    return urllib.parse.quote(text, safe="/")


async def test_pkcs1_client_key_is_refused(http, router, client_key):
    pkcs1 = client_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                 serialization.PublicFormat.PKCS1).decode()
    r = await send(http, router, pkcs1)
    assert r.status_code == 400
    assert "PKCS#1" in r.json()["detail"]
    assert _last(router).refusal_code == "public_key_not_spki"
    assert _last(router).fault.requirements == ("KEY-3",)
    assert _last(router).client_key_bits == 2048


@pytest.mark.parametrize("shape", ["two blocks", "text before", "text after"])
async def test_client_key_must_be_one_block(http, router, wire, shape):
    pem = wire.pem
    text = {"two blocks": pem + pem, "text before": "my key:\n" + pem,
            "text after": pem + "that was my key\n"}[shape]
    r = await send(http, router, text)
    assert r.status_code == 400, r.text
    assert _last(router).refusal_code == "public_key_not_one_block"


async def test_surrounding_whitespace_and_crlf_are_fine(http, router, wire):
    r = await send(http, router, "\n  " + wire.pem.replace("\n", "\r\n") + "\n\n")
    assert r.status_code == 200, r.text


async def test_client_key_exponent_must_be_65537(http, router):
    odd = rsa.generate_private_key(public_exponent=3, key_size=2048)
    r = await send(http, router, pem_of(odd))
    assert r.status_code == 400
    assert "exponent 3" in r.json()["detail"]
    assert _last(router).refusal_code == "public_key_exponent"


async def test_small_client_key_is_named_with_its_size(http, router, small_key):
    r = await send(http, router, pem_of(small_key))
    assert r.status_code == 400
    seen = _last(router)
    assert seen.refusal_code == "public_key_too_small"
    assert seen.client_key_bits == 1024
    assert "1024 bits" in str(seen.fault)
    assert seen.fault.requirements == ("KEY-2",)


# -- SRV-26, SRV-38, SRV-35 ----------------------------------------------------------------
async def _post_raw(http: httpx.AsyncClient, router: MockRouter, client_pem: str,
                    extra: list[tuple[str, str]], drop: tuple[str, ...] = ()) -> httpx.Response:
    headers = [(k, v) for k, v in headers_for(client_pem, str(uuid.uuid4())).items()
               if k not in drop]
    body = json.dumps(seal(router.public_key_pem, json.dumps(CHAT).encode())).encode()
    return await http.post(POST_PATH, content=body, headers=headers + extra)


@pytest.mark.parametrize(("name", "value", "status", "code"), [
    ("X-Payload-ID", "same-twice", 400, "header_repeated"),
    ("X-Security-Tier", "high", 400, "header_repeated"),
    ("Content-Type", "application/octet-stream", 400, "header_repeated"),
    ("Authorization", "Bearer k", 401, "api_key_repeated"),
])
async def test_repeated_header_fields_are_refused(http, router, wire, name, value, status,
                                                  code):
    extra = [(name, value), (name, value)]
    r = await _post_raw(http, router, wire.pem, extra, drop=(name,))
    assert r.status_code == status, r.text
    assert "more than once" in r.json()["detail"]
    assert _last(router).refusal_code == code


async def test_repeated_public_key_is_refused(http, router, wire):
    quoted = _quoted(wire.pem)
    r = await _post_raw(http, router, wire.pem, [("X-Public-Key", quoted)])
    assert r.status_code == 400
    assert _last(router).refusal_code == "header_repeated"


@pytest.mark.parametrize(("value", "status"), [("gzip", 415), ("deflate, identity", 415),
                                               ("identity", 200)])
async def test_content_encoding(http, router, wire, value, status):
    r = await _post_raw(http, router, wire.pem, [("Content-Encoding", value)])
    assert r.status_code == status, r.text
    if status == 415:
        assert _last(router).refusal_code == "content_encoding"
        assert _last(router).fault.requirements == ("HDR-11",)


@pytest.mark.parametrize("stream", [None, "true", 0, 1, "false"])
async def test_stream_must_be_a_boolean(http, router, wire, stream):
    r = await send(http, router, wire.pem,
                   plaintext=json.dumps({**CHAT, "stream": stream}).encode())
    assert r.status_code == 400, r.text
    assert _last(router).refusal_code == "stream_invalid"


async def test_stream_false_is_fine(http, router, wire):
    r = await send(http, router, wire.pem, plaintext=json.dumps({**CHAT, "stream": False})
                   .encode())
    assert r.status_code == 200, r.text


# -- SRV-36: grace period after a rotation ---------------------------------------------------
async def test_rotation_is_abrupt_by_default(http, router, wire):
    old_pem = router.public_key_pem
    router.rotate_key()
    r = await wire.create(http, CHAT, server_pem=old_pem)
    assert r.response.status_code == 400
    seen = _last(router)
    assert seen.refusal_code == "decryption_failed"
    assert seen.tolerant is not None
    assert seen.tolerant.variant == "retired-server-key"
    assert seen.fault.code == "retired-server-key"  # named, but charged to no requirement:
    assert seen.fault.requirements == ()           # the key was current when cached
    assert json.loads(seen.tolerant.plaintext) == CHAT


async def test_rotation_with_grace_still_decrypts_the_old_key(http, router, wire):
    old_pem = router.public_key_pem
    router.rotate_key(grace=3600)
    r = await wire.create(http, CHAT, server_pem=old_pem)
    assert r.response.status_code == 200, r.response.text
    assert (await wire.create(http, CHAT)).response.status_code == 200  # the new key too


async def test_rotation_grace_expires(http, router, wire):
    old_pem = router.public_key_pem
    router.rotate_key(grace=0.001)
    import asyncio

    await asyncio.sleep(0.01)
    r = await wire.create(http, CHAT, server_pem=old_pem)
    assert r.response.status_code == 400


# -- refusal codes -------------------------------------------------------------------------
def _spec_ids() -> dict[str, dict[str, Any]]:
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "spec" / "requirements.json"
    return {r["id"]: r for r in json.loads(path.read_text())["requirements"]}


async def test_every_mapped_requirement_exists_and_is_judged():
    """The mapping names real ids (no typos), none replaced in spec 1.0.1, client ids for
    the sender's fault and server ids for the router's rule."""
    ids = _spec_ids()
    for table in (REFUSAL_CODES, NOTE_CODES, VARIANT_CODES):
        for code, info in table.items():
            for rid in info.requirements:
                assert rid in ids, (code, rid)
                assert not ids[rid].get("replaced_by"), (code, rid)
                assert ids[rid]["applies_to"] in ("client", "both"), (code, rid)
            for rid in info.server:
                assert rid in ids, (code, rid)
                assert not ids[rid].get("replaced_by"), (code, rid)
                assert ids[rid]["applies_to"] in ("server", "both"), (code, rid)
    assert REFUSAL_REQUIREMENTS["decryption_failed"] == ("ENC-1", "ENC-2", "ENC-3", "ENC-4",
                                                         "ENC-5")
    assert FAULT_REQUIREMENTS["tag-appended"] == ("ENC-3",)
    assert FAULT_REQUIREMENTS["oaep-sha1"] == ("ENC-4",)
    assert REFUSAL_REQUIREMENTS["public_key_too_small"] == ("KEY-2",)


async def test_a_refusal_with_an_unknown_code_is_a_bug():
    with pytest.raises(ValueError, match="unknown refusal code"):
        Refusal(400, "x", code="no-such-code")


CODE_CASES = [
    ("content type", {"Content-Type": "text/plain"}, None, "content_type", 415),
    ("no payload id", {"X-Payload-ID": None}, None, "payload_id_missing", 400),
    ("bad payload id", {"X-Payload-ID": "a b"}, None, "payload_id_invalid", 400),
    ("bad tier", {"X-Security-Tier": "ultra"}, None, "tier_invalid", 400),
    ("no public key", {"X-Public-Key": None}, None, "public_key_missing", 400),
    ("public key not utf-8", {"X-Public-Key": "%ff"}, None, "public_key_encoding", 400),
    ("public key garbage", {"X-Public-Key": "nope"}, None, "public_key_invalid", 400),
    ("empty body", {}, b"", "body_empty", 400),
    ("not json", {}, b"{", "body_not_json", 400),
    ("not utf-8", {}, b"\xff", "body_not_utf8", 400),
    ("not object", {}, b"[]", "body_not_object", 400),
    ("member missing", {}, "-version", "package_member_missing", 400),
    ("bad version", {}, ("version", "0.9"), "version_unsupported", 400),
    ("bad algorithm", {}, ("algorithm", "x"), "algorithm_unsupported", 400),
    ("bad key algorithm", {}, ("key_algorithm", "x"), "key_algorithm_unsupported", 400),
    ("bad payload algorithm", {}, ("payload_algorithm", "x"),
     "payload_algorithm_unsupported", 400),
    ("payload not object", {}, ("encrypted_payload", "x"), "payload_member_type", 400),
    ("aes key not string", {}, ("encrypted_aes_key", 5), "package_member_type", 400),
]


@pytest.mark.parametrize(("headers", "body", "code", "status"),
                         [c[1:] for c in CODE_CASES], ids=[c[0] for c in CODE_CASES])
async def test_refusals_carry_their_code(http, router, wire, headers, body, code, status):
    h = headers_for(wire.pem, str(uuid.uuid4()))
    for name, value in headers.items():
        if value is None:
            h.pop(name)
        else:
            h[name] = value
    pkg = seal(router.public_key_pem, json.dumps(CHAT).encode())
    if isinstance(body, str):
        del pkg[body[1:]]
    elif isinstance(body, tuple):
        pkg[body[0]] = body[1]
    content = body if isinstance(body, bytes) else json.dumps(pkg).encode()
    r = await http.post(POST_PATH, content=content, headers=h)
    assert r.status_code == status, r.text
    seen = _last(router)
    assert seen.refusal_code == code
    assert REFUSAL_CODES[code].status == status
    assert seen.refusal == r.json()["detail"]
    assert not seen.valid


async def test_chat_field_codes(http, router, wire):
    cases = [({"messages": CHAT["messages"]}, "model_missing"),
             ({**CHAT, "model": ""}, "model_invalid"),
             ({"model": "m"}, "messages_missing"),
             ({**CHAT, "messages": []}, "messages_invalid"),
             ({**CHAT, "messages": [{"content": "no role"}]}, "message_invalid"),
             ({**CHAT, "stream": True}, "stream_unsupported"),
             ({**CHAT, "n": 0}, "parameter_invalid"),
             (["not", "an", "object"], "plaintext_not_object")]
    for plaintext, code in cases:
        r = await send(http, router, wire.pem, plaintext=json.dumps(plaintext).encode())
        assert r.status_code == 400, (plaintext, r.text)
        assert _last(router).refusal_code == code, plaintext


async def test_other_statuses_carry_codes(server_key, wire):
    router = MockRouter(server_key, api_keys=["k"], tier_policy={"maximum": ["a"]})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=router.app),
                                 base_url="http://r") as http:
        assert (await wire.create(http, CHAT)).response.status_code == 401
        assert _last(router).refusal_code == "api_key_missing"
        assert (await wire.create(http, CHAT, api_key="x")).response.status_code == 401
        assert _last(router).refusal_code == "api_key_invalid"
        r = await wire.create(http, CHAT, api_key="k", tier="maximum")
        assert r.response.status_code == 403
        assert _last(router).refusal_code == "tier_not_allowed"
        assert (await http.get("/nowhere")).status_code == 404
        assert _last(router).refusal_code == "not_found"
        assert (await http.get(POST_PATH)).status_code == 405
        assert _last(router).refusal_code == "method_not_allowed"
        big = {"Content-Length": str(router.max_body_bytes + 1)}
        r2 = await http.post(POST_PATH, content=b"", headers={
            **headers_for(wire.pem, "p"), **big, "Authorization": "Bearer k"})
        assert r2.status_code == 413
        assert _last(router).refusal_code == "body_too_large"


async def test_valid_request_has_no_code_and_no_fault(http, router, wire):
    assert (await wire.create(http, CHAT)).response.status_code == 200
    seen = _last(router)
    assert (seen.refusal_code, seen.valid, seen.fault, seen.faults) == (None, True, None, ())
    assert seen.client_key_bits == 2048
    assert seen.tolerant == (seen.plaintext, "standard")


async def test_open_package_helper_roundtrip(http, router, wire, client_key):
    """The wire helper the tests above rely on opens what the router answers."""
    res = await wire.create(http, CHAT)
    assert json.loads(open_package(client_key, res.package))["_metadata"]["payload_id"] \
        == res.payload_id


async def test_admin_rotate_with_grace_and_reset_clears_the_replay_cache(server_key, wire):
    router = MockRouter(server_key, key_size=2048, admin=True)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=router.app),
                                 base_url="http://r") as http:
        old_pem = router.public_key_pem
        body = json.dumps(seal(old_pem, json.dumps(CHAT).encode())).encode()
        headers = headers_for(wire.pem, "pid")
        assert (await http.post(POST_PATH, content=body, headers=headers)).status_code == 200
        assert (await http.post(POST_PATH, content=body, headers=headers)).status_code == 409
        assert (await http.post("/_mock/reset")).status_code == 200
        assert (await http.post("/_mock/rotate-key", json={"grace": 60})).status_code == 200
        assert (await http.post(POST_PATH, content=body, headers=headers)).status_code == 200
        bad = await http.post("/_mock/rotate-key", json={"grace": -1})
        assert bad.status_code == 400
        assert "grace" in bad.json()["detail"]
