"""The HTTPS rule over every spelling of a URL."""

from __future__ import annotations

import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nomyo_ref import SecurityError
from nomyo_ref.urls import normalise_base_url

hosts = st.sampled_from(["api.nomyo.ai", "localhost", "127.0.0.1", "[::1]", "Router.Example"])
ports = st.none() | st.integers(1, 65535)
paths = st.sampled_from(["", "/", "/nomyo", "/nomyo/", "//"])
spaces = st.sampled_from(["", " ", "  ", "\t", "\n "])


def case_variants(word: str) -> st.SearchStrategy[str]:
    return st.lists(st.booleans(), min_size=len(word), max_size=len(word)).map(
        lambda flags: "".join(c.upper() if f else c for c, f in zip(word, flags, strict=True)))


def url(scheme: str, host: str, port: int | None, path: str) -> str:
    return f"{scheme}://{host}" + (f":{port}" if port is not None else "") + path


@settings(max_examples=200)
@given(scheme=case_variants("https"), host=hosts, port=ports, path=paths, lead=spaces,
       trail=spaces)
def test_https_is_always_allowed_and_normalised(scheme: str, host: str, port: int | None,
                                                path: str, lead: str, trail: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = normalise_base_url(lead + url(scheme, host, port, path) + trail)
    assert result.startswith("https://")
    assert not result.endswith("/")
    assert result == result.strip()
    assert host.lower() in result


@settings(max_examples=200)
@given(scheme=case_variants("http"), host=hosts, port=ports, path=paths, lead=spaces,
       trail=spaces)
def test_http_needs_allow_http_whatever_the_spelling(scheme: str, host: str, port: int | None,
                                                     path: str, lead: str, trail: str) -> None:
    spelled = lead + url(scheme, host, port, path) + trail
    with pytest.raises(SecurityError):
        normalise_base_url(spelled)
    with pytest.warns(UserWarning, match="insecure"):
        result = normalise_base_url(spelled, allow_http=True)
    assert result.startswith("http://")


@pytest.mark.parametrize("bad", [
    "https://evil@host", "https://user:pw@host", "HTTPS://a:b@host:443/", "https://@host",
    "http://https://x", "https://https://x", "https://", "https:///path", "https://:443",
    "ftp://host", "ws://host", "file:///etc/passwd", "host:443", "//host", "", "   ",
    "https://host:99999", "https://host:0", "https://host:abc", "https://ho st",
    "https://host?x=1", "https://host#frag", "https://host\\@evil", "https://hóst",
    "javascript://host", "https:/host", "httpss://host", 5, None,
])
def test_malformed_urls_are_value_errors(bad: object) -> None:
    with pytest.raises(ValueError, match="URL") as info:
        normalise_base_url(bad, allow_http=True)  # type: ignore[arg-type]
    assert not isinstance(info.value, SecurityError)


@pytest.mark.parametrize("bad", ["http://evil@host", "HTTP://host", " http://host ",
                                 "Http://https://x"])
def test_plain_http_is_a_security_error_even_when_malformed(bad: str) -> None:
    with pytest.raises(SecurityError):
        normalise_base_url(bad)


def test_normal_forms() -> None:
    assert normalise_base_url(" HTTPS://API.nomyo.AI:12434/ ") == "https://api.nomyo.ai:12434"
    assert normalise_base_url("https://h/base/") == "https://h/base"
    assert normalise_base_url("https://[::1]:8443") == "https://[::1]:8443"
