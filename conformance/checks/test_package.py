"""The request package on the wire: format, algorithms and freshness of every secret.

The router records each package, refused or not; the checks re-open it independently of the
router with the router's private key (and, for a package the router refused, with the
router's tolerant decryption), so a wrong OAEP hash, an appended tag or a short nonce is named
by its own requirement, not just seen as "the router said 400".
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from conformance import expect
from conformance.checks._support import (
    MODEL,
    answered,
    calls_on_one_client,
    expect_kind,
    messages,
    plaintext_of,
    sent_posts,
    unwrap_any,
)
from mock_router import Scenario

TOP = ("version", "algorithm", "encrypted_payload", "encrypted_aes_key", "key_algorithm",
       "payload_algorithm")  # fmt: skip
INNER = ("ciphertext", "nonce", "tag")
B64_FIELDS = ("encrypted_aes_key", "ciphertext", "nonce", "tag")


def _one_package(call: Any, router: Any) -> Any:
    """The last POST of one call, whatever the router answered and the client returned."""
    call(model=MODEL, messages=messages("package check"))
    return sent_posts(router)[-1]


def _b64_values(package: dict[str, Any]) -> dict[str, Any]:
    inner = package.get("encrypted_payload")
    inner = inner if isinstance(inner, dict) else {}
    return {
        "encrypted_aes_key": package.get("encrypted_aes_key"),
        **{name: inner.get(name) for name in INNER},
    }


def _strict(text: Any) -> bytes | None:
    """Standard base64 with padding, nothing else (PKG-6); None when it is not."""
    if not isinstance(text, str) or len(text) % 4:
        return None
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeError, binascii.Error, ValueError):
        return None


def _decoded(package: dict[str, Any], name: str) -> bytes:
    """A binary member decoded strictly; BLOCKED by PKG-5 when it is missing or not a string,
    by PKG-6 when it is not strict base64 (both judged by the format check)."""
    raw = _optional(package, name)
    if raw is None:
        value = _b64_values(package).get(name)
        if not isinstance(value, str):
            expect.blocked(by="PKG-5", why=f"{name} is missing or not a string")
        expect.blocked(by="PKG-6", why=f"{name} is not strict standard base64")
    return raw


def _optional(package: dict[str, Any], name: str) -> bytes | None:
    """A binary member decoded strictly, or None (missing, not a string, not base64)."""
    return _strict(_b64_values(package).get(name))


@pytest.mark.req("PKG-1", "PKG-2", "PKG-3", "PKG-4", "PKG-5", "PKG-6", "PKG-8", "PKG-10")
def test_package_matches_schema_and_has_only_defined_members(ccall: Any, router: Any) -> None:
    """Evidence: request. The package is a UTF-8 JSON object with the six members of 7.1 and
    their constant values, encrypted_payload holds string ciphertext/nonce/tag, the binary
    members are canonical padded standard base64, and nothing else is there: a receiver sees
    exactly what the spec defines (no AAD smuggled in, no downgrade markers)."""
    seen = _one_package(ccall, router)
    try:
        package = json.loads(seen.body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        package = None
    with expect.clause("PKG-1"):
        expect.true(isinstance(package, dict), "a UTF-8 JSON object body", seen.body[:200])
    if not isinstance(package, dict):
        return
    with expect.clause("PKG-1"):
        missing = [name for name in TOP if name not in package]
        expect.true(not missing, f"the members {', '.join(TOP)}", f"missing {missing}")
    with expect.clause("PKG-8"):
        extra = sorted(set(package) - set(TOP))
        expect.true(not extra, "no top-level members beyond the six", f"also {extra}")
    with expect.clause("PKG-2"):
        expect.equal(package.get("version"), "1.0", "version")
    with expect.clause("PKG-3"):
        expect.equal(package.get("algorithm"), "hybrid-aes256-rsa4096", "algorithm")
    with expect.clause("PKG-4"):
        expect.equal(package.get("key_algorithm"), "RSA-OAEP-SHA256", "key_algorithm")
        expect.equal(package.get("payload_algorithm"), "AES-256-GCM", "payload_algorithm")
    inner = package.get("encrypted_payload")
    with expect.clause("PKG-5"):
        expect.true(isinstance(inner, dict), "encrypted_payload an object", inner)
        assert isinstance(inner, dict)
        kinds = {name: type(inner.get(name)).__name__ for name in INNER}
        expect.true(
            all(isinstance(inner.get(name), str) for name in INNER),
            "string ciphertext, nonce and tag",
            kinds,
        )
    with expect.clause("PKG-8"):
        if isinstance(inner, dict):
            extra = sorted(set(inner) - set(INNER))
            expect.true(not extra, "nothing in encrypted_payload but ciphertext/nonce/tag", extra)
    values = _b64_values(package)
    with expect.clause("PKG-6"):
        bad = [n for n in B64_FIELDS if isinstance(values[n], str) and _strict(values[n]) is None]
        expect.true(not bad, "standard padded base64, no whitespace", f"not so: {bad}")
    with expect.clause("PKG-10"):
        odd = [
            n
            for n in B64_FIELDS
            if isinstance(values[n], str)
            and (raw := _strict(values[n])) is not None
            and base64.b64encode(raw).decode("ascii") != values[n]
        ]
        expect.true(not odd, "canonical base64 (re-encoding gives the same text)", odd)


@pytest.mark.req("PKG-7", "ENC-1")
def test_nonce_tag_and_key_sizes(ccall: Any, router: Any) -> None:
    """Evidence: request. A 12-byte nonce and a 16-byte tag (PKG-7, ENC-1), a wrapped key as
    long as the server modulus (PKG-7): the sizes every other implementation relies on."""
    seen = _one_package(ccall, router)
    package = seen.package
    if not isinstance(package, dict):
        expect.blocked(by="PKG-1", why="the body is not a JSON object")
    nonce, wrapped = _decoded(package, "nonce"), _decoded(package, "encrypted_aes_key")
    with expect.clause("PKG-7", "ENC-1"):
        expect.equal(len(nonce), 12, "nonce bytes")
    tag = _optional(package, "tag")  # a missing or undecodable tag is PKG-5's/PKG-6's matter
    if tag is not None:
        with expect.clause("PKG-7", "ENC-1"):
            expect.equal(len(tag), 16, "tag bytes")
    with expect.clause("PKG-7"):
        expect.equal(len(wrapped), router.server_key.key_size // 8,
                     "encrypted_aes_key bytes (= modulus size)")  # fmt: skip


@pytest.mark.req("ENC-3")
def test_tag_is_not_appended_to_the_ciphertext(ccall: Any, router: Any) -> None:
    """Evidence: request. The ciphertext is exactly as long as the plaintext: the tag travels
    in "tag" only (WebCrypto and others append it to the ciphertext by default)."""
    seen = _one_package(ccall, router)
    package = seen.package
    if not isinstance(package, dict):
        expect.blocked(by="PKG-1", why="the body is not a JSON object")
    expect.equal(
        len(_decoded(package, "ciphertext")),
        len(plaintext_of(seen)),
        "ciphertext bytes (= plaintext bytes: the tag is not appended)",
    )


@pytest.mark.req("ENC-4", "ENC-5", "ENC-2", "ENC-1")
def test_package_opens_with_oaep_sha256_and_gcm_without_aad(ccall: Any, router: Any) -> None:
    """Evidence: request. Unwrapping with RSA-OAEP SHA-256/MGF1-SHA-256 to the server key
    gives a 32-byte key, and AES-256-GCM with no associated data opens the payload. OAEP-SHA1
    or an AAD would make the package unreadable to every conforming server."""
    seen = _one_package(ccall, router)
    package = seen.package
    if not isinstance(package, dict):
        expect.blocked(by="PKG-1", why="the body is not a JSON object")
    key, how, opens = _aes_key(router, package)
    if key is None:
        with expect.clause("ENC-4", "ENC-5"):
            raise AssertionError(
                "expected <encrypted_aes_key to unwrap with RSA-OAEP SHA-256, MGF1 SHA-256, "
                "no label, to the server key>, actual <it unwraps with no known padding>"
            )
        expect.blocked(by="ENC-4", why="without the AES key GCM cannot be judged")
    with expect.clause("ENC-4"):
        expect.equal(how, "RSA-OAEP SHA-256, MGF1 SHA-256", "the key wrap")
    with expect.clause("ENC-1"):
        expect.equal(len(key), 32, "AES key bytes")
    with expect.clause("ENC-2"):
        expect.true(
            opens(key),
            "AES-GCM with no associated data to open the payload",
            "GCM authentication failed (associated data used, or the payload is corrupt)",
        )


def _aes_key(
    router: Any, package: dict[str, Any]
) -> tuple[bytes | None, str, Callable[[bytes], bool]]:
    """The request's AES key (unwrapped the standard way, or a known wrong way that opens the
    payload), how it was wrapped, and a test of whether a key opens the payload without
    associated data (the tag in "tag", or appended: ENC-3's matter, judged elsewhere)."""
    wrapped = _decoded(package, "encrypted_aes_key")
    nonce, ciphertext = _decoded(package, "nonce"), _decoded(package, "ciphertext")
    tag = _optional(package, "tag")
    layouts = [ciphertext] if tag is None else [ciphertext + tag, ciphertext]

    def opens(key: bytes) -> bool:
        return any(_gcm_opens(key, nonce, sealed) for sealed in layouts)

    key, how = unwrap_any(router.server_key, wrapped, opens)
    return key, how, opens


def _gcm_opens(key: bytes, nonce: bytes, sealed: bytes) -> bool:
    try:
        AESGCM(key).decrypt(nonce, sealed, None)
    except (InvalidTag, ValueError):
        return False
    return True


@pytest.mark.req("ENC-8")
def test_fresh_aes_key_and_nonce_per_call(
    impl: Any, call: Any, make_config: Any, router: Any
) -> None:
    """Evidence: request. Every package has its own random AES key and nonce, over calls on
    one client and on several. Reusing a (key, nonce) pair in GCM reveals the XOR of two
    plaintexts and lets an attacker forge tags."""
    config = make_config()
    if "client_reuse" in impl.capabilities:
        calls_on_one_client(impl, config, 3)
    else:
        for _ in range(3):
            call(model=MODEL, messages=messages(), config=config)
    for _ in range(2):
        call(model=MODEL, messages=messages(), config=config)
    seen = sent_posts(router)
    expect.true(len(seen) >= 5, "a POST for each of 5 calls", len(seen))
    keys = []
    for s in seen:
        if not isinstance(s.package, dict):
            expect.blocked(by="PKG-1", why="a body is not a JSON object")
        key = _aes_key(router, s.package)[0]
        if key is None:
            expect.blocked(by="ENC-4", why="an AES key does not unwrap to the server key")
        keys.append(key)
    nonces = [_decoded(s.package, "nonce") for s in seen]
    expect.equal(len(set(keys)), len(keys), f"distinct AES keys over {len(keys)} packages")
    expect.equal(len(set(nonces)), len(nonces), f"distinct nonces over {len(nonces)} packages")


@pytest.mark.req("ENC-7")
def test_gcm_tag_is_verified_on_the_answer(ccall: Any, router: Any) -> None:
    """Evidence: answer. An answer whose tag does not verify (one bit of the tag flipped,
    ciphertext intact) is refused with SecurityError: a client that decrypts without checking
    the tag would hand the caller a plaintext anyone could have forged."""
    router.push(Scenario.tamper("tag", always=True))
    outcome = ccall(model=MODEL, messages=messages())
    answered(router, "tamper")
    expect.true(not outcome.ok, "the tampered answer never returned", outcome)
    expect_kind(outcome, "security", "an answer whose GCM tag does not verify")


@pytest.mark.req("MEM-4")
@pytest.mark.requires("secure_memory")
def test_secure_memory_off_changes_nothing_on_the_wire(
    call: Any, make_config: Any, router: Any
) -> None:
    """Evidence: request. secure_memory=False is a local choice: the same headers and package
    format go out."""
    shapes = []
    for secure in (True, False):
        router.reset()
        call(model=MODEL, messages=messages(), config=make_config(secure_memory=secure))
        seen = sent_posts(router)[-1]
        package = seen.package if isinstance(seen.package, dict) else {}
        shapes.append((sorted(seen.headers), sorted(package), package.get("version")))
    expect.equal(shapes[1], shapes[0], "headers and package members with secure_memory=False")
