"""The sans-IO core: round trips against the independent server side, every refusal."""

from __future__ import annotations

import base64
import json
import os
from typing import Any
from urllib.parse import unquote

import pytest
from cryptography.hazmat.primitives import hashes
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
    st.text(max_size=10).filter(lambda k: k not in protocol.NON_PAYLOAD_KEYS), json_values,
    max_size=5))
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
           "_metadata": {"payload_id": PID, "security_tier": "high"}}
    result = protocol.open_response(answer(client_key, obj), PID, client_key)
    assert result["choices"][0]["message"]["content"] == content
    for key, value in extra.items():
        assert result[key] == value
    assert result["_metadata"] == {"payload_id": PID, "security_tier": "high",
                                   "processed_at": 1_700_000_000, "is_encrypted": True,
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
)


def expected_details(body: bytes) -> tuple[str | None, dict[str, Any]]:
    """The contract, restated independently."""
    data = body[:protocol.MAX_ERROR_BYTES]
    try:
        parsed = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        parsed = None
    if isinstance(parsed, dict):
        if "detail" not in parsed:
            return None, parsed
        d = parsed["detail"]
        return (d if isinstance(d, str) else json.dumps(d, ensure_ascii=False)), parsed
    if data:
        text = data.decode("utf-8", errors="replace")[:1024]
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
