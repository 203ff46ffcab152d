"""The wire format as server mode builds and reads it: base64, packages, X-Public-Key.

Written on `cryptography` primitives alone, apart from nomyo_ref and mock_router, so a
misreading of the spec shared with either cannot hide (the independence rule). Besides the
protocol's own scheme it can seal packages the wrong ways a broken client would (other key
wraps, tag appended, another AES key size), which the malformed-request checks need.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import urllib.parse
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

VERSION = "1.0"
ALGORITHM = "hybrid-aes256-rsa4096"
KEY_ALGORITHM = "RSA-OAEP-SHA256"
PAYLOAD_ALGORITHM = "AES-256-GCM"
PACKAGE_MEMBERS = (
    "version",
    "algorithm",
    "encrypted_payload",
    "encrypted_aes_key",
    "key_algorithm",
    "payload_algorithm",
)
PAYLOAD_MEMBERS = ("ciphertext", "nonce", "tag")
EXPECTED_VALUES = {
    "version": VERSION,
    "algorithm": ALGORITHM,
    "key_algorithm": KEY_ALGORITHM,
    "payload_algorithm": PAYLOAD_ALGORITHM,
}
NONCE_SIZE = 12
TAG_SIZE = 16
AES_KEY_SIZE = 32
OCTET_STREAM = "application/octet-stream"

_B64 = re.compile(r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$")


def _oaep(hash_: hashes.HashAlgorithm, mgf: hashes.HashAlgorithm, label: bytes | None = None
          ) -> padding.OAEP:
    return padding.OAEP(mgf=padding.MGF1(algorithm=mgf), algorithm=hash_, label=label)


def key_wraps() -> dict[str, padding.AsymmetricPadding]:
    """The protocol's wrap first, then the ones a receiver must refuse (ENC-6)."""
    sha1 = hashes.SHA1()  # noqa: S303 - refused paddings, on purpose
    return {
        "oaep-sha256": _oaep(hashes.SHA256(), hashes.SHA256()),
        "oaep-sha1": _oaep(sha1, sha1),
        "oaep-mgf1-sha1": _oaep(hashes.SHA256(), sha1),
        "oaep-label": _oaep(hashes.SHA256(), hashes.SHA256(), b"nomyo"),
        "pkcs1v15": padding.PKCS1v15(),
    }


PROTOCOL_WRAP = "oaep-sha256"


def b64(data: bytes) -> str:
    """Canonical standard base64 with padding (PKG-6, PKG-10)."""
    return base64.b64encode(data).decode("ascii")


def strict_b64decode(text: Any) -> bytes:
    """Decode as a receiver must (PKG-6): alphabet, padding, no whitespace; else ValueError."""
    if not isinstance(text, str) or not _B64.match(text):
        raise ValueError("not standard base64 with padding")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not standard base64 with padding") from None


def is_canonical_b64(text: str) -> bool:
    """Valid and canonical: re-encoding the bytes gives the same text (unused bits zero)."""
    try:
        return b64(strict_b64decode(text)) == text
    except ValueError:
        return False


def public_pem(key: Any) -> str:
    """SubjectPublicKeyInfo PEM of a key pair's public half (LF line ends, final newline)."""
    pub = key.public_key() if hasattr(key, "public_key") else key
    return pub.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


# X-Public-Key spellings: what a Python client sends, what a JavaScript client sends, and
# the spellings a server must also decode right (HDR-5).
KEY_STYLES = ("python", "javascript", "lower-hex", "plus-literal")


def encode_public_key(pem: str, style: str = "python") -> str:
    """Percent-encode a PEM for X-Public-Key in one of KEY_STYLES."""
    if style == "python":
        return urllib.parse.quote(pem, safe="/")
    if style == "javascript":
        return urllib.parse.quote(pem, safe="")
    if style == "lower-hex":
        return re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(),
                      urllib.parse.quote(pem, safe=""))
    if style == "plus-literal":  # '+' and '/' as they are: plain percent-decoding keeps them
        return urllib.parse.quote(pem, safe="/+")
    raise ValueError(f"unknown X-Public-Key style {style!r}")


@dataclass(frozen=True)
class Sealed:
    """A package and the secrets it was built with (to compare with the answer: ENC-9)."""

    package: dict[str, Any]
    aes_key: bytes
    nonce: bytes


def seal(
    recipient: rsa.RSAPublicKey,
    plaintext: bytes,
    *,
    wrap: str = PROTOCOL_WRAP,
    aes_key_size: int = AES_KEY_SIZE,
    tag_appended: bool = False,
) -> Sealed:
    """Encrypt `plaintext` to `recipient` (section 7.3), or one of the wrong ways on request."""
    aes_key = os.urandom(aes_key_size)
    nonce = os.urandom(NONCE_SIZE)
    gcm_key = aes_key if aes_key_size in (16, 24, 32) else aes_key[:32].ljust(32, b"\0")
    sealed = AESGCM(gcm_key).encrypt(nonce, plaintext, None)
    ciphertext, tag = sealed[:-TAG_SIZE], sealed[-TAG_SIZE:]
    if tag_appended:
        ciphertext = sealed
    package = {
        "version": VERSION,
        "algorithm": ALGORITHM,
        "encrypted_payload": {"ciphertext": b64(ciphertext), "nonce": b64(nonce), "tag": b64(tag)},
        "encrypted_aes_key": b64(recipient.encrypt(aes_key, key_wraps()[wrap])),
        "key_algorithm": KEY_ALGORITHM,
        "payload_algorithm": PAYLOAD_ALGORITHM,
    }
    return Sealed(package, aes_key, nonce)


def unwrap(private_key: rsa.RSAPrivateKey, wrapped: bytes, wrap: str) -> bytes | None:
    """The AES key under one padding, or None when it does not unwrap."""
    try:
        return private_key.decrypt(wrapped, key_wraps()[wrap])
    except ValueError:
        return None


def gcm_open(aes_key: bytes, nonce: bytes, data: bytes, aad: bytes | None = None) -> bytes | None:
    """AES-GCM decryption of ciphertext||tag, or None when the tag does not verify."""
    if len(aes_key) not in (16, 24, 32) or not nonce:
        return None
    try:
        return AESGCM(aes_key).decrypt(nonce, data, aad)
    except Exception:  # InvalidTag, or a nonce/size the primitive refuses
        return None
