"""The HTTPS rule and TLS: the server key is only as trustworthy as the channel it came over.

The server's public key is fetched over the channel it protects. Over plain http, or over
TLS that is not verified, anyone on the path can hand the client their own key and read every
request. So: http only when the caller explicitly allows it (and then with a warning),
certificates always verified, and a URL that could mean something else (user-info, another
scheme) refused before any byte leaves.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest
from hypothesis import example, given

from conformance import expect
from conformance import strategies as cs
from conformance.checks._support import MODEL, expect_kind, messages, no_post, nothing_sent, posts


def _hostport(url: str) -> str:
    return urlsplit(url).netloc


@pytest.mark.req("TLS-1", "TLS-2", "TLS-8")
@pytest.mark.requires("ca_cert")
@given(data=cs.https_url_spellings("HOSTPORT"))
@example(data="https://HOSTPORT")
@example(data=" HTTPS://HOSTPORT/ ")
def test_https_spellings_are_normalised_and_work(
    call: Any, make_tls_config: Any, tls_server: Any, router: Any, data: str
) -> None:
    """Every spelling of the https base URL (scheme case, surrounding whitespace, trailing
    slashes) reaches the right endpoints over verified TLS, with allow_http off."""
    url = data.replace("HOSTPORT", _hostport(tls_server.url))
    router.reset()
    outcome = call(model=MODEL, messages=messages(), config=make_tls_config(base_url=url))
    expect.ok(outcome, f"a completion via {url!r}")
    expect.equal(
        [(s.method, s.path) for s in router.seen][-1],
        ("POST", "/v1/chat/secure_completion"),
        "last request",
    )


@pytest.mark.req("TLS-1")
@pytest.mark.requires("allow_http")
@given(data=cs.http_url_spellings("HOSTPORT"))
def test_http_spellings_work_with_allow_http(
    call: Any, make_config: Any, http_server: Any, router: Any, data: str
) -> None:
    """With allow_http the http base URL is normalised the same way."""
    url = data.replace("HOSTPORT", _hostport(http_server.url))
    router.reset()
    outcome = call(model=MODEL, messages=messages(), config=make_config(base_url=url))
    expect.ok(outcome, f"a completion via {url!r}")


@pytest.mark.req("TLS-3")
@given(data=cs.http_url_spellings("HOSTPORT"))
@example(data="http://HOSTPORT")
def test_http_without_allow_http_sends_nothing(
    call: Any, make_config: Any, http_server: Any, router: Any, data: str
) -> None:
    """An http base URL without allow_http is SecurityError, and NOTHING reaches the server:
    not the key fetch, not the POST."""
    url = data.replace("HOSTPORT", _hostport(http_server.url))
    router.reset()
    outcome = call(
        model=MODEL, messages=messages(), config=make_config(base_url=url, allow_http=False)
    )
    nothing_sent(router, f"http URL {url!r} without allow_http")
    expect_kind(outcome, "security", f"http URL {url!r}")


@pytest.mark.req("TLS-4")
@pytest.mark.requires("allow_http", "warnings")
def test_allow_http_warns_insecure(call: Any, make_config: Any) -> None:
    """Using http (allowed) emits a UserWarning saying "insecure": a development setting must
    be loud when it leaks into production."""
    outcome = call(model=MODEL, messages=messages(), config=make_config())
    expect.ok(outcome, "a completion")
    expect.warning(outcome, "insecure")


@pytest.mark.req("TLS-5", "ERR-19")
@given(data=cs.bad_scheme_urls("HOSTPORT"))
@example(data="ftp://HOSTPORT")
@example(data="http://HOSTPORT/?x=1")
@example(data="http://HOSTPORT/#frag")
@example(data="http://127.0.0.1:99999")
def test_other_schemes_and_malformed_urls_refused(
    call: Any, make_config: Any, http_server: Any, router: Any, data: str
) -> None:
    """Another scheme, no host, a bad port, a query or a fragment: ValueError, nothing sent
    (allow_http is on, so only the URL's shape is at fault)."""
    url = data.replace("HOSTPORT", _hostport(http_server.url))
    router.reset()
    outcome = call(model=MODEL, messages=messages(), config=make_config(base_url=url))
    nothing_sent(router, f"URL {url!r}")
    expect_kind(outcome, "value", f"URL {url!r}")


@pytest.mark.req("TLS-5", "ERR-19")
@given(data=cs.userinfo_urls("HOSTPORT"))
def test_userinfo_urls_refused(
    call: Any, make_config: Any, http_server: Any, router: Any, data: str
) -> None:
    """User-info in the URL (https://api.nomyo.ai@evil/ points at "evil"): ValueError,
    nothing sent."""
    url = data.replace("HOSTPORT", _hostport(http_server.url))
    router.reset()
    outcome = call(model=MODEL, messages=messages(), config=make_config(base_url=url))
    nothing_sent(router, f"URL {url!r}")
    expect_kind(outcome, "value", f"URL {url!r}")


@pytest.mark.req("TLS-7")
def test_untrusted_certificate_refused(call: Any, make_tls_config: Any, router: Any) -> None:
    """A certificate the client was not told to trust (the suite's throw-away CA is not in the
    system store) is refused: connection or security error, and no POST."""
    outcome = call(model=MODEL, messages=messages(), config=make_tls_config(ca_cert=None))
    no_post(router, "the certificate is not trusted")
    expect_kind(outcome, {"connection", "security"}, "untrusted certificate")


@pytest.mark.req("TLS-8", "TLS-7")
@pytest.mark.requires("ca_cert")
def test_only_the_given_ca_is_trusted(
    call: Any, make_tls_config: Any, router: Any, tmp_path: Any
) -> None:
    """With a CA bundle that did not sign the server's certificate the handshake fails: the
    client trusts exactly the bundle it was given."""
    import trustme

    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    outcome = call(model=MODEL, messages=messages(), config=make_tls_config(ca_cert=str(other)))
    no_post(router, "the certificate is signed by another CA")
    expect_kind(outcome, {"connection", "security"}, "certificate from another CA")
    expect.equal(len(posts(router)), 0, "POSTs")
