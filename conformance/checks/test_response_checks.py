"""What a client checks on a 200 answer before it returns anything.

The risks: a port that accepts another version or algorithm can be downgraded; one that says
which crypto step failed gives an attacker an oracle; one that returns a plaintext which is
not a JSON object hands the application garbage; one that decrypts before checking the
version acts on a package it does not understand.

Every answer here is scripted from the request's X-Public-Key and X-Payload-ID alone
(``always=True``), so these checks judge a port even when the router refuses its package.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conformance import expect
from conformance import strategies as cs
from conformance.adapter import ErrorInfo
from conformance.checks._support import MODEL, answered, expect_kind, messages, sent_posts
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


def _refused(
    call: Any,
    router: Any,
    scenario: Scenario,
    kind: str,
    what: str,
    *,
    kind_ids: tuple[str, ...],
    returned_ids: tuple[str, ...] = (),
    retry_id: str | None = "RTY-5",
) -> ErrorInfo | None:
    """Push a scripted answer, call once and judge: never returned (`returned_ids`), refused
    with `kind` (`kind_ids`), not retried (`retry_id`). The error, or None if not one."""
    router.reset()
    router.push(scenario)
    outcome = call(model=MODEL, messages=messages())
    answered(router, scenario.kind)
    if returned_ids:
        with expect.clause(*returned_ids):
            expect.true(not outcome.ok, f"the answer with {what} never returned", outcome)
    error = None
    with expect.clause(*kind_ids):
        error = expect_kind(outcome, kind, what)
    if retry_id is not None:
        with expect.clause(retry_id):
            expect.equal(len(sent_posts(router)), 1, f"POSTs for {what} (never retried)")
    return error


def _accepted(call: Any, router: Any, scenario: Scenario, what: str) -> None:
    """Push a scripted answer that a conforming client accepts; it must come back."""
    router.reset()
    router.push(scenario)
    outcome = call(model=MODEL, messages=messages())
    answered(router, scenario.kind)
    expect.ok(outcome, f"a completion despite {what}")


# -- structure: ValueError before any decryption -----------------------------------------------


@pytest.mark.req("CHK-3", "RTY-5")
@given(
    version=st.one_of(
        st.sampled_from(["0.9", "1.1", "2.0", "1", "1.0 ", " 1.0", "v1.0", ""]),
        cs.unicode_text(max_size=6).filter(lambda v: v != "1.0"),
    )
)
def test_other_version_refused_as_value(ccall: Any, router: Any, version: str) -> None:
    """Evidence: answer. A version other than "1.0" is refused with ValueError (a downgrade
    attempt, CHK-3), and not retried (RTY-5)."""
    scenario = Scenario.package(version=version, always=True)
    _refused(ccall, router, scenario, "value", f"version {version!r}", kind_ids=("CHK-3",))


@pytest.mark.req("CHK-4", "RTY-5")
@given(
    algorithm=st.sampled_from(
        ["hybrid-aes128-rsa2048", "HYBRID-AES256-RSA4096", "none", "", "hybrid-aes256-rsa4096 "]
    )
)
def test_other_algorithm_refused_as_value(ccall: Any, router: Any, algorithm: str) -> None:
    """Evidence: answer. An algorithm other than "hybrid-aes256-rsa4096" is refused with
    ValueError (CHK-4), and not retried (RTY-5)."""
    scenario = Scenario.package(algorithm=algorithm, always=True)
    what = f"algorithm {algorithm!r}"
    _refused(ccall, router, scenario, "value", what, kind_ids=("CHK-4",))


@pytest.mark.req("CHK-3", "CHK-4")
@pytest.mark.parametrize("field", ["version", "algorithm"])
def test_version_and_algorithm_checked_before_decryption(
    ccall: Any, router: Any, field: str
) -> None:
    """Evidence: answer. With a bad version/algorithm AND an undecodable key, the answer is
    ValueError: the port looked at the version before trying to decrypt (SecurityError would
    mean it did not)."""
    bad = {field: "0.9" if field == "version" else "x", "encrypted_aes_key": NOT_B64}
    scenario = Scenario.package(**bad, always=True)
    rid = "CHK-3" if field == "version" else "CHK-4"
    _refused(ccall, router, scenario, "value", f"{field} bad and key undecodable",
             kind_ids=(rid,), retry_id=None)  # fmt: skip


@pytest.mark.req("CHK-21")
@given(
    override=st.sampled_from(
        [
            {"version": None},
            {"algorithm": None},
            {"encrypted_aes_key": None},
            {"version": 1.0},
            {"algorithm": ["hybrid-aes256-rsa4096"]},
            {"encrypted_aes_key": 12},
        ]
    )
)
def test_top_level_member_missing_or_not_a_string(
    ccall: Any, router: Any, override: dict[str, Any]
) -> None:
    """Evidence: answer. version, algorithm or encrypted_aes_key missing or not a string is a
    malformed answer: ValueError, never a crash (KeyError/TypeError)."""
    scenario = Scenario.package(**override, always=True)
    _refused(ccall, router, scenario, "value", f"package override {override}",
             kind_ids=("CHK-21",), retry_id=None)  # fmt: skip


@pytest.mark.req("CHK-22")
@given(override=st.sampled_from([None, "abc", [1], 5, True]))
def test_encrypted_payload_missing_or_not_an_object(
    ccall: Any, router: Any, override: Any
) -> None:
    """Evidence: answer. encrypted_payload missing (None here) or not an object: ValueError,
    never a crash."""
    scenario = Scenario.package(encrypted_payload=override, always=True)
    _refused(ccall, router, scenario, "value", f"encrypted_payload {override!r}",
             kind_ids=("CHK-22",), retry_id=None)  # fmt: skip


@pytest.mark.req("CHK-23")
@given(
    inner=st.sampled_from(
        [
            {"nonce": ZERO_NONCE, "tag": ZERO_TAG},
            {"ciphertext": "AAAA", "tag": ZERO_TAG},
            {"ciphertext": "AAAA", "nonce": ZERO_NONCE},
            {"ciphertext": 5, "nonce": ZERO_NONCE, "tag": ZERO_TAG},
            {"ciphertext": "AAAA", "nonce": None, "tag": ZERO_TAG},
            {"ciphertext": "AAAA", "nonce": ZERO_NONCE, "tag": [ZERO_TAG]},
        ]
    )
)
def test_payload_member_missing_or_not_a_string(
    ccall: Any, router: Any, inner: dict[str, Any]
) -> None:
    """Evidence: answer. ciphertext, nonce or tag missing or not a string: ValueError, never
    a crash and never an attempt to decrypt."""
    scenario = Scenario.package(encrypted_payload=inner, always=True)
    _refused(ccall, router, scenario, "value", f"encrypted_payload {inner}",
             kind_ids=("CHK-23",), retry_id=None)  # fmt: skip


@pytest.mark.req("CHK-1")
@given(body=st.sampled_from([b"not json", b"[1, 2]", b"\xff\xfe", b"", b'"text"', b"null"]))
def test_body_not_a_json_object_refused_as_value(ccall: Any, router: Any, body: bytes) -> None:
    """Evidence: answer. A 200 whose body is not a UTF-8 JSON object is refused with
    ValueError."""
    router.reset()
    router.push(Scenario.status(200, body))
    outcome = ccall(model=MODEL, messages=messages())
    answered(router, "status")
    expect_kind(outcome, "value", f"200 body {body!r}")


@pytest.mark.req("CHK-20")
@given(
    override=st.sampled_from(
        [
            {"key_algorithm": "RSA-OAEP-SHA1"},
            {"payload_algorithm": "AES-128-GCM"},
            {"key_algorithm": "", "encrypted_aes_key": NOT_B64},
            {"payload_algorithm": "AES-256-CBC", "encrypted_aes_key": NOT_B64},
        ]
    )
)
def test_other_key_or_payload_algorithm_refused(
    ccall: Any, router: Any, override: dict[str, str]
) -> None:
    """Evidence: answer. key_algorithm/payload_algorithm present with another value:
    ValueError, decided before any decryption (with an undecodable key too)."""
    scenario = Scenario.package(**override, always=True)
    _refused(ccall, router, scenario, "value", f"override {override}",
             kind_ids=("CHK-20",), retry_id=None)  # fmt: skip


@pytest.mark.req("CHK-6")
@given(
    override=st.sampled_from(
        [
            {"key_algorithm": None, "payload_algorithm": None},
            {"key_algorithm": None},
            {"payload_algorithm": None},
        ]
    )
)
def test_package_without_key_and_payload_algorithm_accepted(
    ccall: Any, router: Any, override: dict[str, Any]
) -> None:
    """Evidence: answer. A response without key_algorithm/payload_algorithm is accepted:
    algorithm already determines both."""
    _accepted(ccall, router, Scenario.package(**override, always=True), f"{override}")


@pytest.mark.req("PKG-9")
@given(
    override=st.sampled_from(
        [{"processed_at": 1700000000.5}, {"x_future_field": [1, "a"]}, {"signature": "abc="}]
    )
)
def test_unknown_package_members_ignored(
    ccall: Any, router: Any, override: dict[str, Any]
) -> None:
    """Evidence: answer. Unknown top-level members of a response package (processed_at,
    later 1.x additions) are ignored: refusing them breaks interoperability."""
    _accepted(ccall, router, Scenario.package(**override, always=True), f"{override}")


# -- decryption: one opaque SecurityError ------------------------------------------------------

CRYPTO_FAULTS: dict[str, Scenario] = {
    "tamper ciphertext": Scenario.tamper("ciphertext", always=True),
    "tamper tag": Scenario.tamper("tag", always=True),
    "tamper nonce": Scenario.tamper("nonce", always=True),
    "tamper encrypted_aes_key": Scenario.tamper("encrypted_aes_key", always=True),
    "wrong recipient": Scenario.wrong_recipient(always=True),
    "bad base64 key": Scenario.package(encrypted_aes_key=NOT_B64, always=True),
    "bad base64 ciphertext": Scenario.package(
        encrypted_payload={"ciphertext": NOT_B64, "nonce": ZERO_NONCE, "tag": ZERO_TAG},
        always=True,
    ),
    "short nonce": Scenario.package(
        encrypted_payload={"ciphertext": "AAAA", "nonce": "AAAAAAAA", "tag": ZERO_TAG},
        always=True,
    ),
    "short tag": Scenario.package(
        encrypted_payload={"ciphertext": "AAAA", "nonce": ZERO_NONCE, "tag": "AAAAAAAA"},
        always=True,
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
#: Faults where a real key and ciphertext fail GCM's tag check: ENC-7 (no plaintext used).
GCM_FAULTS = ("tamper ciphertext", "tamper tag", "tamper nonce")


@pytest.mark.req("CHK-7", "CHK-8", "CHK-9", "CHK-10", "ENC-7", "RTY-5")
@pytest.mark.parametrize("fault", list(CRYPTO_FAULTS))
def test_crypto_failure_is_security_error(ccall: Any, router: Any, fault: str) -> None:
    """Evidence: answer. Every way the answer can fail to decrypt (bit flips, wrong recipient,
    bad base64, wrong nonce/tag length) ends in SecurityError("decryption failed") under the
    requirement of that step: never a result (ENC-7 for a tag that does not verify), never
    a crash, never retried (RTY-5)."""
    rid = FAULT_REQS[fault]
    returned = (rid, "ENC-7") if fault in GCM_FAULTS else (rid,)
    error = _refused(ccall, router, CRYPTO_FAULTS[fault], "security", f"{fault} ({rid})",
                     kind_ids=(rid,), returned_ids=returned)  # fmt: skip
    if error is not None:
        with expect.clause(rid):
            expect.true(
                "decryption failed" in error.message.lower(),
                'the message "decryption failed"',
                error.message,
            )


@pytest.mark.req("CHK-11")
def test_one_opaque_message_for_every_crypto_failure(ccall: Any, router: Any) -> None:
    """Evidence: answer. All decryption failures give one message, "decryption failed", that
    names no step: a message per step is a padding/tag oracle that tells an attacker how far
    a forged package got."""
    found: dict[str, str] = {}
    for fault, scenario in CRYPTO_FAULTS.items():
        router.reset()
        router.push(scenario)
        outcome = ccall(model=MODEL, messages=messages())
        answered(router, scenario.kind)
        found[fault] = expect_kind(outcome, "security", fault).message
    distinct = sorted(set(found.values()))
    expect.true(len(distinct) == 1, "one message for every decryption failure", found)
    expect.true(
        "decryption failed" in distinct[0].lower(), 'the message "decryption failed"', distinct
    )
    named = [w for w in STEP_WORDS if w in distinct[0].lower()]
    expect.true(not named, "a message naming no crypto step", f"{distinct[0]!r} names {named}")


@pytest.mark.req("CHK-13")
@given(
    raw=st.sampled_from(
        [b"[1]", b"\xff", b"not json", b'"str"', b"", b"42", b"null", b"\xef\xbb\xbf{}\xff",
         b'\xef\xbb\xbf{"id": "x"}']
    )
)  # fmt: skip
def test_plaintext_not_a_json_object_is_security_error(ccall: Any, router: Any, raw: bytes) -> None:
    """Evidence: answer. An authenticated plaintext that is not a UTF-8 JSON object (a leading
    byte order mark included) is refused with SecurityError: the port must never hand it to
    the application."""
    scenario = Scenario.plaintext(raw, always=True)
    _refused(ccall, router, scenario, "security", f"plaintext {raw!r}", kind_ids=("CHK-13",),
             returned_ids=("CHK-13",), retry_id=None)  # fmt: skip


@pytest.mark.req("ENC-6", "CHK-9")
@pytest.mark.parametrize("padding", KEY_WRAP_PADDINGS)
def test_other_key_wrap_padding_refused(ccall: Any, router: Any, padding: str) -> None:
    """Evidence: answer. An answer whose AES key is wrapped with another padding (OAEP with
    SHA-1 hash or MGF1, OAEP with a label, PKCS#1 v1.5), everything else correct, is never
    accepted (ENC-6) and is refused with SecurityError (CHK-9): a client that accepts, or
    falls back to, a weaker padding can be downgraded."""
    scenario = Scenario.key_wrap(padding, always=True)
    _refused(ccall, router, scenario, "security", f"AES key wrapped {padding}",
             kind_ids=("CHK-9",), returned_ids=("ENC-6",), retry_id=None)  # fmt: skip


@pytest.mark.req("CHK-14")
@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/octet-stream", "text/html; charset=utf-8", None],
    ids=["text-plain", "octet-stream", "text-html", "missing"],
)
def test_content_type_of_a_200_is_ignored(
    ccall: Any, router: Any, content_type: str | None
) -> None:
    """Evidence: answer. A normal answer under another Content-Type, or none, is processed
    like any other: proxies and servers label bodies carelessly, the package format is what
    counts."""
    scenario = Scenario.content_type(content_type, always=True)
    _accepted(ccall, router, scenario, f"Content-Type {content_type!r}")


# -- base64 read strictly, unknown encrypted_payload members ignored (spec 1.0.1) --------------

#: Genuine answers whose base64 text only is damaged: a lenient decoder (foreign characters
#: skipped, padding added) reads the right bytes and the answer decrypts.
LENIENT_BASE64: dict[str, Scenario] = {
    "tag without padding": Scenario.tamper("tag", how="strip-padding", always=True),
    "asterisk in ciphertext": Scenario.tamper("ciphertext", how="non-alphabet", always=True),
    "space in nonce": Scenario.tamper("nonce", how="space", always=True),
    "line break in encrypted_aes_key": Scenario.tamper(
        "encrypted_aes_key", how="newline", always=True
    ),
}


@pytest.mark.req("PKG-10", "CHK-7")
@pytest.mark.parametrize("case", list(LENIENT_BASE64))
def test_answer_base64_is_decoded_strictly(ccall: Any, router: Any, case: str) -> None:
    """Evidence: answer. A genuine answer whose base64 lacks its padding or carries a
    character outside the alphabet (a space, a line break, "*") is refused (PKG-10: a
    receiver refuses non-alphabet characters and missing padding), with SecurityError
    "decryption failed" (CHK-7: invalid base64 is a decryption failure of 11.2), although a
    lenient decoder would read the right bytes: two decoders must never read one text
    differently."""
    error = _refused(ccall, router, LENIENT_BASE64[case], "security", case,
                     kind_ids=("CHK-7",), returned_ids=("PKG-10", "CHK-7"),
                     retry_id=None)  # fmt: skip
    if error is not None:
        with expect.clause("CHK-7"):
            expect.true("decryption failed" in error.message.lower(),
                        'the message "decryption failed"', error.message)  # fmt: skip


@pytest.mark.req("PKG-11")
@given(
    member=st.sampled_from(
        [("x_future", "ignored"), ("aad", ""), ("key_id", 7), ("tag2", None),
         ("x_nested", {"a": [1, {"b": True}]})]
    )
)  # fmt: skip
def test_unknown_encrypted_payload_member_ignored(
    ccall: Any, router: Any, member: tuple[str, Any]
) -> None:
    """Evidence: answer. An answer whose real encrypted_payload carries one member besides
    ciphertext, nonce and tag (a later 1.x addition) is processed like any other: returned,
    not refused (PKG-11)."""
    name, value = member
    _accepted(ccall, router, Scenario.payload_member(name, value, always=True),
              f"encrypted_payload member {name!r}")  # fmt: skip
