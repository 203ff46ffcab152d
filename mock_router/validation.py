"""Pure checks of a secure-completion request: each violation becomes a ``Refusal``.

Every Refusal carries a short ``code`` (``codes.REFUSAL_CODES``) besides its detail text.
Kept free of I/O and of the ASGI framework so every rule can be tested on its own and the
order of the checks is written down in one place (``app.py`` calls them in order):

1. Content-Length over the body limit → 413 (before reading anything)
2. API key (when configured) → 401
   (a repeated Authorization field → 401, SRV-26)
3. Content-Type → 415, Content-Encoding other than identity → 415 (a repeated Content-Type
   field → 400)
4. X-Payload-ID → 400;  X-Security-Tier → 400;  X-Public-Key (one SPKI PEM block, RSA of
   2048..16384 bits, exponent 65537) → 400;  any of them repeated → 400
5. body over the limit while streaming → 413
6. package structure and values (no duplicate member names, strict base64) → 400
7. replay cache: a package decrypted before → 409 "replayed request" (SRV-21)
8. decryption → 400 "decryption failed" (implicit rejection, SRV-22)
9. plaintext over 10 MiB → 413
10. plaintext JSON object (no duplicate member names, SRV-20), model, messages, stream → 400
11. tier policy → 403
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from . import crypto
from .codes import REFUSAL_CODES

MAX_BODY_BYTES = 16 * 1024 * 1024
MAX_PLAINTEXT_BYTES = 10 * 1024 * 1024
TIERS = ("standard", "high", "maximum")
DEFAULT_TIER = "standard"
MAX_PAYLOAD_ID_LEN = 128


class Refusal(Exception):
    """A request the router refuses: HTTP status, the ``detail`` sent back, a log reason and
    a machine-readable ``code`` (a key of ``codes.REFUSAL_CODES``, recorded with the request so
    the conformance suite can name the requirement a port broke).

    ``reason`` is what goes to the log; it differs from ``detail`` only where the detail
    quotes something from the decrypted plaintext (e.g. the model name), which is never logged.
    """

    def __init__(self, status: int, detail: str, reason: str | None = None, *,
                 code: str = "http_error") -> None:
        if code not in REFUSAL_CODES:
            raise ValueError(f"unknown refusal code {code!r}")  # a bug in the router
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.reason = reason or detail
        self.code = code


def _show(value: object, limit: int = 40) -> str:
    """A short printable rendering of a client-sent value for a detail text."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_content_length(value: str | None, limit: int = MAX_BODY_BYTES) -> None:
    """Refuse a declared body over the limit before reading it."""
    if value is None:
        return
    try:
        length = int(value.strip())
    except ValueError:
        raise Refusal(400, "Content-Length is not a number",
                      code="content_length_invalid") from None
    if length < 0:
        raise Refusal(400, "Content-Length is negative", code="content_length_invalid")
    if length > limit:
        raise Refusal(413, f"request body too large: {length} bytes (max {limit})",
                      code="body_too_large")


def check_api_key(authorization: str | None, api_keys: Iterable[str] | None) -> None:
    """401 unless the bearer token is one of the configured keys (no keys: anything goes)."""
    keys = list(api_keys or ())
    if not keys:
        return
    if authorization is None:
        raise Refusal(401, "missing API key: send Authorization: Bearer <key>",
                      code="api_key_missing")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Refusal(401, "Authorization header is not 'Bearer <key>'",
                      code="api_key_malformed")
    token_bytes = token.strip().encode("utf-8", "surrogateescape")
    ok = False
    for key in keys:  # compare against every key: no early exit leaking which matched
        ok |= hmac.compare_digest(token_bytes, key.encode("utf-8"))
    if not ok:
        raise Refusal(401, "invalid API key", code="api_key_invalid")


#: Header fields a request may carry at most once (SRV-26); a repeated Authorization is 401.
SINGLE_HEADERS = {"content-type": "Content-Type", "x-payload-id": "X-Payload-ID",
                  "x-public-key": "X-Public-Key", "x-security-tier": "X-Security-Tier"}


def check_single(counts: Mapping[str, int], *names: str) -> None:
    """400 (401 for Authorization) when one of these header fields came more than once: an
    intermediary or a client that adds a second field makes the value ambiguous (SRV-26)."""
    for name in names:
        if counts.get(name, 0) > 1:
            if name == "authorization":
                raise Refusal(401, "Authorization header sent more than once",
                              code="api_key_repeated")
            raise Refusal(400, f"{SINGLE_HEADERS.get(name, name)} header sent more than once",
                          code="header_repeated")


def check_content_encoding(value: str | None) -> None:
    """415 for any Content-Encoding but identity: the body is the package as it is, never
    decompressed (SRV-38, HDR-11)."""
    if value is None:
        return
    codings = [c.strip().lower() for c in value.split(",") if c.strip()]
    if any(c != "identity" for c in codings):
        raise Refusal(415, f"Content-Encoding {_show(value)} is not supported: send the "
                      "package bytes as they are", code="content_encoding")


def check_content_type(value: str | None) -> None:
    """415 unless the media type is application/octet-stream (parameters ignored)."""
    media = (value or "").split(";", 1)[0].strip().lower()
    if media != "application/octet-stream":
        raise Refusal(415, "Content-Type must be application/octet-stream"
                      + (f", not {_show(value)}" if value else " (header missing)"),
                      code="content_type")


def check_payload_id(value: str | None) -> str:
    """X-Payload-ID: 1..128 visible ASCII characters."""
    if value is None:
        raise Refusal(400, "missing X-Payload-ID header", code="payload_id_missing")
    if not 1 <= len(value) <= MAX_PAYLOAD_ID_LEN:
        raise Refusal(400, f"X-Payload-ID must be 1..{MAX_PAYLOAD_ID_LEN} characters long",
                      code="payload_id_invalid")
    if not all("\x21" <= ch <= "\x7e" for ch in value):
        raise Refusal(400, "X-Payload-ID must be visible ASCII characters only",
                      code="payload_id_invalid")
    return value


def check_tier(value: str | None) -> str:
    """X-Security-Tier: absent means the default tier; otherwise one of TIERS exactly."""
    if value is None:
        return DEFAULT_TIER
    if value not in TIERS:
        raise Refusal(400, f"invalid X-Security-Tier {_show(value)}: must be one of "
                      + ", ".join(TIERS), code="tier_invalid")
    return value


def decode_public_key_header(value: str | None) -> tuple[str, rsa.RSAPublicKey]:
    """Percent-decode X-Public-Key (``/`` escaped or not), parse it, check type and size."""
    if value is None or not value.strip():
        raise Refusal(400, "missing X-Public-Key header", code="public_key_missing")
    try:
        raw = urllib.parse.unquote_to_bytes(value)
        pem = raw.decode("utf-8")
    except (UnicodeError, ValueError):
        raise Refusal(400, "X-Public-Key is not percent-encoded UTF-8",
                      code="public_key_encoding") from None
    try:
        key = crypto.parse_client_public_key(pem)
    except crypto.ClientKeyRefused as exc:
        raise Refusal(400, str(exc), code=exc.code) from None
    return pem, key


@dataclass(frozen=True)
class Package:
    """The decoded binary fields of a request package, and the deviations the router noticed
    but accepted (``notes``: codes of ``codes.NOTE_CODES``)."""

    encrypted_aes_key: bytes
    ciphertext: bytes
    nonce: bytes
    tag: bytes
    notes: tuple[str, ...] = ()


_EXPECTED = {
    "version": crypto.VERSION,
    "algorithm": crypto.ALGORITHM,
    "key_algorithm": crypto.KEY_ALGORITHM,
    "payload_algorithm": crypto.PAYLOAD_ALGORITHM,
}
_UNSUPPORTED_CODE = {
    "version": "version_unsupported",
    "algorithm": "algorithm_unsupported",
    "key_algorithm": "key_algorithm_unsupported",
    "payload_algorithm": "payload_algorithm_unsupported",
}
PACKAGE_MEMBERS = ("version", "algorithm", "encrypted_payload", "encrypted_aes_key",
                   "key_algorithm", "payload_algorithm")

def _padded_shape(value: str) -> bool:
    """Length a multiple of 4, at most two '=' and only at the end. Checked here rather than
    left to ``base64.b64decode(validate=True)``, whose rules on padding differ across Python
    versions (the alphabet itself is checked by ``validate=True``)."""
    data = value.rstrip("=")
    return len(value) % 4 == 0 and len(value) - len(data) <= 2 and "=" not in data


def decode_base64(value: str, name: str) -> tuple[bytes, bool]:
    """Strict decoding of one binary member (padded standard base64, RFC 4648 section 4, no
    whitespace, no URL-safe alphabet): (bytes, canonical).

    Refuses (400) characters outside the alphabet and missing padding (PKG-6, PKG-10);
    accepts non-zero padding bits (PKG-10 lets a receiver refuse them, this one MAY accept)
    and says so with ``canonical`` False.
    """
    if not _padded_shape(value):
        raise Refusal(400, f"{name} is not valid base64", code="base64_invalid")
    try:
        raw = base64.b64decode(value.encode("ascii"), validate=True)
    except (UnicodeError, binascii.Error, ValueError):
        raise Refusal(400, f"{name} is not valid base64", code="base64_invalid") from None
    return raw, base64.b64encode(raw).decode("ascii") == value


class DuplicateMember(ValueError):
    """A JSON object names a member twice (SRV-20: refused, never resolved first/last-wins)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        names: set[str] = set()
        for name, _ in pairs:
            if name in names:
                raise DuplicateMember(name)
            names.add(name)
    return obj


def loads_strict(text: str) -> Any:
    """``json.loads`` that raises DuplicateMember for an object with a repeated name."""
    return json.loads(text, object_pairs_hook=_no_duplicates)


def parse_json_object(data: bytes, what: str, *, prefix: str = "body") -> dict[str, Any]:
    """UTF-8 JSON object without duplicate member names, or a Refusal naming ``what`` (never
    a RecursionError or a 500). ``prefix`` picks the codes: "body" (the package) or
    "plaintext" (the decrypted request)."""
    dup_code = "package_duplicate_member" if prefix == "body" else "plaintext_duplicate_member"
    try:
        value = loads_strict(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise Refusal(400, f"{what} is not UTF-8", code=f"{prefix}_not_utf8") from None
    except DuplicateMember as exc:
        raise Refusal(400, f"{what} has a duplicate member name {_show(exc.name)}",
                      reason=f"{what} has a duplicate member name", code=dup_code) from None
    except (ValueError, RecursionError):
        raise Refusal(400, f"{what} is not valid JSON", code=f"{prefix}_not_json") from None
    if not isinstance(value, dict):
        raise Refusal(400, f"{what} is not a JSON object", code=f"{prefix}_not_object")
    return value


def parse_package(body: bytes) -> tuple[dict[str, Any], Package]:
    """Check the package's fields (presence, type, value) and decode its base64."""
    if not body:
        raise Refusal(400, "request body is empty", code="body_empty")
    pkg = parse_json_object(body, "request body")
    return pkg, check_package(pkg)


def check_package(pkg: dict[str, Any]) -> Package:
    """The checks of a parsed package (spec 9.2 step 5), in a fixed order."""
    for name in PACKAGE_MEMBERS:
        if name not in pkg:
            raise Refusal(400, f"package field '{name}' is missing",
                          code="package_member_missing")
    for name, expected in _EXPECTED.items():
        if not isinstance(pkg[name], str):
            raise Refusal(400, f"package field '{name}' must be a string",
                          code=_UNSUPPORTED_CODE[name])
        if pkg[name] != expected:
            raise Refusal(400, f"unsupported {name} {_show(pkg[name])} (expected '{expected}')",
                          code=_UNSUPPORTED_CODE[name])
    inner = pkg["encrypted_payload"]
    if not isinstance(inner, dict):
        raise Refusal(400, "package field 'encrypted_payload' must be an object",
                      code="payload_member_type")
    for name in ("ciphertext", "nonce", "tag"):
        if name not in inner:
            raise Refusal(400, f"package field 'encrypted_payload.{name}' is missing",
                          code="payload_member_missing")
        if not isinstance(inner[name], str):
            raise Refusal(400, f"package field 'encrypted_payload.{name}' must be a string",
                          code="payload_member_type")
    if not isinstance(pkg["encrypted_aes_key"], str):
        raise Refusal(400, "package field 'encrypted_aes_key' must be a string",
                      code="package_member_type")
    eak, ok1 = decode_base64(pkg["encrypted_aes_key"], "encrypted_aes_key")
    ciphertext, ok2 = decode_base64(inner["ciphertext"], "encrypted_payload.ciphertext")
    nonce, ok3 = decode_base64(inner["nonce"], "encrypted_payload.nonce")
    tag, ok4 = decode_base64(inner["tag"], "encrypted_payload.tag")
    if len(nonce) != crypto.NONCE_SIZE:
        raise Refusal(400, f"nonce must be {crypto.NONCE_SIZE} bytes, got {len(nonce)}",
                      code="nonce_length")
    if len(tag) != crypto.TAG_SIZE:
        raise Refusal(400, f"tag must be {crypto.TAG_SIZE} bytes, got {len(tag)}",
                      code="tag_length")
    if not eak:
        raise Refusal(400, "encrypted_aes_key is empty", code="aes_key_empty")
    notes: list[str] = []
    if not (ok1 and ok2 and ok3 and ok4):
        notes.append("base64_noncanonical")
    if set(pkg) - set(PACKAGE_MEMBERS) or set(inner) - {"ciphertext", "nonce", "tag"}:
        notes.append("package_extra_member")
    return Package(eak, ciphertext, nonce, tag, tuple(notes))


def check_plaintext_size(plaintext: bytes, limit: int = MAX_PLAINTEXT_BYTES) -> None:
    """413 for a decrypted request over the protocol's 10 MiB plaintext limit."""
    if len(plaintext) > limit:
        raise Refusal(413, f"plaintext too large: {len(plaintext)} bytes (max {limit})",
                      code="plaintext_too_large")


def check_chat_request(payload: dict[str, Any]) -> None:
    """The chat fields every request needs, and no streaming."""
    model = payload.get("model")
    if "model" not in payload:
        raise Refusal(400, "request field 'model' is missing", code="model_missing")
    if not isinstance(model, str) or not model:
        raise Refusal(400, "request field 'model' must be a non-empty string",
                      code="model_invalid")
    messages = payload.get("messages")
    if "messages" not in payload:
        raise Refusal(400, "request field 'messages' is missing", code="messages_missing")
    if not isinstance(messages, list) or not messages:
        raise Refusal(400, "request field 'messages' must be a non-empty list",
                      code="messages_invalid")
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            raise Refusal(400, f"messages[{i}] must be an object", code="message_invalid")
        if not isinstance(msg.get("role"), str):
            raise Refusal(400, f"messages[{i}].role must be a string", code="message_invalid")
    if "stream" in payload:
        stream = payload["stream"]
        if stream is True:
            raise Refusal(400, "streaming is not supported", code="stream_unsupported")
        if stream is not False:  # null, "true", 0, 1 ... (SRV-35)
            raise Refusal(400, "request field 'stream' must be a boolean (true or false)",
                          code="stream_invalid")


def parse_tier_policy(spec: Mapping[str, Iterable[str]] | None) -> dict[str, frozenset[str]]:
    """Normalise a tier policy {tier: allowed models}; ValueError for an unknown tier."""
    policy: dict[str, frozenset[str]] = {}
    for tier, models in (spec or {}).items():
        if tier not in TIERS:
            raise ValueError(f"unknown security tier {tier!r} in tier policy")
        if isinstance(models, str):
            models = [m for m in models.split(",") if m]
        policy[tier] = frozenset(models)
    return policy


def check_tier_policy(policy: Mapping[str, frozenset[str]], tier: str, model: str) -> None:
    """403 when the policy lists models for ``tier`` and ``model`` is not among them."""
    allowed = policy.get(tier)
    if allowed is not None and model not in allowed:
        # the detail never quotes the model: it is decrypted plaintext (LOG-5)
        raise Refusal(403, f"the requested model is not allowed for security tier '{tier}'",
                      code="tier_not_allowed")
