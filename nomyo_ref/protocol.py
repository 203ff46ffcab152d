"""The sans-IO core of protocol v1.0: requests in, bytes out; bytes in, results out.

Pure functions, no sockets, no HTTP library: the I/O shell (``client.py``) moves the bytes.
That is what lets the tests drive every status and every body shape without a server.

* ``build_chat_request`` / ``build_key_request``: method, URL, headers and body of a call.
* ``parse_server_key``: the answer of ``GET /pki/public_key`` (checked, optionally pinned).
* ``open_response``: a 200 body into the completion dict (structure, then crypto, then
  binding and tier), or the documented exception.
* ``error_for_status``: any non-200 answer into the right exception, whatever its body.
* ``encrypt_chat_request``: one attempt of a call, encrypted anew (spec 1.0.1 RTY-15).

JSON from the network is parsed strictly (``parse_json``): unique member names (CHK-18) and
at most ``MAX_JSON_DEPTH`` levels of nesting (CHK-19), so no body can reach the parser's
recursion limit or hide a second value behind a repeated name.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from cryptography.hazmat.primitives.asymmetric import rsa

from . import crypto, keys, secure_memory
from .errors import (
    APIError,
    AuthenticationError,
    ForbiddenError,
    InvalidRequestError,
    RateLimitError,
    SecurityError,
    ServerError,
    ServiceUnavailableError,
)

logger = logging.getLogger("nomyo_ref")

PUBLIC_KEY_PATH = "/pki/public_key"
COMPLETION_PATH = "/v1/chat/secure_completion"
SECURITY_TIERS = ("standard", "high", "maximum")
#: Keys that choose the target or travel as headers; never inside the encrypted payload.
NON_PAYLOAD_KEYS = frozenset({"security_tier", "api_key", "base_url"})
MAX_PLAINTEXT_BYTES = 10 * 1024 * 1024
#: Largest 200 body accepted (CHK-19: over 32 MiB MAY be refused, up to 16 MiB MUST be
#: accepted; a 10 MiB plaintext is ~14 MiB as base64 JSON).
MAX_RESPONSE_BYTES = 32 * 1024 * 1024
#: Deepest JSON nesting accepted in a package or plaintext (CHK-19: deeper than 128 MAY be
#: refused, up to 64 MUST be accepted). ``{}`` is depth 1. Far below the parser's recursion
#: limit, so no body ends in a RecursionError.
MAX_JSON_DEPTH = 128
#: Largest error body whose JSON is parsed (ERR-12/ERR-16, 1 MiB); a longer body is treated
#: as text (ERR-13: its first 1024 characters), so the I/O shell reads one byte more than this.
MAX_ERROR_BYTES = 1024 * 1024
#: How much of the server key answer is read (a 16384-bit key PEM is ~2.8 KiB).
MAX_KEY_BYTES = 64 * 1024
MAX_DETAIL_CHARS = 1024
#: Age after which a cached server key is fetched again (DISC-13), in seconds.
SERVER_KEY_MAX_AGE = 3600.0


_NOT_JSON = object()


# --- strict JSON -----------------------------------------------------------------------------

class _DuplicateMember(ValueError):
    """A JSON object repeats a member name (the message never names it: it may be plaintext)."""


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _DuplicateMember("duplicate member name")
    return obj


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether ``value`` nests containers more than ``limit`` levels (iterative: no recursion
    whatever the depth)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children
                     if isinstance(child, dict | list))
    return False


#: Why ``parse_json`` refused a body (never any of its content).
NOT_JSON = "not UTF-8 JSON"
DUPLICATE_MEMBERS = "duplicate member names"
TOO_DEEP = "nested too deeply"


def parse_json(data: bytes | bytearray, *, unique: bool = True,
               max_depth: int = MAX_JSON_DEPTH) -> tuple[Any, str | None]:
    """``(value, None)`` for UTF-8 JSON text, else ``(None, reason)``; never raises.

    ``unique`` refuses an object that repeats a member name (CHK-18); nesting deeper than
    ``max_depth`` is refused (CHK-19), including what would exhaust the parser's recursion.
    The reason is one of NOT_JSON, DUPLICATE_MEMBERS, TOO_DEEP; nothing of the text is kept
    in an exception (a JSONDecodeError carries the whole document).
    """
    value: Any = _NOT_JSON
    reason = NOT_JSON
    hook = _unique_members if unique else None
    try:
        value = json.loads(data.decode("utf-8"), object_pairs_hook=hook)
    except _DuplicateMember:
        reason = DUPLICATE_MEMBERS
    except RecursionError:
        reason = TOO_DEEP
    except (UnicodeDecodeError, ValueError):
        pass
    if value is _NOT_JSON:
        return None, reason
    # Depth needs at least as many brackets as levels: skip the walk for small documents.
    if (isinstance(value, dict | list)
            and data.count(b"[") + data.count(b"{") > max_depth
            and _deeper_than(value, max_depth)):
        return None, TOO_DEEP
    return value, None


@dataclass(frozen=True)
class HTTPRequest:
    """One HTTP request, ready for any transport."""

    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


# --- validation of what goes into headers ------------------------------------------------

def _visible_ascii(value: str) -> bool:
    return all(0x21 <= ord(ch) <= 0x7E for ch in value)


def check_security_tier(tier: object) -> str | None:
    """None, or one of standard|high|maximum; anything else is a ValueError."""
    if tier is None:
        return None
    if not isinstance(tier, str) or tier not in SECURITY_TIERS:
        raise ValueError("invalid security_tier: must be one of " + ", ".join(SECURITY_TIERS))
    return tier


def check_api_key(api_key: object) -> str | None:
    """None/empty, or a token of visible ASCII (no CR/LF, no spaces): else ValueError.

    The message never repeats the key.
    """
    if api_key is None or api_key == "":
        return None
    if not isinstance(api_key, str):
        raise ValueError("api_key must be a string")
    if not _visible_ascii(api_key):
        raise ValueError("api_key contains characters not allowed in an HTTP header "
                         "(only visible ASCII, no spaces, CR or LF)")
    return api_key


def check_payload_id(payload_id: object) -> str:
    """1..128 visible ASCII characters (what a server accepts as X-Payload-ID)."""
    if not isinstance(payload_id, str) or not 1 <= len(payload_id) <= 128 \
            or not _visible_ascii(payload_id):
        raise ValueError("payload_id must be 1 to 128 visible ASCII characters")
    return payload_id


def new_payload_id() -> str:
    """A fresh random UUIDv4 in its canonical lower-case 36-character form."""
    return str(uuid.uuid4())


# --- the request ---------------------------------------------------------------------------

def build_payload(model: Any, messages: Any, params: Mapping[str, Any]) -> dict[str, Any]:
    """The request plaintext object: model, messages and every other parameter unchanged.

    ValueError for a model that is not a non-empty string, messages that are not a list, or
    one of the keys that must never be encrypted (security_tier, api_key, base_url: the
    caller consumes those first).
    """
    if not isinstance(model, str) or not model:
        raise ValueError("model must be a non-empty string")
    if not isinstance(messages, list):
        raise ValueError("messages must be a list of message objects")
    leaked = NON_PAYLOAD_KEYS.intersection(params)
    if leaked:
        raise ValueError(f"{', '.join(sorted(leaked))} must not be part of the payload")
    return {"model": model, "messages": messages, **params}


def serialise_payload(payload: Any) -> bytearray:
    """UTF-8 JSON of the payload in a bytearray (so it can be zeroed), size-checked.

    ValueError for a non-object, something JSON cannot express (NaN, lone surrogates, other
    types), a forbidden key, or more than 10 MiB.
    """
    if not isinstance(payload, dict):
        raise ValueError("payload must be a dict (a JSON object)")
    if not payload:
        raise ValueError("payload must not be empty")
    leaked = NON_PAYLOAD_KEYS.intersection(k for k in payload if isinstance(k, str))
    if leaked:
        raise ValueError(f"payload must not contain {', '.join(sorted(leaked))}: these travel "
                         "as headers or configure the client")
    if "stream" in payload and payload["stream"] is not False:
        raise ValueError("stream must be False or absent: encrypted inference does not stream")
    data: bytearray | None = None
    failure = ""
    try:
        text = json.dumps(payload, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        data = bytearray(text.encode("utf-8"))
        del text
    except (TypeError, ValueError, UnicodeEncodeError, RecursionError) as exc:
        failure = type(exc).__name__
    if data is None:
        # Raised outside the except block: the chain must not carry payload text (LOG-3).
        raise ValueError(f"payload cannot be serialised as JSON ({failure})")
    if len(data) > MAX_PLAINTEXT_BYTES:
        size = len(data)
        secure_memory.zero(data)
        raise ValueError(f"payload too large: {size} bytes (max {MAX_PLAINTEXT_BYTES})")
    return data


def build_key_request(base_url: str) -> HTTPRequest:
    """``GET {base}/pki/public_key``."""
    return HTTPRequest("GET", base_url + PUBLIC_KEY_PATH, {"Accept": "application/x-pem-file, "
                                                           "text/plain, */*"})


@functools.lru_cache(maxsize=8)
def encode_public_key_header(client_public_pem: str) -> str:
    """The percent-encoded PEM for ``X-Public-Key`` (cached: a client sends the same key on
    every call, and quoting ~800 characters is measurable on the hot path)."""
    return quote(client_public_pem)


def build_chat_request(
    base_url: str,
    package: bytes,
    payload_id: str,
    client_public_pem: str,
    api_key: str | None = None,
    security_tier: str | None = None,
) -> HTTPRequest:
    """``POST {base}/v1/chat/secure_completion`` with the protocol's headers."""
    headers = {
        "X-Payload-ID": check_payload_id(payload_id),
        "X-Public-Key": encode_public_key_header(client_public_pem),
        "Content-Type": "application/octet-stream",
    }
    token = check_api_key(api_key)
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    tier = check_security_tier(security_tier)
    if tier is not None:
        headers["X-Security-Tier"] = tier
    return HTTPRequest("POST", base_url + COMPLETION_PATH, headers, bytes(package))


def encrypt_chat_request(
    base_url: str,
    plaintext: bytes | bytearray,
    server_key: rsa.RSAPublicKey,
    payload_id: str,
    client_public_pem: str,
    api_key: str | None = None,
    security_tier: str | None = None,
    *,
    secure: bool = True,
) -> HTTPRequest:
    """One attempt of a call: ``plaintext`` encrypted anew (fresh AES key and nonce) under
    ``server_key``, with the call's headers.

    Called once per attempt (every retry and the rotation resend, RTY-15), so a server's
    replay cache never sees a legitimate retry as a replay; the headers depend only on the
    call, so every attempt carries the same ones (TIER-5).
    """
    package = crypto.encrypt_package(plaintext, server_key, secure=secure)
    return build_chat_request(base_url, package, payload_id, client_public_pem, api_key,
                              security_tier)


# --- the server key ------------------------------------------------------------------------

_PEM_LABEL = re.compile(r"-----BEGIN ([^\r\n]*?)-----")
#: Largest server key accepted (DISC-24): bigger keys only cost the client time.
MAX_SERVER_KEY_BITS = 16384


def parse_server_key(
    status: int, body: bytes, pinned_sha256: str | tuple[str, ...] | None = None
) -> tuple[rsa.RSAPublicKey, str]:
    """The checked server key and its PEM text from a key-endpoint answer.

    Non-200 → the status's exception; not exactly one PEM SubjectPublicKeyInfo block
    ("BEGIN PUBLIC KEY", only whitespace around it; PKCS#1 "BEGIN RSA PUBLIC KEY" is refused,
    DISC-14) of an RSA key of 2048 to 16384 bits with exponent 65537 (DISC-24), or a
    fingerprint not matching the pin → SecurityError (nothing may be encrypted to it).
    """
    if status != 200:
        raise error_for_status(status, body)
    if len(body) > MAX_KEY_BYTES:
        raise SecurityError("server public key answer is too large")
    problem: str | None = None
    key: rsa.RSAPublicKey | None = None
    try:
        text = body.decode("utf-8").strip()
        if (_PEM_LABEL.findall(text) != ["PUBLIC KEY"]
                or not text.startswith("-----BEGIN PUBLIC KEY-----")
                or not text.endswith("-----END PUBLIC KEY-----")):
            # DISC-14: exactly one SubjectPublicKeyInfo block and nothing around it; PKCS#1
            # "RSA PUBLIC KEY" (which ``cryptography`` loads) is refused like any unusable key.
            problem = ("server public key is not one PEM SubjectPublicKeyInfo block "
                       "(BEGIN PUBLIC KEY)")
        else:
            key = keys.parse_public_pem(text, "server public key")
            if key.key_size > MAX_SERVER_KEY_BITS \
                    or key.public_numbers().e != keys.PUBLIC_EXPONENT:
                key, problem = None, (f"server public key must be an RSA key of at most "
                                      f"{MAX_SERVER_KEY_BITS} bits with exponent "
                                      f"{keys.PUBLIC_EXPONENT}")
    except UnicodeDecodeError:
        problem = "server public key is not UTF-8 PEM text"
    except ValueError as exc:
        problem = str(exc)
    if key is None:
        raise SecurityError(problem or "server public key is unusable")
    if pinned_sha256 is not None:
        actual = keys.fingerprint(key)
        pins = (pinned_sha256,) if isinstance(pinned_sha256, str) else pinned_sha256
        if actual not in pins:
            raise SecurityError(
                f"server public key does not match the pinned fingerprint (got {actual})"
            )
    return key, keys.public_pem(key)


# --- the 200 answer ------------------------------------------------------------------------

def parse_package(body: bytes | bytearray) -> tuple[dict[str, Any], crypto.SealedFields]:
    """Structure checks of a response package, before any decryption (all ValueError).

    Version and algorithm are checked here so a downgraded package is refused before its
    fields are even decoded.
    """
    if not isinstance(body, bytes | bytearray):
        raise ValueError("encrypted response must be bytes")
    if not body:
        raise ValueError("empty response body")
    if len(body) > MAX_RESPONSE_BYTES:
        raise ValueError("response body too large")
    package, problem = parse_json(body)
    if problem == DUPLICATE_MEMBERS:
        raise ValueError("response package has duplicate JSON member names")
    if problem == TOO_DEEP:
        raise ValueError("response package is nested too deeply")
    if problem is not None:
        raise ValueError("response is not a JSON package")
    if not isinstance(package, dict):
        raise ValueError("response package is not a JSON object")
    for name in ("version", "algorithm", "encrypted_aes_key"):
        if not isinstance(package.get(name), str):
            raise ValueError(f"response package field {name!r} is missing or not a string")
    if package["version"] != crypto.VERSION:
        raise ValueError(f"unsupported package version (expected {crypto.VERSION!r})")
    if package["algorithm"] != crypto.ALGORITHM:
        raise ValueError(f"unsupported package algorithm (expected {crypto.ALGORITHM!r})")
    sealed = package.get("encrypted_payload")
    if not isinstance(sealed, dict):
        raise ValueError("response package field 'encrypted_payload' is missing or not an "
                         "object")
    for name in ("ciphertext", "nonce", "tag"):
        if not isinstance(sealed.get(name), str):
            raise ValueError(f"encrypted_payload field {name!r} is missing or not a string")
    # Optional in a response (CHK-6), but when present they must say exactly v1.0 (CHK-5).
    for name, expected in (("key_algorithm", crypto.KEY_ALGORITHM),
                           ("payload_algorithm", crypto.PAYLOAD_ALGORITHM)):
        if name in package and package[name] != expected:
            raise ValueError(f"unsupported package {name} (expected {expected!r})")
    fields = crypto.SealedFields(
        encrypted_aes_key=package["encrypted_aes_key"],
        ciphertext=sealed["ciphertext"],
        nonce=sealed["nonce"],
        tag=sealed["tag"],
    )
    return package, fields


def open_response(
    body: bytes | bytearray,
    payload_id: str,
    private_key: rsa.RSAPrivateKey,
    *,
    secure: bool = True,
    security_tier: str | None = None,
) -> dict[str, Any]:
    """Turn a 200 body into the completion dict.

    Order: structure (ValueError) → decryption (one opaque SecurityError) → plaintext must be
    a UTF-8 JSON object with unique member names and bounded nesting (SecurityError) →
    ``_metadata.payload_id`` must equal ``payload_id`` (SecurityError) → when the call asked
    for ``security_tier``, ``_metadata.security_tier`` must name it (TIER-9: the header is
    unauthenticated, the answer's metadata is not) → the client's own ``_metadata`` keys are
    written. The server's ``_metadata.processed_at`` (authenticated) is kept as it is; the
    package's top-level ``processed_at`` (outside the encryption) is never used (CHK-17).
    """
    tier = check_security_tier(security_tier)
    package, fields = parse_package(body)
    plaintext = crypto.decrypt_fields(fields, private_key, secure=secure)
    with secure_memory.protected(plaintext, secure):
        result, problem = parse_json(plaintext)
    # Messages name the failed rule, never any of the plaintext.
    if problem == DUPLICATE_MEMBERS:
        raise SecurityError("decrypted response has duplicate JSON member names")
    if problem == TOO_DEEP:
        raise SecurityError("decrypted response is nested too deeply")
    if not isinstance(result, dict):
        raise SecurityError("decrypted response is not a UTF-8 JSON object")
    metadata = result.get("_metadata")
    if not isinstance(metadata, dict):
        raise SecurityError("response is not bound to the request: _metadata missing")
    if metadata.get("payload_id") != payload_id:
        raise SecurityError("response is not bound to the request: _metadata.payload_id "
                            "does not match X-Payload-ID")
    if tier is not None and metadata.get("security_tier") != tier:
        raise SecurityError("response was not served at the requested security tier: "
                            "_metadata.security_tier is missing or differs")
    metadata["payload_id"] = payload_id
    # Kept when the server sent it (CHK-17); null otherwise, so the key is always there.
    metadata.setdefault("processed_at", None)
    metadata["is_encrypted"] = True
    metadata["encryption_algorithm"] = package["algorithm"]
    return result


# --- non-200 answers -----------------------------------------------------------------------

_STATUS_ERRORS: dict[int, tuple[type[APIError], str]] = {
    400: (InvalidRequestError, "Bad request"),
    401: (AuthenticationError, "Invalid API key or authentication failed"),
    403: (ForbiddenError, "Forbidden: model not allowed for the requested security tier"),
    404: (APIError, "Endpoint not found: secure inference not enabled"),
    429: (RateLimitError, "Rate limit exceeded"),
    500: (ServerError, "Server error"),
    502: (APIError, "Bad gateway"),
    503: (ServiceUnavailableError, "Service unavailable"),
    504: (APIError, "Gateway timeout"),
}


REDACTED = "[redacted]"


def redact(value: Any, secret: str | None) -> Any:
    """`value` with every occurrence of `secret` in its strings (member names too) replaced
    by "[redacted]" (ERR-20): a gateway echoing the bearer token cannot put it into an
    exception. Depth is bounded by parse_json, so the walk cannot recurse out of bounds."""
    if not secret:
        return value
    if isinstance(value, str):
        return value.replace(secret, REDACTED)
    if isinstance(value, list):
        return [redact(v, secret) for v in value]
    if isinstance(value, dict):
        return {redact(k, secret): redact(v, secret) for k, v in value.items()}
    return value


def error_body(
    body: bytes | bytearray, api_key: str | None = None
) -> tuple[str | None, dict[str, Any]]:
    """(detail, error_details) of an error body of any shape, per the contract.

    detail: body["detail"] of a JSON object (json.dumps for non-strings); else the body text
    (at most 1024 characters) when the body is non-empty and not a JSON object; else None.
    error_details: the JSON object; else {"detail": detail} when detail is set; else {}.

    The JSON of a body up to MAX_ERROR_BYTES (1 MiB) is parsed (ERR-12); a longer body, or
    one nested deeper than MAX_JSON_DEPTH, counts as text (ERR-13), so no body can make the
    parser or ``json.dumps`` recurse out of the canonical exception types (ERR-17).
    """
    parsed: Any = None
    if len(body) <= MAX_ERROR_BYTES:
        # Repeated names: the last wins (CHK-18 judges 200 bodies, not error bodies).
        parsed, _ = parse_json(body, unique=False)
    if isinstance(parsed, dict):
        parsed = redact(parsed, api_key)
        if "detail" not in parsed:
            return None, parsed
        detail = parsed["detail"]
        if not isinstance(detail, str):
            detail = json.dumps(detail, ensure_ascii=False)
        return detail, parsed
    if body:
        # 1024 characters never take more than 4 bytes each, invalid sequences included;
        # each redaction may eat len(api_key) characters and give back 10 (ERR-20).
        spare = len(api_key) * (MAX_DETAIL_CHARS // len(REDACTED) + 1) if api_key else 0
        head = bytes(body[: 4 * (MAX_DETAIL_CHARS + spare)])
        text = redact(head.decode("utf-8", errors="replace"), api_key)[:MAX_DETAIL_CHARS]
        return text, {"detail": text}
    return None, {}


def error_for_status(
    status: int, body: bytes | bytearray = b"", api_key: str | None = None
) -> APIError:
    """The exception for a non-200 answer (returned, not raised, so callers can decide);
    `api_key`, the call's key, is redacted from everything taken from the body (ERR-20)."""
    cls, default = _STATUS_ERRORS.get(status, (APIError, "Unexpected status code"))
    detail, details = error_body(body, api_key)
    if cls is APIError and status not in _STATUS_ERRORS:
        message = f"Unexpected status code {status}" + (f": {detail}" if detail is not None else "")
    else:
        message = f"{default}: {detail}" if detail is not None else default
    return cls(message, status_code=status, error_details=details)
