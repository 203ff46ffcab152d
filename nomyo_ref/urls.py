"""The HTTPS rule: normalise a base URL and decide whether it may be used at all.

Checked once, when a client is built, so a refused URL can never reach the network: not the
key fetch, not the POST. The rule is applied to the *parsed* URL, never to a string prefix, so
spellings like ``"HTTP://host"``, ``" http://host "``, ``"https://evil@host"`` or
``"http://https://host"`` cannot slip through.
"""

from __future__ import annotations

import warnings
from urllib.parse import urlsplit, urlunsplit

from .errors import SecurityError

_ALLOWED_SCHEMES = ("https", "http")


def normalise_base_url(url: str, *, allow_http: bool = False) -> str:
    """Return the canonical form of ``url`` (lower-case scheme and host, no trailing ``/``).

    Raises:
        SecurityError: the scheme is ``http`` and ``allow_http`` is False.
        ValueError: not a string, another scheme, no host, user-info, a bad port, a query or
            fragment, or whitespace/control characters inside the URL.

    Emits a ``UserWarning`` (the text says "insecure") when ``http`` is allowed.
    """
    if not isinstance(url, str):
        raise ValueError("base URL must be a string")
    text = url.strip()
    if not text:
        raise ValueError("base URL is empty")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text):
        raise ValueError("base URL contains whitespace or control characters")
    if not text.isascii():
        raise ValueError("base URL must be ASCII (use the IDNA/punycode form of the host)")
    if "://" not in text:
        raise ValueError("base URL needs a scheme: https://host[:port]")
    scheme_text = text.split("://", 1)[0]
    scheme = scheme_text.lower()
    if scheme not in _ALLOWED_SCHEMES:
        raise ValueError("base URL scheme must be https (or http with allow_http=True)")
    if scheme == "http" and not allow_http:
        raise SecurityError(
            "refusing a plain-HTTP base URL: use https://, or allow_http=True for local "
            "development only"
        )
    parts = urlsplit(text)
    netloc = parts.netloc
    if "@" in netloc or "@" in parts.path:
        raise ValueError("base URL must not contain user-info (user:password@)")
    if parts.query or parts.fragment or "?" in text or "#" in text:
        raise ValueError("base URL must not contain a query or a fragment")
    if "\\" in text:
        raise ValueError("base URL must not contain a backslash")
    host = parts.hostname
    if not host or netloc.endswith(":") or netloc.startswith(":"):
        raise ValueError("base URL has no host")
    if "://" in parts.path or (":" in host and not netloc.startswith("[")):
        raise ValueError("base URL is malformed")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("base URL has an invalid port") from None
    if port is not None and not 0 < port < 65536:
        raise ValueError("base URL has an invalid port")
    host_text = f"[{host}]" if ":" in host else host
    new_netloc = host_text if port is None else f"{host_text}:{port}"
    path = parts.path.rstrip("/")
    if scheme == "http":
        warnings.warn(
            "allow_http=True with an http:// URL: this connection is insecure (no TLS; the "
            "server key can be replaced in transit). Use it for local development only.",
            UserWarning,
            stacklevel=3,
        )
    return urlunsplit((scheme, new_netloc, path, "", ""))
