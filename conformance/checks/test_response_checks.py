"""What a client checks on a 200 answer before it returns anything.

The risks: a port that accepts another version or algorithm can be downgraded; one that says
which crypto step failed gives an attacker an oracle; one that returns a plaintext which is
not a JSON object hands the application garbage; one that decrypts before checking the
version acts on a package it does not understand.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conformance import expect
from conformance import strategies as cs
from conformance.checks._support import MODEL, expect_kind, messages, posts
from mock_router import Scenario
from mock_router.scenarios import KEY_WRAP_PADDINGS

#: Words that name a crypto step; the one opaque decryption message must contain none.
STEP_WORDS = (
    "rsa",
    "oaep",
    "gcm",
    "aes",
    "base64",
    "nonce",
    "tag",
    "padding",
    "ciphertext",
    "encrypted_aes_key",
    "mgf",
    "unwrap",
    "length",
)

NOT_B64 = "@@not base64@@"
ZERO_NONCE = base64.b64encode(bytes(12)).decode()
ZERO_TAG = base64.b64encode(bytes(16)).decode()


def _refused(call: Any, router: Any, scenario: Scenario, kind: str, what: str) -> Any:
    router.reset()
    router.push(scenario)
    error = expect_kind(call(model=MODEL, messages=messages()), kind, what)
    expect.equal(len(posts(router)), 1, f"POSTs for {what} (a refused 200 is never retried)")
    return error


# -- structure: ValueError before any decryption -----------------------------------------------


@pytest.mark.req("CHK-3", "RTY-5")
@given(
    version=st.one_of(
        st.sampled_from(["0.9", "1.1", "2.0", "1", "1.0 ", " 1.0", "v1.0", ""]),
        cs.unicode_text(max_size=6).filter(lambda v: v != "1.0"),
    )
)
def test_other_version_refused_as_value(ccall: Any, router: Any, version: str) -> None:
    """A version other than "1.0" is refused with ValueError (a downgrade attempt)."""
    _refused(ccall, router, Scenario.package(version=version), "value", f"version {version!r}")


@pytest.mark.req("CHK-4", "RTY-5")
@given(
    algorithm=st.sampled_from(
        ["hybrid-aes128-rsa2048", "HYBRID-AES256-RSA4096", "none", "", "hybrid-aes256-rsa4096 "]
    )
)
def test_other_algorithm_refused_as_value(ccall: Any, router: Any, algorithm: str) -> None:
    """An algorithm other than "hybrid-aes256-rsa4096" is refused with ValueError."""
    _refused(
        ccall, router, Scenario.package(algorithm=algorithm), "value", f"algorithm {algorithm!r}"
    )


@pytest.mark.req("CHK-3", "CHK-4")
@given(field=st.sampled_from(["version", "algorithm"]))
def test_version_and_algorithm_checked_before_decryption(
    ccall: Any, router: Any, field: str
) -> None:
    """With a bad version/algorithm AND an undecodable key, the answer is ValueError: the
    port looked at the version before trying to decrypt (SecurityError would mean it did not)."""
    bad = {field: "0.9" if field == "version" else "x", "encrypted_aes_key": NOT_B64}
    _refused(ccall, router, Scenario.package(**bad), "value", f"{field} bad and key undecodable")


@pytest.mark.req("CHK-2")
@given(
    override=st.sampled_from(
        [
            {"version": None},
            {"algorithm": None},
            {"encrypted_aes_key": None},
            {"encrypted_payload": None},
            {"version": 1.0},
            {"encrypted_aes_key": 12},
            {"encrypted_payload": "abc"},
            {"encrypted_payload": [1]},
            {"encrypted_payload": {"nonce": ZERO_NONCE, "tag": ZERO_TAG}},
            {"encrypted_payload": {"ciphertext": "AAAA", "tag": ZERO_TAG}},
            {"encrypted_payload": {"ciphertext": "AAAA", "nonce": ZERO_NONCE}},
            {"encrypted_payload": {"ciphertext": 5, "nonce": ZERO_NONCE, "tag": ZERO_TAG}},
        ]
    )
)
def test_missing_or_mistyped_fields_refused_as_value(
    ccall: Any, router: Any, override: dict[str, Any]
) -> None:
    """A package member missing or of the wrong type is a malformed answer: ValueError, never
    a crash (KeyError/TypeError) and never an attempt to decrypt."""
    _refused(ccall, router, Scenario.package(**override), "value", f"package override {override}")


@pytest.mark.req("CHK-1")
@given(body=st.sampled_from([b"not json", b"[1, 2]", b"\xff\xfe", b"", b'"text"', b"null"]))
def test_body_not_a_json_object_refused_as_value(ccall: Any, router: Any, body: bytes) -> None:
    """A 200 whose body is not a UTF-8 JSON object is refused with ValueError."""
    _refused(ccall, router, Scenario.status(200, body), "value", f"200 body {body!r}")


@pytest.mark.req("CHK-5")
@given(
    override=st.sampled_from(
        [{"key_algorithm": "RSA-OAEP-SHA1"}, {"payload_algorithm": "AES-128-GCM"}]
    )
)
def test_other_key_or_payload_algorithm_refused(
    ccall: Any, router: Any, override: dict[str, str]
) -> None:
    """key_algorithm/payload_algorithm present with another value: ValueError (SHOULD)."""
    _refused(ccall, router, Scenario.package(**override), "value", f"override {override}")


@pytest.mark.req("CHK-6", "PKG-9")
@given(
    override=st.sampled_from(
        [
            {"key_algorithm": None, "payload_algorithm": None},
            {"processed_at": 1700000000.5},
            {"x_future_field": [1, "a"]},
        ]
    )
)
def test_optional_and_unknown_members_accepted(
    ccall: Any, router: Any, override: dict[str, Any]
) -> None:
    """A response without key_algorithm/payload_algorithm, or with unknown top-level members
    (processed_at, later 1.x additions), is accepted: refusing them breaks interoperability."""
    router.reset()
    router.push(Scenario.package(**override))
    expect.ok(ccall(model=MODEL, messages=messages()), f"a completion despite {override}")


# -- decryption: one opaque SecurityError ------------------------------------------------------

CRYPTO_FAULTS: dict[str, Scenario] = {
    "tamper ciphertext": Scenario.tamper("ciphertext"),
    "tamper tag": Scenario.tamper("tag"),
    "tamper nonce": Scenario.tamper("nonce"),
    "tamper encrypted_aes_key": Scenario.tamper("encrypted_aes_key"),
    "wrong recipient": Scenario.wrong_recipient(),
    "bad base64 key": Scenario.package(encrypted_aes_key=NOT_B64),
    "bad base64 ciphertext": Scenario.package(
        encrypted_payload={"ciphertext": NOT_B64, "nonce": ZERO_NONCE, "tag": ZERO_TAG}
    ),
    "short nonce": Scenario.package(
        encrypted_payload={"ciphertext": "AAAA", "nonce": "AAAAAAAA", "tag": ZERO_TAG}
    ),
    "short tag": Scenario.package(
        encrypted_payload={"ciphertext": "AAAA", "nonce": ZERO_NONCE, "tag": "AAAAAAAA"}
    ),
}
FAULT_REQS = {
    "tamper ciphertext": "CHK-10",
    "tamper tag": "CHK-10",
    "tamper nonce": "CHK-10",
    "tamper encrypted_aes_key": "CHK-9",
    "wrong recipient": "CHK-9",
    "bad base64 key": "CHK-7",
    "bad base64 ciphertext": "CHK-7",
    "short nonce": "CHK-8",
    "short tag": "CHK-8",
}


@pytest.mark.req("CHK-7", "CHK-8", "CHK-9", "CHK-10", "ENC-7", "RTY-5")
@pytest.mark.parametrize("fault", list(CRYPTO_FAULTS))
def test_crypto_failure_is_security_error(ccall: Any, router: Any, fault: str) -> None:
    """Every way the answer can fail to decrypt (bit flips, wrong recipient, bad base64, wrong
    nonce/tag length) ends in SecurityError: never a result, never a crash."""
    error = _refused(
        ccall, router, CRYPTO_FAULTS[fault], "security", f"{fault} ({FAULT_REQS[fault]})"
    )
    expect.true(
        "decryption failed" in error.message.lower(),
        'the message "decryption failed"',
        error.message,
    )


@pytest.mark.req("CHK-11")
def test_one_opaque_message_for_every_crypto_failure(ccall: Any, router: Any) -> None:
    """All decryption failures give one message that names no step: a message per step is a
    padding/tag oracle that tells an attacker how far a forged package got."""
    found: dict[str, str] = {}
    for fault, scenario in CRYPTO_FAULTS.items():
        router.reset()
        router.push(scenario)
        error = expect_kind(ccall(model=MODEL, messages=messages()), "security", fault)
        found[fault] = error.message
    distinct = sorted(set(found.values()))
    expect.true(len(distinct) == 1, "one message for every decryption failure", found)
    named = [w for w in STEP_WORDS if w in distinct[0].lower()]
    expect.true(not named, "a message naming no crypto step", f"{distinct[0]!r} names {named}")


@pytest.mark.req("CHK-13")
@given(
    raw=st.sampled_from(
        [b"[1]", b"\xff", b"not json", b'"str"', b"", b"42", b"null", b"\xef\xbb\xbf{}\xff"]
    )
)
def test_plaintext_not_a_json_object_is_security_error(ccall: Any, router: Any, raw: bytes) -> None:
    """An authenticated plaintext that is not a UTF-8 JSON object is refused with
    SecurityError: the port must never hand it to the application."""
    _refused(ccall, router, Scenario.plaintext(raw), "security", f"plaintext {raw!r}")


@pytest.mark.req("ENC-6", "CHK-9")
@pytest.mark.parametrize("padding", KEY_WRAP_PADDINGS)
def test_other_key_wrap_padding_refused(ccall: Any, router: Any, padding: str) -> None:
    """An answer whose AES key is wrapped with another padding (OAEP with SHA-1 hash or MGF1,
    OAEP with a label, PKCS#1 v1.5), everything else correct, is refused with SecurityError:
    a client that accepts, or falls back to, a weaker padding can be downgraded."""
    _refused(ccall, router, Scenario.key_wrap(padding), "security", f"AES key wrapped {padding}")


@pytest.mark.req("CHK-14")
@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/octet-stream", "text/html; charset=utf-8", None],
    ids=["text-plain", "octet-stream", "text-html", "missing"],
)
def test_content_type_of_a_200_is_ignored(
    ccall: Any, router: Any, content_type: str | None
) -> None:
    """A normal answer under another Content-Type, or none, is processed like any other:
    proxies and servers label bodies carelessly, the package format is what counts."""
    router.reset()
    router.push(Scenario.content_type(content_type))
    outcome = ccall(model=MODEL, messages=messages())
    expect.ok(outcome, f"a completion with Content-Type {content_type!r}")
