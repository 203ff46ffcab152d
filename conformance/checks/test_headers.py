"""Request headers: the client's public key, the bearer token and the security tier.

The risks: a malformed X-Public-Key means the server cannot encrypt the answer; a bearer
token sent when none was set, or a key with CR/LF in it, is header injection; a tier that is
not validated lets a typo ("Maximum") silently route PHI to the standard tier, and one that
is dropped on a retry or on the rotation resend serves it at the server's default tier. Every
header check reads the recorded request, whatever the router answered.
"""

from __future__ import annotations

import re
import urllib.parse
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import example, given
from hypothesis import strategies as st

from conformance import expect
from conformance import strategies as cs
from conformance.checks._support import (
    KEY_PATH,
    MODEL,
    POST_PATH,
    answered,
    client,
    describe_seen,
    expect_kind,
    messages,
    nothing_sent,
    posts,
    resent,
    rotated_key,
    sent_posts,
)
from mock_router import Scenario

#: What a percent-encoded header may contain (RFC 3986 unreserved, '/', and %XX escapes).
PERCENT_ENCODED = re.compile(r"^(?:[A-Za-z0-9\-._~/]|%[0-9A-Fa-f]{2})*$")
#: The protocol headers a client sends at most once each (HDR-12).
ONCE = ("x-payload-id", "x-public-key", "content-type", "authorization", "x-security-tier")


@pytest.mark.req("HDR-1")
def test_request_is_a_post_to_the_secure_completion_path(ccall: Any, router: Any) -> None:
    """Evidence: request. A call sends its package as the body of a POST to
    {base}/v1/chat/secure_completion, and nothing to any other path (no
    /v1/chat/completions, no GET of the endpoint): the one request every server serves."""
    outcome = ccall(model=MODEL, messages=messages())
    sent = posts(router)
    expect.true(bool(sent), f"a POST to {POST_PATH}", f"{describe_seen(router)}, {outcome}")
    other = [f"{s.method} {s.path}" for s in router.seen if s.path not in (POST_PATH, KEY_PATH)]
    expect.true(not other, f"no request to other paths than {POST_PATH}", other)
    for seen in sent:
        expect.true(bool(seen.body), "the package as the body", f"{len(seen.body)} bytes")


@pytest.mark.req("HDR-3", "HDR-4", "KEY-1", "KEY-3")
def test_public_key_header_is_percent_encoded_rsa_spki(
    ccall: Any, make_config: Any, router: Any
) -> None:
    """Evidence: request, answer. X-Public-Key is the percent-encoded PEM SubjectPublicKeyInfo
    of a 4096-bit RSA key with exponent 65537 (a key the client made itself), and it is the
    key the client decrypts with: an answer encrypted to that header's key decrypts."""
    config = make_config(key_dir=None)
    router.push(Scenario.scripted())
    outcome = ccall(model=MODEL, messages=messages(), config=config)
    seen = sent_posts(router)[-1]
    raw = seen.headers.get("x-public-key", "")
    with expect.clause("HDR-4"):
        expect.true(
            bool(PERCENT_ENCODED.match(raw)),
            "only unreserved characters, '/' and %XX escapes",
            raw[:120],
        )
    pem = urllib.parse.unquote(raw)
    with expect.clause("KEY-3"):
        expect.true(pem.startswith("-----BEGIN PUBLIC KEY-----"), "a PEM SPKI", pem[:40])
    key = None
    with expect.clause("HDR-3"):
        try:
            key = serialization.load_pem_public_key(pem.encode("utf-8", "replace"))
        except (ValueError, TypeError):
            raise AssertionError(
                f"expected <a PEM public key after percent-decoding>, actual <{pem[:60]!r}>"
            ) from None
        error = outcome.error
        # judged when the scripted answer was given to one X-Payload-ID (not two: HDR-12)
        if seen.scenario == "scripted" and ", " not in seen.headers.get("x-payload-id", ""):
            expect.true(
                error is None or error.kind != "security",
                "the answer encrypted to the X-Public-Key key decrypted by the client",
                outcome,
            )
    if key is None:
        expect.blocked(by="HDR-3", why="X-Public-Key is not a PEM public key")
    with expect.clause("KEY-1"):
        expect.true(isinstance(key, rsa.RSAPublicKey), "an RSA key", type(key).__name__)
        assert isinstance(key, rsa.RSAPublicKey)
        expect.equal(key.public_numbers().e, 65537, "public exponent")
        expect.equal(key.key_size, 4096, "client key size")


@pytest.mark.req("HDR-6")
def test_content_type_is_octet_stream(ccall: Any, router: Any) -> None:
    """Evidence: request. Content-Type of the POST is exactly application/octet-stream
    (servers answer 415 otherwise)."""
    ccall(model=MODEL, messages=messages())
    expect.equal(
        sent_posts(router)[-1].headers.get("content-type"),
        "application/octet-stream",
        "Content-Type",
    )


@pytest.mark.req("HDR-11")
def test_no_content_encoding(ccall: Any, router: Any) -> None:
    """Evidence: request. The POST carries no Content-Encoding (not even "identity"): the body
    is the package bytes as they are, and a server does not undo any coding."""
    ccall(model=MODEL, messages=messages())
    for seen in sent_posts(router):
        expect.true(
            "content-encoding" not in seen.headers,
            "no Content-Encoding header",
            seen.headers.get("content-encoding"),
        )


@pytest.mark.req("HDR-12")
def test_protocol_headers_sent_once(
    impl: Any, ccall: Any, make_config: Any, router: Any
) -> None:
    """Evidence: request. X-Payload-ID, X-Public-Key, Content-Type, Authorization and
    X-Security-Tier are each sent at most once: two copies are read differently by different
    servers and proxies (first wins, last wins, joined)."""
    kwargs: dict[str, Any] = {}
    if "security_tier" in impl.capabilities:
        kwargs["security_tier"] = "high"
    config = make_config(api_key="sk-once") if "api_key" in impl.capabilities else make_config()
    ccall(model=MODEL, messages=messages(), config=config, **kwargs)
    for seen in sent_posts(router):
        # the router joins repeated fields with ", "; no single value of these has one
        repeated = {n: seen.headers[n] for n in ONCE if ", " in seen.headers.get(n, "")}
        expect.true(not repeated, "each protocol header once", repeated)


@pytest.mark.req("HDR-7")
@pytest.mark.requires("api_key")
@given(key=cs.api_keys())
def test_bearer_token_is_exactly_the_api_key(
    ccall: Any, make_config: Any, router: Any, key: str
) -> None:
    """Evidence: request. With an API key set, the POST carries exactly
    "Authorization: Bearer <key>"."""
    router.reset()
    ccall(model=MODEL, messages=messages(), config=make_config(api_key=key))
    expect.equal(
        sent_posts(router)[-1].headers.get("authorization"), f"Bearer {key}", "Authorization"
    )


@pytest.mark.req("HDR-8")
@pytest.mark.parametrize("key", [None, ""], ids=["none", "empty"])
def test_no_authorization_without_api_key(
    ccall: Any, make_config: Any, router: Any, key: str | None
) -> None:
    """Evidence: request. Without an API key (None or empty) no Authorization header is sent
    at all, on the key fetch or the POST."""
    ccall(model=MODEL, messages=messages(), config=make_config(api_key=key))
    sent_posts(router)
    for seen in router.seen:
        expect.true(
            "authorization" not in seen.headers,
            f"no Authorization header on {seen.method} {seen.path}",
            seen.headers.get("authorization"),
        )


@pytest.mark.req("HDR-9", "ERR-19")
@pytest.mark.requires("api_key")
@given(key=cs.invalid_api_keys())
def test_invalid_api_key_refused_before_sending(
    ccall: Any, make_config: Any, router: Any, key: str
) -> None:
    """Evidence: client behaviour. An API key with CR/LF, spaces, controls or non-ASCII is
    ValueError before anything is sent: header injection must be impossible."""
    router.reset()
    outcome = ccall(model=MODEL, messages=messages(), config=make_config(api_key=key))
    nothing_sent(router, f"invalid API key {key!r}")
    expect_kind(outcome, "value", f"API key {key!r}")


@pytest.mark.req("TIER-1", "TIER-2")
@pytest.mark.requires("security_tier")
@given(tier=cs.valid_tiers())
def test_tier_sent_as_header(ccall: Any, router: Any, tier: str) -> None:
    """Evidence: request. A tier the caller asks for is sent as X-Security-Tier with exactly
    that value."""
    router.reset()
    outcome = ccall(model=MODEL, messages=messages(), security_tier=tier)
    if not posts(router) and outcome.error is not None and outcome.error.kind == "value":
        raise AssertionError(f"expected <the valid tier {tier!r} sent>, actual <refused "
                             f"locally: {outcome.error}>")  # fmt: skip
    expect.equal(sent_posts(router)[-1].headers.get("x-security-tier"), tier, "X-Security-Tier")


@pytest.mark.req("TIER-3")
def test_no_tier_header_unless_asked(ccall: Any, router: Any) -> None:
    """Evidence: request. Without a tier from the caller no X-Security-Tier is sent (the
    server picks)."""
    ccall(model=MODEL, messages=messages())
    for seen in sent_posts(router):
        expect.true(
            "x-security-tier" not in seen.headers,
            "no X-Security-Tier",
            seen.headers.get("x-security-tier"),
        )


@pytest.mark.req("TIER-4", "ERR-19")
@pytest.mark.requires("security_tier")
@given(tier=cs.invalid_tiers())
def test_invalid_tier_refused_before_sending(ccall: Any, router: Any, tier: str) -> None:
    """Evidence: client behaviour. Any other tier (case variants, spaces, unknown names,
    CR/LF) is ValueError before anything is sent."""
    router.reset()
    outcome = ccall(model=MODEL, messages=messages(), security_tier=tier)
    nothing_sent(router, f"invalid tier {tier!r}")
    expect_kind(outcome, "value", f"tier {tier!r}")


@pytest.mark.req("TIER-5")
@pytest.mark.requires("security_tier", "max_retries")
def test_tier_kept_on_every_attempt(ccall: Any, make_config: Any, router: Any) -> None:
    """Evidence: request. A retry carries the same X-Security-Tier: a retry must not silently
    change tiers."""
    router.push(Scenario.status(503, {"detail": "busy"}))
    ccall(
        model=MODEL,
        messages=messages(),
        config=make_config(max_retries=1),
        security_tier="maximum",
    )
    tiers = [s.headers.get("x-security-tier") for s in sent_posts(router)]
    expect.evidence(tiers[1:], "a retry after the 503", blocked_by="RTY-1",
                    why="the client did not retry the 503")  # fmt: skip
    expect.equal(tiers, ["maximum"] * len(tiers), "X-Security-Tier of each attempt")


@pytest.mark.req("TIER-5")
@pytest.mark.requires("security_tier", "client_reuse")
def test_tier_kept_on_the_rotation_resend(impl: Any, make_config: Any, router: Any) -> None:
    """Evidence: request. After a key rotation the client resends the call under the new key;
    the resend carries the same X-Security-Tier: a call asking "maximum" must never be
    served at the server's default tier because the resend forgot the header."""
    config = make_config()
    with client(impl, config) as handle:
        impl.create(config, MODEL, messages(), {}, client=handle)  # caches the server key
        with rotated_key(router):
            router.reset()
            impl.create(config, MODEL, messages(), {"security_tier": "maximum"}, client=handle)
            seen = sent_posts(router)
    resent(router, seen, "resend after the rotation")
    tiers = [s.headers.get("x-security-tier") for s in seen]
    expect.equal(tiers, ["maximum"] * len(tiers), "X-Security-Tier of the call and its resend")


@pytest.mark.req("TIER-9")
@pytest.mark.requires("security_tier")
@given(
    answer=st.sampled_from(
        [("maximum", "standard"), ("maximum", None), ("high", "maximum"), ("high", "HIGH"),
         ("standard", None), ("standard", "")]
    )
)  # fmt: skip
def test_answer_of_another_tier_is_refused(
    ccall: Any, router: Any, answer: tuple[str, str | None]
) -> None:
    """Evidence: answer. A call that asked for a tier gets an answer whose
    _metadata.security_tier is another tier, or none: SecurityError. An answer served at
    the standard tier must never be handed to a caller who asked for "maximum" (PHI)."""
    asked, served = answer
    router.reset()
    router.push(Scenario.metadata(security_tier=served, always=True))
    outcome = ccall(model=MODEL, messages=messages(), security_tier=asked)
    answered(router, "metadata")
    expect_kind(outcome, "security", f"asked {asked!r}, the answer says {served!r}")


@pytest.mark.req("TIER-9")
@pytest.mark.requires("security_tier")
@given(
    answer=st.one_of(
        cs.valid_tiers().map(lambda tier: (tier, tier)),
        st.tuples(st.none(), st.sampled_from(["standard", "high", "maximum", None])),
    )
)
@example(answer=(None, None))
@example(answer=("maximum", "maximum"))
def test_answer_of_the_asked_tier_is_accepted(
    ccall: Any, router: Any, answer: tuple[str | None, str | None]
) -> None:
    """Evidence: answer. An answer whose _metadata.security_tier is the tier asked for is
    accepted, and without a tier asked any answer's tier is (the positive control of the
    tier check: the server picks when the caller does not)."""
    asked, served = answer
    router.reset()
    router.push(Scenario.metadata(security_tier=served, always=True))
    kwargs = {} if asked is None else {"security_tier": asked}
    outcome = ccall(model=MODEL, messages=messages(), **kwargs)
    answered(router, "metadata")
    expect.ok(outcome, f"the answer (asked {asked!r}, served {served!r}) returned")
