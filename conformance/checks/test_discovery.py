"""Server key discovery: fetched before the first POST, checked, cached, pinned, rotated.

The risks: a client that POSTs to a key it did not check (weak, not RSA, not the pinned one)
encrypts to whoever answered the key fetch; one that re-fetches before every call multiplies
the chances for that; one that cannot follow a key rotation fails every call after it, and
one that never drops a key the server stopped using is wedged.

The checks read the router's record: which requests came, in which order, with which
headers and packages, whatever the router answered them. POSTs a check does not need
answered get a scripted 418 (an error no rule of section 5 reacts to), so no completion is
ever required.
"""

from __future__ import annotations

import contextlib
import functools
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from conformance import expect
from conformance.checks._client_support import connection_error, stalled_call
from conformance.checks._support import (
    KEY_PATH,
    MODEL,
    NO_POST,
    b64,
    blocker,
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
_PEM = serialization.Encoding.PEM
_OAEP = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
TEAPOT = 418


def _teapot(times: int = 1) -> Scenario:
    """An answer to a POST that no rule of section 5 reacts to."""
    return Scenario.status(TEAPOT, {"detail": "scripted"}, times=times)


def _spki(key: Any) -> str:
    return key.public_bytes(_PEM, _SPKI).decode()


@functools.cache
def _rsa2048() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@functools.cache
def _bad_server_keys() -> dict[str, str]:
    """DISC-3: keys that are not parseable PEM SPKI, not RSA, or under 2048 bits."""
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505
    curve = ec.generate_private_key(ec.SECP256R1())
    return {
        "rsa-1024": _spki(weak.public_key()),
        "ec-p256": _spki(curve.public_key()),
        "not-pem": "this is not a key",
        "empty": "",
    }


@functools.cache
def _certificate_pem() -> str:
    key = _rsa2048()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "server-key")])
    import datetime as dt

    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(_PEM).decode()


def _non_spki_keys(router: Any) -> dict[str, str]:
    """DISC-14: anything but exactly one PUBLIC KEY block with whitespace around it. Each
    carries the router's own key, so a client accepting it goes on to POST."""
    public = router.server_key.public_key()
    spki = _spki(public)
    pkcs1 = public.public_bytes(_PEM, serialization.PublicFormat.PKCS1).decode()
    return {
        "pkcs1": pkcs1,
        "two-blocks": spki + spki,
        "text-before": "server key follows\n" + spki,
        "text-after": spki + "end of key\n",
        "certificate": _certificate_pem(),
    }


@functools.cache
def _out_of_range_keys() -> dict[str, str]:
    """DISC-24: RSA keys over 16384 bits or with a public exponent other than 65537."""
    small_e = rsa.generate_private_key(public_exponent=3, key_size=2048)
    modulus = secrets.randbits(16392) | (1 << 16391) | 1
    huge = rsa.RSAPublicNumbers(65537, modulus).public_key()
    return {"exponent-3": _spki(small_e.public_key()), "16392-bit": _spki(huge)}


@functools.cache
def _rotation_key() -> rsa.RSAPrivateKey:
    """The key the router rotates to (2048 bits: rotation checks need no 4096-bit key)."""
    return _rsa2048()


@contextlib.contextmanager
def _rotation(router: Any) -> Iterator[Callable[[], str]]:
    """Yield a function that rotates the router's key; the original key is restored after."""
    original = router.server_key
    try:
        yield lambda: router.rotate_key(_rotation_key())
    finally:
        router.rotate_key(original)


def _served_key(router: Any, pem: str) -> Scenario:
    return Scenario.status(200, pem, path=KEY_PATH, content_type="application/x-pem-file")


def _key_refused(call: Any, router: Any, pem: str, what: str) -> None:
    """The fetched key is refused: SecurityError, no POST."""
    router.reset()
    router.push(_served_key(router, pem), _teapot())
    outcome = call(model=MODEL, messages=messages())
    expect.evidence(key_fetches(router), "the key fetch", blocked_by="DISC-1")
    no_post(router, f"server key {what}")
    expect_kind(outcome, "security", f"server key {what}")


@pytest.mark.req("DISC-1", "HDR-10")
def test_key_fetched_before_first_post_without_credentials(
    impl: Any, call: Any, make_config: Any, router: Any
) -> None:
    """Evidence: request. GET /pki/public_key comes before the first POST (DISC-1), and
    carries no Authorization header (HDR-10): the key endpoint is public, and the API key
    must go only where it is needed."""
    key = "sk-disc-1" if "api_key" in impl.capabilities else None
    router.push(_teapot())
    call(model=MODEL, messages=messages(), config=make_config(api_key=key))
    order = [(s.method, s.path) for s in router.seen]
    with expect.clause("DISC-1"):
        expect.evidence(order, "a request")
        expect.equal(order[0], ("GET", KEY_PATH), "first request")
        expect.true(
            ("POST", "/v1/chat/secure_completion") in order, "a POST after the key fetch", order
        )
    with expect.clause("HDR-10"):
        for fetch in key_fetches(router):
            expect.true(
                "authorization" not in fetch.headers,
                "no Authorization on the key fetch",
                "an Authorization header",
            )


@pytest.mark.req("DISC-3")
@pytest.mark.parametrize("which", ["rsa-1024", "ec-p256", "not-pem", "empty"])
def test_bad_server_key_refused(call: Any, router: Any, which: str) -> None:
    """Evidence: request, client behaviour. A server key that is not parseable PEM SPKI, not
    RSA, or under 2048 bits: SecurityError and no POST (encrypting to a weak key is as good
    as sending plaintext)."""
    _key_refused(call, router, _bad_server_keys()[which], which)


@pytest.mark.req("DISC-14")
@pytest.mark.parametrize(
    "which", ["pkcs1", "two-blocks", "text-before", "text-after", "certificate"]
)
def test_server_key_must_be_one_spki_block(call: Any, router: Any, which: str) -> None:
    """Evidence: request, client behaviour. The server key is exactly one PEM block labelled
    PUBLIC KEY: a PKCS#1 'RSA PUBLIC KEY' block (which many PEM loaders accept silently), two
    blocks, text around the block or a certificate is refused like any invalid server key:
    SecurityError, no POST (the blocks hold the router's real key, so a lenient client
    POSTs)."""
    _key_refused(call, router, _non_spki_keys(router)[which], which)


@pytest.mark.req("DISC-24")
@pytest.mark.parametrize("which", ["exponent-3", "16392-bit"])
def test_server_key_size_and_exponent_bounded(call: Any, router: Any, which: str) -> None:
    """Evidence: request, client behaviour. An RSA server key over 16384 bits, or with a
    public exponent other than 65537, is refused: SecurityError, no POST."""
    _key_refused(call, router, _out_of_range_keys()[which], which)


@pytest.mark.req("DISC-4")
@pytest.mark.parametrize("status", [401, 404, 503])
def test_key_fetch_error_status(call: Any, router: Any, status: int) -> None:
    """Evidence: request, answer. A non-200 key fetch raises the exception of the status
    table with its status_code; nothing is POSTed."""
    router.push(Scenario.status(status, {"detail": "no key"}, path=KEY_PATH, times=3))
    outcome = call(model=MODEL, messages=messages())
    no_post(router, f"key fetch answered {status}")
    error = expect_kind(outcome, kind_for_status(status), f"key fetch {status}")
    expect.equal(error.status_code, status, "status_code")


@pytest.mark.req("DISC-5")
def test_key_fetch_network_failure(impl: Any, call: Any, router: Any) -> None:
    """Evidence: request, client behaviour. A dropped key fetch is APIConnectionError (the
    port's own class); nothing is POSTed."""
    router.push(Scenario.drop(path=KEY_PATH, times=3))
    outcome = call(model=MODEL, messages=messages())
    no_post(router, "the key fetch failed")
    connection_error(impl, outcome, "dropped key fetch")


@pytest.mark.req("DISC-5")
@pytest.mark.requires("timeout")
def test_stalled_key_fetch_times_out(impl: Any, call: Any, make_config: Any, router: Any) -> None:
    """Evidence: client behaviour. The key fetch gets no answer at all: with timeout=1 s
    the call ends in APIConnectionError within 5 s."""
    stalled_call(impl, call, make_config, router.public_key_pem, "key")


@pytest.mark.req("DISC-6")
@pytest.mark.requires("client_reuse")
def test_key_is_cached(impl: Any, make_config: Any, router: Any) -> None:
    """Evidence: request. Three calls on one client fetch the key once (their POSTs get a
    scripted 418, so no completion is needed): each extra fetch is another chance for an
    attacker on the path to substitute the key."""
    config = make_config()
    router.push(_teapot(times=3))
    with client(impl, config) as handle:
        for _ in range(3):
            impl.create(config, MODEL, messages(), {}, client=handle)
    expect.evidence(posts(router), "the calls' POSTs", blocked_by=NO_POST)
    expect.equal(len(key_fetches(router)), 1, "key fetches over 3 calls on one client")


@pytest.mark.req("DISC-12")
@pytest.mark.requires("client_reuse")
@pytest.mark.parametrize("failure", ["503", "drop"])
def test_key_dropped_after_exhausted_retries(
    impl: Any, make_config: Any, router: Any, failure: str
) -> None:
    """Evidence: request. A call whose attempts all failed with a 5xx (or a dropped
    connection) makes the client drop its cached key: the next call on the same client
    fetches it again (SHOULD), so a client is never wedged on a key the server stopped
    using without answering 400."""
    config = make_config(max_retries=0)
    failed = Scenario.status(503, {"detail": "down"}) if failure == "503" else Scenario.drop()
    router.push(failed, _teapot())
    with client(impl, config) as handle:
        impl.create(config, MODEL, messages(), {}, client=handle)
        impl.create(config, MODEL, messages(), {}, client=handle)
    order = [s.method for s in router.seen]
    if order.count("POST") < 2:
        expect.blocked(NO_POST, f"requests {order}: not two calls' POSTs")
    expect.equal(order, ["GET", "POST", "GET", "POST"], "requests of the two calls")


# -- rotation ----------------------------------------------------------------------------------


def _opens_under(key: rsa.RSAPrivateKey, seen: Any) -> bool:
    """Whether the recorded POST's AES key unwraps with `key` (OAEP-SHA-256)."""
    package = seen.package if isinstance(seen.package, dict) else {}
    try:
        key.decrypt(b64(package["encrypted_aes_key"]), _OAEP)
    except (KeyError, TypeError, ValueError):
        return False
    return True


def _nonce(seen: Any) -> Any:
    package = seen.package if isinstance(seen.package, dict) else {}
    inner = package.get("encrypted_payload")
    return inner.get("nonce") if isinstance(inner, dict) else None


ROTATION_HEADERS = ("x-payload-id", "x-security-tier", "authorization", "x-public-key")


@pytest.mark.req("DISC-15", "DISC-16", "DISC-17", "DISC-18", "DISC-19")
@pytest.mark.requires("client_reuse")
def test_rotation_is_followed(impl: Any, make_config: Any, router: Any) -> None:
    """Evidence: request. After the server rotates its key, the next POST gets 400; the
    client fetches the key once more (DISC-15), sends exactly one resend (DISC-18): a new
    package under the new key with a fresh AES key and nonce (DISC-17), with the same
    X-Payload-ID, X-Security-Tier, Authorization and X-Public-Key (DISC-19); the call after
    that uses the new key without another fetch (DISC-16). A rotation is not an outage."""
    key = "sk-rotation" if "api_key" in impl.capabilities else None
    tier = {"security_tier": "high"} if "security_tier" in impl.capabilities else {}
    config = make_config(api_key=key)
    with _rotation(router) as rotate, client(impl, config) as handle:
        router.push(_teapot())
        impl.create(config, MODEL, messages(), tier, client=handle)
        if not posts(router):
            expect.blocked(NO_POST, "the first call sent no POST")
        old_key = router.server_key
        rotate()
        router.reset()
        router.push(Scenario.status(400, {"detail": "decryption failed"}), _teapot())
        impl.create(config, MODEL, messages(), tier, client=handle)
        second = router.seen
        router.reset()
        router.push(_teapot())
        impl.create(config, MODEL, messages(), tier, client=handle)
        third = router.seen
    steps = [f"{s.method} {s.status}" for s in second]
    first_post = next((n for n, s in enumerate(second) if s.method == "POST"), None)
    if first_post is None:
        expect.blocked(NO_POST, f"the call after the rotation sent no POST: {steps}")
    after = second[first_post + 1 :]  # a client without a key cache fetched before it too
    with expect.clause("DISC-15"):
        fetches = [s for s in after if s.method == "GET"]
        expect.equal(len(fetches), 1, f"key fetches after the 400 (requests {steps})")
    if not any(s.method == "GET" for s in after):
        expect.blocked("DISC-15", "no key fetch after the 400")
    resends = [s for s in after if s.method == "POST"]
    with expect.clause("DISC-18"):
        expect.equal(len(resends), 1, f"rotation resends (requests {steps})")
    if not resends:
        expect.blocked("DISC-18", "no rotation resend")
    resend, refused = resends[0], second[first_post]
    under_new = _opens_under(_rotation_key(), resend)
    if not under_new and not _opens_under(old_key, resend):
        expect.blocked(blocker(resend), f"the resend's package does not open: {resend.refusal}")
    with expect.clause("DISC-17"):
        expect.true(under_new, "the resend's AES key wrapped to the new server key", "to the old")
        expect.true(
            _member_differs(refused, resend),
            "a fresh AES key and nonce in the resend",
            "encrypted_aes_key or nonce repeated from the refused attempt",
        )
    with expect.clause("DISC-19"):
        for name in ROTATION_HEADERS:
            expect.equal(
                resend.headers.get(name), refused.headers.get(name), f"{name} of the resend"
            )
    with expect.clause("DISC-16"):
        kinds = [f"{s.method} {s.path}" for s in third]
        expect.true(
            bool(third) and all(s.method == "POST" for s in third),
            "the next call's POST without another key fetch",
            kinds,
        )
        expect.true(
            all(_opens_under(_rotation_key(), s) for s in third if s.method == "POST"),
            "the next call encrypted to the new key",
            "encrypted to another key",
        )


def _member_differs(first: Any, second: Any) -> bool:
    one, two = first.package, second.package
    if not (isinstance(one, dict) and isinstance(two, dict)):
        return first.body != second.body
    return one.get("encrypted_aes_key") != two.get("encrypted_aes_key") and _nonce(first) != _nonce(
        second
    )


@pytest.mark.req("DISC-8", "DISC-15", "DISC-18")
def test_400_with_unchanged_key_is_invalid_request(call: Any, router: Any) -> None:
    """Evidence: request, answer. A 400 while the key did not change: at most one key
    re-fetch (DISC-15), no resend (DISC-18), and the InvalidRequestError of that 400
    (DISC-8)."""
    router.push(Scenario.status(400, {"detail": "bad request"}, times=2))
    outcome = call(model=MODEL, messages=messages())
    with expect.clause("DISC-18"):
        expect.equal(len(posts(router)), 1, "POSTs (no resend with an unchanged key)")
    with expect.clause("DISC-15"):
        fetches = len(key_fetches(router))
        expect.true(fetches <= 2, "at most one key re-fetch", f"{fetches} fetches")
    with expect.clause("DISC-8"):
        error = expect_kind(outcome, "invalid_request")
        expect.true("bad request" in error.message, "the 400's detail", error.message)


@pytest.mark.req("DISC-8", "DISC-18")
@pytest.mark.requires("client_reuse")
def test_resend_after_rotation_refused_too(impl: Any, make_config: Any, router: Any) -> None:
    """Evidence: request, answer. If the resend after a rotation is refused as well, the
    client stops after exactly two POSTs (DISC-18: no loop) with the InvalidRequestError of
    the resend's answer (DISC-8: the last 400)."""
    config = make_config()
    with _rotation(router) as rotate, client(impl, config) as handle:
        router.push(_teapot())
        impl.create(config, MODEL, messages(), {}, client=handle)
        rotate()
        router.reset()
        router.push(
            Scenario.status(400, {"detail": "first refusal"}),
            Scenario.status(400, {"detail": "still bad"}, times=3),
        )
        outcome = impl.create(config, MODEL, messages(), {}, client=handle)
        sent = len(posts(router))
    with expect.clause("DISC-18"):
        expect.true(sent <= 2, "at most two POSTs (the first try and one resend)", sent)
    if sent < 2:
        expect.blocked("DISC-15", f"{sent} POST: no resend after the rotation")
    with expect.clause("DISC-8"):
        error = expect_kind(outcome, "invalid_request", "the refused resend")
        expect.true("still bad" in error.message, "the last 400's detail", error.message)


# -- pinning -----------------------------------------------------------------------------------


def _pin_spellings(fingerprint: str) -> list[str]:
    coloned = ":".join(fingerprint[i : i + 2] for i in range(0, len(fingerprint), 2))
    return [fingerprint, fingerprint.upper(), coloned, coloned.upper()]


def _pinning_offered(impl: Any, rid: str) -> None:
    """5.4: a client without pinning is judged by the pinning checks like one whose pin
    never works."""
    if "pinning" not in impl.capabilities:
        raise AssertionError(
            f"expected <pinning of the server key ({rid})>, actual <the implementation offers "
            "no pinning (capability pinning): judged as a pin that never works (5.4)>"
        )


@pytest.mark.req("DISC-9")
def test_pinning_is_offered(impl: Any, call: Any, make_config: Any, router: Any) -> None:
    """Evidence: client behaviour, request. The client offers pinning of the server key by
    fingerprint (SHOULD), and the pin works: a wrong one refuses the key (SecurityError, no
    POST)."""
    _pinning_offered(impl, "DISC-9")
    wrong = "00" * 32
    outcome = call(model=MODEL, messages=messages(), config=make_config(server_key_sha256=wrong))
    no_post(router, "the server key does not match the pin")
    expect_kind(outcome, "security", "wrong pin")


@pytest.mark.req("KEY-13", "KEY-14")
@pytest.mark.requires("pinning")
@pytest.mark.parametrize("spelling", range(4), ids=["lower", "upper", "colons", "colons-upper"])
def test_right_pin_works(call: Any, make_config: Any, router: Any, spelling: int) -> None:
    """Evidence: request. The pinned fingerprint (SHA-256 of the SPKI DER, KEY-13), in any
    accepted spelling (KEY-14), lets the call through to its POST."""
    pin = _pin_spellings(router.fingerprint)[spelling]
    router.push(_teapot())
    outcome = call(model=MODEL, messages=messages(), config=make_config(server_key_sha256=pin))
    with expect.clause("KEY-13" if spelling == 0 else "KEY-14"):
        expect.evidence(posts(router), f"a POST with pin {pin} ({outcome})")


@pytest.mark.req("KEY-14", "ERR-19")
@pytest.mark.requires("pinning")
@pytest.mark.parametrize(
    "pin",
    ["zz" * 32, "00" * 31, "00" * 33, "0" * 63, "", "00-" * 31 + "00", "0x" + "00" * 32],
    ids=["not-hex", "31-bytes", "33-bytes", "odd-length", "empty", "dashes", "0x-prefix"],
)
def test_malformed_pin_refused(call: Any, make_config: Any, router: Any, pin: str) -> None:
    """Evidence: client behaviour, request. A pin that is not 32 bytes of hex (after
    removing ':' separators) is a caller error: ValueError (KEY-14), before anything is
    sent (ERR-19); silently ignoring it would leave the caller unprotected."""
    outcome = call(model=MODEL, messages=messages(), config=make_config(server_key_sha256=pin))
    with expect.clause("KEY-14"):
        expect_kind(outcome, "value", f"pin {pin!r}")
    if outcome.error is not None and outcome.error.kind == "value":
        with expect.clause("ERR-19"):
            expect.true(not router.seen, "nothing sent", [s.path for s in router.seen])


@pytest.mark.req("DISC-10")
def test_wrong_pin_refused(impl: Any, call: Any, make_config: Any, router: Any) -> None:
    """Evidence: request, client behaviour. A fetched key that does not match the pin is
    SecurityError, and nothing is POSTed."""
    _pinning_offered(impl, "DISC-10")
    wrong = "00" * 32
    outcome = call(model=MODEL, messages=messages(), config=make_config(server_key_sha256=wrong))
    expect.evidence(key_fetches(router), "the key fetch", blocked_by="DISC-1")
    no_post(router, "the server key does not match the pin")
    expect_kind(outcome, "security", "wrong pin")


@pytest.mark.req("DISC-11")
@pytest.mark.requires("client_reuse")
def test_pin_checked_on_refetch(impl: Any, make_config: Any, router: Any) -> None:
    """Evidence: request, client behaviour. The pin holds through a rotation: the re-fetched
    key does not match, so the call ends in SecurityError and the request is not re-sent to
    the new key."""
    _pinning_offered(impl, "DISC-11")
    config = make_config(server_key_sha256=router.fingerprint)
    with _rotation(router) as rotate, client(impl, config) as handle:
        router.push(_teapot())
        impl.create(config, MODEL, messages(), {}, client=handle)
        rotate()
        router.reset()
        router.push(Scenario.status(400, {"detail": "decryption failed"}), _teapot())
        outcome = impl.create(config, MODEL, messages(), {}, client=handle)
    if not key_fetches(router):
        expect.blocked("DISC-15", "no key re-fetch after the 400")
    expect.equal(len(posts(router)), 1, "POSTs (no resend to the unpinned key)")
    expect_kind(outcome, "security", "a rotated key that does not match the pin")


@pytest.mark.req("DISC-25")
@pytest.mark.parametrize("match", ["second", "none"])
def test_pin_set_accepted(impl: Any, call: Any, make_config: Any, router: Any, match: str) -> None:
    """Evidence: request, client behaviour. A set of pinned fingerprints (the current key and
    the next one an operator announced) passes a key matching any of them, and refuses a
    key matching none (SHOULD)."""
    _pinning_offered(impl, "DISC-25")
    other = _spki_fingerprint(_rotation_key())
    pins = (other, router.fingerprint) if match == "second" else (other, "11" * 32)
    router.push(_teapot())
    outcome = call(model=MODEL, messages=messages(), config=make_config(server_key_sha256=pins))
    if match == "second":
        expect.evidence(posts(router), f"a POST with the pin set ({outcome})")
    else:
        no_post(router, "the server key matches no pin of the set")
        expect_kind(outcome, "security", "a key matching no pin of the set")


def _spki_fingerprint(key: rsa.RSAPrivateKey) -> str:
    der = key.public_key().public_bytes(serialization.Encoding.DER, _SPKI)
    digest = hashes.Hash(hashes.SHA256())
    digest.update(der)
    return digest.finalize().hex()
