"""Unit tests of server mode's parts: the wire code, the answer analysis, drafts, faults and
options, without a router (the analysis is fed answers built here, right and wrong)."""

from __future__ import annotations

import json
import os
import urllib.parse
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from conformance.server import analysis
from conformance.server.drafts import Draft, mutate_b64, pad, prepare, serialise
from conformance.server.faults import catalogue, combine, representatives
from conformance.server.key_forms import FORMS, render, spki_pem
from conformance.server.keys import Keyring
from conformance.server.options import (
    OptionsError,
    Policy,
    ServerOptions,
    normalise_url,
    parse_policy,
)
from conformance.server.strategies import ordered_pairs
from conformance.server.transport import LIVE_BUDGET, Answer, BudgetExhausted, Transport
from conformance.server.wire import (
    KEY_STYLES,
    b64,
    encode_public_key,
    is_canonical_b64,
    public_pem,
    seal,
    strict_b64decode,
)
from tests.server.defects import sealed

OPTIONS = ServerOptions(url="http://router.test")


@pytest.mark.parametrize("text", ["AAA", "AA=", "A A=", "AA==\n", "AA-_", "A===", "AAAA=="])
def test_strict_base64_refuses_what_receivers_must_refuse(text: str) -> None:
    with pytest.raises(ValueError, match="base64"):
        strict_b64decode(text)


def test_canonical_base64_is_told_from_unused_bits() -> None:
    assert strict_b64decode("AB==") == b"\x00"
    assert is_canonical_b64("AA==")
    assert not is_canonical_b64("AB==")


def test_every_key_spelling_percent_decodes_to_the_pem(client_key: rsa.RSAPrivateKey) -> None:
    pem = public_pem(client_key)
    for style in KEY_STYLES:
        assert urllib.parse.unquote(encode_public_key(pem, style)) == pem
    assert "%2F" in encode_public_key(pem, "javascript")
    assert "+" in encode_public_key("a+b", "plus-literal")


def test_hand_built_key_info_matches_the_library(client_key: rsa.RSAPrivateKey) -> None:
    numbers = client_key.public_key().public_numbers()
    assert spki_pem(numbers.n, numbers.e) == public_pem(client_key)
    texts = {form: render(client_key, form) for form in FORMS}
    assert "BEGIN RSA PUBLIC KEY" in texts["pkcs1"]
    assert texts["two-blocks"].count("BEGIN PUBLIC KEY") == 2
    loaded = serialization.load_pem_public_key(texts["exponent-3"].encode())
    assert loaded.public_numbers().e == 3  # type: ignore[union-attr]


def test_drafts_serialise_duplicates_and_break_base64_as_asked() -> None:
    package = {"version": "1.0", "encrypted_payload": {"nonce": "AAAA", "tag": "BB=="}}
    assert serialise(package, "version").count('"version"') == 2
    assert serialise(package, "encrypted_payload.nonce").count('"nonce"') == 2
    assert mutate_b64("BB==", "no-padding") == "BB"
    assert "!" in mutate_b64("AAAA", "bad-char:2")
    assert len(pad(b'{"model": "m", "messages": []}', 1000)) == 1000


def _completion(payload_id: str, tier: str = "standard") -> dict[str, Any]:
    return {
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "OK"},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        "_metadata": {"payload_id": payload_id, "processed_at": 1, "is_encrypted": True,
                      "response_status": "success", "security_tier": tier,
                      "memory_protection": {"platform": "linux", "memory_locking": False,
                                            "secure_zeroing": True,
                                            "core_dump_prevention": False},
                      "cuda_device": {"available": False, "device_hash": "0" * 64}},
    }


@pytest.fixture(scope="module")
def keyring(client_key: rsa.RSAPrivateKey) -> Keyring:
    ring = Keyring()
    ring._keys["main"] = client_key
    return ring


def _judge(keyring: Keyring, server_key: rsa.RSAPrivateKey, **how: Any) -> analysis.Analysis:
    """The analysis of an answer sealed `how` to a conforming request."""
    prepared = prepare(Draft(tier="high"), keyring, server_key.public_key(), "m", None)
    plaintext = json.dumps(_completion(prepared.payload_id or "", "high")).encode()
    recipient = how.pop("to", keyring.private("main").public_key())
    package = sealed(recipient, plaintext, **how)
    answer = Answer(200, {"content-type": "application/json"}, json.dumps(package).encode())
    return analysis.analyse(prepared, answer)


def _states(result: analysis.Analysis) -> dict[str, str]:
    return {rid: result.get(rid).state for rid in analysis.ALL_IDS}


def test_a_right_answer_holds_every_property(keyring: Keyring,
                                             server_key: rsa.RSAPrivateKey) -> None:
    states = _states(_judge(keyring, server_key))
    judged = {rid: s for rid, s in states.items() if s != analysis.NOT_APPLICABLE}
    assert set(judged.values()) == {analysis.HELD}, judged
    assert states["RSP-5"] == analysis.NOT_APPLICABLE  # no reasoning_content in it


def test_each_wrong_sealing_is_named_and_read_on(keyring: Keyring,
                                                 server_key: rsa.RSAPrivateKey) -> None:
    appended = _judge(keyring, server_key, tag_appended=True)
    assert appended.get("ENC-3").state == analysis.VIOLATED
    assert appended.get("PID-4").state == analysis.HELD  # the plaintext was still read
    sha1 = _judge(keyring, server_key, wrap="oaep-sha1")
    assert (sha1.get("ENC-4").state, sha1.get("ENC-5").state) == (analysis.VIOLATED,
                                                                  analysis.HELD)
    aad = _judge(keyring, server_key, aad=b"nope")
    assert aad.get("ENC-1").state == analysis.VIOLATED
    assert aad.get("PID-4").state == analysis.BLOCKED


def test_an_answer_to_another_key_is_not_mistaken_for_pkcs1(
    keyring: Keyring, server_key: rsa.RSAPrivateKey, other_server_key: rsa.RSAPrivateKey
) -> None:
    """PKCS#1 v1.5 decryption with a wrong key answers random bytes (implicit rejection)."""
    result = _judge(keyring, server_key, to=other_server_key.public_key())
    assert result.get("ENC-5").state == analysis.VIOLATED
    assert result.get("RSP-1").state == analysis.VIOLATED
    assert result.get("ENC-4").state == analysis.BLOCKED


def test_a_refusal_blocks_every_answer_property(keyring: Keyring,
                                                server_key: rsa.RSAPrivateKey) -> None:
    prepared = prepare(Draft(), keyring, server_key.public_key(), "m", None)
    result = analysis.analyse(prepared, Answer(400, {}, b'{"detail": "no"}'))
    assert result.get("SRV-18").state == analysis.VIOLATED
    assert {result.get(r).by for r in analysis.ALL_IDS if r != "SRV-18"} == {"SRV-18"}


def test_a_reused_request_nonce_is_seen(keyring: Keyring, server_key: rsa.RSAPrivateKey) -> None:
    prepared = prepare(Draft(), keyring, server_key.public_key(), "m", None)
    assert prepared.sealed is not None
    plaintext = json.dumps(_completion(prepared.payload_id or "")).encode()
    package = sealed(keyring.private("main").public_key(), plaintext,
                     nonce=prepared.sealed.nonce)
    result = analysis.analyse(prepared, Answer(200, {}, json.dumps(package).encode()))
    assert result.get("ENC-9").state == analysis.VIOLATED


def test_prepared_requests_carry_the_placeholders_resolved(keyring: Keyring,
                                                            server_key: rsa.RSAPrivateKey
                                                            ) -> None:
    prepared = prepare(Draft(repeat="X-Payload-ID"), keyring, server_key.public_key(),
                       "my-model", "secret-key")
    names = [name for name, _ in prepared.headers]
    assert names.count("X-Payload-ID") == 2
    assert dict(prepared.headers)["Authorization"] == b"Bearer secret-key"
    assert b'"my-model"' in prepared.plaintext
    assert "secret-key" not in repr(prepared.draft)


def test_catalogue_covers_every_step_and_the_live_subset_is_small() -> None:
    full = representatives(ServerOptions(url="http://r", api_key="k",
                                         policy=Policy(True, frozenset({"maximum"}))))
    assert {f.step for f in full} == set(range(1, 11)) - {6}  # replay: its own check
    live = catalogue(ServerOptions(url="http://r", profile="live"))
    assert not any(f.heavy for f in live)
    assert {f.req for f in live} >= {"SRV-4", "SRV-5", "SRV-8", "SRV-11", "SRV-13", "SRV-15"}
    assert all(f.status != 200 or "accepted" in f.name or "ignored" in f.name for f in full)


def test_two_faults_that_would_hide_each_other_are_not_combined() -> None:
    faults = {f.name: f for f in representatives(OPTIONS)}
    assert combine(faults["empty body"], faults["tag altered"]) is None
    both = combine(faults["no Content-Type"], faults["version '1.1'"])
    assert both is not None
    assert both.content_type is None
    assert both.edits


@pytest.mark.parametrize("rid", ["SRV-27", "SRV-29", "SRV-30"])
def test_order_pairs_exist_for_the_default_policy(rid: str) -> None:
    pairs = ordered_pairs(OPTIONS, rid)
    assert pairs
    assert all(first.step < second.step and first.status != second.status
               for first, second, _ in pairs)


def test_policy_and_url_options() -> None:
    assert parse_policy([], api_key_given=True).auth_required
    assert not parse_policy(["auth=none"], api_key_given=True).auth_required
    policy = parse_policy(["tier-403=maximum,tier-403=high"], api_key_given=False)
    assert policy.allowed_tiers() == ("standard",)
    with pytest.raises(OptionsError, match="needs --server-api-key"):
        parse_policy(["auth=required"], api_key_given=False)
    assert normalise_url(" HTTPS://h:8443/prefix/ ") == "https://h:8443/prefix"
    for bad in ("h", "https://h?x=1", "https://u:p@h", "https://h:99999"):
        with pytest.raises(OptionsError):
            normalise_url(bad)


def test_live_budget_is_enforced() -> None:
    transport = Transport(ServerOptions(url="http://r", profile="live"))
    try:
        transport.sent = LIVE_BUDGET
        with pytest.raises(BudgetExhausted, match=str(LIVE_BUDGET)):
            transport.count()
    finally:
        transport.close()


def test_seal_keeps_the_tag_apart(client_key: rsa.RSAPrivateKey) -> None:
    box = seal(client_key.public_key(), b"hello")
    inner = box.package["encrypted_payload"]
    assert len(strict_b64decode(inner["ciphertext"])) == 5
    assert len(strict_b64decode(inner["tag"])) == 16
    assert b64(os.urandom(0)) == ""


def test_messages_never_quote_the_api_key() -> None:
    transport = Transport(ServerOptions(url="http://r", api_key="sk-secret-123"))
    try:
        answer = transport.own(Answer(401, {}, b'{"detail": "bad key sk-secret-123"}'))
    finally:
        transport.close()
    assert "sk-secret-123" not in answer.describe()
    assert "sk-secret-123" in answer.raw_text()  # what LOG-7 searches
    assert "sk-secret-123" not in repr(ServerOptions(url="http://r", api_key="sk-secret-123"))
