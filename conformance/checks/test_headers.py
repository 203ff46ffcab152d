"""Request headers: the client's public key, the bearer token and the security tier.

The risks: a malformed X-Public-Key means the server cannot encrypt the answer; a bearer
token sent when none was set, or a key with CR/LF in it, is header injection; a tier that is
not validated lets a typo ("Maximum") silently route PHI to the standard tier.
"""

from __future__ import annotations

import re
import urllib.parse
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given
from hypothesis import strategies as st

from conformance import expect
from conformance import strategies as cs
from conformance.checks._support import (
    MODEL,
    expect_kind,
    last_post,
    messages,
    nothing_sent,
    posts,
)
from mock_router import Scenario

#: What a percent-encoded header may contain (RFC 3986 unreserved, '/', and %XX escapes).
PERCENT_ENCODED = re.compile(r"^(?:[A-Za-z0-9\-._~/]|%[0-9A-Fa-f]{2})*$")


@pytest.mark.req("HDR-3", "HDR-4", "KEY-1", "KEY-3")
def test_public_key_header_is_percent_encoded_rsa_spki(
    ccall: Any, make_config: Any, router: Any
) -> None:
    """X-Public-Key is the percent-encoded PEM SubjectPublicKeyInfo of a 4096-bit RSA key with
    exponent 65537 (a key the client made itself): what every server decodes to encrypt the
    answer."""
    config = make_config(key_dir=None)
    expect.ok(ccall(model=MODEL, messages=messages(), config=config), "a completion")
    raw = last_post(router).headers.get("x-public-key", "")
    expect.true(
        bool(PERCENT_ENCODED.match(raw)),
        "only unreserved characters, '/' and %XX escapes",
        raw[:120],
    )
    pem = urllib.parse.unquote(raw)
    expect.true(pem.startswith("-----BEGIN PUBLIC KEY-----"), "a PEM SPKI", pem[:40])
    key = serialization.load_pem_public_key(pem.encode())
    expect.true(isinstance(key, rsa.RSAPublicKey), "an RSA key", type(key).__name__)
    assert isinstance(key, rsa.RSAPublicKey)
    expect.equal(key.public_numbers().e, 65537, "public exponent")
    expect.equal(key.key_size, 4096, "client key size")


@pytest.mark.req("HDR-6")
def test_content_type_is_octet_stream(ccall: Any, router: Any) -> None:
    """Content-Type of the POST is exactly application/octet-stream (servers answer 415
    otherwise)."""
    expect.ok(ccall(model=MODEL, messages=messages()), "a completion")
    expect.equal(
        last_post(router).headers.get("content-type"), "application/octet-stream", "Content-Type"
    )


@pytest.mark.req("HDR-7")
@pytest.mark.requires("api_key")
@given(key=cs.api_keys())
def test_bearer_token_is_exactly_the_api_key(
    ccall: Any, make_config: Any, router: Any, key: str
) -> None:
    """With an API key set, the POST carries exactly "Authorization: Bearer <key>"."""
    router.reset()
    outcome = ccall(model=MODEL, messages=messages(), config=make_config(api_key=key))
    expect.ok(outcome, "a completion")
    expect.equal(last_post(router).headers.get("authorization"), f"Bearer {key}", "Authorization")


@pytest.mark.req("HDR-8")
@pytest.mark.parametrize("key", [None, ""], ids=["none", "empty"])
def test_no_authorization_without_api_key(
    ccall: Any, make_config: Any, router: Any, key: str | None
) -> None:
    """Without an API key (None or empty) no Authorization header is sent at all."""
    expect.ok(ccall(model=MODEL, messages=messages(), config=make_config(api_key=key)))
    for seen in router.seen:
        expect.true(
            "authorization" not in seen.headers,
            "no Authorization header",
            seen.headers.get("authorization"),
        )


@pytest.mark.req("HDR-9", "ERR-19")
@pytest.mark.requires("api_key")
@given(key=cs.invalid_api_keys())
def test_invalid_api_key_refused_before_sending(
    ccall: Any, make_config: Any, router: Any, key: str
) -> None:
    """An API key with CR/LF, spaces, controls or non-ASCII is ValueError before anything is
    sent: header injection must be impossible."""
    router.reset()
    outcome = ccall(model=MODEL, messages=messages(), config=make_config(api_key=key))
    nothing_sent(router, f"invalid API key {key!r}")
    expect_kind(outcome, "value", f"API key {key!r}")


@pytest.mark.req("TIER-1", "TIER-2")
@pytest.mark.requires("security_tier")
@given(tier=cs.valid_tiers())
def test_tier_sent_as_header(ccall: Any, router: Any, tier: str) -> None:
    """A tier the caller asks for is sent as X-Security-Tier with exactly that value."""
    router.reset()
    expect.ok(ccall(model=MODEL, messages=messages(), security_tier=tier), f"tier {tier}")
    expect.equal(last_post(router).headers.get("x-security-tier"), tier, "X-Security-Tier")


@pytest.mark.req("TIER-3")
def test_no_tier_header_unless_asked(ccall: Any, router: Any) -> None:
    """Without a tier from the caller no X-Security-Tier is sent (the server picks)."""
    expect.ok(ccall(model=MODEL, messages=messages()), "a completion")
    expect.true(
        "x-security-tier" not in last_post(router).headers,
        "no X-Security-Tier",
        last_post(router).headers.get("x-security-tier"),
    )


@pytest.mark.req("TIER-4", "ERR-19")
@pytest.mark.requires("security_tier")
@given(tier=cs.invalid_tiers())
def test_invalid_tier_refused_before_sending(ccall: Any, router: Any, tier: str) -> None:
    """Any other tier (case variants, spaces, unknown names, CR/LF) is ValueError before
    anything is sent."""
    router.reset()
    outcome = ccall(model=MODEL, messages=messages(), security_tier=tier)
    nothing_sent(router, f"invalid tier {tier!r}")
    expect_kind(outcome, "value", f"tier {tier!r}")


@pytest.mark.req("TIER-5")
@pytest.mark.requires("security_tier", "max_retries")
@given(tier=st.just("maximum"))
def test_tier_kept_on_every_attempt(ccall: Any, make_config: Any, router: Any, tier: str) -> None:
    """A retry carries the same X-Security-Tier: a retry must not silently change tiers."""
    router.reset()
    router.push(Scenario.status(503, {"detail": "busy"}))
    outcome = ccall(
        model=MODEL, messages=messages(), config=make_config(max_retries=1), security_tier=tier
    )
    expect.ok(outcome, "a completion after one retry")
    tiers = [s.headers.get("x-security-tier") for s in posts(router)]
    expect.equal(tiers, [tier, tier], "X-Security-Tier of each attempt")
