"""X-Public-Key values that are public keys in the wrong form, for SRV-24 and SRV-25.

A router must take exactly one PEM block labelled PUBLIC KEY holding an RSA key of 2048 to
16384 bits with exponent 65537. These forms break one rule each. The oversized and
exponent-3 keys are public halves only: a receiver cannot tell them from real keys, and
generating a private key of 16400 bits would take minutes.
"""

from __future__ import annotations

import base64
import datetime
import functools
import secrets
import textwrap
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from conformance.server.wire import public_pem

RSA_OID = bytes.fromhex("06092a864886f70d010101")  # 1.2.840.113549.1.1.1
OVERSIZE_BITS = 16400
FORMS = ("pkcs1", "certificate", "two-blocks", "text-around", "exponent-3", "modulus-16400")


def _len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _tlv(tag: int, body: bytes) -> bytes:
    return bytes([tag]) + _len(len(body)) + body


def _integer(value: int) -> bytes:
    raw = value.to_bytes(value.bit_length() // 8 + 1, "big")  # a leading 0 keeps it positive
    return _tlv(0x02, raw)


def spki_pem(modulus: int, exponent: int) -> str:
    """SubjectPublicKeyInfo PEM of any (n, e), built by hand (no size limits applied)."""
    rsa_key = _tlv(0x30, _integer(modulus) + _integer(exponent))
    algorithm = _tlv(0x30, RSA_OID + b"\x05\x00")
    der = _tlv(0x30, algorithm + _tlv(0x03, b"\x00" + rsa_key))
    body = "\n".join(textwrap.wrap(base64.b64encode(der).decode("ascii"), 64))
    return f"-----BEGIN PUBLIC KEY-----\n{body}\n-----END PUBLIC KEY-----\n"


def _certificate(key: rsa.RSAPrivateKey) -> str:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "nomyo conformance client")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


@functools.lru_cache(maxsize=32)
def render(key: Any, form: str) -> str:
    """The PEM text of `key` in `form` (see FORMS)."""
    spki = public_pem(key)
    if form == "pkcs1":
        return key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.PKCS1).decode("ascii")
    if form == "certificate":
        return _certificate(key)
    if form == "two-blocks":
        return spki + spki
    if form == "text-around":
        return f"my key:\n{spki}that was my key\n"
    if form == "exponent-3":
        return spki_pem(key.public_key().public_numbers().n, 3)
    if form == "modulus-16400":
        modulus = secrets.randbits(OVERSIZE_BITS) | (1 << (OVERSIZE_BITS - 1)) | 1
        return spki_pem(modulus, 65537)
    raise ValueError(f"unknown key form {form!r}")
