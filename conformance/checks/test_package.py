"""The request package on the wire: format, algorithms and freshness of every secret.

The router records each package; the checks re-open it independently of the router with the
router's private key, so a wrong OAEP hash, an appended tag or a short nonce is named, not
just seen as "the router said 400".
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidTag

from conformance import expect
from conformance.checks._support import (
    MODEL,
    accepted,
    b64,
    calls_on_one_client,
    last_post,
    messages,
    open_package,
    posts,
    unwrap_aes_key,
)

FIELDS = [
    "algorithm",
    "encrypted_aes_key",
    "encrypted_payload",
    "key_algorithm",
    "payload_algorithm",
    "version",
]
SCHEMA_CANDIDATES = (
    Path(__file__).resolve().parents[2] / "spec" / "schemas" / "package.schema.json",
    Path(__file__).resolve().parents[1] / "_spec" / "schemas" / "package.schema.json",
)


def _schema() -> dict[str, Any] | None:
    for path in SCHEMA_CANDIDATES:
        if path.is_file():
            return json.loads(path.read_text(encoding="utf-8"))
    return None


def _one_package(call: Any, router: Any) -> Any:
    expect.ok(call(model=MODEL, messages=messages("package check")), "a completion")
    return last_post(router)


@pytest.mark.req("PKG-1", "PKG-2", "PKG-3", "PKG-4", "PKG-5", "PKG-6", "PKG-8")
def test_package_matches_schema_and_has_only_defined_members(ccall: Any, router: Any) -> None:
    """The package is the v1.0 object with the six members and their constant values, and
    nothing else: a receiver sees exactly what the spec defines (no AAD smuggled in, no
    downgrade markers)."""
    seen = _one_package(ccall, router)
    package = seen.package
    expect.true(isinstance(package, dict), "a JSON object body", seen.body[:200])
    expect.equal(sorted(package), FIELDS, "package members")
    expect.equal(
        sorted(package["encrypted_payload"]),
        ["ciphertext", "nonce", "tag"],
        "encrypted_payload members",
    )
    expect.equal(package["version"], "1.0", "version")
    expect.equal(package["algorithm"], "hybrid-aes256-rsa4096", "algorithm")
    expect.equal(package["key_algorithm"], "RSA-OAEP-SHA256", "key_algorithm")
    expect.equal(package["payload_algorithm"], "AES-256-GCM", "payload_algorithm")
    expect.true(json.loads(seen.body.decode("utf-8")) == package, "UTF-8 JSON body", seen.body[:80])
    schema = _schema()
    if schema is not None:
        import jsonschema

        errors = [e.message for e in jsonschema.Draft202012Validator(schema).iter_errors(package)]
        expect.true(not errors, "the package to match spec/schemas/package.schema.json", errors)


@pytest.mark.req("PKG-7", "ENC-1", "ENC-3")
def test_nonce_tag_and_key_sizes(ccall: Any, router: Any) -> None:
    """12-byte nonce, 16-byte tag on its own, ciphertext as long as the plaintext, wrapped key
    as long as the server modulus: the sizes every other implementation relies on."""
    seen = _one_package(ccall, router)
    inner = seen.package["encrypted_payload"]
    expect.equal(len(b64(inner["nonce"])), 12, "nonce bytes")
    expect.equal(len(b64(inner["tag"])), 16, "tag bytes")
    expect.equal(
        len(b64(inner["ciphertext"])),
        len(seen.plaintext or b""),
        "ciphertext bytes (= plaintext bytes: the tag is not appended)",
    )
    expect.equal(
        len(b64(seen.package["encrypted_aes_key"])),
        router.server_key.key_size // 8,
        "encrypted_aes_key bytes (= modulus size)",
    )


@pytest.mark.req("ENC-4", "ENC-5", "ENC-2", "ENC-1")
def test_package_opens_with_oaep_sha256_and_gcm_without_aad(ccall: Any, router: Any) -> None:
    """Unwrapping with RSA-OAEP SHA-256/MGF1-SHA-256 to the server key gives a 32-byte key,
    and AES-256-GCM with no associated data opens the payload. OAEP-SHA1 or an AAD would make
    the package unreadable to every conforming server."""
    seen = _one_package(ccall, router)
    try:
        key = unwrap_aes_key(router.server_key, seen.package)
    except ValueError:
        raise AssertionError(
            "expected <encrypted_aes_key to unwrap with RSA-OAEP SHA-256, MGF1 SHA-256, no "
            "label>, actual <unwrap failed>"
        ) from None
    expect.equal(len(key), 32, "AES key bytes")
    try:
        plaintext = open_package(router.server_key, seen.package)
    except (InvalidTag, ValueError):
        raise AssertionError(
            "expected <AES-256-GCM, no AAD, separate 16-byte tag, to open the payload>, "
            "actual <GCM authentication failed>"
        ) from None
    expect.equal(json.loads(plaintext), seen.payload, "independently decrypted plaintext")
    accepted(seen)


@pytest.mark.req("ENC-8")
def test_fresh_aes_key_and_nonce_per_call(
    impl: Any, call: Any, make_config: Any, router: Any
) -> None:
    """Every package has its own random AES key and nonce. Reusing a (key, nonce) pair in GCM
    reveals the XOR of two plaintexts and lets an attacker forge tags."""
    config = make_config()
    if "client_reuse" in impl.capabilities:
        outcomes = calls_on_one_client(impl, config, 3)
    else:
        outcomes = [call(model=MODEL, messages=messages(), config=config) for _ in range(3)]
    outcomes += [call(model=MODEL, messages=messages(), config=config) for _ in range(2)]
    for outcome in outcomes:
        expect.ok(outcome, "a completion")
    seen = posts(router)
    keys = [unwrap_aes_key(router.server_key, s.package) for s in seen]
    nonces = [s.package["encrypted_payload"]["nonce"] for s in seen]
    wrapped = [s.package["encrypted_aes_key"] for s in seen]
    expect.equal(len(set(keys)), len(keys), "distinct AES keys over 5 calls")
    expect.equal(len(set(nonces)), len(nonces), "distinct nonces over 5 calls")
    expect.equal(len(set(wrapped)), len(wrapped), "distinct encrypted_aes_key over 5 calls")


@pytest.mark.req("ENC-7")
def test_gcm_tag_is_verified_on_the_answer(ccall: Any, router: Any) -> None:
    """A self-check of the router's answer path: an answer whose tag does not verify must
    never be returned. (Detailed response checks live in test_response_checks.)"""
    from mock_router import Scenario

    router.push(Scenario.tamper("tag"))
    outcome = ccall(model=MODEL, messages=messages())
    expect.true(not outcome.ok, "the tampered answer refused", outcome)


@pytest.mark.req("MEM-4")
def test_secure_memory_off_changes_nothing_on_the_wire(
    call: Any, make_config: Any, router: Any
) -> None:
    """secure_memory=False is a local choice: the same headers and package format go out."""
    shapes = []
    for secure in (True, False):
        router.reset()
        expect.ok(call(model=MODEL, messages=messages(), config=make_config(secure_memory=secure)))
        seen = last_post(router)
        shapes.append((sorted(seen.headers), sorted(seen.package), seen.package["version"]))
    expect.equal(shapes[1], shapes[0], "headers and package members with secure_memory=False")
