"""Server key discovery: fetched before the first POST, checked, cached, pinned, rotated.

The risks: a client that POSTs to a key it did not check (weak, not RSA, not the pinned one)
encrypts to whoever answered the key fetch; one that re-fetches before every call multiplies
the chances for that; one that cannot follow a key rotation fails every call after it.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given
from hypothesis import strategies as st

from conformance import expect
from conformance.checks._support import (
    KEY_PATH,
    MODEL,
    client,
    expect_kind,
    key_fetches,
    kind_for_status,
    messages,
    no_post,
    posts,
)
from mock_router import Scenario

_SPKI = serialization.PublicFormat.SubjectPublicKeyInfo


@functools.cache
def _bad_server_keys() -> dict[str, str]:
    """Server keys a client must refuse, made once per process (1024-bit RSA is cheap)."""
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505
    curve = ec.generate_private_key(ec.SECP256R1())
    return {
        "rsa-1024": weak.public_key().public_bytes(serialization.Encoding.PEM, _SPKI).decode(),
        "ec-p256": curve.public_key().public_bytes(serialization.Encoding.PEM, _SPKI).decode(),
        "not-pem": "this is not a key",
        "empty": "",
    }


@functools.cache
def _rotation_key() -> rsa.RSAPrivateKey:
    """The key the router rotates to (2048 bits: rotation checks need no 4096-bit key)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@contextlib.contextmanager
def _rotation(router: Any) -> Iterator[Any]:
    """Yield a function that rotates the router's key; the original key is restored after."""
    original = router.server_key
    try:
        yield lambda: router.rotate_key(_rotation_key())
    finally:
        router.rotate_key(original)


@pytest.mark.req("DISC-1", "HDR-1", "HDR-10")
def test_key_fetched_before_first_post_without_credentials(
    impl: Any, call: Any, make_config: Any, router: Any
) -> None:
    """GET /pki/public_key comes before the first POST, and carries no Authorization header:
    the key endpoint is public, and the API key must go only where it is needed."""
    key = "sk-disc-1" if "api_key" in impl.capabilities else None
    expect.ok(call(model=MODEL, messages=messages(), config=make_config(api_key=key)))
    order = [(s.method, s.path) for s in router.seen]
    expect.equal(order[0], ("GET", KEY_PATH), "first request")
    expect.equal(order[-1], ("POST", "/v1/chat/secure_completion"), "last request")
    for fetch in key_fetches(router):
        expect.true(
            "authorization" not in fetch.headers,
            "no Authorization on the key fetch",
            fetch.headers.get("authorization"),
        )


@pytest.mark.req("DISC-3")
@given(which=st.sampled_from(["rsa-1024", "ec-p256", "not-pem", "empty"]))
def test_bad_server_key_refused(call: Any, router: Any, which: str) -> None:
    """A server key that is not parseable PEM SPKI, not RSA, or under 2048 bits: SecurityError
    and no POST (encrypting to a weak key is as good as sending plaintext)."""
    router.reset()
    router.push(
        Scenario.status(
            200, _bad_server_keys()[which], path=KEY_PATH, content_type="application/x-pem-file"
        )
    )
    outcome = call(model=MODEL, messages=messages())
    no_post(router, f"server key {which}")
    expect_kind(outcome, "security", f"server key {which}")


@pytest.mark.req("DISC-4")
@given(status=st.sampled_from([401, 404, 503]))
def test_key_fetch_error_status(call: Any, router: Any, status: int) -> None:
    """A non-200 key fetch raises the exception of the status table; nothing is POSTed."""
    router.reset()
    router.push(Scenario.status(status, {"detail": "no key"}, path=KEY_PATH, times=3))
    outcome = call(model=MODEL, messages=messages())
    no_post(router, f"key fetch answered {status}")
    error = expect_kind(outcome, kind_for_status(status), f"key fetch {status}")
    expect.equal(error.status_code, status, "status_code")


@pytest.mark.req("DISC-5")
def test_key_fetch_network_failure(call: Any, router: Any) -> None:
    """A dropped key fetch is APIConnectionError; nothing is POSTed."""
    router.push(Scenario.drop(path=KEY_PATH, times=3))
    outcome = call(model=MODEL, messages=messages())
    no_post(router, "the key fetch failed")
    expect_kind(outcome, "connection", "dropped key fetch")


@pytest.mark.req("DISC-6")
@pytest.mark.requires("client_reuse")
def test_key_is_cached(impl: Any, make_config: Any, router: Any) -> None:
    """Three calls on one client fetch the key once: each extra fetch is another chance for
    an attacker on the path to substitute the key."""
    config = make_config()
    with client(impl, config) as handle:
        for _ in range(3):
            expect.ok(impl.create(config, MODEL, messages(), {}, client=handle))
    expect.equal(len(key_fetches(router)), 1, "key fetches over 3 calls on one client")


@pytest.mark.req("DISC-7")
@pytest.mark.requires("client_reuse")
def test_rotation_is_followed(impl: Any, make_config: Any, router: Any) -> None:
    """After the server rotates its key, the next call gets 400, re-fetches the key once,
    re-encrypts to the new key and succeeds: a rotation is not an outage."""
    config = make_config()
    with _rotation(router) as rotate, client(impl, config) as handle:
        expect.ok(impl.create(config, MODEL, messages(), {}, client=handle), "the first call")
        rotate()
        router.reset()
        outcome = impl.create(config, MODEL, messages(), {}, client=handle)
        expect.ok(outcome, "a completion after the key rotation")
        statuses = [(s.method, s.status) for s in router.seen]
        expect.true(
            statuses
            in ([("POST", 400), ("GET", 200), ("POST", 200)], [("GET", 200), ("POST", 200)]),
            "one refused POST, one key fetch and one resend (or a fetch that already had the "
            "new key)",
            statuses,
        )


@pytest.mark.req("DISC-8", "RTY-4")
def test_400_with_unchanged_key_is_invalid_request(call: Any, router: Any) -> None:
    """A 400 while the key did not change is InvalidRequestError after at most one key
    re-fetch, with no second POST."""
    router.push(Scenario.status(400, {"detail": "bad request"}, times=2))
    expect_kind(call(model=MODEL, messages=messages()), "invalid_request")
    expect.equal(len(posts(router)), 1, "POSTs")
    expect.true(len(key_fetches(router)) <= 2, "at most one key re-fetch", len(key_fetches(router)))


@pytest.mark.req("DISC-8")
@pytest.mark.requires("client_reuse")
def test_resend_after_rotation_refused_too(impl: Any, make_config: Any, router: Any) -> None:
    """If the resend after a rotation is refused as well, the client stops: InvalidRequestError
    after exactly two POSTs (no loop)."""
    config = make_config()
    with _rotation(router) as rotate, client(impl, config) as handle:
        expect.ok(impl.create(config, MODEL, messages(), {}, client=handle), "the first call")
        rotate()
        router.reset()
        router.push(Scenario.status(400, {"detail": "still bad"}, times=3))
        outcome = impl.create(config, MODEL, messages(), {}, client=handle)
        expect_kind(outcome, "invalid_request", "the refused resend")
        expect.true(
            len(posts(router)) <= 2,
            "at most two POSTs (first try and one resend)",
            len(posts(router)),
        )


def _pin_spellings(fingerprint: str) -> list[str]:
    coloned = ":".join(fingerprint[i : i + 2] for i in range(0, len(fingerprint), 2))
    return [fingerprint, fingerprint.upper(), coloned, coloned.upper()]


@pytest.mark.req("DISC-10", "KEY-13", "KEY-14")
@pytest.mark.requires("pinning")
@pytest.mark.parametrize("spelling", range(4), ids=["lower", "upper", "colons", "colons-upper"])
def test_right_pin_works(call: Any, make_config: Any, router: Any, spelling: int) -> None:
    """The pinned fingerprint (SHA-256 of the SPKI DER), in any accepted spelling, lets the
    call through."""
    pin = _pin_spellings(router.fingerprint)[spelling]
    outcome = call(model=MODEL, messages=messages(), config=make_config(server_key_sha256=pin))
    expect.ok(outcome, f"a completion with pin {pin}")


@pytest.mark.req("DISC-10")
@pytest.mark.requires("pinning")
def test_wrong_pin_refused(call: Any, make_config: Any, router: Any) -> None:
    """A fetched key that does not match the pin is SecurityError, and nothing is POSTed."""
    wrong = "00" * 32
    outcome = call(model=MODEL, messages=messages(), config=make_config(server_key_sha256=wrong))
    no_post(router, "the server key does not match the pin")
    expect_kind(outcome, "security", "wrong pin")


@pytest.mark.req("DISC-11")
@pytest.mark.requires("pinning", "client_reuse")
def test_pin_checked_on_refetch(impl: Any, make_config: Any, router: Any) -> None:
    """The pin holds through a rotation: the re-fetched key does not match, so the call ends
    in SecurityError and the request is not re-sent to the new key."""
    config = make_config(server_key_sha256=router.fingerprint)
    with _rotation(router) as rotate, client(impl, config) as handle:
        expect.ok(impl.create(config, MODEL, messages(), {}, client=handle), "the first call")
        rotate()
        outcome = impl.create(config, MODEL, messages(), {}, client=handle)
        expect_kind(outcome, "security", "a rotated key that does not match the pin")
        expect.equal(len(posts(router)), 2, "POSTs (no resend to the unpinned key)")
