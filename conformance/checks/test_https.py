"""The HTTPS rule and TLS: the server key is only as trustworthy as the channel it came over.

The server's public key is fetched over the channel it protects. Over plain http, or over
TLS that is not verified (chain, host name, version), anyone on the path can hand the client
their own key and read every request. So: http only when the caller explicitly allows it
(and then with a warning), certificates always verified whatever allow_http says, and a URL
that could mean something else (user-info, another scheme) refused before any byte leaves.

TLS checks that need a server the mock router cannot be (a certificate for another name,
only TLS 1.0/1.1, an IPv6 listener) put a TLS front of their own before the plain http
router; what reaches the router is what passed the client's verification.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from conformance import expect
from conformance import strategies as cs
from conformance.checks._client_support import ipv6_loopback, old_tls_servable, tls_front
from conformance.checks._support import (
    MODEL,
    POST_PATH,
    describe_seen,
    expect_kind,
    messages,
    nothing_sent,
    posts,
)
from mock_router import Scenario

TLS_REFUSED = {"connection", "security"}


def _hostport(url: str) -> str:
    return urlsplit(url).netloc


def _teapot() -> Scenario:
    return Scenario.status(418, {"detail": "scripted"})


def _reached_post(router: Any, what: str) -> None:
    """The call got through to its POST on the right path (whatever was answered)."""
    order = [(s.method, s.path) for s in router.seen]
    expect.true(
        bool(order) and order[-1] == ("POST", POST_PATH),
        f"{what}: the key fetch and the POST at the normalised URL",
        order,
    )


@pytest.mark.req("TLS-2", "TLS-8")
@pytest.mark.requires("ca_cert")
@pytest.mark.parametrize("allow_http", [False, True], ids=["allow-http-off", "allow-http-on"])
def test_https_url_is_accepted(
    call: Any, make_tls_config: Any, tls_server: Any, router: Any, allow_http: bool
) -> None:
    """Evidence: request. The https base URL, with allow_http off or on, reaches the key
    endpoint and the POST endpoint (TLS-2) over TLS verified with the given CA bundle: a
    connection failure here means the client did not trust the bundle it was given (TLS-8)."""
    router.push(_teapot())
    config = make_tls_config(allow_http=allow_http)
    outcome = call(model=MODEL, messages=messages(), config=config)
    error = outcome.error
    with expect.clause("TLS-8" if error is not None and error.kind == "connection" else "TLS-2"):
        _reached_post(router, f"{tls_server.url} (allow_http={allow_http}): {outcome}")


@pytest.mark.req("TLS-1")
@pytest.mark.requires("ca_cert")
@given(data=cs.https_url_spellings("HOSTPORT"), allow_http=st.booleans())
@example(data=" HTTPS://HOSTPORT/ ", allow_http=False)
@example(data="https://HOSTPORT//", allow_http=True)
def test_https_spellings_are_normalised_and_work(
    call: Any, make_tls_config: Any, tls_server: Any, router: Any, data: str, allow_http: bool
) -> None:
    """Evidence: request. Every spelling of the https base URL (scheme case, surrounding
    whitespace, trailing slashes) reaches the right endpoints over verified TLS: the client
    normalises the URL before using it."""
    url = data.replace("HOSTPORT", _hostport(tls_server.url))
    router.reset()
    router.push(_teapot())
    config = make_tls_config(base_url=url, allow_http=allow_http)
    outcome = call(model=MODEL, messages=messages(), config=config)
    _reached_post(router, f"{url!r} (allow_http={allow_http}): {outcome}")


@pytest.mark.req("TLS-1")
@pytest.mark.requires("allow_http")
@given(data=cs.http_url_spellings("HOSTPORT"))
def test_http_spellings_work_with_allow_http(
    call: Any, make_config: Any, http_server: Any, router: Any, data: str
) -> None:
    """Evidence: request. With allow_http the http base URL is normalised the same way."""
    url = data.replace("HOSTPORT", _hostport(http_server.url))
    router.reset()
    router.push(_teapot())
    outcome = call(model=MODEL, messages=messages(), config=make_config(base_url=url))
    _reached_post(router, f"{url!r}: {outcome}")


@pytest.mark.req("TLS-3")
@given(data=cs.http_url_spellings("HOSTPORT"))
@example(data="http://HOSTPORT")
def test_http_without_allow_http_sends_nothing(
    call: Any, make_config: Any, http_server: Any, router: Any, data: str
) -> None:
    """Evidence: request, client behaviour. An http base URL without allow_http is
    SecurityError, and NOTHING reaches the server: not the key fetch, not the POST."""
    url = data.replace("HOSTPORT", _hostport(http_server.url))
    router.reset()
    outcome = call(
        model=MODEL, messages=messages(), config=make_config(base_url=url, allow_http=False)
    )
    nothing_sent(router, f"http URL {url!r} without allow_http")
    expect_kind(outcome, "security", f"http URL {url!r}")


@pytest.mark.req("TLS-4")
@pytest.mark.requires("allow_http", "warnings")
def test_allow_http_warns_insecure(call: Any, make_config: Any, router: Any) -> None:
    """Evidence: client behaviour. Using http (allowed) emits a UserWarning saying
    "insecure": a development setting must be loud when it leaks into production."""
    router.push(_teapot())
    outcome = call(model=MODEL, messages=messages(), config=make_config())
    expect.warning(outcome, "insecure")


# -- URLs refused before anything is sent (4.3) -------------------------------------------------

#: (URL, allow_http) rows of the table in 4.3, by the id that refuses them. HOSTPORT is the
#: session's plain http router, so a client that wrongly accepts an http row sends to it.
BAD_URLS: dict[str, list[str]] = {
    "TLS-12": [
        "ftp://HOSTPORT",
        "ws://HOSTPORT",
        "file:///x",
        "h:443",
        "//HOSTPORT",
        "HOSTPORT",
        "httpx://HOSTPORT",
    ],
    "TLS-13": ["https://", "https:///p", "https://:443", "http://", "http:///v1"],
    "TLS-14": [
        "http://user:pw@HOSTPORT",
        "http://user@HOSTPORT",
        "http://api.nomyo.ai@HOSTPORT",
        "https://user:pw@HOSTPORT",
    ],
    "TLS-15": [
        "http://127.0.0.1:0",
        "http://127.0.0.1:65536",
        "http://127.0.0.1:port",
        "http://127.0.0.1:",
        "http://https://HOSTPORT",
    ],
    "TLS-16": ["http://HOSTPORT/?x=1", "http://HOSTPORT/#frag", "http://HOSTPORT/p?a=b#c"],
}


def _refused_before_sending(
    call: Any, make_config: Any, http_server: Any, router: Any, rid: str, data: str
) -> None:
    url = data.replace("HOSTPORT", _hostport(http_server.url))
    router.reset()
    outcome = call(model=MODEL, messages=messages(), config=make_config(base_url=url))
    with expect.clause(rid):
        expect_kind(outcome, "value", f"URL {url!r}")
    if outcome.error is not None and outcome.error.kind == "value":
        with expect.clause("TLS-17"):
            nothing_sent(router, f"URL {url!r} refused with ValueError")


@pytest.mark.req("TLS-12", "TLS-17")
@given(data=st.sampled_from(BAD_URLS["TLS-12"]) | cs.bad_scheme_urls("HOSTPORT"))
@example(data="ftp://HOSTPORT")
def test_other_scheme_refused(
    call: Any, make_config: Any, http_server: Any, router: Any, data: str
) -> None:
    """Evidence: client behaviour, request. A scheme other than http/https, or none:
    ValueError (TLS-12), nothing sent (TLS-17); allow_http is on, so only the URL's shape is
    at fault."""
    if urlsplit(data).scheme in ("http", "https") or data in ("", "https://", "http://"):
        data = "ftp://HOSTPORT"  # the shared strategy also yields host-less http(s) URLs
    _refused_before_sending(call, make_config, http_server, router, "TLS-12", data)


@pytest.mark.req("TLS-13", "TLS-17")
@given(data=st.sampled_from(BAD_URLS["TLS-13"]))
def test_url_without_host_refused(
    call: Any, make_config: Any, http_server: Any, router: Any, data: str
) -> None:
    """Evidence: client behaviour, request. A base URL without a host (empty authority, only
    a port): ValueError (TLS-13), nothing sent (TLS-17)."""
    _refused_before_sending(call, make_config, http_server, router, "TLS-13", data)


@pytest.mark.req("TLS-14", "TLS-17")
@given(data=st.sampled_from(BAD_URLS["TLS-14"]) | cs.userinfo_urls("HOSTPORT"))
@example(data="http://user:pw@HOSTPORT")
def test_userinfo_urls_refused(
    call: Any, make_config: Any, http_server: Any, router: Any, data: str
) -> None:
    """Evidence: client behaviour, request. User-info in the URL (https://api.nomyo.ai@evil/
    points at "evil"): ValueError (TLS-14), nothing sent (TLS-17)."""
    _refused_before_sending(call, make_config, http_server, router, "TLS-14", data)


@pytest.mark.req("TLS-15", "TLS-17")
@given(data=st.sampled_from(BAD_URLS["TLS-15"]))
@example(data="http://127.0.0.1:65536")
def test_bad_port_refused(
    call: Any, make_config: Any, http_server: Any, router: Any, data: str
) -> None:
    """Evidence: client behaviour, request. A port that is not a number from 1 to 65535, or
    a ':' with nothing after it: ValueError (TLS-15), nothing sent (TLS-17)."""
    _refused_before_sending(call, make_config, http_server, router, "TLS-15", data)


@pytest.mark.req("TLS-16", "TLS-17")
@given(data=st.sampled_from(BAD_URLS["TLS-16"]))
@example(data="http://HOSTPORT/?x=1")
def test_query_or_fragment_refused(
    call: Any, make_config: Any, http_server: Any, router: Any, data: str
) -> None:
    """Evidence: client behaviour, request. A base URL with a query or a fragment:
    ValueError (TLS-16), nothing sent (TLS-17): the endpoint paths would land inside it."""
    _refused_before_sending(call, make_config, http_server, router, "TLS-16", data)


# -- certificate verification (4.4) -----------------------------------------------------------


@pytest.mark.req("TLS-18", "TLS-20")
def test_untrusted_certificate_refused(call: Any, make_tls_config: Any, router: Any) -> None:
    """Evidence: request, client behaviour. A certificate the client was not told to trust
    (the suite's throw-away CA is not in the system store): nothing gets through the
    handshake, the key fetch included (TLS-18), no POST, and the call fails with a connection
    or security error (TLS-20)."""
    outcome = call(model=MODEL, messages=messages(), config=make_tls_config(ca_cert=None))
    with expect.clause("TLS-18"):
        nothing_sent(router, "the certificate is not trusted")
    with expect.clause("TLS-20"):
        expect.true(not posts(router), "no POST", describe_seen(router))
        expect_kind(outcome, TLS_REFUSED, "untrusted certificate")


@pytest.mark.req("TLS-9", "TLS-18")
@pytest.mark.requires("allow_http")
@pytest.mark.parametrize("scheme", ["https", "HTTPS"])
def test_allow_http_does_not_weaken_https(
    call: Any, make_tls_config: Any, tls_server: Any, router: Any, scheme: str
) -> None:
    """Evidence: request. allow_http=True permits the http scheme and changes nothing about
    https: an untrusted certificate is refused for https://... and HTTPS://... alike, key
    fetch included (TLS-18); a client that verifies without allow_http but not with it turns
    allow_http into an option that disables verification (TLS-9)."""
    url = scheme + "://" + _hostport(tls_server.url)
    router.reset()
    call(model=MODEL, messages=messages(), config=make_tls_config(base_url=url, ca_cert=None))
    verified_without = not router.seen
    router.reset()
    config = make_tls_config(base_url=url, ca_cert=None, allow_http=True)
    call(model=MODEL, messages=messages(), config=config)
    passed = describe_seen(router)
    with expect.clause("TLS-18"):
        nothing_sent(router, f"untrusted certificate, {url!r} with allow_http=True")
    if not verified_without:
        expect.blocked("TLS-18", f"{url!r} is not verified even without allow_http")
    with expect.clause("TLS-9"):
        expect.true(
            not router.seen,
            "allow_http not to switch certificate verification off",
            f"verified without allow_http, but with it {passed} got through",
        )


#: Variables that disable verification in some runtime (4.4, TLS-9).
INSECURE_ENVIRONMENT = {
    "PYTHONHTTPSVERIFY": "0",
    "CURL_CA_BUNDLE": "",
    "REQUESTS_CA_BUNDLE": "",
    "NODE_TLS_REJECT_UNAUTHORIZED": "0",
    "SSL_NO_VERIFY": "1",
    "HTTPX_SSL_VERIFY": "0",
}


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.mark.req("TLS-9")
def test_no_environment_variable_disables_verification(
    impl: Any, call: Any, make_tls_config: Any, router: Any
) -> None:
    """Evidence: request. With the variables that switch verification off elsewhere set
    (PYTHONHTTPSVERIFY=0, an empty CURL_CA_BUNDLE, NODE_TLS_REJECT_UNAUTHORIZED=0, ...), an
    untrusted certificate is still refused. In-process only: a testee's environment is fixed
    when the suite starts it."""
    if getattr(impl, "workdir", None) is not None:
        expect.not_applicable("a cmd: testee's environment is fixed when it starts")
    with _environment(INSECURE_ENVIRONMENT):
        call(model=MODEL, messages=messages(), config=make_tls_config(ca_cert=None))
    nothing_sent(router, "an untrusted certificate with 'insecure' variables set")


@pytest.mark.req("TLS-8")
@pytest.mark.requires("ca_cert")
def test_only_the_given_ca_is_trusted(
    call: Any, make_tls_config: Any, router: Any, tmp_path: Any
) -> None:
    """Evidence: request, client behaviour. With a CA bundle that did not sign the server's
    certificate the handshake fails: the client trusts exactly the bundle it was given."""
    import trustme

    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    outcome = call(model=MODEL, messages=messages(), config=make_tls_config(ca_cert=str(other)))
    nothing_sent(router, "the certificate is signed by another CA")
    expect_kind(outcome, TLS_REFUSED, "certificate from another CA")


@pytest.mark.req("TLS-19")
@pytest.mark.requires("ca_cert")
@pytest.mark.parametrize("allow_http", [False, True], ids=["https", "HTTPS-allow-http"])
def test_certificate_for_another_name_refused(
    call: Any, make_config: Any, http_server: Any, router: Any, allow_http: bool
) -> None:
    """Evidence: request, client behaviour. A certificate from the trusted CA, but for
    another host name than the URL's (127.0.0.1): refused, nothing reaches the router. Also
    spelled HTTPS:// with allow_http=True (a client that treats that spelling as "not https"
    may skip verification altogether)."""
    with tls_front(http_server.url, names=("other.example",)) as front:
        url = front.url if not allow_http else front.url.replace("https://", "HTTPS://")
        config = make_config(base_url=url, ca_cert=front.ca_path, allow_http=allow_http)
        outcome = call(model=MODEL, messages=messages(), config=config)
    nothing_sent(router, "the certificate names another host")
    expect_kind(outcome, TLS_REFUSED, "certificate for another name")


@pytest.mark.req("TLS-21")
@pytest.mark.requires("ca_cert")
def test_ipv6_literal_host_accepted(
    call: Any, make_config: Any, http_server: Any, router: Any
) -> None:
    """Evidence: request. https://[::1]:port (a bracketed IPv6 literal, with a certificate
    for that address) is accepted and used: the key fetch and the POST arrive."""
    if not ipv6_loopback():
        expect.not_applicable("::1 cannot be bound on this machine")
    router.push(_teapot())
    with tls_front(http_server.url, names=("::1",), bind="::1") as front:
        config = make_config(base_url=front.url, ca_cert=front.ca_path, allow_http=False)
        outcome = call(model=MODEL, messages=messages(), config=config)
    _reached_post(router, f"{front.url}: {outcome}")


@pytest.mark.req("TLS-10")
@pytest.mark.requires("ca_cert")
def test_tls_older_than_1_2_refused(
    call: Any, make_config: Any, http_server: Any, router: Any
) -> None:
    """Evidence: request, client behaviour. A server offering only TLS 1.0 and 1.1 (with a
    certificate the client trusts) is refused: nothing reaches the router (SHOULD)."""
    with tls_front(http_server.url, old_versions_only=True) as front:
        why = old_tls_servable(front)
        if why is not None:
            expect.not_applicable(why)
        config = make_config(base_url=front.url, ca_cert=front.ca_path, allow_http=False)
        outcome = call(model=MODEL, messages=messages(), config=config)
        versions = list(front.handshakes)
    nothing_sent(router, f"a server speaking only TLS 1.0/1.1 (handshakes {versions})")
    expect_kind(outcome, TLS_REFUSED, "TLS below 1.2")


@pytest.mark.req("RTY-16")
@pytest.mark.requires("max_retries")
def test_failed_verification_is_not_retried(
    call: Any, make_config: Any, http_server: Any, router: Any
) -> None:
    """Evidence: client behaviour. A certificate that fails verification is not a transient
    network failure: with max_retries=2 the client connects once, not three times
    (SHOULD NOT retry)."""
    with tls_front(http_server.url) as front:
        config = make_config(base_url=front.url, ca_cert=None, allow_http=False, max_retries=2)
        call(model=MODEL, messages=messages(), config=config)
        accepted = front.accepted
    if router.seen:
        expect.blocked("TLS-18", f"the untrusted certificate was accepted: {describe_seen(router)}")
    expect.equal(accepted, 1, "connections to a server whose certificate fails verification")
