"""The hybrid encryption of protocol v1.0, over ``cryptography`` primitives only.

AES-256-GCM (fresh 32-byte key and 12-byte nonce per message, no associated data, 16-byte tag
carried separately) for the payload; RSA-OAEP (SHA-256, MGF1-SHA-256, no label) for the AES
key. Every failure on the way back (bad base64, wrong nonce or tag length, RSA failure, GCM tag
failure, wrong AES key length) raises the same ``SecurityError("decryption failed")`` so an
attacker learns nothing about which step failed.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from . import secure_memory
from .errors import SecurityError

VERSION = "1.0"
ALGORITHM = "hybrid-aes256-rsa4096"
KEY_ALGORITHM = "RSA-OAEP-SHA256"
PAYLOAD_ALGORITHM = "AES-256-GCM"
AES_KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16

DECRYPTION_FAILED = "decryption failed"


def oaep_sha256() -> padding.OAEP:
    return padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(),
                        label=None)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def encrypt_package(
    plaintext: bytes | bytearray, recipient: rsa.RSAPublicKey, *, secure: bool = True
) -> bytes:
    """Encrypt ``plaintext`` to ``recipient`` and return the package as UTF-8 JSON bytes.

    The AES key lives in a locked, zeroed-after-use bytearray (see secure_memory); the RSA
    encryption needs an immutable copy of it, which Python cannot wipe.
    """
    aes_key = bytearray(secrets.token_bytes(AES_KEY_BYTES))
    with secure_memory.protected(aes_key, secure):
        nonce = secrets.token_bytes(NONCE_BYTES)
        encryptor = Cipher(algorithms.AES(aes_key), modes.GCM(nonce)).encryptor()
        ciphertext = encryptor.update(plaintext) + encryptor.finalize()
        tag = encryptor.tag
        encrypted_key = recipient.encrypt(bytes(aes_key), oaep_sha256())
    package = {
        "version": VERSION,
        "algorithm": ALGORITHM,
        "encrypted_payload": {"ciphertext": _b64(ciphertext), "nonce": _b64(nonce),
                              "tag": _b64(tag)},
        "encrypted_aes_key": _b64(encrypted_key),
        "key_algorithm": KEY_ALGORITHM,
        "payload_algorithm": PAYLOAD_ALGORITHM,
    }
    return json.dumps(package, separators=(",", ":")).encode("ascii")


@dataclass(frozen=True)
class SealedFields:
    """The four base64 strings of a package that decryption needs (structure checked)."""

    encrypted_aes_key: str
    ciphertext: str
    nonce: str
    tag: str


def _strict_b64(text: str) -> bytes:
    # validate=True refuses characters outside the standard alphabet and wrong padding.
    return base64.b64decode(text.encode("ascii"), validate=True)


def decrypt_fields(
    fields: SealedFields, private_key: rsa.RSAPrivateKey, *, secure: bool = True
) -> bytearray:
    """Decrypt and return the plaintext in a fresh bytearray the caller must zero.

    Raises ``SecurityError("decryption failed")`` for every failure, whatever the step,
    raised outside the exception handler so no cause or context names the step.
    """
    try:
        return _decrypt(fields, private_key, secure)
    except (ValueError, TypeError, InvalidTag, binascii.Error, UnicodeEncodeError,
            OverflowError):
        pass
    raise SecurityError(DECRYPTION_FAILED)


def _decrypt(fields: SealedFields, private_key: rsa.RSAPrivateKey, secure: bool) -> bytearray:
    """The steps of decrypt_fields; any exception here means "decryption failed"."""
    encrypted_key = _strict_b64(fields.encrypted_aes_key)
    ciphertext = _strict_b64(fields.ciphertext)
    nonce = _strict_b64(fields.nonce)
    tag = _strict_b64(fields.tag)
    if len(nonce) != NONCE_BYTES or len(tag) != TAG_BYTES:
        raise ValueError("length")
    aes_key = bytearray(private_key.decrypt(encrypted_key, oaep_sha256()))
    with secure_memory.protected(aes_key, secure):
        if len(aes_key) != AES_KEY_BYTES:
            raise ValueError("length")
        decryptor = Cipher(algorithms.AES(aes_key), modes.GCM(nonce, tag)).decryptor()
        # update_into writes the plaintext straight into our bytearray: no immutable copy.
        out = bytearray(len(ciphertext) + 15)
        try:
            written = decryptor.update_into(ciphertext, out)
            decryptor.finalize()
        except BaseException:
            secure_memory.zero(out)
            raise
        del out[written:]
        return out
