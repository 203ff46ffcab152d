"""The sans-IO core: round trips against the independent server side, every refusal."""

from __future__ import annotations

import base64
import json
import os
from typing import Any
from urllib.parse import unquote

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nomyo_ref import (
    APIError,
    AuthenticationError,
    ForbiddenError,
    InvalidRequestError,
    RateLimitError,
    SecurityError,
    ServerError,
    ServiceUnavailableError,
    crypto,
    protocol,
)
from tests.ref import wire

PID = "0b6f2d6e-9a43-4e0c-8f1a-1d2e3f4a5b6c"
crypto_settings = settings(deadline=None, max_examples=25,
                           suppress_health_check=[HealthCheck.function_scoped_fixture])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**53, 2**53) | st.text(max_size=20)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


def body_of(package: dict[str, Any]) -> bytes:
    return json.dumps(package).encode()


def answer(client_key: rsa.RSAPrivateKey, obj: Any, **overrides: Any) -> bytes:
    raw = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    return body_of(wire.seal(raw, client_key.public_key(), **overrides))


# --- request: nomyo_ref encrypts, the independent server decrypts ------------------------

@crypto_settings
@given(plaintext=st.binary(max_size=2000))
def test_request_package_opens_on_the_server_side(plaintext: bytes,
                                                  server_key: rsa.RSAPrivateKey) -> None:
    package = json.loads(crypto.encrypt_package(bytearray(plaintext), server_key.public_key()))
    assert wire.unseal(package, server_key) == plaintext
    assert set(package) == {"version", "algorithm", "encrypted_payload", "encrypted_aes_key",
                            "key_algorithm", "payload_algorithm"}
    inner = package["encrypted_payload"]
    assert len(base64.b64decode(inner["nonce"])) == 12
    assert len(base64.b64decode(inner["tag"])) == 16
    assert len(base64.b64decode(inner["ciphertext"])) == len(plaintext)


def test_each_request_uses_a_fresh_key_and_nonce(server_key: rsa.RSAPrivateKey) -> None:
    a = json.loads(crypto.encrypt_package(b"same", server_key.public_key()))
    b = json.loads(crypto.encrypt_package(b"same", server_key.public_key()))
    assert a["encrypted_payload"]["nonce"] != b["encrypted_payload"]["nonce"]
    assert a["encrypted_aes_key"] != b["encrypted_aes_key"]
    assert a["encrypted_payload"]["ciphertext"] != b["encrypted_payload"]["ciphertext"]


@settings(max_examples=50)
@given(model=st.text(min_size=1, max_size=10), extra=st.dictionaries(
    st.text(max_size=10).filter(
        lambda k: k not in protocol.NON_PAYLOAD_KEYS and k not in ("model", "messages")),
    json_values, max_size=5))
def test_payload_passes_every_parameter_through(model: str, extra: dict[str, Any]) -> None:
    messages = [{"role": "user", "content": "hi"}]
    payload = protocol.build_payload(model, messages, extra)
    data = protocol.serialise_payload(payload)
    assert json.loads(data) == {**extra, "model": model, "messages": messages}


@pytest.mark.parametrize("name", ["security_tier", "api_key", "base_url"])
def test_non_payload_keys_never_enter_the_payload(name: str) -> None:
    with pytest.raises(ValueError, match=name):
        protocol.build_payload("m", [], {name: "x"})
    with pytest.raises(ValueError, match=name):
        protocol.serialise_payload({"model": "m", name: "x"})


def test_payload_size_limit_is_exact() -> None:
    overhead = len(json.dumps({"model": "m", "pad": ""}, separators=(",", ":")))
    limit = protocol.MAX_PLAINTEXT_BYTES
    ok = {"model": "m", "pad": "a" * (limit - overhead)}
    assert len(protocol.serialise_payload(ok)) == limit
    with pytest.raises(ValueError, match="too large"):
        protocol.serialise_payload({"model": "m", "pad": "a" * (limit - overhead + 1)})


@pytest.mark.parametrize("payload", [
    {"model": float("nan")}, {"model": object()}, {"model": "\ud800"}, [], {}, "text",
])
def test_unserialisable_payloads_are_value_errors(payload: Any) -> None:
    with pytest.raises(ValueError, match="payload"):
        protocol.serialise_payload(payload)


def test_chat_request_headers(client_key: rsa.RSAPrivateKey) -> None:
    pem = wire.spki_pem(client_key)
    request = protocol.build_chat_request("https://h", b"{}", PID, pem, "sk-1", "high")
    assert request.method == "POST"
    assert request.url == "https://h/v1/chat/secure_completion"
    assert request.headers["X-Payload-ID"] == PID
    assert unquote(request.headers["X-Public-Key"]) == pem
    assert "\n" not in request.headers["X-Public-Key"]
    assert request.headers["Content-Type"] == "application/octet-stream"
    assert request.headers["Authorization"] == "Bearer sk-1"
    assert request.headers["X-Security-Tier"] == "high"
    bare = protocol.build_chat_request("https://h", b"{}", PID, pem)
    assert "Authorization" not in bare.headers
    assert "X-Security-Tier" not in bare.headers


def test_new_payload_id_is_a_canonical_uuid4() -> None:
    ids = {protocol.new_payload_id() for _ in range(50)}
    assert len(ids) == 50
    for value in ids:
        assert len(value) == 36
        assert value == value.lower()
        assert value[14] == "4"


@pytest.mark.parametrize("bad", ["sk\r\nX-Evil: 1", "sk\n", "sk key", "clé", "sk\x00", "\t"])
def test_header_injection_in_api_key_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="api_key") as info:
        protocol.build_chat_request("https://h", b"{}", PID, "pem", bad)
    assert bad not in str(info.value)


@pytest.mark.parametrize("bad", ["", "Standard", "high\r\n", "low", 1, "maximum "])
def test_invalid_security_tier_is_refused(bad: Any) -> None:
    with pytest.raises(ValueError, match="security_tier"):
        protocol.check_security_tier(bad)


@pytest.mark.parametrize("bad", ["", "a\nb", "x" * 129, "é", 5])
def test_invalid_payload_id_is_refused(bad: Any) -> None:
    with pytest.raises(ValueError, match="payload_id"):
        protocol.check_payload_id(bad)


# --- response: the independent server encrypts, nomyo_ref opens --------------------------

@crypto_settings
@given(content=st.text(max_size=200), extra=st.dictionaries(
    st.text(min_size=1, max_size=8).filter(lambda k: k != "_metadata"), json_values,
    max_size=4))
def test_response_round_trip(content: str, extra: dict[str, Any],
                             client_key: rsa.RSAPrivateKey) -> None:
    obj = {**extra, "choices": [{"message": {"content": content}}],
           "_metadata": {"payload_id": PID, "security_tier": "high",
                         "processed_at": 1_600_000_000.25}}
    # wire.seal adds a top-level processed_at of 1_700_000_000: it must not win (CHK-17).
    result = protocol.open_response(answer(client_key, obj), PID, client_key)
    assert result["choices"][0]["message"]["content"] == content
    for key, value in extra.items():
        assert result[key] == value
    assert result["_metadata"] == {"payload_id": PID, "security_tier": "high",
                                   "processed_at": 1_600_000_000.25, "is_encrypted": True,
                                   "encryption_algorithm": "hybrid-aes256-rsa4096"}


def ok_obj() -> dict[str, Any]:
    return {"choices": [], "_metadata": {"payload_id": PID}}


@pytest.mark.parametrize("body", [
    b"", b"   ", b"not json", b"\xff\xfe", b"[]", b"1", b'"s"', b"null", b"{}",
    b"[" * 100000,
])
def test_non_package_bodies_are_value_errors(body: bytes, client_key: rsa.RSAPrivateKey
                                             ) -> None:
    with pytest.raises(ValueError, match=r"response|package"):
        protocol.open_response(body, PID, client_key)


@pytest.mark.parametrize(("field", "value"), [
    ("version", "0.9"), ("version", None), ("version", 1.0), ("algorithm", "hybrid-aes128"),
    ("algorithm", None), ("encrypted_aes_key", None), ("encrypted_aes_key", 5),
    ("encrypted_payload", None), ("encrypted_payload", "x"), ("encrypted_payload", []),
    ("encrypted_payload", {"ciphertext": "", "nonce": ""}),
    ("encrypted_payload", {"ciphertext": 1, "nonce": "", "tag": ""}),
])
def test_structure_is_checked_before_decryption(field: str, value: Any,
                                                client_key: rsa.RSAPrivateKey) -> None:
    package = wire.seal(b"{}", client_key.public_key())
    # Make the crypto fields undecryptable too: a ValueError proves no decryption was tried.
    package["encrypted_aes_key"] = "!!!" if field != "encrypted_aes_key" else value
    if value is None:
        del package[field]
    else:
        package[field] = value
    with pytest.raises(ValueError, match=r"package|encrypted_payload") as info:
        protocol.open_response(body_of(package), PID, client_key)
    assert not isinstance(info.value, SecurityError)


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def tampered(client_key: rsa.RSAPrivateKey, how: str) -> dict[str, Any]:
    package = wire.seal(json.dumps(ok_obj()).encode(), client_key.public_key())
    inner = package["encrypted_payload"]
    raw = {k: base64.b64decode(v) for k, v in inner.items()}
    if how == "ciphertext":
        inner["ciphertext"] = _b64(bytes([raw["ciphertext"][0] ^ 1]) + raw["ciphertext"][1:])
    elif how == "tag":
        inner["tag"] = _b64(bytes([raw["tag"][0] ^ 1]) + raw["tag"][1:])
    elif how == "nonce":
        inner["nonce"] = _b64(bytes([raw["nonce"][0] ^ 1]) + raw["nonce"][1:])
    elif how == "short_nonce":
        inner["nonce"] = _b64(raw["nonce"][:11])
    elif how == "truncated_tag":
        inner["tag"] = _b64(raw["tag"][:15])
    elif how == "tag_appended":
        inner["ciphertext"] = _b64(raw["ciphertext"] + raw["tag"])
        inner["tag"] = ""
    elif how == "bad_base64":
        inner["ciphertext"] = "***"
    elif how == "no_padding":
        inner["tag"] = inner["tag"].rstrip("=")
    elif how == "urlsafe":
        inner["ciphertext"] = base64.urlsafe_b64encode(b"\xfb\xff" * 8).decode()
    elif how == "aes_key":
        key = base64.b64decode(package["encrypted_aes_key"])
        package["encrypted_aes_key"] = _b64(bytes([key[0] ^ 1]) + key[1:])
    elif how == "wrong_oaep_hash":
        aes = os.urandom(32)
        nonce = os.urandom(12)
        sealed = AESGCM(aes).encrypt(nonce, json.dumps(ok_obj()).encode(), None)
        sha1 = padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(),  # noqa: S303
                            label=None)
        package["encrypted_aes_key"] = _b64(client_key.public_key().encrypt(aes, sha1))
        package["encrypted_payload"] = {"ciphertext": _b64(sealed[:-16]), "nonce": _b64(nonce),
                                        "tag": _b64(sealed[-16:])}
    elif how == "short_aes_key":
        aes = os.urandom(16)
        package["encrypted_aes_key"] = _b64(client_key.public_key().encrypt(aes, wire.OAEP))
    return package


TAMPERINGS = ["ciphertext", "tag", "nonce", "short_nonce", "truncated_tag", "tag_appended",
              "bad_base64", "no_padding", "urlsafe", "aes_key", "wrong_oaep_hash",
              "short_aes_key"]


@pytest.mark.parametrize("how", TAMPERINGS)
def test_every_crypto_failure_is_one_opaque_security_error(
        how: str, client_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(SecurityError) as info:
        protocol.open_response(body_of(tampered(client_key, how)), PID, client_key)
    assert str(info.value) == "decryption failed"
    assert info.value.__cause__ is None
    assert info.value.__context__ is None


@pytest.mark.parametrize(("field", "value"), [("key_algorithm", "RSA-OAEP"),
                                              ("key_algorithm", 1), ("payload_algorithm",
                                                                     "aes-256-gcm")])
def test_declared_algorithms_must_be_v1_when_present(field: str, value: Any,
                                                     client_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(ValueError, match=field):
        protocol.open_response(answer(client_key, ok_obj(), **{field: value}), PID, client_key)


def test_declared_algorithms_may_be_absent(client_key: rsa.RSAPrivateKey) -> None:
    body = answer(client_key, ok_obj(), key_algorithm=None, payload_algorithm=None,
                  processed_at=None, extra_member={"x": 1})
    result = protocol.open_response(body, PID, client_key)
    assert result["_metadata"]["processed_at"] is None


def test_answer_to_another_key_is_a_security_error(client_key: rsa.RSAPrivateKey,
                                                   server_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(SecurityError, match=r"^decryption failed$"):
        protocol.open_response(answer(server_key, ok_obj()), PID, client_key)


@pytest.mark.parametrize("plaintext", [b"[]", b"1", b"null", b'"x"', b"not json", b"\xff",
                                       b"", b'{"a":'])
def test_plaintext_that_is_not_an_object_is_a_security_error(
        plaintext: bytes, client_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(SecurityError) as info:
        protocol.open_response(answer(client_key, plaintext), PID, client_key)
    assert info.value.__context__ is None  # no JSONDecodeError carrying the plaintext
    assert info.value.__cause__ is None


def test_bom_plaintext_is_refused(client_key: rsa.RSAPrivateKey) -> None:
    raw = b"\xef\xbb\xbf" + json.dumps(ok_obj()).encode()
    with pytest.raises(SecurityError):
        protocol.open_response(answer(client_key, raw), PID, client_key)


@pytest.mark.parametrize("metadata", [None, "x", [], {}, {"payload_id": None},
                                      {"payload_id": "other"}, {"payload_id": PID.upper()},
                                      {"payload_id": 5}])
def test_response_must_be_bound_to_the_payload_id(
        metadata: Any, client_key: rsa.RSAPrivateKey) -> None:
    obj: dict[str, Any] = {"choices": []}
    if metadata is not None:
        obj["_metadata"] = metadata
    with pytest.raises(SecurityError, match="bound"):
        protocol.open_response(answer(client_key, obj), PID, client_key)


def test_oversized_body_is_refused_before_parsing(client_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(ValueError, match="too large"):
        protocol.parse_package(b" " * (protocol.MAX_RESPONSE_BYTES + 1))


# --- error mapping -------------------------------------------------------------------------

EXPECTED_CLASS = {400: InvalidRequestError, 401: AuthenticationError, 403: ForbiddenError,
                  404: APIError, 429: RateLimitError, 500: ServerError, 502: APIError,
                  503: ServiceUnavailableError, 504: APIError}

statuses = st.sampled_from(sorted(EXPECTED_CLASS)) | st.integers(100, 599).filter(
    lambda s: s != 200)
bodies = st.one_of(
    st.builds(lambda v: json.dumps(v).encode(), json_values),
    st.builds(lambda d: json.dumps({"detail": d}).encode(), json_values),
    st.binary(max_size=300),
    st.text(max_size=300).map(str.encode),
    st.just(b""),
    st.just(b"x" * 200_000),
    st.just(b'{"detail": "' + b"y" * 100_000 + b'"}'),
    st.just(b'{"detail": "' + b"w" * (1024 * 1024) + b'"}'),
    st.just(b'{"detail": "' + b"v" * (1024 * 1024 - 14) + b'"}'),  # exactly 1 MiB
    st.just(b'{"detail": "' + b"u" * (1024 * 1024 - 13) + b'"}'),  # 1 MiB + 1
    st.just(b'{"detail": "\xc3\xa9' + b"\xf0\x9f\x98\x80" * 300_000 + b'"}'),
    st.just(b'{"detail": "x"}' + b" " * (1024 * 1024) + b"junk"),
)


def expected_details(body: bytes) -> tuple[str | None, dict[str, Any]]:
    """The contract, restated independently: JSON is parsed for bodies up to 1 MiB
    (1,048,576 bytes); a longer body is text (its first 1024 characters)."""
    parsed = None
    if len(body) <= 1_048_576:
        try:
            parsed = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            parsed = None
    if isinstance(parsed, dict):
        if "detail" not in parsed:
            return None, parsed
        d = parsed["detail"]
        return (d if isinstance(d, str) else json.dumps(d, ensure_ascii=False)), parsed
    if body:
        text = body.decode("utf-8", errors="replace")[:1024]
        return text, {"detail": text}
    return None, {}


@settings(max_examples=300, deadline=None)
@given(status=statuses, body=bodies)
def test_every_error_answer_maps_to_the_right_exception(status: int, body: bytes) -> None:
    error = protocol.error_for_status(status, body)
    assert type(error) is EXPECTED_CLASS.get(status, APIError)
    assert error.status_code == status
    detail, details = expected_details(body)
    assert error.error_details == details
    if detail is not None:
        assert detail in error.message
    assert error.message
    assert str(error) == error.message


package_like = st.fixed_dictionaries(
    {},
    optional={
        "version": json_values | st.just("1.0"),
        "algorithm": json_values | st.just("hybrid-aes256-rsa4096"),
        "encrypted_aes_key": json_values | st.just("AAAA"),
        "encrypted_payload": json_values | st.fixed_dictionaries(
            {}, optional={"ciphertext": json_values | st.just("AAAA"),
                          "nonce": json_values | st.just("AAAAAAAAAAAAAAAA"),
                          "tag": json_values | st.just("AAAAAAAAAAAAAAAAAAAAAA==")}),
        "key_algorithm": json_values | st.just("RSA-OAEP-SHA256"),
        "payload_algorithm": json_values | st.just("AES-256-GCM"),
    },
)


@settings(max_examples=300, deadline=None)
@given(body=st.one_of(st.binary(max_size=200), st.builds(lambda v: json.dumps(v).encode(),
                                                         json_values | package_like)))
def test_any_200_body_ends_in_a_documented_exception(body: bytes,
                                                     client_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises((ValueError, SecurityError)) as info:
        protocol.open_response(body, PID, client_key)
    assert type(info.value) in (ValueError, SecurityError)
    if isinstance(info.value, SecurityError):
        assert str(info.value) == "decryption failed" or "JSON object" in str(info.value)


# --- spec 1.0.1 ------------------------------------------------------------------------------

def test_encrypt_chat_request_encrypts_anew_with_the_same_headers(
        server_key: rsa.RSAPrivateKey, client_key: rsa.RSAPrivateKey) -> None:
    """RTY-15: each attempt is a fresh package (AES key, nonce); TIER-5: same headers."""
    pem = wire.spki_pem(client_key)
    plaintext = bytearray(b'{"model":"m","messages":[]}')
    attempts = [protocol.encrypt_chat_request("https://h", plaintext, server_key.public_key(),
                                              PID, pem, "sk-1", "maximum") for _ in range(3)]
    packages = [json.loads(a.body) for a in attempts]
    assert len({a.body for a in attempts}) == 3
    assert len({p["encrypted_aes_key"] for p in packages}) == 3
    assert len({p["encrypted_payload"]["nonce"] for p in packages}) == 3
    assert all(a.headers == attempts[0].headers for a in attempts)
    assert attempts[0].headers["X-Security-Tier"] == "maximum"
    assert attempts[0].headers["Authorization"] == "Bearer sk-1"
    assert attempts[0].headers["X-Payload-ID"] == PID
    assert "Content-Encoding" not in attempts[0].headers  # HDR-11
    assert all(wire.unseal(p, server_key) == bytes(plaintext) for p in packages)


def metadata_of(**meta: Any) -> dict[str, Any]:
    return {"choices": [], "_metadata": {"payload_id": PID, **meta}}


@pytest.mark.parametrize(("server", "package"), [
    (1_600_000_000.25, 1_700_000_000), (1_600_000_000, "evil"), (1_600_000_000, None),
    ("2025-11-26T00:00:00Z", 1_700_000_000), (None, 1_700_000_000),
])
def test_server_processed_at_is_returned_unchanged(server: Any, package: Any,
                                                   client_key: rsa.RSAPrivateKey) -> None:
    """CHK-17: the authenticated _metadata.processed_at wins; the package's top-level one,
    outside the encryption, is never copied in."""
    body = answer(client_key, metadata_of(processed_at=server), processed_at=package)
    assert protocol.open_response(body, PID, client_key)["_metadata"]["processed_at"] == server


def test_missing_server_processed_at_is_null_not_the_package_one(
        client_key: rsa.RSAPrivateKey) -> None:
    body = answer(client_key, metadata_of(), processed_at=1_700_000_000)
    meta = protocol.open_response(body, PID, client_key)["_metadata"]
    assert "processed_at" in meta
    assert meta["processed_at"] is None


def test_client_writes_its_own_metadata_keys(client_key: rsa.RSAPrivateKey) -> None:
    """CHK-16: payload_id, is_encrypted and encryption_algorithm are the client's, whatever
    the server put there; the other server keys are kept."""
    obj = metadata_of(is_encrypted=False, encryption_algorithm="none", response_status="ok",
                      unknown={"k": [1]})
    meta = protocol.open_response(answer(client_key, obj), PID, client_key)["_metadata"]
    assert meta == {"payload_id": PID, "is_encrypted": True,
                    "encryption_algorithm": "hybrid-aes256-rsa4096", "response_status": "ok",
                    "unknown": {"k": [1]}, "processed_at": None}


@pytest.mark.parametrize("served", [None, "standard", "high", "MAXIMUM", "maximum ", 1,
                                    ["maximum"], {"tier": "maximum"}, "tier-marker-7q"])
def test_answer_at_another_tier_is_a_security_error(served: Any,
                                                    client_key: rsa.RSAPrivateKey) -> None:
    """TIER-9: asked for maximum, the answer must say maximum (missing counts as differing);
    the message does not repeat what the answer said."""
    meta = {} if served is None else {"security_tier": served}
    with pytest.raises(SecurityError, match="tier") as info:
        protocol.open_response(answer(client_key, metadata_of(**meta)), PID, client_key,
                               security_tier="maximum")
    assert "tier-marker-7q" not in str(info.value)
    assert info.value.__context__ is None


@pytest.mark.parametrize("tier", ["standard", "high", "maximum"])
def test_answer_at_the_asked_tier_is_accepted(tier: str, client_key: rsa.RSAPrivateKey
                                              ) -> None:
    body = answer(client_key, metadata_of(security_tier=tier))
    result = protocol.open_response(body, PID, client_key, security_tier=tier)
    assert result["_metadata"]["security_tier"] == tier


@pytest.mark.parametrize("served", [None, "standard", "maximum", 5])
def test_no_tier_asked_accepts_any_tier(served: Any, client_key: rsa.RSAPrivateKey) -> None:
    meta = {} if served is None else {"security_tier": served}
    protocol.open_response(answer(client_key, metadata_of(**meta)), PID, client_key)


def test_binding_is_checked_before_the_tier(client_key: rsa.RSAPrivateKey) -> None:
    obj = {"choices": [], "_metadata": {"payload_id": "other", "security_tier": "standard"}}
    with pytest.raises(SecurityError, match="payload_id"):
        protocol.open_response(answer(client_key, obj), PID, client_key, security_tier="high")


def test_open_response_refuses_an_invalid_tier_argument(client_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(ValueError, match="security_tier"):
        protocol.open_response(answer(client_key, metadata_of()), PID, client_key,
                               security_tier="ultra")


def package_text(client_key: rsa.RSAPrivateKey, plaintext: bytes = b"", **extra: str) -> str:
    """A valid package's JSON text with raw ``"name": <json text>`` members appended."""
    raw = plaintext or json.dumps(metadata_of()).encode()
    text = json.dumps(wire.seal(raw, client_key.public_key()))
    members = "".join(f', "{name}": {value}' for name, value in extra.items())
    return text[:-1] + members + "}"


@pytest.mark.parametrize("member", [
    ('"version": "1.0"'), ('"processed_at": 1'), ('"x": {"a": 1, "a": 2}'),
])
def test_duplicate_member_names_in_the_package_are_value_errors(
        member: str, client_key: rsa.RSAPrivateKey) -> None:
    """CHK-18: a package repeating a member name is refused before decryption."""
    text = package_text(client_key)[:-1] + ", " + member + "}"
    if member.startswith('"processed_at"'):
        text = text.replace('"processed_at": 1700000000, ', "")
        text = text[:-1] + ', "processed_at": 2}'
    with pytest.raises(ValueError, match="duplicate") as info:
        protocol.open_response(text.encode(), PID, client_key)
    assert not isinstance(info.value, SecurityError)


def test_duplicate_in_encrypted_payload_is_a_value_error(client_key: rsa.RSAPrivateKey
                                                         ) -> None:
    package = wire.seal(json.dumps(metadata_of()).encode(), client_key.public_key())
    inner = json.dumps(package["encrypted_payload"])
    text = json.dumps(package).replace(inner, inner[:-1] + ', "nonce": "AAAAAAAAAAAAAAAA"}')
    with pytest.raises(ValueError, match="duplicate"):
        protocol.open_response(text.encode(), PID, client_key)


@pytest.mark.parametrize("plaintext", [
    # last-wins parsing would accept this one: the second payload_id is the right one
    b'{"choices": [], "_metadata": {"payload_id": "other", "payload_id": "%s"}}',
    b'{"choices": [], "secret_marker_9z": 1, "secret_marker_9z": 2, '
    b'"_metadata": {"payload_id": "%s"}}',
    b'{"choices": [{"message": {"content": "a", "content": "b"}}], '
    b'"_metadata": {"payload_id": "%s"}}',
])
def test_duplicate_member_names_in_the_plaintext_are_security_errors(
        plaintext: bytes, client_key: rsa.RSAPrivateKey) -> None:
    """CHK-18: a repeated name could show one reader one value and another reader another."""
    raw = plaintext.replace(b"%s", PID.encode())
    with pytest.raises(SecurityError, match="duplicate") as info:
        protocol.open_response(answer(client_key, raw), PID, client_key)
    assert "secret_marker_9z" not in str(info.value)
    assert info.value.__context__ is None
    assert info.value.__cause__ is None


def nested(levels: int) -> str:
    """JSON text of ``levels`` nested arrays around 0 (``[0]`` is 1 level)."""
    return "[" * levels + "0" + "]" * levels


@pytest.mark.parametrize("levels", [63, 127])
def test_package_nesting_up_to_the_limit_is_accepted(levels: int,
                                                     client_key: rsa.RSAPrivateKey) -> None:
    """CHK-19: the package object is level 1, so a member of ``levels`` arrays makes a
    document of levels + 1 (64 MUST be accepted; 128 is nomyo_ref's limit)."""
    text = package_text(client_key, extra=nested(levels))
    assert protocol.open_response(text.encode(), PID, client_key)["_metadata"]["payload_id"] \
        == PID


@pytest.mark.parametrize("levels", [128, 1000, 100_000])
def test_package_nested_too_deeply_is_a_value_error(levels: int,
                                                    client_key: rsa.RSAPrivateKey) -> None:
    text = package_text(client_key, extra=nested(levels))
    with pytest.raises(ValueError, match="nested too deeply") as info:
        protocol.open_response(text.encode(), PID, client_key)
    assert not isinstance(info.value, SecurityError)


def plaintext_nested(levels: int) -> bytes:
    """A bound completion whose total nesting is ``levels`` + 1."""
    return (b'{"deep": ' + nested(levels).encode() + b', "_metadata": {"payload_id": "'
            + PID.encode() + b'"}}')


@pytest.mark.parametrize("levels", [63, 127])
def test_plaintext_nesting_up_to_the_limit_is_accepted(levels: int,
                                                       client_key: rsa.RSAPrivateKey) -> None:
    result = protocol.open_response(answer(client_key, plaintext_nested(levels)), PID,
                                    client_key)
    assert json.dumps(result["deep"]).count("[") == levels


@pytest.mark.parametrize("levels", [128, 990, 5000, 100_000])
def test_plaintext_nested_too_deeply_is_a_security_error(levels: int,
                                                         client_key: rsa.RSAPrivateKey) -> None:
    """CHK-19: deeper than 128 is refused as SecurityError, never a RecursionError."""
    with pytest.raises(SecurityError, match="nested too deeply") as info:
        protocol.open_response(answer(client_key, plaintext_nested(levels)), PID, client_key)
    assert info.value.__context__ is None


def test_objects_count_as_levels_too(client_key: rsa.RSAPrivateKey) -> None:
    deep = '{"a": ' * 128 + "1" + "}" * 128
    text = package_text(client_key, extra=deep)
    with pytest.raises(ValueError, match="nested too deeply"):
        protocol.open_response(text.encode(), PID, client_key)


def test_a_16_mib_answer_is_accepted(client_key: rsa.RSAPrivateKey) -> None:
    """CHK-19: bodies up to 16 MiB MUST be accepted (a 10 MiB plaintext is ~14 MiB)."""
    content = "c" * (11 * 1024 * 1024)
    body = answer(client_key, {**metadata_of(), "content": content})
    padded = body[:-1] + b" " * (16 * 1024 * 1024 - len(body)) + b"}"
    assert len(padded) == 16 * 1024 * 1024
    assert protocol.open_response(padded, PID, client_key)["content"] == content


def test_response_size_limit_is_32_mib(client_key: rsa.RSAPrivateKey) -> None:
    assert protocol.MAX_RESPONSE_BYTES == 32 * 1024 * 1024
    body = answer(client_key, metadata_of())
    exact = body[:-1] + b" " * (protocol.MAX_RESPONSE_BYTES - len(body)) + b"}"
    protocol.parse_package(exact)
    with pytest.raises(ValueError, match="too large"):
        protocol.parse_package(exact[:-1] + b" }")


@pytest.mark.parametrize("body", [
    b'{"detail": ' + nested(200).encode() + b"}",
    b'{"detail": ' + nested(100_000).encode() + b"}",
    b"[" * 500_000,
    b'{"detail": ' + b'{"a": ' * 5000 + b"1" + b"}" * 5000 + b"}",
])
def test_deeply_nested_error_bodies_are_text(body: bytes) -> None:
    """ERR-17: no error body reaches a RecursionError (parsing, json.dumps or repr): one
    nested deeper than 128 levels is treated as text (ERR-13)."""
    error = protocol.error_for_status(400, body)
    assert type(error) is InvalidRequestError
    text = body.decode()[:1024]
    assert error.error_details == {"detail": text}
    assert text in error.message


def test_nested_error_detail_within_the_limit_is_json() -> None:
    body = b'{"detail": ' + nested(127).encode() + b"}"
    error = protocol.error_for_status(400, body)
    assert error.error_details == json.loads(body)
    assert nested(127).replace(",", ", ") in error.message


def error_json_body(size: int) -> bytes:
    body = b'{"detail": "' + b"d" * (size - 14) + b'"}'
    assert len(body) == size
    return body


@pytest.mark.parametrize("size", [1_048_575, 1_048_576])
def test_error_json_up_to_one_mib_gives_the_detail(size: int) -> None:
    """ERR-12/ERR-16: the JSON of an error body of up to 1,048,576 bytes is parsed."""
    error = protocol.error_for_status(503, error_json_body(size))
    assert error.error_details == {"detail": "d" * (size - 14)}
    assert error.message.endswith("d" * 100)


def test_error_body_over_one_mib_is_text() -> None:
    body = error_json_body(1_048_577)
    error = protocol.error_for_status(503, body)
    assert error.error_details == {"detail": body[:1024].decode()}


def test_error_body_over_one_mib_is_text_even_when_its_start_is_json() -> None:
    body = b'{"detail": "hidden"}' + b" " * (1024 * 1024) + b"junk"
    error = protocol.error_for_status(400, body)
    assert error.error_details == {"detail": body[:1024].decode()}
    assert "hidden" in error.message  # the text, not the parsed detail
    assert error.message != "Bad request: hidden"


def test_long_text_error_body_decodes_like_the_whole_body() -> None:
    """Only a prefix is decoded; the first 1024 characters are those of the whole body,
    multi-byte and invalid sequences included."""
    body = ("é😀" * 600).encode() + b"\xff\xfe\xc3" * 500 + b"x" * 2_000_000
    error = protocol.error_for_status(502, body)
    assert error.error_details == {"detail": body.decode("utf-8", errors="replace")[:1024]}


def test_error_body_with_repeated_names_takes_the_last() -> None:
    """Error bodies are not judged by CHK-18: what any JSON library would read."""
    error = protocol.error_for_status(400, b'{"detail": "a", "detail": "b"}')
    assert error.error_details == {"detail": "b"}


def test_409_is_a_plain_api_error() -> None:
    error = protocol.error_for_status(409, b'{"detail": "replayed request"}')
    assert type(error) is APIError
    assert error.status_code == 409
    assert "replayed request" in error.message


def _pkcs1_pem(key: rsa.RSAPrivateKey) -> str:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.PKCS1).decode()


def test_pkcs1_server_key_is_refused(server_key: rsa.RSAPrivateKey) -> None:
    """DISC-14: "BEGIN RSA PUBLIC KEY" is refused like any unusable server key."""
    pkcs1 = _pkcs1_pem(server_key)
    spki = wire.spki_pem(server_key)
    for text in [pkcs1, pkcs1 + spki, spki + pkcs1, spki + spki, "key:\n" + spki,
                 spki + "-- end", spki.replace("PUBLIC KEY", "RSA PUBLIC KEY")]:
        with pytest.raises(SecurityError, match="BEGIN PUBLIC KEY"):
            protocol.parse_server_key(200, text.encode())
    _, pem = protocol.parse_server_key(200, ("\r\n" + spki + "\n\n").encode())
    assert pem == spki


def test_server_key_exponent_and_size_bounds() -> None:
    """DISC-24: exponent other than 65537, or more than 16384 bits: SecurityError."""
    e3 = rsa.generate_private_key(public_exponent=3, key_size=2048)
    with pytest.raises(SecurityError, match="65537"):
        protocol.parse_server_key(200, wire.spki_pem(e3).encode())
    big = rsa.RSAPublicNumbers(65537, (1 << 16384) + 1).public_key()  # 16385 bits, not real
    with pytest.raises(SecurityError, match="16384"):
        protocol.parse_server_key(200, wire.spki_pem(big).encode())


# --- ERR-20: the call's API key never reaches an exception --------------------------------

KEY = "sk-live-0123456789abcdef"


def test_api_key_redacted_from_a_json_error_body() -> None:
    body = json.dumps({"detail": f"invalid API key {KEY}", KEY: [KEY, {"k": KEY}]}).encode()
    err = protocol.error_for_status(401, body, KEY)
    assert KEY not in err.message
    assert KEY not in json.dumps(err.error_details)
    assert err.error_details["detail"] == "invalid API key [redacted]"
    assert err.error_details["[redacted]"] == ["[redacted]", {"k": "[redacted]"}]


def test_api_key_redacted_from_a_text_error_body_before_the_cut() -> None:
    body = (KEY * 200).encode()  # 200 keys: 4800 characters, 2000 once redacted
    err = protocol.error_for_status(502, body, KEY)
    assert KEY[:8] not in err.message
    detail = err.error_details["detail"]
    assert detail == ("[redacted]" * 200)[:1024]


def test_without_an_api_key_nothing_is_redacted() -> None:
    body = json.dumps({"detail": "[redacted] sk-x"}).encode()
    err = protocol.error_for_status(400, body, None)
    assert err.error_details["detail"] == "[redacted] sk-x"


# --- DISC-25: a pin set lets an operator announce the next key before a rotation -----------


def test_pin_set_passes_a_key_matching_any_pin(server_key: rsa.RSAPrivateKey) -> None:
    from nomyo_ref import keys

    pem = wire.spki_pem(server_key).encode()
    actual = keys.fingerprint(server_key.public_key())
    other = "ab" * 32
    pins = keys.normalise_pins([other, actual.upper()])
    assert pins == (other, actual)
    protocol.parse_server_key(200, pem, pins)
    with pytest.raises(SecurityError, match="pinned fingerprint"):
        protocol.parse_server_key(200, pem, (other, "cd" * 32))


@pytest.mark.parametrize("bad", [[], ["xyz"], 42, [None]])
def test_malformed_pin_sets_are_value_errors(bad: object) -> None:
    from nomyo_ref import keys

    with pytest.raises(ValueError, match="server_key_sha256"):
        keys.normalise_pins(bad)
