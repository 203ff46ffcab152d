"""Evidence for judging a port (issue 11): the record of undecryptable requests, the tolerant
decryption and the faults it names, scripted answers that do not depend on the request, and
the answer shapes of spec 1.0.1's client requirements (CHK-17/18/19, TIER-9)."""

from __future__ import annotations

import base64
import json
import os
import urllib.parse
import uuid
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mock_router import (
    SCRIPTED_CONTENT,
    SCRIPTED_MODEL,
    MockRouter,
    Scenario,
    tolerant_open,
)

from .wire import POST_PATH, b64, headers_for, open_package, pem_of

pytestmark = pytest.mark.asyncio(loop_scope="session")

CHAT = {"model": "port-model", "messages": [{"role": "user", "content": "judge me"}]}
SHA1 = hashes.SHA1()  # noqa: S303 - building the wrong packages a port might send
WRAPS = {
    "standard": padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(), None),
    "oaep-sha1": padding.OAEP(padding.MGF1(SHA1), SHA1, None),
    "oaep-mgf1-sha1": padding.OAEP(padding.MGF1(SHA1), hashes.SHA256(), None),
    "oaep-sha1-mgf1-sha256": padding.OAEP(padding.MGF1(hashes.SHA256()), SHA1, None),
    "pkcs1v15": padding.PKCS1v15(),
}


def port_package(recipient: rsa.RSAPublicKey, plaintext: bytes, *, wrap: str = "standard",
                 layout: str = "standard", key_bytes: int = 32, nonce_bytes: int = 12,
                 urlsafe: bool = False) -> dict[str, Any]:
    """A package as a (possibly broken) port builds it. layout: "standard", "appended" (tag
    appended, no tag member) or "both" (appended and in 'tag')."""
    key = os.urandom(key_bytes)
    nonce = os.urandom(nonce_bytes)
    sealed = AESGCM(key).encrypt(nonce, plaintext, None)
    enc = base64.urlsafe_b64encode if urlsafe else base64.b64encode

    def text(data: bytes) -> str:
        return enc(data).decode()

    inner = {"ciphertext": text(sealed[:-16]), "nonce": text(nonce), "tag": text(sealed[-16:])}
    if layout == "appended":
        inner = {"ciphertext": text(sealed), "nonce": text(nonce)}
    elif layout == "both":
        inner["ciphertext"] = text(sealed)
    return {"version": "1.0", "algorithm": "hybrid-aes256-rsa4096", "encrypted_payload": inner,
            "encrypted_aes_key": text(recipient.encrypt(key, WRAPS[wrap])),
            "key_algorithm": "RSA-OAEP-SHA256", "payload_algorithm": "AES-256-GCM"}


async def post(http: httpx.AsyncClient, body: dict[str, Any] | bytes, client_pem: str,
               payload_id: str | None = None, **header_opts: Any) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return await http.post(POST_PATH, content=content, headers=headers_for(
        client_pem, payload_id or str(uuid.uuid4()), **header_opts))


def _plain() -> bytes:
    return json.dumps(CHAT).encode()


# -- the record of every request -----------------------------------------------------------
async def test_an_undecryptable_request_is_recorded_whole(http, router, wire):
    pkg = port_package(router.server_key.public_key(), _plain(), wrap="oaep-sha1")
    pid = str(uuid.uuid4())
    r = await post(http, pkg, wire.pem, pid, api_key="tok", tier="high")
    assert (r.status_code, r.json()) == (400, {"detail": "decryption failed"})
    seen = router.seen[-1]
    assert seen.headers["x-payload-id"] == pid
    assert seen.headers["authorization"] == "Bearer tok"
    assert seen.payload_id == pid
    assert seen.security_tier == "high"
    assert seen.body == json.dumps(pkg).encode()
    assert seen.package == pkg
    assert seen.plaintext is None
    assert seen.payload is None
    assert (seen.refusal_code, seen.refusal, seen.status) == ("decryption_failed",
                                                              "decryption failed", 400)
    assert seen.client_public_key_pem == wire.pem
    assert seen.client_key_bits == 2048
    assert not seen.valid


async def test_a_request_refused_before_the_package_still_has_its_package(http, router, wire):
    pkg = port_package(router.server_key.public_key(), _plain())
    r = await http.post(POST_PATH, content=json.dumps(pkg).encode(), headers={
        **headers_for(wire.pem, "pid"), "Content-Type": "application/json"})
    assert r.status_code == 415
    seen = router.seen[-1]
    assert seen.package == pkg
    assert seen.plaintext is None  # the router never decrypted it...
    assert seen.tolerant is not None  # ...but the judge can
    assert seen.tolerant.variant == "standard"
    assert seen.tolerant.payload == CHAT
    assert seen.fault.code == "content_type"
    assert seen.fault.requirements == ("HDR-6",)


async def test_a_body_that_is_no_package_is_recorded_raw(http, router, wire):
    r = await post(http, b"\xffnot json", wire.pem)
    assert r.status_code == 400
    seen = router.seen[-1]
    assert seen.body == b"\xffnot json"
    assert seen.package is None
    assert seen.tolerant is None
    assert seen.fault.code == "body_not_utf8"


# -- tolerant decryption: which variant opened it, and the one fault it names ---------------
VARIANTS = [
    # (name, port_package options, expected variant, refusal code, fault code, requirement)
    ("oaep sha1", {"wrap": "oaep-sha1"}, "oaep-sha1", "decryption_failed", "oaep-sha1",
     "ENC-4"),
    ("oaep mgf1 sha1", {"wrap": "oaep-mgf1-sha1"}, "oaep-mgf1-sha1", "decryption_failed",
     "oaep-mgf1-sha1", "ENC-4"),
    ("oaep sha1 mgf1 sha256", {"wrap": "oaep-sha1-mgf1-sha256"}, "oaep-sha1-mgf1-sha256",
     "decryption_failed", "oaep-sha1-mgf1-sha256", "ENC-4"),
    ("pkcs1 v1.5", {"wrap": "pkcs1v15"}, "pkcs1v15", "decryption_failed", "pkcs1v15", "ENC-4"),
    ("tag appended, no tag", {"layout": "appended"}, "tag-appended", "payload_member_missing",
     "tag-appended", "ENC-3"),
    ("tag appended and in tag", {"layout": "both"}, "tag-appended", "decryption_failed",
     "tag-appended", "ENC-3"),
    ("aes-128", {"key_bytes": 16}, "aes-128", "decryption_failed", "aes-128", "ENC-1"),
    ("16-byte nonce", {"nonce_bytes": 16}, "nonce-length", "nonce_length", "nonce-length",
     "PKG-7"),
    ("url-safe base64", {"urlsafe": True}, None, "base64_invalid", None, "PKG-6"),
    ("oaep sha1 and tag appended", {"wrap": "oaep-sha1", "layout": "appended"},
     "oaep-sha1+tag-appended", "payload_member_missing", "oaep-sha1", "ENC-4"),
]


@pytest.mark.parametrize(("options", "variant", "refusal", "fault", "requirement"),
                         [v[1:] for v in VARIANTS], ids=[v[0] for v in VARIANTS])
async def test_tolerant_decryption_names_the_fault(http, router, wire, options, variant,
                                                   refusal, fault, requirement):
    pkg = port_package(router.server_key.public_key(), _plain(), **options)
    r = await post(http, pkg, wire.pem)
    assert r.status_code == 400, r.text
    seen = router.seen[-1]
    assert seen.refusal_code == refusal
    opened = seen.tolerant
    assert opened is not None
    assert opened.payload == CHAT
    if variant is None:  # url-safe base64 of random bytes may or may not hold '-'/'_'
        assert opened.variant in ("standard", "base64-lenient")
    else:
        assert opened.variant == variant
        assert opened.faults[0].code == fault
    assert requirement in seen.fault.requirements
    assert seen.faults[0] == seen.fault or seen.fault in seen.faults


async def test_tag_appended_port_is_charged_to_enc3_once(http, router, wire):
    """Issue 11's port: tag appended, no tag member. The router's refusal says the tag is
    missing; the fault names what the port did, with its one requirement."""
    for _ in range(3):
        await post(http, port_package(router.server_key.public_key(), _plain(),
                                      layout="appended"), wire.pem)
    faults = {str(s.fault) for s in router.seen}
    assert faults == {"GCM tag appended to the ciphertext instead of carried in 'tag' (ENC-3)"}
    assert [f.code for f in router.seen[-1].faults] == ["payload_member_missing",
                                                        "tag-appended"]


async def test_nothing_opens_a_package_for_another_key(http, router, wire, other_server_key):
    pkg = port_package(other_server_key.public_key(), _plain())
    assert (await post(http, pkg, wire.pem)).status_code == 400
    seen = router.seen[-1]
    assert seen.tolerant is None
    assert seen.fault.code == "decryption_failed"
    assert seen.fault.requirements == ("ENC-1", "ENC-2", "ENC-3", "ENC-4", "ENC-5")


async def test_tolerant_open_as_a_function(server_key):
    pkg = port_package(server_key.public_key(), b"{}", wrap="oaep-mgf1-sha1", layout="both")
    opened = tolerant_open(json.dumps(pkg).encode(), [server_key])
    assert opened == (b"{}", "oaep-mgf1-sha1+tag-appended")
    assert [f.requirements for f in opened.faults] == [("ENC-4",), ("ENC-3",)]
    assert tolerant_open(b"not json", [server_key]) is None
    assert tolerant_open({"encrypted_payload": 1}, [server_key]) is None
    assert tolerant_open(pkg, []) is None


async def test_tolerant_decryption_is_not_acceptance(http, router, wire):
    """However well the judge reads it, a non-conforming package is refused (ENC-6)."""
    for options in ({"wrap": "oaep-sha1"}, {"layout": "appended"}, {"key_bytes": 16}):
        pkg = port_package(router.server_key.public_key(), _plain(), **options)
        assert (await post(http, pkg, wire.pem)).status_code == 400


async def test_admin_shows_the_evidence(server_key, wire):
    router = MockRouter(server_key, admin=True)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=router.app),
                                 base_url="http://r") as http:
        await post(http, port_package(server_key.public_key(), _plain(), layout="appended"),
                   wire.pem)
        plain = (await http.get("/_mock/seen")).json()["seen"][-1]
        full = (await http.get("/_mock/seen?evidence=1")).json()["seen"][-1]
    assert plain["refusal_code"] == "payload_member_missing"
    assert "fault" not in plain
    assert full["tolerant_variant"] == "tag-appended"
    assert full["fault"]["requirements"] == ["ENC-3"]
    assert [f["code"] for f in full["faults"]] == ["payload_member_missing", "tag-appended"]


# -- scripted answers from the headers alone -------------------------------------------------
def _open_answer(r: httpx.Response, key: rsa.RSAPrivateKey) -> dict[str, Any]:
    assert r.status_code == 200, r.text
    return json.loads(open_package(key, r.json()))


REFUSED_REQUESTS = ["undecryptable", "tag missing", "content type", "replayed", "garbage body",
                    "bad tier header", "no api key"]


@pytest.mark.parametrize("case", REFUSED_REQUESTS)
async def test_scripted_answer_whatever_the_request(server_key, wire, client_key, case):
    router = MockRouter(server_key, api_keys=["k"] if case == "no api key" else None)
    pid = str(uuid.uuid4())
    pkg: dict[str, Any] | bytes = port_package(server_key.public_key(), _plain())
    headers = headers_for(wire.pem, pid, tier="high")
    if case == "undecryptable":
        pkg = port_package(server_key.public_key(), _plain(), wrap="oaep-sha1")
    elif case == "tag missing":
        pkg = port_package(server_key.public_key(), _plain(), layout="appended")
    elif case == "content type":
        headers["Content-Type"] = "text/plain"
    elif case == "garbage body":
        pkg = b"garbage"
    elif case == "bad tier header":
        headers["X-Security-Tier"] = "ultra"
    body = pkg if isinstance(pkg, bytes) else json.dumps(pkg).encode()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=router.app),
                                 base_url="http://r") as http:
        if case == "replayed":
            await http.post(POST_PATH, content=body, headers=headers)
        router.push(Scenario.scripted())
        r = await http.post(POST_PATH, content=body, headers=headers)
    answer = _open_answer(r, client_key)
    assert answer["choices"][0]["message"]["content"] == SCRIPTED_CONTENT
    assert answer["model"] == SCRIPTED_MODEL
    meta = answer["_metadata"]
    assert meta["payload_id"] == pid
    assert meta["security_tier"] == ("standard" if case == "bad tier header" else "high")
    seen = router.seen[-1]
    assert (seen.status, seen.scenario) == (200, "scripted")
    assert seen.refusal_code is not None  # the refusal is still on record
    assert not seen.valid


async def test_scripted_answer_for_a_valid_request_ignores_the_body(http, router, wire,
                                                                   client_key):
    router.push(Scenario.scripted())
    res = await wire.create(http, CHAT)
    assert res.completion["choices"][0]["message"]["content"] == SCRIPTED_CONTENT
    assert router.seen[-1].valid


async def test_scripted_answer_to_a_key_the_router_refuses(http, router, small_key):
    """A 1024-bit client key is refused (KEY-2), yet the scripted answer reaches it, so the
    port's answer handling can still be judged."""
    router.push(Scenario.scripted())
    pkg = port_package(router.server_key.public_key(), _plain())
    r = await post(http, pkg, pem_of(small_key))
    answer = _open_answer(r, small_key)
    assert answer["choices"][0]["message"]["content"] == SCRIPTED_CONTENT
    assert router.seen[-1].refusal_code == "public_key_too_small"


@pytest.mark.parametrize("missing", ["X-Payload-ID", "X-Public-Key"])
async def test_no_scripted_answer_without_the_headers(http, router, wire, missing):
    router.push(Scenario.scripted())
    h = headers_for(wire.pem, "pid")
    del h[missing]
    pkg = port_package(router.server_key.public_key(), _plain())
    r = await http.post(POST_PATH, content=json.dumps(pkg).encode(), headers=h)
    assert r.status_code == 400
    assert router.seen[-1].scenario == "scripted"
    assert router.seen[-1].status == 400
    assert router.scenarios.pending() == []  # used up all the same


async def test_no_scripted_answer_to_a_key_too_small_to_wrap_one(http, router):
    tiny = rsa.RSAPublicNumbers(65537, (1 << 511) | 12345).public_key()  # 512 bits
    router.push(Scenario.scripted())
    pkg = port_package(router.server_key.public_key(), _plain())
    r = await post(http, pkg, pem_of(tiny))
    assert r.status_code == 400
    assert router.seen[-1].refusal_code == "public_key_too_small"
    assert router.seen[-1].client_key_bits == 512


async def test_without_always_a_refused_request_stays_refused(http, router, wire):
    router.push(Scenario.no_metadata())
    pkg = port_package(router.server_key.public_key(), _plain(), wrap="oaep-sha1")
    assert (await post(http, pkg, wire.pem)).status_code == 400


SHAPED = [
    ("version", Scenario.package(version="0.9", always=True),
     lambda pkg, plain: pkg["version"] == "0.9"),
    ("no metadata", Scenario.no_metadata(always=True),
     lambda pkg, plain: "_metadata" not in plain),
    ("mis-bound", Scenario.payload_id("someone-else", always=True),
     lambda pkg, plain: plain["_metadata"]["payload_id"] == "someone-else"),
    ("wrong tier", Scenario.metadata(security_tier="maximum", always=True),
     lambda pkg, plain: plain["_metadata"]["security_tier"] == "maximum"),
    ("no tier", Scenario.metadata(security_tier=None, always=True),
     lambda pkg, plain: "security_tier" not in plain["_metadata"]),
    ("top-level processed_at", Scenario.package(processed_at="not a time", always=True),
     lambda pkg, plain: pkg["processed_at"] == "not a time"
     and isinstance(plain["_metadata"]["processed_at"], int)),
    ("completion", Scenario.completion({"id": "x", "object": "chat.completion", "created": 1,
                                        "model": "m", "choices": [],
                                        "_metadata": {"processed_at": 111}}, always=True),
     lambda pkg, plain: plain["_metadata"]["processed_at"] == 111 and plain["choices"] == []),
]


@pytest.mark.parametrize(("scenario", "check"), [s[1:] for s in SHAPED],
                         ids=[s[0] for s in SHAPED])
async def test_always_shapes_the_answer_to_a_refused_request(http, router, wire, client_key,
                                                             scenario, check):
    router.push(scenario)
    pkg = port_package(router.server_key.public_key(), _plain(), layout="appended")
    r = await post(http, pkg, wire.pem)
    assert r.status_code == 200, r.text
    answer = r.json()
    plain = json.loads(open_package(client_key, answer))
    assert check(answer, plain)
    assert router.seen[-1].refusal_code == "payload_member_missing"


async def test_always_tamper_and_wrong_recipient(http, router, wire, client_key):
    from cryptography.exceptions import InvalidTag

    pkg = port_package(router.server_key.public_key(), _plain(), wrap="oaep-sha1")
    router.push(Scenario.tamper("tag", always=True), Scenario.wrong_recipient(always=True),
                Scenario.key_wrap("oaep-sha1", always=True))
    for _ in range(2):
        r = await post(http, pkg, wire.pem)
        assert r.status_code == 200
        with pytest.raises((InvalidTag, ValueError)):
            open_package(client_key, r.json())
    r = await post(http, pkg, wire.pem)
    answer = r.json()
    key = client_key.decrypt(base64.b64decode(answer["encrypted_aes_key"]), WRAPS["oaep-sha1"])
    assert len(key) == 32


async def test_always_is_refused_where_it_means_nothing():
    with pytest.raises(ValueError, match="always"):
        Scenario("status", {"code": 503, "body": None, "content_type": None, "headers": {}},
                 always=True)
    with pytest.raises(ValueError, match="always"):
        Scenario.from_description({"kind": "drop", "always": True})


async def test_admin_descriptions_round_trip_the_new_scenarios():
    for sc in (Scenario.scripted(times=2), Scenario.metadata(security_tier=None, always=True),
               Scenario.duplicate("version"), Scenario.duplicate("tier", "x", where="metadata"),
               Scenario.large(1000, where="package", always=True), Scenario.nested(70),
               Scenario.tamper("tag", always=True), Scenario.package(version="0.9")):
        assert Scenario.from_description(sc.describe()) == sc


# -- answers for CHK-18 (duplicates) and CHK-19 (size, depth) --------------------------------
def _pairs_hook(found: list[str]):
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        names = [k for k, _ in pairs]
        found.extend(sorted({n for n in names if names.count(n) > 1}))
        return dict(pairs)
    return hook


@pytest.mark.parametrize(("where", "member"), [("package", "version"),
                                               ("encrypted_payload", "nonce"),
                                               ("plaintext", "model"),
                                               ("metadata", "payload_id")])
async def test_duplicate_scenario(http, router, wire, client_key, where, member):
    router.push(Scenario.duplicate(member, where=where))
    pid = str(uuid.uuid4())
    res = await wire.create(http, CHAT, payload_id=pid, decrypt=False)
    text = res.response.text
    found: list[str] = []
    package = json.loads(text, object_pairs_hook=_pairs_hook(found))
    if where in ("package", "encrypted_payload"):
        assert found == [member]
        plain = open_package(client_key, package).decode()
        assert json.loads(plain)["_metadata"]["payload_id"] == pid
    else:
        assert found == []
        plain = open_package(client_key, package).decode()
        json.loads(plain, object_pairs_hook=_pairs_hook(found))
        assert found == [member]
        assert json.loads(plain)["_metadata"]["payload_id"] == pid  # the real value wins last


async def test_duplicate_with_another_value_comes_first(http, router, wire, client_key):
    router.push(Scenario.duplicate("payload_id", "decoy", where="metadata"))
    res = await wire.create(http, CHAT, decrypt=False)
    plain = open_package(client_key, res.response.json()).decode()
    first = json.loads(plain, object_pairs_hook=lambda p: dict(reversed(p)))
    assert first["_metadata"]["payload_id"] == "decoy"
    assert json.loads(plain)["_metadata"]["payload_id"] == res.payload_id


@pytest.mark.parametrize("size", [4096, 200_000])
async def test_large_package(http, router, wire, client_key, size):
    router.push(Scenario.large(size, where="package"))
    res = await wire.create(http, CHAT, decrypt=False)
    assert len(res.response.content) == size
    json.loads(open_package(client_key, res.response.json()))


async def test_large_plaintext(http, router, wire, client_key):
    router.push(Scenario.large(300_000))
    res = await wire.create(http, CHAT, decrypt=False)
    plain = open_package(client_key, res.response.json())
    assert len(plain) == 300_000
    content = json.loads(plain)["choices"][0]["message"]["content"]
    assert content.startswith("judge me")
    assert content.endswith("aaaa")


def _depth(text: str) -> int:
    depth = best = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            best = max(best, depth)
        elif ch in "]}":
            depth -= 1
    return best


@pytest.mark.parametrize(("where", "depth"), [("plaintext", 64), ("plaintext", 129),
                                              ("package", 64), ("package", 5000)])
async def test_nested_answers(http, router, wire, client_key, where, depth):
    router.push(Scenario.nested(depth, where=where))
    res = await wire.create(http, CHAT, decrypt=False)
    body = res.response.text
    if where == "package":
        assert _depth(body) == depth
    else:
        assert _depth(body) == 2
        assert _depth(open_package(client_key, json.loads(body)).decode()) == depth


async def test_scenario_argument_checks():
    for bad in (lambda: Scenario.large(0), lambda: Scenario.large(1, where="x"),
                lambda: Scenario.nested(1), lambda: Scenario.duplicate("m", where="x")):
        with pytest.raises(ValueError, match="must be"):
            bad()


async def test_percent_encoded_key_header_is_what_scripted_answers_use(http, router,
                                                                      client_key):
    """JavaScript-style escaping of '/' works for scripted answers as for normal ones."""
    router.push(Scenario.scripted())
    pem = client_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    h = headers_for(pem, "pid-1", escape_slash=True)
    assert "%2F" in h["X-Public-Key"] or "/" not in urllib.parse.unquote(h["X-Public-Key"])
    r = await http.post(POST_PATH, content=b"{}", headers=h)
    assert _open_answer(r, client_key)["_metadata"]["payload_id"] == "pid-1"


async def test_b64_helper(client_key):
    assert base64.b64decode(b64(b"\x00")) == b"\x00"
