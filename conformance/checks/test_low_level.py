"""The low-level API: decrypt_response applies every check of a 200 answer, like create.

The risk: a port whose create() checks the answer but whose low-level decrypt_response does
not hands an application that uses the low-level API (to send a request itself, or to replay
a stored answer) a forged, mis-bound or garbled answer. API-11 says decrypt_response applies
section 11 and the binding of 12.2. The answers here are built by the check itself, encrypted
to the public key of the port's low-level client. PKG-11 (unknown members inside
encrypted_payload ignored), PKG-10's receiver side and PID-7's top-level payload_id are judged
here for decrypt_response, and through create() in test_response_checks / test_payload_id.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from conformance import expect
from conformance.checks._support import MODEL, expect_kind, messages
from mock_router import crypto

COMPLETION: dict[str, Any] = {
    "id": "chatcmpl-low-level",
    "object": "chat.completion",
    "created": 1700000000,
    "model": MODEL,
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "low"}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}


def _flip_tag(package: dict[str, Any]) -> dict[str, Any]:
    tag = bytearray(base64.b64decode(package["encrypted_payload"]["tag"]))
    tag[0] ^= 1
    package["encrypted_payload"]["tag"] = base64.b64encode(bytes(tag)).decode("ascii")
    return package


def _plain(pid: str, meta: Any = ...) -> bytes:
    body = dict(COMPLETION)
    if meta is ...:
        meta = {"payload_id": pid, "processed_at": 1700000000, "is_encrypted": True}
    if meta is not None:
        body["_metadata"] = meta
    return json.dumps(body).encode("utf-8")


def _extra_inner(package: dict[str, Any]) -> dict[str, Any]:
    package["encrypted_payload"]["x_future"] = "ignored"
    return package


#: case -> (plaintext for the call's id, package transform, the kind it is refused with or
#: None when it is accepted, the requirement the case judges).
Case = tuple[
    Callable[[str], bytes], Callable[[dict[str, Any]], dict[str, Any]], str | None, str
]
Transform = Callable[[dict[str, Any]], dict[str, Any]]
CASES: dict[str, Case] = {
    "correct": (lambda pid: _plain(pid), lambda p: p, None, "API-11"),
    "bound to another id": (
        lambda pid: _plain(pid, {"payload_id": str(uuid.uuid4())}), lambda p: p, "security",
        "API-11"),
    "no _metadata": (lambda pid: _plain(pid, None), lambda p: p, "security", "API-11"),
    "_metadata not an object": (lambda pid: _plain(pid, []), lambda p: p, "security", "API-11"),
    "plaintext not an object": (lambda pid: b"[1, 2]", lambda p: p, "security", "API-11"),
    "tampered tag": (lambda pid: _plain(pid), _flip_tag, "security", "API-11"),
    "version 0.9": (lambda pid: _plain(pid), lambda p: {**p, "version": "0.9"}, "value",
                    "API-11"),
}  # fmt: skip


@pytest.fixture(scope="module")
def low_client(impl: Any, make_config: Any) -> Iterator[Any]:
    """One low-level client for every case (its key pair is the slow part): the Outcome of
    encrypt_payload, whose result holds the handle and the client's public key."""
    if "low_level" not in impl.capabilities:
        yield None
        return
    built = impl.encrypt_payload(make_config(), {"model": MODEL, "messages": messages()})
    yield built
    if built.ok:
        impl.close_client(built.result["client"])


def _decrypt(impl: Any, low_client: Any, plaintext: bytes, pid: str, transform: Transform) -> Any:
    """decrypt_response of an answer the check builds: `plaintext` encrypted to the low-level
    client's key, the package changed by `transform`. BLOCKED by API-10 (charged here) when
    encrypt_payload gave no client."""
    expect.applicable(low_client)
    with expect.clause("API-10"):
        expect.ok(low_client, "encrypt_payload to give the package bytes and its client")
    if not low_client.ok:
        expect.blocked(by="API-10", why=f"encrypt_payload failed: {low_client.error}")
    key = serialization.load_pem_public_key(low_client.result["public_key_pem"].encode())
    assert isinstance(key, rsa.RSAPublicKey)
    body = json.dumps(transform(crypto.encrypt(key, plaintext))).encode("utf-8")
    return impl.decrypt_response(body, pid, client=low_client.result["client"])


def _returned(outcome: Any, pid: str, what: str) -> None:
    result = expect.ok(outcome, f"the answer ({what}) returned")
    expect.equal(result.get("choices"), COMPLETION["choices"], "choices")
    meta = result.get("_metadata")
    got = meta.get("payload_id") if isinstance(meta, dict) else meta
    expect.equal(got, pid, "_metadata.payload_id")


@pytest.mark.req("API-11", "API-10")
@pytest.mark.requires("low_level")
@pytest.mark.parametrize("case", list(CASES))
def test_decrypt_response_checks_the_answer(impl: Any, low_client: Any, case: str) -> None:
    """Evidence: client behaviour. encrypt_payload gives a low-level client (API-10, needed
    for its key pair); its decrypt_response(encrypted_response, payload_id) returns a
    correct answer bound to payload_id, and refuses like create() does (API-11): an answer
    bound to another id, without a _metadata object, with a plaintext that is not an object
    (SecurityError), with a tag that does not verify (SecurityError), of another version
    (ValueError)."""
    plaintext, transform, kind, rid = CASES[case]
    pid = str(uuid.uuid4())
    outcome = _decrypt(impl, low_client, plaintext(pid), pid, transform)
    with expect.clause(rid):
        if kind is None:
            _returned(outcome, pid, case)
            return
        expect.true(not outcome.ok, f"the answer ({case}) never returned", outcome)
        expect_kind(outcome, kind, case)


@pytest.mark.req("PKG-11", "API-10")
@pytest.mark.requires("low_level")
def test_unknown_member_inside_encrypted_payload_ignored(impl: Any, low_client: Any) -> None:
    """Evidence: client behaviour. An answer whose encrypted_payload carries a member besides
    ciphertext, nonce and tag is processed like any other: later 1.x versions may add one."""
    pid = str(uuid.uuid4())
    outcome = _decrypt(impl, low_client, _plain(pid), pid, _extra_inner)
    with expect.clause("PKG-11"):
        _returned(outcome, pid, "an unknown member in encrypted_payload")


def _tag_with_space(package: dict[str, Any]) -> dict[str, Any]:
    tag = package["encrypted_payload"]["tag"]
    package["encrypted_payload"]["tag"] = tag[:8] + " " + tag[8:]
    return package


def _tag_unpadded(package: dict[str, Any]) -> dict[str, Any]:
    package["encrypted_payload"]["tag"] = package["encrypted_payload"]["tag"].rstrip("=")
    return package


def _key_with_newline(package: dict[str, Any]) -> dict[str, Any]:
    key = package["encrypted_aes_key"]
    package["encrypted_aes_key"] = key[:64] + "\n" + key[64:]
    return package


#: Real answers whose base64 a lenient decoder still reads correctly.
NOT_STRICT_BASE64: dict[str, Transform] = {
    "space in tag": _tag_with_space,
    "tag without padding": _tag_unpadded,
    "line break in encrypted_aes_key": _key_with_newline,
}


@pytest.mark.req("PKG-10", "CHK-7", "API-10")
@pytest.mark.requires("low_level")
@pytest.mark.parametrize("case", list(NOT_STRICT_BASE64))
def test_non_alphabet_or_unpadded_base64_refused(impl: Any, low_client: Any, case: str) -> None:
    """Evidence: client behaviour. A genuine answer whose base64 carries a character outside
    the alphabet, or lacks its padding, is refused (PKG-10) with SecurityError("decryption
    failed") (CHK-7), although a lenient decoder would read the right bytes: two decoders
    must never read one text differently. (create() is judged by test_response_checks::
    test_answer_base64_is_decoded_strictly.)"""
    pid = str(uuid.uuid4())
    outcome = _decrypt(impl, low_client, _plain(pid), pid, NOT_STRICT_BASE64[case])
    with expect.clause("PKG-10", "CHK-7"):
        expect.true(not outcome.ok, f"the answer ({case}) never returned", outcome)
    with expect.clause("CHK-7"):
        expect_kind(outcome, "security", case)


@pytest.mark.req("PID-7", "API-10")
@pytest.mark.requires("low_level")
def test_top_level_payload_id_never_binds(impl: Any, low_client: Any) -> None:
    """Evidence: client behaviour. An answer whose decrypted _metadata names another payload
    id is refused even when the package's unauthenticated top level carries the right one:
    the binding is checked on what decrypted, nothing else (PID-7)."""
    pid = str(uuid.uuid4())
    other = _plain(pid, {"payload_id": str(uuid.uuid4())})
    outcome = _decrypt(impl, low_client, other, pid, lambda p: {**p, "payload_id": pid})
    with expect.clause("PID-7"):
        expect.true(not outcome.ok, "the answer bound only outside the encryption refused",
                    outcome)  # fmt: skip
        expect_kind(outcome, "security", "an answer bound by a top-level payload_id")
