"""A small, independent client of the NOMYO secure completion protocol v1.0, with defects on demand.

Why it exists: a conformance check that cannot fail is worthless. This client is written from
``cryptography`` primitives and ``httpx`` only (it imports neither ``nomyo_ref`` nor
``mock_router``), follows docs/CONTRACTS "Client behaviour" to the letter when built with no
defects, and breaks exactly one rule for each name in ``defects``. The suite's own tests run the
conformance checks against it: with no defects everything passes; with each defect the check
that guards that rule fails.

It is synchronous (``httpx.Client``) and deliberately plain. Errors are raised as
:class:`ToyError` carrying the canonical kind directly, so its adapter maps nothing.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import ctypes
import ctypes.util
import hashlib
import json
import logging
import os
import random
import re
import secrets
import ssl
import time
import unicodedata
import urllib.parse
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

log = logging.getLogger("toy_client")
#: A logger the toy pins at INFO when imported (leaks_plaintext_logger_pinned logs to it at
#: DEBUG: only a capture that lowers the port's own loggers hears it).
pinned_log = logging.getLogger("toy_client.pinned")
pinned_log.setLevel(logging.INFO)

KEY_PATH = "/pki/public_key"
POST_PATH = "/v1/chat/secure_completion"
MAX_PLAINTEXT = 10 * 1024 * 1024
VALID_TIERS = ("standard", "high", "maximum")
RETRYABLE = frozenset({429, 500, 502, 503, 504})
RETRY_AFTER_CAP = 5.0
VERSION = "1.0"
SEED_PARAMS = frozenset(
    {
        "temperature",
        "max_tokens",
        "top_p",
        "frequency_penalty",
        "presence_penalty",
        "stop",
        "n",
        "tools",
        "tool_choice",
        "user",
    }
)
PACKAGE_FIELDS = (
    "version",
    "algorithm",
    "encrypted_payload",
    "encrypted_aes_key",
    "key_algorithm",
    "payload_algorithm",
)
ALGORITHM = "hybrid-aes256-rsa4096"
#: A pinned fingerprint once ':' separators are removed (KEY-14).
PIN = re.compile(r"[0-9a-fA-F]{64}")
#: Exactly one PEM block labelled PUBLIC KEY, whitespace around it (DISC-14).
SPKI_PEM = re.compile(
    rb"\s*-----BEGIN PUBLIC KEY-----\r?\n[A-Za-z0-9+/=\r\n]+-----END PUBLIC KEY-----\s*"
)

#: Every defect the toy client can be built with, and the one rule it breaks.
DEFECTS: dict[str, str] = {
    # encryption (ENC / PKG)
    "oaep_sha1": "wraps the AES key with RSA-OAEP SHA-1 (hash and MGF1)",
    "mgf1_sha1": "wraps the AES key with RSA-OAEP SHA-256 but MGF1 SHA-1",
    "tag_appended": "appends the GCM tag to the ciphertext",
    "short_nonce": "uses an 8-byte GCM nonce",
    "reuse_nonce": "reuses one AES key and nonce for every call",
    "wrong_version": 'sends version "1" in the package',
    "extra_package_field": "puts an 'aad' key inside encrypted_payload",
    "weak_client_key": "generates a 1024-bit client key",
    "public_key_not_encoded": "sends X-Public-Key as base64 of the DER, not a percent-encoded PEM",
    # payload id (PID)
    "reuse_payload_id": "sends the same X-Payload-ID for every call",
    "payload_id_not_uuid4": "sends an upper-case UUID as X-Payload-ID",
    "no_pid_check": "accepts any _metadata.payload_id (or none) in the answer",
    # response checks (CHK / RSP)
    "no_version_check": "accepts any package version",
    "no_algorithm_check": "accepts any package algorithm",
    "leaky_crypto_errors": "names the failing crypto step in the error message",
    "non_object_plaintext_accepted": "returns a decrypted plaintext that is not a JSON object",
    "bad_plaintext_value": "reports an undecodable plaintext as kind value instead of security",
    "own_metadata_missing": "does not write its own _metadata keys into the result",
    "drops_server_metadata": "replaces the server's _metadata instead of updating it",
    # errors (ERR)
    "wrong_status_map": "maps 403 to kind api",
    "error_body_crash": "crashes (KeyError) on an error body that is not a JSON object",
    "no_detail": "drops the server's detail from the error message",
    "wrong_status_code": "reports status_code None on errors",
    "drop_internal": "lets a dropped connection escape as a raw httpx exception",
    "leaks_api_key_in_errors": "puts the API key into error messages",
    "leaks_plaintext_in_errors": "puts the request plaintext into size-limit errors",
    "leaks_plaintext_in_logs": "logs the request plaintext at DEBUG",
    # retries (RTY)
    "retry_400": "retries a 400",
    "no_retry_503": "does not retry a 503",
    "extra_retries": "makes one retry more than max_retries",
    "no_retry_on_drop": "does not retry a dropped connection",
    "ignore_retry_after": "ignores Retry-After",
    # HTTPS rule, TLS, discovery (TLS / DISC)
    "http_allowed": "ignores allow_http=False",
    "sends_before_refusing": "fetches the server key over http before refusing",
    "http_refused_as_value": "refuses http with kind value instead of security",
    "no_url_normalise": "does not strip whitespace and trailing slashes from the base URL",
    "userinfo_allowed": "accepts user-info in the base URL",
    "other_scheme_allowed": "accepts schemes other than http/https (treated as https)",
    "no_http_warning": "does not warn when allow_http is used with http",
    "no_tls_verify": "does not verify TLS certificates",
    "no_pin_check": "ignores the pinned server key fingerprint",
    "follows_redirects": "follows redirects",
    "no_key_cache": "fetches the server key before every request",
    "no_rotation_retry": "does not re-fetch the key after a 400",
    "no_key_fetch_retry": "does not retry the key fetch",
    "max_retries_unvalidated": "accepts a negative max_retries",
    "stream_allowed": "sends stream=True instead of refusing it",
    "weak_server_key_accepted": "accepts a server key under 2048 bits",
    # headers and request plaintext (HDR / TIER / REQ)
    "tier_unvalidated": "sends an invalid security tier",
    "tier_in_payload": "puts security_tier into the plaintext",
    "api_key_in_payload": "puts api_key into the plaintext",
    "api_key_unvalidated": "sends API keys with CR/LF or non-ASCII characters",
    "no_bearer": "sends the API key without the 'Bearer ' prefix",
    "empty_bearer": "sends 'Authorization: Bearer' (no token) when no API key is set",
    "wrong_content_type": "sends Content-Type application/json",
    "size_limit_off": "sends plaintexts over 10 MiB",
    "size_limit_strict": "refuses a plaintext of exactly 10 MiB",
    "drops_params": "drops the 'stop' parameter",
    "unicode_mangle": "NFC-normalises message content",
    # keys on disk (KEY)
    "key_file_world_readable": "saves the private key with mode 0644",
    "key_dir_open": "creates the key directory with mode 0755",
    "password_ignored": "saves the private key unencrypted even with a password",
    "wrong_password_crash": "lets the crypto library's exception escape on a wrong password",
    "weak_own_key_accepted": "loads a private key under 2048 bits",
    "overwrites_bad_key": "replaces an unloadable private_key.pem with a new key",
    "writes_keys_without_key_dir": "writes ./client_keys even without a key directory",
    "repr_leaks_api_key": "shows the API key in repr() of the client",
    # added for the remaining rules
    "nan_allowed": "serialises NaN/Infinity into the plaintext",
    "model_unvalidated": "sends an empty model or non-list messages",
    "structure_crash": "crashes (KeyError/TypeError) on a response package missing a member",
    "no_key_algorithm_check": "accepts any key_algorithm/payload_algorithm in the answer",
    "strict_unknown_fields": "refuses answers with unknown or missing optional package members",
    "key_fetch_with_auth": "sends the API key on GET /pki/public_key",
    "pin_only_first_fetch": "checks the pin on the first key fetch only",
    "content_type_sensitive": "parses error bodies as JSON only when labelled application/json",
    "first_error_kept": "raises for the first answer when retries run out",
    "retry_after_crash": "crashes on an unparseable or negative Retry-After",
    "tier_header_always": "sends X-Security-Tier: standard when no tier was asked",
    "default_retries_3": "defaults max_retries to 3",
    "tier_dropped_on_retry": "drops X-Security-Tier on retries",
    "no_tag_check": "decrypts the answer without verifying the GCM tag (AES-CTR)",
    "pid_changes_on_retry": "sends a new X-Payload-ID on a retry but binds to the first",
    "drops_unknown_params": "drops parameters it does not know",
    "key_fetch_status_as_value": "reports a non-200 key fetch as kind value",
    "resend_on_unchanged_key": "resends after a 400 even when the key did not change",
    "pin_case_sensitive": "compares the pinned fingerprint case-sensitively",
    "weak_generated_key": "generate_keys() makes 2048-bit keys",
    "body_not_object_as_security": "reports a 200 body that is not JSON as kind security",
    "tier_mangled": "sends the security tier upper-cased",
    "api_key_override_ignored": "ignores create(api_key=...) and uses the client's key",
    "resend_twice": "resends a second time when the resend after a rotation is refused",
    "constant_backoff": "waits the base delay before every retry",
    "insecure_mode_differs": "with secure_memory=False sends an extra X-Secure-Memory header",
    # the last testable rules (ENC-6, CHK-14, PID-9, RTY-10, MEM-3, LOG-3, CHK-12, API-19)
    "oaep_sha1_fallback": "unwraps the answer's AES key with OAEP-SHA-1 when OAEP-SHA-256 fails",
    "content_type_200_strict": "refuses a 200 answer whose Content-Type is not application/json",
    "payload_id_unvalidated": "send_secure_request sends any payload_id without checking it",
    "retry_after_uncapped": "waits as long as Retry-After asks (up to 12 s), beyond its cap",
    "mlock_required": "fails the call when mlock of the plaintext buffer fails",
    "plaintext_chained": "chains the JSONDecodeError (its .doc is the plaintext) to its error",
    "crypto_error_chained": "chains the crypto library's exception to 'decryption failed'",
    "unlocked_key_fetch": "concurrent calls on one SecureChatCompletion each fetch the server key",
    # client behaviour of spec 1.0.1 (helper A): each breaks one clause
    "no_jitter": "waits exactly base*2**(n-1) before each retry, without jitter",
    "retry_all_statuses": "retries every status other than 200",
    "retries_refused_answer": "retries a 200 answer it refused (tampered, downgraded, mis-bound)",
    "same_package_on_retry": "resends the byte-identical package on a retry",
    "retries_tls_failure": "retries a connection whose certificate verification failed",
    "key_kept_after_failures": "keeps its cached server key after retries exhausted on 5xx",
    "lenient_server_key_pem": "loads the server key with a lenient PEM loader (PKCS#1, text)",
    "server_key_bounds_unchecked": "accepts server keys over 16384 bits or with exponent 3",
    "pin_set_refused": "accepts a single fingerprint only, not a set of them",
    "no_pinning": "offers no pinning at all (capability pinning missing, pin ignored)",
    "malformed_pin_ignored": "ignores a malformed pin instead of raising ValueError",
    "rotation_key_not_cached": "resends under the rotated key but keeps the old key cached",
    "resend_same_package": "resends the refused package itself after a key rotation",
    "key_written_then_chmod": "writes private_key.pem with mode 0666 and chmods it to 0600 after",
    "key_written_in_place": "writes the key files in place instead of temp file and rename",
    "key_temp_left_behind": "leaves its temporary key file behind",
    "unloadable_key_unnamed": "raises ValueError for an unloadable key without naming the file",
    "public_key_unchecked": "accepts a public key file that does not match the private key",
    "no_redaction": "keeps the call's API key when an error body echoes it",
    "timeout_per_read": "bounds each read only, not the whole answer",
    "no_timeout": "never times out (waits for the server whatever timeout says)",
    "no_hostname_check": "verifies the certificate chain but not the host name",
    "old_tls_accepted": "accepts TLS 1.0 and 1.1",
    "ipv6_refused": "refuses a bracketed IPv6 host as a malformed URL",
    "insecure_with_allow_http": "does not verify https certificates when allow_http is on",
    "env_disables_verify": "switches verification off when PYTHONHTTPSVERIFY=0",
    "hostless_url_allowed": "accepts a base URL without a host (uses 127.0.0.1)",
    "bad_port_allowed": "accepts a port 0, over 65535 or empty",
    "query_allowed": "accepts a base URL with a query or fragment (and drops it)",
    "fetches_before_url_check": "fetches the server key before refusing a malformed URL",
    "text_detail_uncut": "keeps the whole text of a non-JSON error body as the detail",
    "object_detail_str": "renders a non-string detail with str() instead of JSON",
    "other_5xx_as_server": "maps statuses 5xx outside the table to kind server",
    "empty_detail_string": "takes the empty body as detail '' (error_details {'detail': ''})",
    "details_missing": "leaves error_details empty whatever the body",
    "error_body_parse_limit": "parses error bodies as JSON only up to 64 KiB",
    "leaks_plaintext_logger_pinned": "logs the plaintext at DEBUG on a logger it pins at INFO",
    "base_url_override_ignored": "ignores create(base_url=...) and uses the client's router",
    "fingerprint_of_pem": "computes the fingerprint over the PEM text, not the DER",
    "pin_colons_kept": "does not remove ':' separators from a pin",
    "server_key_type_unchecked": "does not check that the server key is RSA",
    "server_key_errors_as_value": "reports an unparseable server key as kind value",
    "ca_cert_ignored": "ignores the caller's CA bundle (trusts the system store only)",
    "non_rsa_own_key_accepted": "load_keys accepts a private key that is not RSA",
    "rewrites_existing_keys": "writes the loaded private_key.pem of its key directory again",
    "override_skips_https_rule": "sends to an http base_url override without allow_http",
    # the wire checks of spec 1.0.1 (helper B): each breaks one clause
    "metadata_not_object_bound": "accepts a _metadata that is not an object ([], \"x\", 0)",
    "processed_at_top_level": "returns the package's top-level processed_at in _metadata",
    "processed_at_local_clock": "returns its own clock as _metadata.processed_at",
    "own_flags_not_set": "never writes is_encrypted/encryption_algorithm (keeps the server's)",
    "own_payload_id_wrong": "writes a new UUID, not the call's id, into _metadata.payload_id",
    "no_tier_check": "accepts an answer whose _metadata.security_tier is not the tier asked",
    "duplicates_accepted": "parses JSON with duplicate member names (the last one wins)",
    "deep_json_crash": "lets RecursionError escape on very deeply nested JSON",
    "crypto_errors_as_value": "reports every decryption failure as kind value",
    "aad_used": "encrypts the request with associated data (AES-GCM AAD)",
    "content_encoding_identity": "sends Content-Encoding: identity on the POST",
    "duplicate_payload_id_header": "sends the X-Payload-ID header twice",
    "noncanonical_base64": "sends the tag in base64 with non-zero padding bits",
    "tier_dropped_on_resend": "drops X-Security-Tier on the resend after a key rotation",
    "pid_changes_on_resend": "sends a new X-Payload-ID on the resend after a key rotation",
    "tier_required": "refuses an answer without _metadata.security_tier when no tier was asked",
    "limits_too_low": "refuses answers over 8 MiB or JSON nested over 32 levels",
    "limit_refusal_wrong_kind": "refuses over 32 MiB / 128 levels with the other stage's kind",
    "strict_payload_members": "refuses an answer with unknown members inside encrypted_payload",
    "wrong_post_path": "POSTs to /v1/chat/completions instead of /v1/chat/secure_completion",
    "lenient_base64": "decodes answer base64 leniently (non-alphabet dropped, padding added)",
    "binds_top_level_payload_id": "accepts an answer whose top-level payload_id is the call's",
    "pid_case_insensitive": "compares _metadata.payload_id with the call's id case-insensitively",
    "pid_stripped": "compares _metadata.payload_id with the call's id after strip()",
    "pid_hyphens_ignored": "compares _metadata.payload_id with the call's id without hyphens",
    "pid_prefix": "accepts a _metadata.payload_id that is a non-empty prefix of the call's id",
    "low_level_unchecked": "decrypt_response (low level) skips the binding and plaintext checks",
}


class ToyError(Exception):
    """Every failure of the toy client, with the canonical kind of the suite."""

    def __init__(
        self,
        kind: str,
        message: str,
        status_code: int | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status_code = status_code
        self.details = details if details is not None else {}


def _near_miss(got: str, want: str, defects: frozenset[str] | set[str]) -> bool:
    """The defects pid_*: a payload id comparison looser than "exactly equal"."""
    return (
        ("pid_case_insensitive" in defects and got.lower() == want.lower())
        or ("pid_stripped" in defects and got.strip() == want.strip())
        or ("pid_hyphens_ignored" in defects and got.replace("-", "") == want.replace("-", ""))
        or ("pid_prefix" in defects and bool(got) and want.startswith(got))
    )


def _strict_b64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def _lenient_b64(text: str) -> bytes:
    """The defect lenient_base64: characters outside the alphabet dropped, padding added."""
    kept = re.sub(r"[^A-Za-z0-9+/]", "", text)
    return base64.b64decode(kept + "=" * (-len(kept) % 4), validate=True)


def _depth(data: bytes) -> int:
    """How deep the JSON text nests (strings skipped), for the defects that limit it."""
    text = re.sub(rb'"(?:[^"\\]|\\.)*"', b'""', data)
    depth = deepest = 0
    for match in re.finditer(rb"[\[\]{}]", text):
        depth += 1 if match.group() in (b"[", b"{") else -1
        deepest = max(deepest, depth)
    return deepest


def _limits(data: bytes, stage: str, defects: frozenset[str]) -> None:
    """The size and depth limits of the limit defects (the correct toy has none: Python's
    parser takes 16 MiB and far more than 64 levels, and the depth it cannot take is caught
    as ValueError in _json)."""
    if "limits_too_low" in defects:
        size, deep, kind = 8 * 1024 * 1024, 32, "value" if stage == "package" else "security"
    elif "limit_refusal_wrong_kind" in defects:
        size, deep, kind = 32 * 1024 * 1024, 128, "security" if stage == "package" else "value"
    else:
        return
    brackets = data.count(b"[") + data.count(b"{")  # a cheap bound on the depth
    if len(data) > size or (brackets > deep and _depth(data) > deep):
        raise ToyError(kind, f"the {stage} is over the client's limits")


def _json(data: bytes | str, defects: frozenset[str]) -> Any:
    """Parse JSON: duplicate member names and nesting too deep to parse are ValueError."""

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        names = [name for name, _ in items]
        if len(set(names)) != len(names) and "duplicates_accepted" not in defects:
            raise ValueError("duplicate member name")
        return dict(items)

    if "deep_json_crash" in defects:
        return json.loads(data, object_pairs_hook=pairs)
    try:
        return json.loads(data, object_pairs_hook=pairs)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


@dataclass
class ToyOptions:
    """The client settings the conformance ClientConfig carries."""

    base_url: str = "https://api.nomyo.ai"
    allow_http: bool = False
    api_key: str | None = None
    ca_cert: str | None = None
    server_key_sha256: str | None = None
    max_retries: int = 2
    timeout: float = 60.0
    retry_backoff: float = 1.0
    key_dir: str | None = None
    secure_memory: bool = True
    retry_after_cap: float = RETRY_AFTER_CAP


#: A request body, or a function making a fresh one for each attempt.
Body = bytes | Callable[[], bytes] | None


def _certificate_failure(exc: BaseException) -> bool:
    """Whether a transport error is a failed certificate verification (RTY-16)."""
    seen: BaseException | None = exc
    for _ in range(6):
        if seen is None:
            return False
        if isinstance(seen, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(
            seen
        ):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _valid_payload_id(value: Any) -> bool:
    """1 to 128 visible ASCII characters (PID-9)."""
    return isinstance(value, str) and 1 <= len(value) <= 128 and all(
        "\x21" <= c <= "\x7e" for c in value
    )


_LIBC: Any = None


def _libc() -> Any:
    global _LIBC
    if _LIBC is None:
        name = ctypes.util.find_library("c")
        _LIBC = ctypes.CDLL(name, use_errno=True) if name else False
    return _LIBC


def _with_locked_copy(data: bytes, required: bool) -> None:
    """Best-effort secure memory: copy into a buffer, mlock it, zero and unlock it.
    `required` (the defect mlock_required) makes a failed mlock fail the call."""
    libc = _libc()
    if not libc or not hasattr(libc, "mlock") or not data:
        return
    buf = (ctypes.c_char * len(data)).from_buffer_copy(data)
    address, size = ctypes.addressof(buf), ctypes.c_size_t(len(data))
    locked = libc.mlock(ctypes.c_void_p(address), size) == 0
    if not locked and required:
        err = ctypes.get_errno()
        raise OSError(err, f"mlock failed: {os.strerror(err)}")
    ctypes.memset(address, 0, len(data))
    if locked:
        libc.munlock(ctypes.c_void_p(address), size)


# ---------------------------------------------------------------------------------------------
# keys

_KEY_CACHE: dict[int, rsa.RSAPrivateKey] = {}


def _session_key(bits: int) -> rsa.RSAPrivateKey:
    """One client key per process and size: key generation is the slow part of a test run."""
    if bits not in _KEY_CACHE:
        _KEY_CACHE[bits] = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return _KEY_CACHE[bits]


def _spki_pem(key: rsa.RSAPrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )


def _fingerprint(key: rsa.RSAPublicKey, defects: frozenset[str] = frozenset()) -> str:
    encoding = serialization.Encoding.PEM if "fingerprint_of_pem" in defects else None
    der = key.public_bytes(
        encoding or serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


_LOADED: dict[bytes, rsa.RSAPrivateKey] = {}


def _load_private(pem: bytes) -> rsa.RSAPrivateKey:
    """Load a PEM private key, cached by content (checking a 4096-bit key is slow)."""
    if pem not in _LOADED:
        key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ToyError("value", "private_key.pem is not an RSA key")
        _LOADED[pem] = key
    return _LOADED[pem]


def write_key_file(path: Path, data: bytes, mode: int, defects: frozenset[str]) -> None:
    """Write a key file atomically: a temporary file in the same directory, created with
    `mode` whatever the umask (and fchmod-ed to it), flushed and renamed over `path` (KEY-6,
    KEY-15, KEY-16)."""
    if "key_written_in_place" in defects:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        return
    temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    if "key_written_then_chmod" in defects:
        temp.write_bytes(data)  # created 0666 & ~umask: readable by others until the chmod
        os.chmod(temp, mode)
    else:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    os.replace(temp, path)
    if "key_temp_left_behind" in defects:
        leftover = path.with_name(f".{path.name}.partial")
        fd = os.open(leftover, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.close(fd)


def check_public_file(key: rsa.RSAPrivateKey, public_path: Path, defects: frozenset[str]) -> None:
    """A public key file must hold the public half of `key` (KEY-21)."""
    if "public_key_unchecked" in defects or not public_path.exists():
        return
    try:
        public = serialization.load_pem_public_key(public_path.read_bytes())
    except ValueError:
        raise ToyError("value", f"{public_path.name} is not a PEM public key") from None
    if public != key.public_key():
        raise ToyError("value", f"{public_path.name} does not match the private key")


def _load_or_create_keys(key_dir: str, defects: frozenset[str]) -> rsa.RSAPrivateKey:
    """Keys on disk: private_key.pem 0600 (PKCS#8), public_key.pem 0644 (SPKI)."""
    world_readable = "key_file_world_readable" in defects
    folder = Path(key_dir)
    priv_path, pub_path = folder / "private_key.pem", folder / "public_key.pem"
    if priv_path.exists():
        try:
            key: rsa.RSAPrivateKey | None = _load_private(priv_path.read_bytes())
            if key is not None and key.key_size < 2048:
                raise ValueError("too small")
        except (ValueError, TypeError, ToyError):
            if "overwrites_bad_key" not in defects:
                if "unloadable_key_unnamed" in defects:
                    raise ToyError("value", "the key cannot be loaded") from None
                raise ToyError(
                    "value",
                    f"{priv_path} cannot be loaded: not an unencrypted RSA key of 2048 bits "
                    "or more (private_key.pem is left as it is)",
                ) from None
            key = None
        if key is not None:
            check_public_file(key, pub_path, defects)
            if "rewrites_existing_keys" in defects:  # same content, but written again
                write_key_file(priv_path, priv_path.read_bytes(), 0o600, defects)
            return key
    key = _session_key(4096)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_key_file(priv_path, pem, 0o644 if world_readable else 0o600, defects)
    write_key_file(pub_path, _spki_pem(key).encode("ascii"), 0o644, defects)
    return key


# ---------------------------------------------------------------------------------------------
# the client


class ToyClient:
    """A synchronous protocol client; ``defects`` names the rules it breaks (see DEFECTS)."""

    def __init__(
        self, options: ToyOptions, defects: frozenset[str] | set[str] = frozenset()
    ) -> None:
        unknown = set(defects) - set(DEFECTS)
        if unknown:
            raise ValueError(f"unknown defects: {sorted(unknown)}")
        retries = options.max_retries
        bad_retries = isinstance(retries, bool) or not isinstance(retries, int) or retries < 0
        if bad_retries and "max_retries_unvalidated" not in defects:
            raise ToyError("value", "max_retries must be a non-negative integer")
        self.options = options
        self.defects = frozenset(defects)
        self._raw_base = options.base_url
        self._server_key: rsa.RSAPublicKey | None = None
        self._fixed_aes: tuple[bytes, bytes] | None = None
        self._fixed_pid = str(uuid.uuid4())
        self._last_body: bytes | None = None
        self._override: str | None = None
        self._pins()  # a malformed pin is a caller error at construction (KEY-14)
        if options.key_dir is not None:
            self._key = _load_or_create_keys(options.key_dir, self.defects)
        else:
            self._key = _session_key(1024 if "weak_client_key" in self.defects else 4096)
            if "writes_keys_without_key_dir" in self.defects:
                _load_or_create_keys("client_keys", self.defects)
        self._http = httpx.Client(
            verify=self._verify(),
            timeout=None if "no_timeout" in self.defects else options.timeout,
            follow_redirects="follows_redirects" in self.defects,
        )

    # -- lifecycle ---------------------------------------------------------------------------

    def __repr__(self) -> str:
        if "repr_leaks_api_key" in self.defects:
            return f"ToyClient({self.options!r})"
        return f"ToyClient(base_url={self.options.base_url!r})"

    def close(self) -> None:
        self._http.close()

    def _verify(self) -> ssl.SSLContext | bool:
        if "no_tls_verify" in self.defects:
            return False
        if "env_disables_verify" in self.defects and os.environ.get("PYTHONHTTPSVERIFY") == "0":
            return False
        if "insecure_with_allow_http" in self.defects and self.options.allow_http:
            return False
        if self.options.ca_cert and "ca_cert_ignored" not in self.defects:
            context = ssl.create_default_context(cafile=self.options.ca_cert)
        else:
            context = ssl.create_default_context()
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if "no_hostname_check" in self.defects:
            context.check_hostname = False
        if "old_tls_accepted" in self.defects:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                context.minimum_version = ssl.TLSVersion.TLSv1
            context.set_ciphers("DEFAULT:@SECLEVEL=0")
        return context

    def _pins(self) -> list[str] | None:
        """The pinned fingerprints (lower-case hex, separators removed); ValueError for a
        malformed one (KEY-14). A sequence pins a set: any match passes (DISC-25)."""
        given = self.options.server_key_sha256
        if given is None or "no_pinning" in self.defects:
            return None
        if isinstance(given, str):
            items = [given]
        elif isinstance(given, (list, tuple)) and "pin_set_refused" not in self.defects:
            items = list(given)
        else:
            raise ToyError("value", "server_key_sha256 must be a fingerprint string")
        pins = []
        for item in items:
            text = item if isinstance(item, str) else ""
            if "pin_colons_kept" not in self.defects:
                text = text.replace(":", "")
            elif PIN.fullmatch(text.replace(":", "")):
                text = text.replace(":", "") + ":"  # a colon spelling is never matched
            if not PIN.fullmatch(text) and "malformed_pin_ignored" not in self.defects:
                raise ToyError("value", "server_key_sha256 must be 32 bytes of hexadecimal")
            pins.append(text if "pin_case_sensitive" in self.defects else text.lower())
        return pins

    # -- the HTTPS rule ----------------------------------------------------------------------

    def _base_url(self) -> str:
        """Normalise and check the base URL (or this call's override); raise before anything
        is sent."""
        raw = self._override if self._override is not None else self._raw_base
        if "no_url_normalise" in self.defects:
            url = raw
        else:
            url = raw.strip()
            while url.endswith("/"):
                url = url[:-1]
        parts = urllib.parse.urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):  # the scheme is examined first (4.3)
            if "other_scheme_allowed" in self.defects and parts.hostname:
                scheme = "https"
            else:
                raise ToyError("value", "base URL scheme must be https (or http for development)")
        lax = "override_skips_https_rule" in self.defects and self._override is not None
        if scheme == "http" and not self.options.allow_http and not lax:
            if "sends_before_refusing" in self.defects:
                with contextlib.suppress(httpx.HTTPError, ValueError):
                    self._http.get(f"http://{parts.netloc}{parts.path}{KEY_PATH}")
            if "http_allowed" not in self.defects:
                kind = "value" if "http_refused_as_value" in self.defects else "security"
                raise ToyError(kind, "insecure base URL: https is required (allow_http is off)")
        netloc, problem = self._url_problem(parts, url)
        if problem is not None:
            if "fetches_before_url_check" in self.defects and parts.hostname:
                with contextlib.suppress(httpx.HTTPError, ValueError):
                    port = f":{parts.port}" if parts.port else ""
                    self._http.get(f"http://{parts.hostname}{port}{KEY_PATH}")
            raise ToyError("value", problem)
        if scheme == "http" and "no_http_warning" not in self.defects:
            warnings.warn("insecure: using http instead of https", UserWarning, stacklevel=3)
        return f"{scheme}://{netloc}{parts.path}"

    def _url_problem(self, parts: urllib.parse.SplitResult, url: str) -> tuple[str, str | None]:
        """The netloc to use, and what is wrong with the rest of the URL (TLS-13 to TLS-16)."""
        netloc = parts.netloc
        if "@" in netloc and "userinfo_allowed" not in self.defects:
            return netloc, "base URL must not contain user information"
        if not parts.hostname:
            if "hostless_url_allowed" not in self.defects:
                return netloc, "base URL has no host"
            netloc = "127.0.0.1" + netloc.rpartition("@")[2]
        if (parts.query or parts.fragment or "?" in url or "#" in url) and (
            "query_allowed" not in self.defects
        ):
            return netloc, "base URL must not carry a query or fragment"
        if "[" in netloc and "ipv6_refused" in self.defects:
            return netloc, "base URL host is not a name"
        try:
            port = parts.port
        except ValueError:
            port = -1
        empty_port = netloc.endswith(":")
        if (port == -1 or port == 0 or empty_port) and "bad_port_allowed" not in self.defects:
            return netloc, "base URL has an invalid port"
        return netloc, None

    # -- server key --------------------------------------------------------------------------

    def _fetch_server_key(self, base: str) -> rsa.RSAPublicKey:
        retries = 0 if "no_key_fetch_retry" in self.defects else self.options.max_retries
        auth = None
        if "key_fetch_with_auth" in self.defects and self.options.api_key:
            auth = {"Authorization": f"Bearer {self.options.api_key}"}
        answer = self._send("GET", base + KEY_PATH, headers=auth, retries=retries)
        if answer.status_code != 200:
            if "key_fetch_status_as_value" in self.defects:
                raise ToyError("value", f"key fetch failed with HTTP {answer.status_code}")
            raise self._status_error(answer)
        strict = "lenient_server_key_pem" not in self.defects
        if strict and not SPKI_PEM.fullmatch(answer.content):
            kind = "value" if "server_key_errors_as_value" in self.defects else "security"
            raise ToyError(kind, "the server key is not one PEM PUBLIC KEY block")
        try:
            key = serialization.load_pem_public_key(answer.content)
        except ValueError:
            if "lenient_server_key_pem" in self.defects:
                with contextlib.suppress(ValueError):
                    key = x509.load_pem_x509_certificate(answer.content).public_key()
                    return key  # type: ignore[return-value]
            kind = "value" if "server_key_errors_as_value" in self.defects else "security"
            raise ToyError(kind, "the server key is not a PEM public key") from None
        if not isinstance(key, rsa.RSAPublicKey):
            if "server_key_type_unchecked" in self.defects:
                return key  # type: ignore[return-value]
            raise ToyError("security", "the server key is not an RSA key")
        if key.key_size < 2048 and "weak_server_key_accepted" not in self.defects:
            raise ToyError("security", "the server key is shorter than 2048 bits")
        bounded = key.key_size <= 16384 and key.public_numbers().e == 65537
        if not bounded and "server_key_bounds_unchecked" not in self.defects:
            raise ToyError("security", "the server key is over 16384 bits or its exponent odd")
        pins = self._pins()
        if "pin_only_first_fetch" in self.defects and self._server_key is not None:
            pins = None
        found = _fingerprint(key, self.defects)
        if pins and "no_pin_check" not in self.defects and found not in pins:
            raise ToyError("security", "the server key does not match the pinned fingerprint")
        return key

    def _server(self, base: str) -> rsa.RSAPublicKey:
        if self._server_key is None or "no_key_cache" in self.defects:
            self._server_key = self._fetch_server_key(base)
        return self._server_key

    # -- request -----------------------------------------------------------------------------

    def create(self, model: str, messages: list[dict[str, Any]], **kwargs: Any) -> dict[str, Any]:
        """One encrypted chat completion."""
        tier = kwargs.pop("security_tier", None)
        override = kwargs.pop("api_key", None)
        if "api_key_override_ignored" in self.defects:
            override = None
        api_key = override or self.options.api_key or None
        base_url = kwargs.pop("base_url", None)
        if "base_url_override_ignored" in self.defects:
            base_url = None
        self._override = base_url  # per call: the HTTPS rule applies to it too (TLS-6)
        try:
            return self._call(model, messages, kwargs, tier, api_key, None)
        finally:
            self._override = None

    def send_secure_request(
        self,
        payload: dict[str, Any],
        payload_id: str,
        api_key: str | None = None,
        security_tier: str | None = None,
    ) -> dict[str, Any]:
        """The seed's low-level call: this payload under this payload id."""
        if not _valid_payload_id(payload_id) and "payload_id_unvalidated" not in self.defects:
            raise ToyError("value", "payload_id must be 1 to 128 visible ASCII characters")
        params = dict(payload)
        model, messages = params.pop("model", None), params.pop("messages", None)
        return self._call(model, messages, params, security_tier, api_key, payload_id)

    def encrypt_payload(self, payload: Any) -> bytes:
        """The seed's low-level encryption: the package bytes of `payload` for the server."""
        if not isinstance(payload, dict) or not payload:
            raise ToyError("value", "payload must be a non-empty dict")
        try:
            plaintext = json.dumps(payload, ensure_ascii=False, allow_nan=False).encode("utf-8")
        except (TypeError, ValueError):
            raise ToyError("value", "the payload is not representable as JSON") from None
        return self._encrypt(plaintext, self._server(self._base_url()))

    def decrypt_response(self, body: bytes, payload_id: str) -> dict[str, Any]:
        """The seed's low-level decryption: every check of a 200 answer (spec 11, 12.2)."""
        return self._decrypt(body, payload_id, low_level=True)

    def public_key_pem(self) -> str:
        """The client's public key (what X-Public-Key carries, before percent-encoding)."""
        return _spki_pem(self._key)

    def _call(
        self,
        model: Any,
        messages: Any,
        kwargs: dict[str, Any],
        tier: str | None,
        api_key: str | None,
        given_id: str | None,
    ) -> dict[str, Any]:
        base = self._base_url()
        self._check_header_values(tier, api_key)
        self._check_request(model, messages, kwargs)
        plaintext = self._plaintext(model, messages, kwargs, tier, api_key)
        if self.options.secure_memory:
            _with_locked_copy(plaintext, "mlock_required" in self.defects)
        payload_id = self._fixed_pid if "reuse_payload_id" in self.defects else str(uuid.uuid4())
        if "payload_id_not_uuid4" in self.defects:
            payload_id = payload_id.upper()
        if given_id is not None:
            payload_id = given_id
        if self._override is not None:  # another router: its own key, not cached
            server_key = self._fetch_server_key(base)
        else:
            server_key = self._server(base)
        headers = self._headers(payload_id, tier, api_key)
        answer = self._post_with_retries(
            base, lambda: self._encrypt(plaintext, server_key), headers, api_key
        )
        if answer.status_code == 400 and "no_rotation_retry" not in self.defects:
            refused = self._last_body
            fresh = self._fetch_server_key(base)
            changed = _fingerprint(fresh) != _fingerprint(server_key)
            if changed or "resend_on_unchanged_key" in self.defects:
                if "rotation_key_not_cached" not in self.defects:
                    self._server_key = fresh
                if "tier_dropped_on_resend" in self.defects:
                    headers = {k: v for k, v in headers.items() if k != "X-Security-Tier"}
                if "pid_changes_on_resend" in self.defects:
                    headers = {**headers, "X-Payload-ID": str(uuid.uuid4())}
                resend: Body = lambda: self._encrypt(plaintext, fresh)  # noqa: E731
                if "resend_same_package" in self.defects:
                    resend = refused
                answer = self._post_with_retries(base, resend, headers, api_key)
                if answer.status_code == 400 and "resend_twice" in self.defects:
                    answer = self._post_with_retries(
                        base, self._encrypt(plaintext, fresh), headers, api_key
                    )
        if answer.status_code != 200:
            raise self._status_error(answer, api_key)
        ctype = answer.headers.get("content-type", "")
        if "content_type_200_strict" in self.defects and not ctype.startswith("application/json"):
            raise ToyError("value", f"unexpected Content-Type {ctype!r} of a 200 answer")
        if "retries_refused_answer" in self.defects:
            return self._decrypt_or_retry(base, answer, plaintext, server_key, headers, tier)
        return self._decrypt(answer.content, payload_id, tier)

    def _decrypt_or_retry(
        self,
        base: str,
        answer: httpx.Response,
        plaintext: bytes,
        server_key: rsa.RSAPublicKey,
        headers: dict[str, str],
        tier: str | None,
    ) -> dict[str, Any]:
        """The defect retries_refused_answer: a refused 200 answer is POSTed again."""
        for attempt in range(self.options.max_retries + 1):
            try:
                return self._decrypt(answer.content, headers["X-Payload-ID"], tier)
            except ToyError:
                if attempt >= self.options.max_retries:
                    raise
            answer = self._send(
                "POST", base + POST_PATH, self._encrypt(plaintext, server_key), headers, retries=0
            )
        raise AssertionError("unreachable")

    def _check_request(self, model: Any, messages: Any, params: dict[str, Any]) -> None:
        """Caller errors found locally: ValueError before anything is sent."""
        if "model_unvalidated" in self.defects:
            model, messages = "m", []
        if not isinstance(model, str) or not model:
            raise ToyError("value", "model must be a non-empty string")
        if not isinstance(messages, list):
            raise ToyError("value", "messages must be a list")
        if params.get("stream") not in (None, False) and "stream_allowed" not in self.defects:
            raise ToyError("value", "stream=True is not supported by encrypted inference")

    def _check_header_values(self, tier: str | None, api_key: str | None) -> None:
        if tier is not None and tier not in VALID_TIERS and "tier_unvalidated" not in self.defects:
            raise ToyError("value", "security_tier must be one of standard, high, maximum")
        bad_key = api_key is not None and (
            not api_key or any(not 0x21 <= ord(c) <= 0x7E for c in api_key)
        )
        if bad_key and "api_key_unvalidated" not in self.defects:
            raise ToyError("value", "api_key must be visible ASCII characters only")

    def _plaintext(
        self,
        model: str,
        messages: list[dict[str, Any]],
        params: dict[str, Any],
        tier: str | None,
        api_key: str | None,
    ) -> bytes:
        params = dict(params)
        if "drops_params" in self.defects:
            params.pop("stop", None)
        if "drops_unknown_params" in self.defects:
            params = {k: v for k, v in params.items() if k in SEED_PARAMS}
        if "unicode_mangle" in self.defects:
            messages = [
                {**m, "content": unicodedata.normalize("NFC", m["content"])}
                if isinstance(m.get("content"), str)
                else m
                for m in messages
            ]
        request: dict[str, Any] = {"model": model, "messages": messages, **params}
        if "tier_in_payload" in self.defects and tier is not None:
            request["security_tier"] = tier
        if "api_key_in_payload" in self.defects and api_key is not None:
            request["api_key"] = api_key
        try:
            text = json.dumps(
                request,
                ensure_ascii=False,
                separators=(",", ":"),
                allow_nan="nan_allowed" in self.defects,
            )
        except (TypeError, ValueError):
            raise ToyError("value", "the request is not representable as JSON") from None
        data = text.encode("utf-8")
        if "leaks_plaintext_in_logs" in self.defects:
            log.debug("request plaintext: %s", data.decode("utf-8"))
        if "leaks_plaintext_logger_pinned" in self.defects:
            pinned_log.debug("request plaintext: %s", data.decode("utf-8"))
        limit_hit = (
            len(data) >= MAX_PLAINTEXT
            if "size_limit_strict" in self.defects
            else len(data) > MAX_PLAINTEXT
        )
        if limit_hit and "size_limit_off" not in self.defects:
            extra = f": {data[:200]!r}" if "leaks_plaintext_in_errors" in self.defects else ""
            raise ToyError(
                "value", f"request plaintext is {len(data)} bytes, over the 10 MiB limit{extra}"
            )
        return data

    def _headers(self, payload_id: str, tier: str | None, api_key: str | None) -> dict[str, str]:
        pem = _spki_pem(self._key)
        if "public_key_not_encoded" in self.defects:
            der = self._key.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            public = base64.b64encode(der).decode()
        else:
            public = urllib.parse.quote(pem)
        headers = {
            "X-Payload-ID": payload_id,
            "X-Public-Key": public,
            "Content-Type": "application/json"
            if "wrong_content_type" in self.defects
            else "application/octet-stream",
        }
        if api_key:
            headers["Authorization"] = (
                api_key if "no_bearer" in self.defects else f"Bearer {api_key}"
            )
        elif "empty_bearer" in self.defects:  # h11 refuses a value ending in a space
            headers["Authorization"] = "Bearer"
        if tier is not None:
            headers["X-Security-Tier"] = tier.upper() if "tier_mangled" in self.defects else tier
        elif "tier_header_always" in self.defects:
            headers["X-Security-Tier"] = "standard"
        if not self.options.secure_memory and "insecure_mode_differs" in self.defects:
            headers["X-Secure-Memory"] = "off"
        if "content_encoding_identity" in self.defects:
            headers["Content-Encoding"] = "identity"
        return headers

    def _encrypt(self, plaintext: bytes, server_key: rsa.RSAPublicKey) -> bytes:
        if "reuse_nonce" in self.defects:
            if self._fixed_aes is None:
                self._fixed_aes = (secrets.token_bytes(32), secrets.token_bytes(12))
            aes_key, nonce = self._fixed_aes
        else:
            aes_key = secrets.token_bytes(32)
            nonce = secrets.token_bytes(8 if "short_nonce" in self.defects else 12)
        aad = b"nomyo" if "aad_used" in self.defects else None
        sealed = AESGCM(aes_key).encrypt(nonce, plaintext, aad)
        ciphertext, tag = sealed[:-16], sealed[-16:]
        if "tag_appended" in self.defects:
            ciphertext = sealed
        sha1 = hashes.SHA1()  # noqa: S303 (the defects oaep_sha1 / mgf1_sha1, on purpose)
        digest = sha1 if "oaep_sha1" in self.defects else hashes.SHA256()
        mgf = sha1 if {"oaep_sha1", "mgf1_sha1"} & self.defects else hashes.SHA256()
        wrapped = server_key.encrypt(
            aes_key, padding.OAEP(mgf=padding.MGF1(mgf), algorithm=digest, label=None)
        )
        b64 = lambda raw: base64.b64encode(raw).decode("ascii")  # noqa: E731
        encrypted_payload = {"ciphertext": b64(ciphertext), "nonce": b64(nonce), "tag": b64(tag)}
        if "noncanonical_base64" in self.defects:  # 16 bytes: "...X==", X's low 4 bits unused
            text = encrypted_payload["tag"]
            alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
            odd = alphabet[alphabet.index(text[-3]) | 1]
            encrypted_payload["tag"] = text[:-3] + odd + "=="
        if "extra_package_field" in self.defects:
            encrypted_payload["aad"] = ""
        package = {
            "version": "1" if "wrong_version" in self.defects else VERSION,
            "algorithm": ALGORITHM,
            "encrypted_payload": encrypted_payload,
            "encrypted_aes_key": b64(wrapped),
            "key_algorithm": "RSA-OAEP-SHA256",
            "payload_algorithm": "AES-256-GCM",
        }
        return json.dumps(package).encode("ascii")

    def _post_with_retries(
        self, base: str, body: Body, headers: dict[str, str], api_key: str | None
    ) -> httpx.Response:
        """POST, retrying 429/5xx and network failures up to max_retries times; `body` makes
        a fresh package per attempt (RTY-15). Retries exhausted on 5xx or network failures
        drop the cached server key (DISC-12)."""
        retries = self.options.max_retries + (1 if "extra_retries" in self.defects else 0)
        path = "/v1/chat/completions" if "wrong_post_path" in self.defects else POST_PATH
        try:
            answer = self._send("POST", base + path, body, headers, retries=retries)
        except ToyError as exc:
            if exc.kind == "connection":
                self._drop_server_key()
            raise
        if answer.status_code >= 500 and answer.status_code in RETRYABLE:
            self._drop_server_key()
        return answer

    def _drop_server_key(self) -> None:
        if "key_kept_after_failures" not in self.defects:
            self._server_key = None

    def _exchange(
        self, method: str, url: str, content: bytes | None, headers: Any
    ) -> httpx.Response:
        """One HTTP exchange bounded as a whole by the timeout (API-21): httpx bounds each
        read only, so the body is read in chunks against a deadline."""
        if {"timeout_per_read", "no_timeout"} & self.defects:
            return self._http.request(method, url, content=content, headers=headers)
        deadline = time.monotonic() + self.options.timeout
        request = self._http.build_request(method, url, content=content, headers=headers)
        streamed = self._http.send(request, stream=True)
        try:
            data = bytearray()
            for chunk in streamed.iter_bytes():
                data += chunk
                if time.monotonic() > deadline:
                    raise httpx.ReadTimeout("the answer took too long", request=request)
        finally:
            streamed.close()
        kept = [(k, v) for k, v in streamed.headers.multi_items() if k != "content-encoding"]
        return httpx.Response(
            streamed.status_code, headers=kept, content=bytes(data), request=request
        )

    def _send(
        self,
        method: str,
        url: str,
        body: Body = None,
        headers: dict[str, str] | None = None,
        *,
        retries: int,
    ) -> httpx.Response:
        """One request with the retry rules (429/5xx and network failures); a callable
        `body` is called for each attempt. A failed certificate check is not retried."""
        if callable(body) and "same_package_on_retry" in self.defects:
            body = body()
        retryable = set(RETRYABLE)
        if "retry_400" in self.defects:
            retryable.add(400)
        if "retry_all_statuses" in self.defects:
            retryable.update(code for code in range(300, 600))
        if "no_retry_503" in self.defects:
            retryable.discard(503)
        attempt = 0
        first: httpx.Response | None = None
        while True:
            if attempt > 0 and headers and "tier_dropped_on_retry" in self.defects:
                headers = {k: v for k, v in headers.items() if k != "X-Security-Tier"}
            if attempt > 0 and headers and "pid_changes_on_retry" in self.defects:
                headers = {**headers, "X-Payload-ID": str(uuid.uuid4())}
            sent: Any = headers
            if headers and "duplicate_payload_id_header" in self.defects:
                sent = [*headers.items(), ("X-Payload-ID", headers["X-Payload-ID"])]
            content = body() if callable(body) else body
            self._last_body = content
            try:
                answer = self._exchange(method, url, content, sent)
            except httpx.TransportError as exc:
                if "drop_internal" in self.defects:
                    raise
                certificate = _certificate_failure(exc)
                certificate = certificate and "retries_tls_failure" not in self.defects
                if attempt >= retries or "no_retry_on_drop" in self.defects or certificate:
                    raise ToyError(
                        "connection", f"connection failed: {type(exc).__name__}"
                    ) from None
                attempt += 1
                time.sleep(self._backoff(attempt, None))
                continue
            first = first or answer
            if answer.status_code not in retryable or attempt >= retries:
                if "first_error_kept" in self.defects and answer.status_code != 200:
                    return first
                return answer
            attempt += 1
            time.sleep(self._backoff(attempt, answer.headers.get("retry-after")))

    def _backoff(self, attempt: int, retry_after: str | None) -> float:
        growth = 1 if "constant_backoff" in self.defects else 2 ** (attempt - 1)
        delay = self.options.retry_backoff * growth
        if "no_jitter" not in self.defects:
            delay += random.uniform(0, delay / 2)  # RTY-8
        if retry_after is not None and "ignore_retry_after" not in self.defects:
            if "retry_after_crash" in self.defects and float(retry_after) < 0:
                raise ValueError("negative Retry-After")
            try:
                asked = float(retry_after.strip())
            except ValueError:
                asked = -1.0
            if asked >= 0:
                cap = 12.0 if "retry_after_uncapped" in self.defects else None
                delay = min(asked, cap if cap is not None else self.options.retry_after_cap)
        return delay

    # -- errors ------------------------------------------------------------------------------

    def _status_error(self, answer: httpx.Response, api_key: str | None = None) -> ToyError:
        """Map a non-200 answer to a ToyError; any body shape is handled."""
        code = answer.status_code
        kinds = {
            400: "invalid_request",
            401: "authentication",
            403: "api" if "wrong_status_map" in self.defects else "forbidden",
            429: "rate_limit",
            500: "server",
            503: "service_unavailable",
        }
        kind = kinds.get(code, "api")
        if code >= 500 and code not in kinds and "other_5xx_as_server" in self.defects:
            kind = "server"
        raw = answer.content
        if api_key and "no_redaction" not in self.defects:  # ERR-20: before anything is made
            raw = raw.replace(api_key.encode("utf-8"), b"[redacted]")
        body: Any = None
        labelled = "json" in answer.headers.get("content-type", "")
        small = len(raw) <= 64 * 1024 or "error_body_parse_limit" not in self.defects
        if raw and small and (labelled or "content_type_sensitive" not in self.defects):
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
        if "error_body_crash" in self.defects:
            detail_value = body["detail"]  # KeyError/TypeError on anything but a detail object
        detail: str | None
        if isinstance(body, dict):
            detail_value = body.get("detail")
            if detail_value is None and "detail" not in body:
                detail = None
            elif isinstance(detail_value, str):
                detail = detail_value
            elif "object_detail_str" in self.defects:
                detail = str(detail_value)
            else:
                detail = json.dumps(detail_value)
            details: dict[str, Any] = body
        else:
            text = raw.decode("utf-8", errors="replace")
            if "text_detail_uncut" not in self.defects:
                text = text[:1024]
            detail = text if text or "empty_detail_string" in self.defects else None
            details = {"detail": detail} if detail is not None else {}
        if "details_missing" in self.defects:
            details = {}
        message = f"HTTP {code}"
        if detail is not None and "no_detail" not in self.defects:
            message = f"HTTP {code}: {detail}"
        if "leaks_api_key_in_errors" in self.defects and api_key:
            message += f" (api key {api_key})"
        status = None if "wrong_status_code" in self.defects else code
        return ToyError(kind, message, status, details)

    # -- response ----------------------------------------------------------------------------

    def _decrypt(
        self, body: bytes, payload_id: str, tier: str | None = None, low_level: bool = False
    ) -> dict[str, Any]:
        _limits(body, "package", self.defects)
        try:
            package = _json(body, self.defects)
        except ValueError:
            kind = "security" if "body_not_object_as_security" in self.defects else "value"
            raise ToyError(kind, "response is not JSON") from None
        if not isinstance(package, dict):
            raise ToyError("value", "response is not a JSON object")
        if "structure_crash" in self.defects:
            package["version"].strip()
            package["encrypted_payload"]["ciphertext"].strip()
        known = sorted(set(package) - {"processed_at"})
        if "strict_unknown_fields" in self.defects and known != sorted(PACKAGE_FIELDS):
            raise ToyError("value", "unexpected package members")
        for field in ("version", "algorithm", "encrypted_aes_key"):
            if not isinstance(package.get(field), str):
                raise ToyError("value", f"response package: {field} missing or not a string")
        inner = package.get("encrypted_payload")
        if not isinstance(inner, dict):
            raise ToyError("value", "response package: encrypted_payload is not an object")
        if "strict_payload_members" in self.defects and set(inner) - {"ciphertext", "nonce", "tag"}:
            raise ToyError("value", "response package: unknown members in encrypted_payload")
        for field in ("ciphertext", "nonce", "tag"):
            if not isinstance(inner.get(field), str):
                raise ToyError("value", f"response package: {field} missing or not a string")
        if package["version"] != VERSION and "no_version_check" not in self.defects:
            raise ToyError("value", "unsupported package version")
        if package["algorithm"] != ALGORITHM and "no_algorithm_check" not in self.defects:
            raise ToyError("value", "unsupported package algorithm")
        for field, want in (
            ("key_algorithm", "RSA-OAEP-SHA256"),
            ("payload_algorithm", "AES-256-GCM"),
        ):
            if (
                field in package
                and package[field] != want
                and ("no_key_algorithm_check" not in self.defects)
            ):
                raise ToyError("value", f"unsupported {field}")
        plaintext = self._open(package, inner)
        _limits(plaintext, "plaintext", self.defects)
        unchecked = low_level and "low_level_unchecked" in self.defects
        try:
            result = _json(plaintext.decode("utf-8"), self.defects)
        except ValueError as exc:
            if unchecked:
                return {"raw": plaintext.decode("utf-8", "replace")}
            kind = "value" if "bad_plaintext_value" in self.defects else "security"
            cause = exc if "plaintext_chained" in self.defects else None
            raise ToyError(kind, "decrypted response is not UTF-8 JSON") from cause
        if not isinstance(result, dict):
            if "non_object_plaintext_accepted" in self.defects or unchecked:
                return result  # type: ignore[return-value]
            raise ToyError("security", "decrypted response is not a JSON object")
        metadata = result.get("_metadata")
        if unchecked:
            return result
        lenient = "metadata_not_object_bound" in self.defects and metadata is not None
        bound = (
            metadata.get("payload_id") == payload_id if isinstance(metadata, dict) else lenient
        )
        if "binds_top_level_payload_id" in self.defects:
            bound = bound or package.get("payload_id") == payload_id
        if isinstance(metadata, dict) and isinstance(metadata.get("payload_id"), str):
            bound = bound or _near_miss(metadata["payload_id"], payload_id, self.defects)
        if not bound and "no_pid_check" not in self.defects:
            raise ToyError("security", "response is not bound to this request")
        served = metadata.get("security_tier") if isinstance(metadata, dict) else None
        if tier is not None and served != tier and "no_tier_check" not in self.defects:
            raise ToyError("security", "response was not served at the tier asked for")
        if served is None and "tier_required" in self.defects:
            raise ToyError("security", "response names no security tier")
        if "own_metadata_missing" in self.defects:
            return result
        own: dict[str, Any] = {
            "payload_id": payload_id,
            "is_encrypted": True,
            "encryption_algorithm": package["algorithm"],
        }
        if "own_payload_id_wrong" in self.defects:
            own["payload_id"] = str(uuid.uuid4())
        if "own_flags_not_set" in self.defects:
            del own["is_encrypted"], own["encryption_algorithm"]
        if "processed_at_top_level" in self.defects:
            own["processed_at"] = package.get("processed_at")
        if "processed_at_local_clock" in self.defects:
            own["processed_at"] = time.time()
        if isinstance(metadata, dict) and "drops_server_metadata" not in self.defects:
            metadata.update(own)
        else:
            result["_metadata"] = own
        return result

    def _open(self, package: dict[str, Any], inner: dict[str, str]) -> bytes:
        """All crypto in one step, failing with one opaque message (unless leaky)."""
        leaky = "leaky_crypto_errors" in self.defects
        step = "base64"
        try:
            decode = _lenient_b64 if "lenient_base64" in self.defects else _strict_b64
            wrapped = decode(package["encrypted_aes_key"])
            ciphertext = decode(inner["ciphertext"])
            nonce = decode(inner["nonce"])
            tag = decode(inner["tag"])
            step = "nonce/tag length"
            if len(nonce) != 12 or len(tag) != 16:
                raise ValueError("length")
            step = "RSA-OAEP unwrap of encrypted_aes_key"
            oaep = padding.OAEP(
                mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None
            )
            try:
                aes_key = self._key.decrypt(wrapped, oaep)
            except ValueError:
                if "oaep_sha1_fallback" not in self.defects:
                    raise
                sha1 = hashes.SHA1()  # noqa: S303 (the defect oaep_sha1_fallback, on purpose)
                aes_key = self._key.decrypt(
                    wrapped, padding.OAEP(mgf=padding.MGF1(sha1), algorithm=sha1, label=None)
                )
            step = "AES-GCM tag check of ciphertext"
            if "no_tag_check" in self.defects:
                counter = nonce + b"\x00\x00\x00\x02"  # GCM's keystream starts at J0 + 1
                unauthenticated = Cipher(algorithms.AES(aes_key), modes.CTR(counter)).decryptor()
                return unauthenticated.update(ciphertext) + unauthenticated.finalize()
            return AESGCM(aes_key).decrypt(nonce, ciphertext + tag, None)
        except (ValueError, binascii.Error, Exception) as exc:
            message = f"decryption failed at {step}" if leaky else "decryption failed"
            cause = exc if "crypto_error_chained" in self.defects else None
            kind = "value" if "crypto_errors_as_value" in self.defects else "security"
            raise ToyError(kind, message) from cause
