"""A "foreign" port behind the testee protocol: proof that `--impl=cmd:` judges a port fairly.

    python -m tests.suite.foreign_port [--defect=NAME]

Two parts in one file, as a port author in another language would ship them:

- `Client`: a small NOMYO client written from spec/protocol.md alone with `cryptography` and
  `httpx` (it imports neither nomyo_ref nor the suite, and shares no code with
  tests/suite/toy_client.py: an independent implementation on purpose, synchronous, with
  its own error type carrying the canonical kind);
- a testee loop speaking spec/testee.md over stdin/stdout, with a strict JSON parser (NaN
  literals refused, as in JavaScript, Go or Rust) that decodes the suite's tagged numbers.

`--defect=NAME` switches on one wire-level defect of a kind real ports have (`DEFECTS`);
without one the port conforms and the suite must find nothing.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import json
import math
import os
import random
import re
import secrets
import ssl
import sys
import tempfile
import time
import urllib.parse
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

DEFECTS: dict[str, str] = {
    "tag_appended": "no 'tag' member: the GCM tag is appended to the ciphertext (WebCrypto)",
    "pid_not_uuid": "payload ids are 32 random hex digits, not UUIDs",
    "no_answer_checks": "accepts any answer: no version/algorithm, _metadata, binding or tier "
    "checks",
    "one_error_class": "every non-200 answer is one error (kind api) without a status",
    "hang_on_drop": "hangs when the connection is dropped before a complete answer",
    "stdout_logging": "an HTTP library that prints each request to stdout",
    "keys_in_cwd": "without a key directory, keys are saved to ./client_keys (its own cwd)",
}

PROTOCOL = "nomyo-testee/1"
KEY_PATH = "/pki/public_key"
POST_PATH = "/v1/chat/secure_completion"
VERSION = "1.0"
ALGORITHM = "hybrid-aes256-rsa4096"
KEY_ALGORITHM = "RSA-OAEP-SHA256"
PAYLOAD_ALGORITHM = "AES-256-GCM"
TIERS = ("standard", "high", "maximum")
MAX_PLAINTEXT = 10 * 1024 * 1024
MAX_ANSWER = 32 * 1024 * 1024
ERROR_BODY_JSON_LIMIT = 1024 * 1024
RETRYABLE = (429, 500, 502, 503, 504)
KINDS = {400: "invalid_request", 401: "authentication", 403: "forbidden", 429: "rate_limit",
         500: "server", 503: "service_unavailable"}  # fmt: skip
DEFAULT_TEXT = {400: "Invalid request", 401: "Authentication failed", 403: "Forbidden",
                404: "Not found", 429: "Rate limit exceeded", 500: "Server error",
                503: "Service unavailable"}  # fmt: skip
OAEP = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
SERVER_KEY_TTL = 3600.0

DEFECT: str | None = None
WARNINGS: list[str] = []  # what the port warned about during the current operation


def warn(text: str) -> None:
    """The port's warning channel (the testee reports it in the answer's `warnings`)."""
    WARNINGS.append(f"UserWarning: {text}")


class PortError(Exception):
    """Every error of this port: the canonical kind, a message, the status and details."""

    def __init__(
        self, kind: str, message: str, status: int | None = None, details: Any = None
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status
        self.details = details
        self.retryable = True


def _certificate_failure(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return "CERTIFICATE_VERIFY_FAILED" in str(exc)


def value_error(message: str) -> PortError:
    return PortError("value", message)


def decryption_failed() -> PortError:
    return PortError("security", "decryption failed")


# -- JSON, strictly -------------------------------------------------------------------------


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError("duplicate member name")
        out[key] = value
    return out


def strict_json(data: bytes) -> Any:
    """RFC 8259 JSON from UTF-8 bytes: no BOM, no NaN, no duplicate names, bounded depth."""
    text = data.decode("utf-8")  # UnicodeDecodeError is a ValueError
    if text.startswith("\ufeff"):
        raise ValueError("byte order mark")
    try:
        return json.loads(text, parse_constant=_no_constant, object_pairs_hook=_unique)
    except RecursionError:  # nested deeper than the parser goes: refused, never a crash
        raise ValueError("nested too deeply") from None


# -- base URLs (4.2, 4.3) -------------------------------------------------------------------

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://(.*)$", re.DOTALL)


def normalise_url(raw: Any, allow_http: bool) -> str:
    """The normalised base URL, or PortError (security for http without allow_http)."""
    if not isinstance(raw, str):
        raise value_error("base URL must be a string")
    url = raw.strip()
    match = _SCHEME.match(url)
    if match is None:
        raise value_error("base URL needs a scheme and a host")
    scheme, rest = match.group(1).lower(), match.group(2)
    if scheme == "http" and not allow_http:
        raise PortError("security", "http:// base URL refused: pass allow_http for development")
    if scheme not in ("http", "https"):
        raise value_error(f"base URL scheme {scheme!r} is not https")
    if any(ord(c) <= 0x20 or ord(c) >= 0x7F or c == "\\" for c in rest):
        raise value_error("base URL contains whitespace, control or non-ASCII characters")
    if "?" in rest or "#" in rest:
        raise value_error("base URL must not have a query or fragment")
    authority, slash, path = rest.partition("/")
    if "@" in authority:
        raise value_error("base URL must not carry user-info")
    host, port = authority, None
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            raise value_error("base URL has a malformed IPv6 host")
        host, tail = authority[: end + 1], authority[end + 1 :]
        if tail:
            if not tail.startswith(":"):
                raise value_error("base URL has a malformed port")
            port = tail[1:]
    elif ":" in authority:
        host, port = authority.rsplit(":", 1)
    if not host or (":" in host.strip("[]") and not host.startswith("[")):
        raise value_error("base URL has no host")
    if port is not None and not (port.isdigit() and 1 <= int(port) <= 65535):
        raise value_error("base URL has an invalid port")
    path = ("/" + path if slash else "").rstrip("/")
    return f"{scheme}://{authority}{path}"


# -- keys -----------------------------------------------------------------------------------


def _fingerprint(public_key: Any) -> str:
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def normalise_pins(pins: Any) -> frozenset[str] | None:
    """The pinned fingerprints: one string or a list of them (DISC-25), any case, ':' or not."""
    if pins is None:
        return None
    listed = [pins] if isinstance(pins, str) else pins
    if not isinstance(listed, list) or not listed:
        raise value_error("server_key_sha256 must be a fingerprint or a list of them")
    out = set()
    for pin in listed:
        cleaned = pin.replace(":", "").strip().lower() if isinstance(pin, str) else ""
        if not re.fullmatch(r"[0-9a-f]{64}", cleaned):
            raise value_error("server_key_sha256 must be 32 bytes of hexadecimal")
        out.add(cleaned)
    return frozenset(out)


_PEM_LABEL = re.compile(rb"-----BEGIN ([^-]*)-----")


def parse_server_key(content: bytes) -> Any:
    """Exactly one SPKI PEM block, RSA of 2048 to 16384 bits, exponent 65537 (5.2)."""
    text = content.strip()
    if (
        _PEM_LABEL.findall(content) != [b"PUBLIC KEY"]
        or not text.startswith(b"-----BEGIN PUBLIC KEY-----")
        or not text.endswith(b"-----END PUBLIC KEY-----")
    ):
        raise PortError("security", "the server key is not one SPKI PEM block")
    try:
        key = serialization.load_pem_public_key(text)
    except ValueError:
        raise PortError("security", "the server key is not a PEM public key") from None
    if (
        not isinstance(key, rsa.RSAPublicKey)
        or not 2048 <= key.key_size <= 16384
        or key.public_numbers().e != 65537
    ):
        raise PortError("security", "the server key is not an acceptable RSA key")
    return key


def _public_pem(key: Any) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )


def _checked_private(key: Any, where: str) -> Any:
    if not isinstance(key, rsa.RSAPrivateKey) or key.key_size < 2048:
        raise value_error(f"{where}: not an RSA key of at least 2048 bits")
    return key


def _write_atomically(path: str, data: bytes, mode: int) -> None:
    directory = os.path.dirname(path)
    fd, temp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.unlink(temp)
        raise


def save_key_pair(key: Any, directory: str, password: str | None) -> tuple[str, str]:
    if not os.path.isdir(directory):
        os.makedirs(directory, mode=0o700)
        os.chmod(directory, 0o700)
    encryption: Any = (
        serialization.BestAvailableEncryption(password.encode("utf-8"))
        if password
        else serialization.NoEncryption()
    )
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    private_path = os.path.join(directory, "private_key.pem")
    public_path = os.path.join(directory, "public_key.pem")
    _write_atomically(private_path, private, 0o600)
    _write_atomically(public_path, _public_pem(key).encode("ascii"), 0o644)
    return private_path, public_path


_LOADED: dict[tuple[bytes, str | None], Any] = {}


def load_key_pair(private_path: str, public_path: str | None, password: str | None) -> Any:
    try:
        with open(private_path, "rb") as handle:
            data = handle.read()
        digest = (hashlib.sha256(data).digest(), password)
        key = _LOADED.get(digest)  # the same bytes give the same key: validate them once
        if key is None:
            key = serialization.load_pem_private_key(
                data, password.encode("utf-8") if password else None
            )
            _LOADED[digest] = key
    except (OSError, ValueError, TypeError):
        raise value_error(f"{private_path}: cannot load the private key") from None
    _checked_private(key, private_path)
    if public_path is not None:
        try:
            with open(public_path, "rb") as handle:
                public = serialization.load_pem_public_key(handle.read())
        except (OSError, ValueError):
            raise value_error(f"{public_path}: cannot load the public key") from None
        if _fingerprint(public) != _fingerprint(key.public_key()):
            raise value_error(f"{public_path} does not match {private_path}")
    return key


def new_key() -> Any:
    return rsa.generate_private_key(public_exponent=65537, key_size=4096)


# -- packages (7, 11) -----------------------------------------------------------------------


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: Any) -> bytes:
    """Strict, canonical standard base64, or 'decryption failed'."""
    if not isinstance(text, str):
        raise decryption_failed()
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise decryption_failed() from None
    if b64(data) != text:
        raise decryption_failed()
    return data


def seal(plaintext: bytes, recipient: Any) -> bytes:
    key, nonce = secrets.token_bytes(32), secrets.token_bytes(12)
    sealed = AESGCM(key).encrypt(nonce, plaintext, None)
    ciphertext, tag = sealed[:-16], sealed[-16:]
    payload = {"ciphertext": b64(ciphertext), "nonce": b64(nonce), "tag": b64(tag)}
    if DEFECT == "tag_appended":
        payload = {"ciphertext": b64(sealed), "nonce": b64(nonce)}
    package = {
        "version": VERSION,
        "algorithm": ALGORITHM,
        "encrypted_payload": payload,
        "encrypted_aes_key": b64(recipient.encrypt(key, OAEP)),
        "key_algorithm": KEY_ALGORITHM,
        "payload_algorithm": PAYLOAD_ALGORITHM,
    }
    return json.dumps(package).encode("utf-8")


def open_package(body: bytes, private_key: Any) -> tuple[dict[str, Any], str]:
    """The decrypted plaintext object and the package's algorithm (11.1-11.3)."""
    if len(body) > MAX_ANSWER:
        raise value_error("answer too large")
    try:
        package = strict_json(body)
    except ValueError:
        raise value_error("the answer is not a JSON package") from None
    if not isinstance(package, dict):
        raise value_error("the answer is not a JSON object")
    payload = package.get("encrypted_payload")
    fields = [package.get(k) for k in ("version", "algorithm", "encrypted_aes_key")]
    if not all(isinstance(f, str) for f in fields) or not isinstance(payload, dict):
        raise value_error("the answer package lacks a member")
    if not all(isinstance(payload.get(k), str) for k in ("ciphertext", "nonce", "tag")):
        raise value_error("the answer package lacks a member of encrypted_payload")
    checks = DEFECT != "no_answer_checks"
    if checks and package["version"] != VERSION:
        raise value_error("unsupported package version")
    if checks and package["algorithm"] != ALGORITHM:
        raise value_error("unsupported package algorithm")
    for name, wanted in (
        ("key_algorithm", KEY_ALGORITHM),
        ("payload_algorithm", PAYLOAD_ALGORITHM),
    ):
        if checks and name in package and package[name] != wanted:
            raise value_error(f"unsupported {name}")
    wrapped, nonce = unb64(package["encrypted_aes_key"]), unb64(payload["nonce"])
    ciphertext, tag = unb64(payload["ciphertext"]), unb64(payload["tag"])
    if len(nonce) != 12 or len(tag) != 16:
        raise decryption_failed()
    try:
        key = private_key.decrypt(wrapped, OAEP)
    except ValueError:
        raise decryption_failed() from None
    if len(key) != 32:
        raise decryption_failed()
    try:
        plaintext = AESGCM(key).decrypt(nonce, ciphertext + tag, None)
    except InvalidTag:
        raise decryption_failed() from None
    try:
        obj = strict_json(plaintext)
    except ValueError:
        raise PortError("security", "the decrypted answer is not a JSON object") from None
    if not isinstance(obj, dict):
        raise PortError("security", "the decrypted answer is not a JSON object")
    return obj, package["algorithm"]


# -- errors (13) ----------------------------------------------------------------------------


def redacted(value: Any, secret: str | None) -> Any:
    """Every occurrence of the call's API key replaced (ERR-20), in strings and names."""
    if secret is None:
        return value
    if isinstance(value, str):
        return value.replace(secret, "[redacted]")
    if isinstance(value, list):
        return [redacted(v, secret) for v in value]
    if isinstance(value, dict):
        return {redacted(k, secret): redacted(v, secret) for k, v in value.items()}
    return value


def http_error(status: int, body: bytes, api_key: str | None) -> PortError:
    """The error of a non-200 answer: kind by status, detail and details from the body."""
    value: Any = None
    parsed = False
    if len(body) <= ERROR_BODY_JSON_LIMIT:
        try:
            value, parsed = json.loads(body.decode("utf-8")), True
        except (ValueError, RecursionError):
            parsed = False
    detail: str | None
    if parsed and isinstance(value, dict):
        details: Any = redacted(value, api_key)
        raw = details.get("detail")
        if "detail" not in details:
            detail = None
        else:
            detail = raw if isinstance(raw, str) else json.dumps(raw)
    else:
        text = redacted(body.decode("utf-8", errors="replace"), api_key)
        detail = text[:1024] if body else None
        details = {"detail": detail} if detail is not None else {}
    message = detail if detail is not None else DEFAULT_TEXT.get(status, f"HTTP status {status}")
    if DEFECT == "one_error_class":
        return PortError("api", message, None, details)
    return PortError(KINDS.get(status, "api"), message, status, details)


@dataclass(frozen=True)
class Answer:
    """One complete HTTP answer."""

    status: int
    headers: httpx.Headers
    content: bytes


# -- the client -----------------------------------------------------------------------------

_CONTEXTS: dict[tuple[str | None, int], ssl.SSLContext] = {}


def tls_context(ca_cert: str | None) -> ssl.SSLContext:
    """Verification on, TLS 1.2 or newer; exactly `ca_cert` when given, else the system store
    (one context per bundle file version: loading the system store costs time per client)."""
    stamp = os.stat(ca_cert).st_mtime_ns if ca_cert and os.path.exists(ca_cert) else 0
    context = _CONTEXTS.get((ca_cert, stamp))
    if context is None:
        context = ssl.create_default_context(cafile=ca_cert)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        _CONTEXTS[(ca_cert, stamp)] = context
    return context


class Client:
    """One client object: its options, key pair, server key cache and HTTP connection."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.allow_http = bool(config.get("allow_http"))
        self.base_url = self._url(config.get("base_url"))
        self.api_key = self._api_key(config.get("api_key"))
        retries = config.get("max_retries")
        retries = 2 if retries is None else retries
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise value_error("max_retries must be a non-negative integer")
        self.max_retries = retries
        backoff, cap = config.get("retry_backoff"), config.get("retry_after_cap")
        self.backoff = 1.0 if backoff is None else float(backoff)
        self.retry_after_cap = 60.0 if cap is None else float(cap)
        self.pins = normalise_pins(config.get("server_key_sha256"))
        self.key_dir = config.get("key_dir")
        timeout = config.get("timeout")
        self.timeout = 60.0 if timeout is None else float(timeout)
        self.ca_cert = config.get("ca_cert")
        self._tls = tls_context(self.ca_cert)
        self._http: httpx.Client | None = None
        self._private: Any = None
        self._server_keys: dict[str, tuple[Any, float]] = {}

    def _url(self, raw: Any) -> str:
        url = normalise_url(raw, self.allow_http)
        if url.startswith("http://"):
            warn("insecure: http:// sends everything without TLS")
        return url

    @staticmethod
    def _api_key(value: Any) -> str | None:
        if value is None or value == "":
            return None
        if not isinstance(value, str) or not all(0x21 <= ord(c) <= 0x7E for c in value):
            raise value_error("API key must be visible ASCII")
        return value

    def __repr__(self) -> str:
        return f"<Client {self.base_url} api_key={'set' if self.api_key else 'none'}>"

    # -- I/O ----------------------------------------------------------------------------

    def http(self) -> httpx.Client:
        if self._http is None:
            self._http = httpx.Client(
                verify=self._tls, timeout=self.timeout, follow_redirects=False, trust_env=False
            )
        return self._http

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    def private_key(self) -> Any:
        if self._private is None:
            if self.key_dir is None:
                self._private = new_key()
                if DEFECT == "keys_in_cwd":  # a port that "helpfully" persists its keys
                    os.makedirs("client_keys", exist_ok=True)
                    save_key_pair(self._private, "client_keys", None)
            else:
                private = os.path.join(self.key_dir, "private_key.pem")
                public = os.path.join(self.key_dir, "public_key.pem")
                if os.path.exists(private):
                    self._private = load_key_pair(
                        private, public if os.path.exists(public) else None, None
                    )
                else:
                    self._private = new_key()
                    save_key_pair(self._private, self.key_dir, None)
        return self._private

    def _send(self, method: str, url: str, **kwargs: Any) -> Answer:
        """One exchange, bounded as a whole by the timeout (API-21): connecting, sending and
        reading the complete answer."""
        if DEFECT == "stdout_logging":
            print(f"httpclient: {method} {url}", flush=True)
        deadline = time.monotonic() + self.timeout
        try:
            with self.http().stream(method, url, **kwargs) as response:
                chunks = []
                for chunk in response.iter_bytes():
                    chunks.append(chunk)
                    if time.monotonic() > deadline:
                        raise PortError("connection", "the answer took longer than the timeout")
                return Answer(response.status_code, response.headers, b"".join(chunks))
        except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
            if DEFECT == "hang_on_drop" and method == "POST":
                time.sleep(3600)
            raise PortError("connection", f"connection failed: {type(exc).__name__}") from None
        except httpx.HTTPError as exc:
            error = PortError("connection", f"connection failed: {type(exc).__name__}")
            error.retryable = not _certificate_failure(exc)  # RTY-16
            raise error from None

    def _wait(self, attempt: int, answer: Answer | None) -> None:
        delay = self.backoff * 2 ** (attempt - 1)
        delay += random.uniform(0, delay / 2)
        header = answer.headers.get("retry-after") if answer is not None else None
        if header is not None and header.strip().isdigit():
            delay = min(float(int(header.strip())), self.retry_after_cap)
        time.sleep(delay)

    def _with_retries(self, attempt_once: Any) -> Answer:
        """Run attempts until one is not retryable or max_retries retries are spent."""
        attempt = 0
        while True:
            try:
                answer = attempt_once()
            except PortError as exc:
                if exc.kind != "connection" or not exc.retryable or attempt >= self.max_retries:
                    raise
                attempt += 1
                self._wait(attempt, None)
                continue
            if answer.status not in RETRYABLE or attempt >= self.max_retries:
                return answer
            attempt += 1
            self._wait(attempt, answer)

    def server_key(self, base: str, api_key: str | None, *, refetch: bool = False) -> Any:
        """The cached server key of `base`, fetched (with retries) when absent or old."""
        cached = self._server_keys.get(base)
        if cached is not None and not refetch and time.monotonic() - cached[1] < SERVER_KEY_TTL:
            return cached[0]
        answer = self._with_retries(lambda: self._send("GET", base + KEY_PATH))
        if answer.status != 200:
            raise http_error(answer.status, answer.content, api_key)
        key = parse_server_key(answer.content)
        if self.pins is not None and _fingerprint(key) not in self.pins:
            raise PortError("security", "the server key does not match the pinned fingerprint")
        self._server_keys[base] = (key, time.monotonic())
        return key

    # -- create -------------------------------------------------------------------------

    def create(self, model: Any, messages: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        params = dict(kwargs)
        tier = params.pop("security_tier", None)
        api_key = self._api_key(params.pop("api_key")) if "api_key" in params else self.api_key
        base = self.base_url
        if "base_url" in params:
            base = self._url(params.pop("base_url"))
        if not isinstance(model, str) or not model:
            raise value_error("model must be a non-empty string")
        if not isinstance(messages, list):
            raise value_error("messages must be a list")
        if "stream" in params and params["stream"] is not False:
            raise value_error("streaming is not supported")
        if tier is not None and (not isinstance(tier, str) or tier not in TIERS):
            raise value_error("security_tier must be standard, high or maximum")
        try:
            text = json.dumps({"model": model, "messages": messages, **params}, allow_nan=False)
        except (ValueError, TypeError):
            raise value_error("the request holds values JSON cannot represent") from None
        plaintext = text.encode("utf-8")
        if len(plaintext) > MAX_PLAINTEXT:
            raise value_error("the request is larger than 10 MiB")
        payload_id = secrets.token_hex(16) if DEFECT == "pid_not_uuid" else str(uuid.uuid4())
        private = self.private_key()
        headers = {
            "X-Payload-ID": payload_id,
            "X-Public-Key": urllib.parse.quote(_public_pem(private), safe=""),
            "Content-Type": "application/octet-stream",
        }
        if api_key is not None:
            headers["Authorization"] = f"Bearer {api_key}"
        if tier is not None:
            headers["X-Security-Tier"] = tier
        try:
            answer = self._post(base, plaintext, headers, api_key)
        except PortError as exc:
            if exc.kind == "connection":
                self._server_keys.pop(base, None)  # DISC-12: fetch it anew next time
            raise
        if answer.status != 200:
            if answer.status in (500, 502, 503, 504):
                self._server_keys.pop(base, None)  # DISC-12
            raise http_error(answer.status, answer.content, api_key)
        return self._answer(answer.content, private, payload_id, tier)

    def _post(
        self, base: str, plaintext: bytes, headers: dict[str, str], api_key: str | None
    ) -> Answer:
        """The POST with its retries, and the one resend after a key rotation (5.3)."""
        url = base + POST_PATH

        def attempt() -> Answer:
            body = seal(plaintext, self.server_key(base, api_key))  # fresh key, nonce: RTY-15
            return self._send("POST", url, content=body, headers=headers)

        answer = self._with_retries(attempt)
        if answer.status != 400:
            return answer
        used = self._server_keys.get(base)
        try:
            fresh = self.server_key(base, api_key, refetch=True)
        except PortError as exc:
            if exc.kind == "security":
                raise
            raise http_error(400, answer.content, api_key) from None
        if used is not None and _fingerprint(fresh) == _fingerprint(used[0]):
            raise http_error(400, answer.content, api_key)
        again = self._with_retries(attempt)
        if again.status == 400:
            raise http_error(400, again.content, api_key)
        return again

    def _answer(
        self, body: bytes, private: Any, payload_id: str, tier: str | None
    ) -> dict[str, Any]:
        obj, algorithm = open_package(body, private)
        meta = obj.get("_metadata")
        if DEFECT != "no_answer_checks":
            if not isinstance(meta, dict):
                raise PortError("security", "the answer is not bound to this request")
            if meta.get("payload_id") != payload_id:
                raise PortError("security", "the answer is not bound to this request")
            if tier is not None and meta.get("security_tier") != tier:
                raise PortError("security", "the answer was not served at the asked tier")
        own = {"payload_id": payload_id, "is_encrypted": True, "encryption_algorithm": algorithm}
        if isinstance(meta, dict):
            meta.update(own)
        elif meta is None:
            obj["_metadata"] = own
        return obj

    # -- low level ----------------------------------------------------------------------

    def encrypt(self, payload: Any) -> bytes:
        if not isinstance(payload, dict) or not payload:
            raise value_error("payload must be a non-empty object")
        try:
            plaintext = json.dumps(payload, allow_nan=False).encode("utf-8")
        except (ValueError, TypeError):
            raise value_error("the payload holds values JSON cannot represent") from None
        return seal(plaintext, self.server_key(self.base_url, self.api_key))

    def decrypt(self, body: bytes, payload_id: str) -> dict[str, Any]:
        return self._answer(body, self.private_key(), payload_id, None)


# -- the testee -----------------------------------------------------------------------------

CAPABILITIES = [
    "create", "api_key", "security_tier", "allow_http", "ca_cert", "pinning", "max_retries",
    "retry_backoff", "timeout", "client_reuse", "warnings", "retry_after_cap", "key_dir",
    "key_files", "key_password", "low_level", "call_overrides", "client_describe",
]  # fmt: skip
NUMBERS = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def untag(value: Any) -> Any:
    """The suite's tagged form of numbers JSON cannot carry (spec/testee.md)."""
    if isinstance(value, list):
        return [untag(v) for v in value]
    if isinstance(value, dict):
        if len(value) == 1 and "$float" in value and value["$float"] in NUMBERS:
            return NUMBERS[value["$float"]]
        if len(value) == 1 and isinstance(value.get("$object"), dict):
            return {k: untag(v) for k, v in value["$object"].items()}
        return {k: untag(v) for k, v in value.items()}
    return value


class Unsupported(Exception):
    """An operation this testee does not implement."""


class Testee:
    def __init__(self) -> None:
        self.clients: dict[str, Client] = {}

    def client(self, request: dict[str, Any]) -> Client:
        handle = request.get("client")
        if handle not in self.clients:
            raise KeyError(f"unknown client handle {handle!r}")
        return self.clients[handle]

    def keep(self, client: Client) -> str:
        handle = f"h{len(self.clients) + 1}-{secrets.token_hex(2)}"
        self.clients[handle] = client
        return handle

    def handle(self, op: str, req: dict[str, Any]) -> Any:
        if op == "hello":
            return {"name": "foreign-port", "version": "0.1", "language": "python-foreign",
                    "protocol": PROTOCOL, "capabilities": CAPABILITIES}  # fmt: skip
        if op == "client.open":
            return {"client": self.keep(Client(req["config"]))}
        if op == "client.close":
            closing = self.clients.pop(req.get("client"), None)
            if closing is not None:
                closing.close()
            return {}
        if op == "client.describe":
            return [repr(self.client(req))]
        if op == "create":
            kwargs = req.get("kwargs") or {}
            if req.get("client") is not None:
                return self.client(req).create(req.get("model"), req.get("messages"), kwargs)
            fresh = Client(req["config"])
            try:
                return fresh.create(req.get("model"), req.get("messages"), kwargs)
            finally:
                fresh.close()
        if op == "keys.generate":
            private, public = save_key_pair(new_key(), req["directory"], req.get("password"))
            return {"private_key_path": private, "public_key_path": public}
        if op == "keys.load":
            key = load_key_pair(
                req["private_key_path"], req.get("public_key_path"), req.get("password")
            )
            return {"public_key_pem": _public_pem(key)}
        if op == "encrypt_payload":
            if req.get("client") is not None:
                low, handle = self.client(req), req["client"]
            else:
                low = Client(req["config"])
                handle = self.keep(low)
            body = low.encrypt(req.get("payload"))
            return {"body_b64": b64(body), "public_key_pem": _public_pem(low.private_key()),
                    "client": handle}  # fmt: skip
        if op == "decrypt_response":
            body = base64.b64decode(req["body_b64"])
            return self.client(req).decrypt(body, req["payload_id"])
        if op == "shutdown":
            return {}
        raise Unsupported(f"operation {op!r} is not supported")

    def answer(self, line: bytes) -> tuple[dict[str, Any], str]:
        try:
            req = untag(json.loads(line.decode("utf-8"), parse_constant=_no_constant))
        except ValueError as exc:
            error = {"kind": "internal", "message": f"bad request line: {exc}", "type": "Proto"}
            return {"id": None, "ok": False, "error": error, "warnings": []}, ""
        op = str(req.get("op"))
        del WARNINGS[:]
        try:
            result = self.handle(op, req)
            reply: dict[str, Any] = {"id": req.get("id"), "ok": True, "result": result}
        except Unsupported as exc:
            error = {"kind": "unsupported", "message": str(exc), "type": "Unsupported"}
            reply = {"id": req.get("id"), "ok": False, "error": error}
        except PortError as exc:
            error = {"kind": exc.kind, "message": exc.message, "status_code": exc.status,
                     "details": exc.details, "type": "PortError"}  # fmt: skip
            reply = {"id": req.get("id"), "ok": False, "error": error}
        except Exception as exc:  # a crash of the port: kind internal
            error = {"kind": "internal", "message": str(exc), "type": type(exc).__name__}
            reply = {"id": req.get("id"), "ok": False, "error": error}
        reply["warnings"] = list(WARNINGS)
        return reply, op


def main(argv: list[str] | None = None) -> int:
    global DEFECT
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--defect", choices=sorted(DEFECTS), default=None)
    DEFECT = parser.parse_args(argv).defect
    testee = Testee()
    out = sys.stdout.buffer
    for line in sys.stdin.buffer:
        if not line.strip():
            continue
        reply, op = testee.answer(line)
        out.write(json.dumps(reply, allow_nan=False, default=str).encode("utf-8") + b"\n")
        out.flush()
        if op == "shutdown":
            break
    for client in testee.clients.values():
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
