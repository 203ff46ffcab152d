"""The 10 MiB plaintext limit, to the byte: exactly 10 MiB is sent, one byte more is not.

The risks: a port with no limit sends bodies the server must refuse after reading them (a
denial of service on both ends); a port whose limit is off by one, or counts characters
instead of UTF-8 bytes, refuses valid requests or sends invalid ones. The check learns the
port's own serialisation overhead from a small request (what the router decrypted), then
builds content so the serialised plaintext is exactly the limit.
"""

from __future__ import annotations

from typing import Any

import pytest

from conformance import expect
from conformance.checks._support import (
    MAX_PLAINTEXT,
    MODEL,
    expect_kind,
    nothing_sent,
    plaintext_of,
    posts,
    request_plaintext,
    sent_posts,
)

PROBE = 1000


def _request(size: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": "x" * size}]


def _overhead(call: Any, router: Any) -> int | None:
    """Bytes the port adds around the content, learned from the plaintext it sent for a small
    request (decrypted by the router, or by the tolerant decryption if the router refused);
    None when nothing opens the package."""
    call(model=MODEL, messages=_request(PROBE), max_tokens=1)
    plaintext = request_plaintext(sent_posts(router)[-1])
    router.reset()
    return None if plaintext is None else len(plaintext) - PROBE


@pytest.mark.req("REQ-10")
def test_exactly_ten_mebibytes_is_sent(ccall: Any, router: Any) -> None:
    """Evidence: request. A serialised plaintext of exactly 10485760 bytes is sent: the limit
    is not lower, and not measured on anything else."""
    overhead = _overhead(ccall, router)
    if overhead is None:
        plaintext_of(sent_posts(router)[-1])  # BLOCKED by what keeps the package closed
    assert overhead is not None
    outcome = ccall(model=MODEL, messages=_request(MAX_PLAINTEXT - overhead), max_tokens=1)
    sent = posts(router)
    expect.true(bool(sent), "a POST of the 10 MiB plaintext", f"nothing sent ({outcome})")
    expect.equal(len(plaintext_of(sent[-1])), MAX_PLAINTEXT, "serialised plaintext bytes")


@pytest.mark.req("REQ-9", "ERR-19")
def test_one_byte_over_is_refused_before_sending(ccall: Any, router: Any) -> None:
    """Evidence: client behaviour. 10485761 bytes: ValueError, and nothing reaches the
    server. (When the port's packages cannot be opened to learn its serialisation, content
    of 10 MiB alone is used: over the limit by the port's own overhead.)"""
    overhead = _overhead(ccall, router)
    content = MAX_PLAINTEXT + 1 - overhead if overhead is not None else MAX_PLAINTEXT
    outcome = ccall(model=MODEL, messages=_request(content), max_tokens=1)
    nothing_sent(router, "a plaintext over 10 MiB")
    expect_kind(outcome, "value", "a plaintext over 10 MiB")


@pytest.mark.req("REQ-9")
def test_limit_counts_utf8_bytes_not_characters(ccall: Any, router: Any) -> None:
    """Evidence: client behaviour. Four-byte characters count four bytes each: 2.6 M emoji
    (about 10.4 MB) are over."""
    emoji = "\U0001f600" * (MAX_PLAINTEXT // 4 + 16)
    outcome = ccall(model=MODEL, messages=[{"role": "user", "content": emoji}], max_tokens=1)
    nothing_sent(router, "a plaintext over 10 MiB in UTF-8 bytes")
    expect_kind(outcome, "value", "emoji content over the limit")
