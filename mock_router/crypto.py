"""Hybrid encryption of v1.0 packages, built on ``cryptography`` primitives only.

The router must never share code with the clients it checks (the independence rule), so this
is a separate, deliberately small implementation of the wire format: AES-256-GCM (no AAD, tag
carried on its own) under a fresh key and nonce, the key wrapped with RSA-OAEP
(SHA-256, MGF1-SHA-256, no label).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import os
import secrets
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

VERSION = "1.0"
ALGORITHM = "hybrid-aes256-rsa4096"
KEY_ALGORITHM = "RSA-OAEP-SHA256"
PAYLOAD_ALGORITHM = "AES-256-GCM"
NONCE_SIZE = 12
TAG_SIZE = 16
AES_KEY_SIZE = 32
MIN_CLIENT_KEY_BITS = 2048
#: A client key larger than this is refused (SRV-25): no server spends unbounded CPU on
#: whatever key size a caller invents.
MAX_CLIENT_KEY_BITS = 16384

_OAEP = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(),
                     label=None)


class DecryptionFailed(Exception):
    """One opaque failure for every step of decryption (RSA, key length, GCM).

    ``step`` ("unwrap" or "gcm") is for the router's own log only, never for an answer.
    """

    def __init__(self, step: str = "gcm") -> None:
        super().__init__(step)
        self.step = step


class ClientKeyRefused(ValueError):
    """An X-Public-Key the router refuses; ``code`` is its refusal code (codes.py)."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


def generate_key(key_size: int = 4096) -> rsa.RSAPrivateKey:
    """A fresh RSA key with the protocol's public exponent."""
    return rsa.generate_private_key(public_exponent=65537, key_size=key_size)


def public_pem(key: rsa.RSAPrivateKey | rsa.RSAPublicKey) -> str:
    """SubjectPublicKeyInfo PEM text of a key (what /pki/public_key serves)."""
    pub = key.public_key() if isinstance(key, rsa.RSAPrivateKey) else key
    return pub.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")


def fingerprint(key: rsa.RSAPrivateKey | rsa.RSAPublicKey) -> str:
    """Lower-case hex SHA-256 of the DER SubjectPublicKeyInfo (the pinning fingerprint)."""
    pub = key.public_key() if isinstance(key, rsa.RSAPrivateKey) else key
    der = pub.public_bytes(serialization.Encoding.DER,
                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def load_private_key_file(path: str | os.PathLike[str],
                          password: bytes | None = None) -> rsa.RSAPrivateKey:
    """Load an RSA private key from a PEM file; ValueError when it is not one."""
    data = Path(path).read_bytes()
    key = serialization.load_pem_private_key(data, password=password)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"{path}: not an RSA private key")
    return key


def save_private_key_file(key: rsa.RSAPrivateKey, path: str | os.PathLike[str]) -> Path:
    """Write the key as unencrypted PKCS#8 PEM, mode 0600, atomically (no half-written key)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


@functools.lru_cache(maxsize=64)
def parse_client_public_key(pem: str) -> rsa.RSAPublicKey:
    """Parse a client's PEM once (the same client sends the same key every request).

    Raises ClientKeyRefused (a ValueError) with a message fit for a 400 detail and its
    refusal code. Cached by PEM text; failures are not cached (lru_cache does not cache
    exceptions). Exactly one "PUBLIC KEY" (SPKI) block with nothing but whitespace around it
    (SRV-24, KEY-3): a PKCS#1 "RSA PUBLIC KEY", a certificate, several blocks or other text
    are refused, since a router that accepts them would hide a port's defect that other
    servers refuse. RSA of 2048..16384 bits with exponent 65537 (SRV-7, SRV-25).
    """
    try:
        key = serialization.load_pem_public_key(pem.encode("utf-8"))
    except Exception as exc:  # cryptography raises ValueError or UnsupportedAlgorithm
        raise ClientKeyRefused("X-Public-Key is not a PEM public key",
                               "public_key_invalid") from exc
    text = pem.strip()
    if not (text.startswith("-----BEGIN PUBLIC KEY-----")
            and text.endswith("-----END PUBLIC KEY-----")):
        if "-----BEGIN PUBLIC KEY-----" not in text:
            raise ClientKeyRefused("X-Public-Key must be SubjectPublicKeyInfo PEM ('BEGIN "
                                   "PUBLIC KEY'), not PKCS#1 ('BEGIN RSA PUBLIC KEY') or a "
                                   "certificate", "public_key_not_spki")
        raise ClientKeyRefused("X-Public-Key must be one PEM block with nothing around it",
                               "public_key_not_one_block")
    if text.count("-----BEGIN ") != 1:
        raise ClientKeyRefused("X-Public-Key must be one PEM block with nothing around it",
                               "public_key_not_one_block")
    if not isinstance(key, rsa.RSAPublicKey):
        raise ClientKeyRefused("X-Public-Key is not an RSA public key", "public_key_not_rsa")
    if key.key_size < MIN_CLIENT_KEY_BITS:
        raise ClientKeyRefused(f"X-Public-Key is too small: {key.key_size} bits "
                               f"(minimum {MIN_CLIENT_KEY_BITS})", "public_key_too_small")
    if key.key_size > MAX_CLIENT_KEY_BITS:
        raise ClientKeyRefused(f"X-Public-Key is too large: {key.key_size} bits "
                               f"(maximum {MAX_CLIENT_KEY_BITS})", "public_key_too_large")
    if key.public_numbers().e != 65537:
        raise ClientKeyRefused(f"X-Public-Key has public exponent {key.public_numbers().e} "
                               "(must be 65537)", "public_key_exponent")
    return key


def b64(data: bytes) -> str:
    """Standard base64 with padding, as text."""
    return base64.b64encode(data).decode("ascii")


def decrypt(private_key: rsa.RSAPrivateKey, encrypted_aes_key: bytes, ciphertext: bytes,
            nonce: bytes, tag: bytes) -> bytes:
    """Unwrap the AES key and open the GCM box; any failure is DecryptionFailed.

    Implicit rejection (SRV-22): when the AES key does not unwrap (or not to 32 bytes), the
    GCM step still runs, under a random key, so both failures take the same path and an
    observer cannot tell an OAEP failure from a tag failure by what the server does next.
    """
    unwrapped = True
    try:
        aes_key = private_key.decrypt(encrypted_aes_key, _OAEP)
    except Exception:  # any RSA failure is one failure
        aes_key = b""
    if len(aes_key) != AES_KEY_SIZE:
        unwrapped = False
        aes_key = secrets.token_bytes(AES_KEY_SIZE)
    try:
        plaintext = AESGCM(aes_key).decrypt(nonce, ciphertext + tag, None)
    except Exception:
        raise DecryptionFailed("gcm" if unwrapped else "unwrap") from None
    if not unwrapped:  # a random key opened the box: 2**-128, but never accept it
        raise DecryptionFailed("unwrap")
    return plaintext


def wrap_padding(name: str | None) -> padding.AsymmetricPadding:
    """The RSA padding of a key wrap: None is the protocol's OAEP-SHA-256; the other names
    (Scenario.key_wrap) are paddings a client must refuse (ENC-6)."""
    sha1 = hashes.SHA1()  # noqa: S303 - the refused paddings, on purpose
    if name is None:
        return _OAEP
    if name == "oaep-sha1":
        return padding.OAEP(mgf=padding.MGF1(algorithm=sha1), algorithm=sha1, label=None)
    if name == "oaep-mgf1-sha1":
        return padding.OAEP(mgf=padding.MGF1(algorithm=sha1), algorithm=hashes.SHA256(),
                            label=None)
    if name == "oaep-label":
        return padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA256()),
                            algorithm=hashes.SHA256(), label=b"nomyo")
    if name == "pkcs1v15":
        return padding.PKCS1v15()
    raise ValueError(f"unknown key wrap padding {name!r}")


def encrypt(public_key: rsa.RSAPublicKey, plaintext: bytes,
            key_wrap: str | None = None) -> dict[str, object]:
    """Build a v1.0 package (without processed_at) holding ``plaintext`` for ``public_key``
    (``key_wrap``: another padding for the AES key, see ``wrap_padding``)."""
    aes_key = AESGCM.generate_key(bit_length=256)
    nonce = secrets.token_bytes(NONCE_SIZE)
    sealed = AESGCM(aes_key).encrypt(nonce, plaintext, None)
    ciphertext, tag = sealed[:-TAG_SIZE], sealed[-TAG_SIZE:]
    return {
        "version": VERSION,
        "algorithm": ALGORITHM,
        "encrypted_payload": {"ciphertext": b64(ciphertext), "nonce": b64(nonce),
                              "tag": b64(tag)},
        "encrypted_aes_key": b64(public_key.encrypt(aes_key, wrap_padding(key_wrap))),
        "key_algorithm": KEY_ALGORITHM,
        "payload_algorithm": PAYLOAD_ALGORITHM,
    }


def hashlib_sha256_hex(text: str) -> str:
    """SHA-256 hex of a text (deterministic ids derived from the payload id)."""
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()
