"""Duplicate JSON member names in an answer: refused, never read one way by the client and
another way by whoever checked the answer.

The risk: JSON parsers disagree on `{"a": 1, "a": 2}` (first wins, last wins, error). An
answer built by anyone who saw the client's public key (19.1) can carry two `payload_id`s or
two `_metadata`s so that a check reads one and the application the other. A client refuses
such a plaintext with SecurityError and such a package with ValueError (CHK-18). The extra
copy here carries the member's own value, so only a duplicate check can tell.
"""

from __future__ import annotations

from typing import Any

import pytest

from conformance import expect
from conformance.checks._support import MODEL, answered, expect_kind, messages
from mock_router import Scenario

#: id -> (where, member, the kind a client refuses it with).
DUPLICATES: dict[str, tuple[str, str, str]] = {
    "plaintext-choices": ("plaintext", "choices", "security"),
    "plaintext-_metadata": ("plaintext", "_metadata", "security"),
    "metadata-payload_id": ("metadata", "payload_id", "security"),
    "metadata-security_tier": ("metadata", "security_tier", "security"),
    "package-version": ("package", "version", "value"),
    "package-encrypted_aes_key": ("package", "encrypted_aes_key", "value"),
    "encrypted_payload-nonce": ("encrypted_payload", "nonce", "value"),
}


@pytest.mark.req("CHK-18")
@pytest.mark.parametrize("case", list(DUPLICATES))
def test_duplicate_member_names_refused(ccall: Any, router: Any, case: str) -> None:
    """Evidence: answer. An answer in which one JSON object names a member twice is never
    returned: SecurityError when the duplicate is in the decrypted plaintext, ValueError when
    it is in the response package."""
    where, member, kind = DUPLICATES[case]
    router.push(Scenario.duplicate(member, where=where, always=True))
    outcome = ccall(model=MODEL, messages=messages())
    answered(router, "duplicate")
    what = f"{member!r} twice in the {where}"
    expect.true(not outcome.ok, f"the answer with {what} never returned", outcome)
    expect_kind(outcome, kind, what)
