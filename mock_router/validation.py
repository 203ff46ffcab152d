"""Pure checks of a secure-completion request: each violation becomes a ``Refusal``.

Kept free of I/O and of the ASGI framework so every rule can be tested on its own and the
order of the checks is written down in one place (``app.py`` calls them in order):

1. Content-Length over the body limit → 413 (before reading anything)
2. API key (when configured) → 401
3. Content-Type → 415
4. X-Payload-ID → 400;  X-Security-Tier → 400;  X-Public-Key → 400
5. body over the limit while streaming → 413
6. package structure and values → 400
7. decryption → 400 "decryption failed";  plaintext over 10 MiB → 413
8. plaintext JSON object, model, messages, stream → 400
9. tier policy → 403
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

MAX_BODY_BYTES = 16 * 1024 * 1024
MAX_PLAINTEXT_BYTES = 10 * 1024 * 1024
TIERS = ("standard", "high", "maximum")
DEFAULT_TIER = "standard"
MAX_PAYLOAD_ID_LEN = 128


class Refusal(Exception):
    """A request the router refuses: HTTP status, the ``detail`` sent back, and a log reason.

    ``reason`` is what goes to the log; it differs from ``detail`` only where the detail
    quotes something from the decrypted plaintext (e.g. the model name), which is never logged.
    """

    def __init__(self, status: int, detail: str, reason: str | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.reason = reason or detail


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
        raise Refusal(400, "Content-Length is not a number") from None
    if length < 0:
        raise Refusal(400, "Content-Length is negative")
    if length > limit:
        raise Refusal(413, f"request body too large: {length} bytes (max {limit})")


def check_api_key(authorization: str | None, api_keys: Iterable[str] | None) -> None:
    """401 unless the bearer token is one of the configured keys (no keys: anything goes)."""
    keys = list(api_keys or ())
    if not keys:
        return
    if authorization is None:
        raise Refusal(401, "missing API key: send Authorization: Bearer <key>")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Refusal(401, "Authorization header is not 'Bearer <key>'")
    token_bytes = token.strip().encode("utf-8", "surrogateescape")
    ok = False
    for key in keys:  # compare against every key: no early exit leaking which matched
        ok |= hmac.compare_digest(token_bytes, key.encode("utf-8"))
    if not ok:
        raise Refusal(401, "invalid API key")


def check_content_type(value: str | None) -> None:
    """415 unless the media type is application/octet-stream (parameters ignored)."""
    media = (value or "").split(";", 1)[0].strip().lower()
    if media != "application/octet-stream":
        raise Refusal(415, "Content-Type must be application/octet-stream"
                      + (f", not {_show(value)}" if value else " (header missing)"))


def check_payload_id(value: str | None) -> str:
    """X-Payload-ID: 1..128 visible ASCII characters."""
    if value is None:
        raise Refusal(400, "missing X-Payload-ID header")
    if not 1 <= len(value) <= MAX_PAYLOAD_ID_LEN:
        raise Refusal(400, f"X-Payload-ID must be 1..{MAX_PAYLOAD_ID_LEN} characters long")
    if not all("\x21" <= ch <= "\x7e" for ch in value):
        raise Refusal(400, "X-Payload-ID must be visible ASCII characters only")
    return value


def check_tier(value: str | None) -> str:
    """X-Security-Tier: absent means the default tier; otherwise one of TIERS exactly."""
    if value is None:
        return DEFAULT_TIER
    if value not in TIERS:
        raise Refusal(400, f"invalid X-Security-Tier {_show(value)}: must be one of "
                      + ", ".join(TIERS))
    return value


def decode_public_key_header(value: str | None) -> tuple[str, rsa.RSAPublicKey]:
    """Percent-decode X-Public-Key (``/`` escaped or not), parse it, check type and size."""
    if value is None or not value.strip():
        raise Refusal(400, "missing X-Public-Key header")
    try:
        raw = urllib.parse.unquote_to_bytes(value)
        pem = raw.decode("utf-8")
    except (UnicodeError, ValueError):
        raise Refusal(400, "X-Public-Key is not percent-encoded UTF-8") from None
    try:
        key = crypto.parse_client_public_key(pem)
    except ValueError as exc:
        raise Refusal(400, str(exc)) from None
    return pem, key


@dataclass(frozen=True)
class Package:
    """The decoded binary fields of a request package."""

    encrypted_aes_key: bytes
    ciphertext: bytes
    nonce: bytes
    tag: bytes


_EXPECTED = {
    "version": crypto.VERSION,
    "algorithm": crypto.ALGORITHM,
    "key_algorithm": crypto.KEY_ALGORITHM,
    "payload_algorithm": crypto.PAYLOAD_ALGORITHM,
}


def _b64(value: str, name: str) -> bytes:
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (UnicodeError, binascii.Error, ValueError):
        raise Refusal(400, f"{name} is not valid base64") from None


def parse_json_object(data: bytes, what: str) -> dict[str, Any]:
    """UTF-8 JSON object or a Refusal naming ``what`` (never a RecursionError or a 500)."""
    try:
        value = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise Refusal(400, f"{what} is not UTF-8") from None
    except (ValueError, RecursionError):
        raise Refusal(400, f"{what} is not valid JSON") from None
    if not isinstance(value, dict):
        raise Refusal(400, f"{what} is not a JSON object")
    return value


def parse_package(body: bytes) -> tuple[dict[str, Any], Package]:
    """Check the package's fields (presence, type, value) and decode its base64."""
    if not body:
        raise Refusal(400, "request body is empty")
    pkg = parse_json_object(body, "request body")
    for name in ("version", "algorithm", "encrypted_payload", "encrypted_aes_key",
                 "key_algorithm", "payload_algorithm"):
        if name not in pkg:
            raise Refusal(400, f"package field '{name}' is missing")
    for name, expected in _EXPECTED.items():
        if not isinstance(pkg[name], str):
            raise Refusal(400, f"package field '{name}' must be a string")
        if pkg[name] != expected:
            raise Refusal(400, f"unsupported {name} {_show(pkg[name])} (expected '{expected}')")
    inner = pkg["encrypted_payload"]
    if not isinstance(inner, dict):
        raise Refusal(400, "package field 'encrypted_payload' must be an object")
    for name in ("ciphertext", "nonce", "tag"):
        if name not in inner:
            raise Refusal(400, f"package field 'encrypted_payload.{name}' is missing")
        if not isinstance(inner[name], str):
            raise Refusal(400, f"package field 'encrypted_payload.{name}' must be a string")
    if not isinstance(pkg["encrypted_aes_key"], str):
        raise Refusal(400, "package field 'encrypted_aes_key' must be a string")
    eak = _b64(pkg["encrypted_aes_key"], "encrypted_aes_key")
    ciphertext = _b64(inner["ciphertext"], "encrypted_payload.ciphertext")
    nonce = _b64(inner["nonce"], "encrypted_payload.nonce")
    tag = _b64(inner["tag"], "encrypted_payload.tag")
    if len(nonce) != crypto.NONCE_SIZE:
        raise Refusal(400, f"nonce must be {crypto.NONCE_SIZE} bytes, got {len(nonce)}")
    if len(tag) != crypto.TAG_SIZE:
        raise Refusal(400, f"tag must be {crypto.TAG_SIZE} bytes, got {len(tag)}")
    if not eak:
        raise Refusal(400, "encrypted_aes_key is empty")
    return pkg, Package(eak, ciphertext, nonce, tag)


def check_plaintext_size(plaintext: bytes, limit: int = MAX_PLAINTEXT_BYTES) -> None:
    """413 for a decrypted request over the protocol's 10 MiB plaintext limit."""
    if len(plaintext) > limit:
        raise Refusal(413, f"plaintext too large: {len(plaintext)} bytes (max {limit})")


def check_chat_request(payload: dict[str, Any]) -> None:
    """The chat fields every request needs, and no streaming."""
    model = payload.get("model")
    if "model" not in payload:
        raise Refusal(400, "request field 'model' is missing")
    if not isinstance(model, str) or not model:
        raise Refusal(400, "request field 'model' must be a non-empty string")
    messages = payload.get("messages")
    if "messages" not in payload:
        raise Refusal(400, "request field 'messages' is missing")
    if not isinstance(messages, list) or not messages:
        raise Refusal(400, "request field 'messages' must be a non-empty list")
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            raise Refusal(400, f"messages[{i}] must be an object")
        if not isinstance(msg.get("role"), str):
            raise Refusal(400, f"messages[{i}].role must be a string")
    stream = payload.get("stream")
    if stream is True:
        raise Refusal(400, "streaming is not supported")
    if stream not in (None, False):
        raise Refusal(400, "request field 'stream' must be a boolean")


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
        raise Refusal(403, f"model {_show(model, 80)} is not allowed for security tier "
                      f"'{tier}'", reason=f"model not allowed for security tier '{tier}'")
