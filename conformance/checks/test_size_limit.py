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
    accepted,
    expect_kind,
    last_post,
    nothing_sent,
)

PROBE = 1000


def _request(size: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": "x" * size}]


def _overhead(call: Any, router: Any) -> int:
    """Bytes the port adds around the content (learned from what the router decrypted)."""
    expect.ok(call(model=MODEL, messages=_request(PROBE), max_tokens=1), "the probe request")
    plaintext = last_post(router).plaintext or b""
    router.reset()
    return len(plaintext) - PROBE


@pytest.mark.req("REQ-10")
def test_exactly_ten_mebibytes_is_sent(ccall: Any, router: Any) -> None:
    """A serialised plaintext of exactly 10485760 bytes is sent and answered."""
    content = MAX_PLAINTEXT - _overhead(ccall, router)
    outcome = ccall(model=MODEL, messages=_request(content), max_tokens=1)
    seen = last_post(router)
    expect.equal(len(seen.plaintext or b""), MAX_PLAINTEXT, "serialised plaintext bytes")
    accepted(seen)
    expect.ok(outcome, "a completion for a plaintext of exactly 10 MiB")


@pytest.mark.req("REQ-9", "ERR-19")
def test_one_byte_over_is_refused_before_sending(ccall: Any, router: Any) -> None:
    """10485761 bytes: ValueError, and nothing reaches the server."""
    content = MAX_PLAINTEXT - _overhead(ccall, router) + 1
    outcome = ccall(model=MODEL, messages=_request(content), max_tokens=1)
    nothing_sent(router, "a plaintext one byte over 10 MiB")
    expect_kind(outcome, "value", "a plaintext one byte over 10 MiB")


@pytest.mark.req("REQ-9")
def test_limit_counts_utf8_bytes_not_characters(ccall: Any, router: Any) -> None:
    """Four-byte characters count four bytes each: 2.6 M emoji (about 10.4 MB) are over."""
    emoji = "\U0001f600" * (MAX_PLAINTEXT // 4 + 16)
    outcome = ccall(model=MODEL, messages=[{"role": "user", "content": emoji}], max_tokens=1)
    nothing_sent(router, "a plaintext over 10 MiB in UTF-8 bytes")
    expect_kind(outcome, "value", "emoji content over the limit")
