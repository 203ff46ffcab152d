"""Evidence about a recorded request, for judging a port: never used to accept a request.

The router refuses a non-conforming package, as it must. A conformance check still wants to
judge everything else the port did (the plaintext it built, its parameters, its limits) and
to name the one actual fault, not "decryption failed" sixty times. So:

- ``tolerant_open(body, keys)`` opens a recorded request body the standard way first, then
  the ways ports get it wrong: other OAEP parameters (SHA-1/SHA-1, SHA-256 with MGF1-SHA-1,
  SHA-1 with MGF1-SHA-256, PKCS#1 v1.5), a 16- or 24-byte AES key, the GCM tag appended to
  the ciphertext (with or without a ``tag`` member), a nonce that is not 12 bytes, lenient
  base64, or a server key the router has rotated out. It answers ``Opened(plaintext,
  variant)``: ``variant`` is "standard" or the "+"-joined codes of ``codes.VARIANT_CODES``
  it needed (e.g. "oaep-sha1+tag-appended"), or None when nothing opens it.
- ``Fault(code, text, requirements)``: one thing wrong with a request, with the client
  requirement ids it breaks (``codes.FAULT_REQUIREMENTS``).

``SeenRequest.tolerant``, ``.fault`` and ``.faults`` (record.py) put these together.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .codes import code_info

STANDARD = "standard"
_TAG = 16


@dataclass(frozen=True)
class Fault:
    """One thing wrong with a request: a code of ``codes`` (refusal, note or variant), a text
    naming it, and the client requirement ids it breaks (empty: none of the protocol's)."""

    code: str
    text: str
    requirements: tuple[str, ...]

    @classmethod
    def of(cls, code: str, text: str | None = None) -> Fault:
        info = code_info(code)
        return cls(code, text or info.summary, info.requirements)

    def __str__(self) -> str:
        ids = ", ".join(self.requirements)
        return f"{self.text} ({ids})" if ids else self.text


class Opened(NamedTuple):
    """A request package opened for judging: the plaintext and how (``variant``)."""

    plaintext: bytes
    variant: str

    @property
    def codes(self) -> tuple[str, ...]:
        """The variant codes needed, in order (empty for the standard way)."""
        return () if self.variant == STANDARD else tuple(self.variant.split("+"))

    @property
    def faults(self) -> tuple[Fault, ...]:
        """One Fault per deviation the opening needed."""
        return tuple(Fault.of(code) for code in self.codes)

    @property
    def payload(self) -> Any:
        """The plaintext's JSON (duplicate names: the last wins), or None if not JSON."""
        try:
            return json.loads(self.plaintext.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            return None


def _sha1() -> hashes.HashAlgorithm:
    return hashes.SHA1()  # noqa: S303 - recognising a port's wrong choice, on purpose


#: (variant code or None for the standard one, padding), in the order they are tried.
_WRAPS: tuple[tuple[str | None, padding.AsymmetricPadding], ...] = (
    (None, padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(),
                        label=None)),
    ("oaep-sha1", padding.OAEP(mgf=padding.MGF1(_sha1()), algorithm=_sha1(), label=None)),
    ("oaep-mgf1-sha1", padding.OAEP(mgf=padding.MGF1(_sha1()), algorithm=hashes.SHA256(),
                                    label=None)),
    ("oaep-sha1-mgf1-sha256", padding.OAEP(mgf=padding.MGF1(hashes.SHA256()),
                                           algorithm=_sha1(), label=None)),
    ("pkcs1v15", padding.PKCS1v15()),
)
_KEY_SIZES = {32: None, 16: "aes-128", 24: "aes-192"}


def _b64(value: Any) -> tuple[bytes, bool] | None:
    """(bytes, strict) for a base64 text; lenient decoding (URL-safe alphabet, whitespace,
    missing padding) gives strict False; None when even that fails."""
    if not isinstance(value, str):
        return None
    data = value.rstrip("=")
    if len(value) % 4 == 0 and len(value) - len(data) <= 2 and "=" not in data:
        try:  # what the router accepts (non-zero padding bits included)
            return base64.b64decode(value.encode("ascii"), validate=True), True
        except (UnicodeError, binascii.Error, ValueError):
            pass
    try:
        text = "".join(value.split()).replace("-", "+").replace("_", "/").rstrip("=")
        text += "=" * (-len(text) % 4)
        return base64.b64decode(text.encode("ascii"), validate=True), False
    except (UnicodeError, binascii.Error, ValueError):
        return None


def _loads(body: bytes) -> Any:
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None


def _layouts(ciphertext: bytes, tag: bytes | None) -> list[tuple[bytes, str | None]]:
    """The sealed bytes (ciphertext || tag) to try, with the variant code each one needs."""
    out: list[tuple[bytes, str | None]] = []
    if tag is not None and len(tag) == _TAG:
        out.append((ciphertext + tag, None))
        if len(ciphertext) >= _TAG:  # tag carried in both places
            out.append((ciphertext, "tag-appended"))
    elif len(ciphertext) >= _TAG:  # no (usable) tag member: the tag may be appended
        out.append((ciphertext, "tag-appended"))
    return out


def tolerant_open(body: bytes | dict[str, Any],
                  keys: Sequence[rsa.RSAPrivateKey]) -> Opened | None:
    """Open a request package for judging; ``keys``: the server key at arrival first, then
    keys it replaced (a success with one of those adds "retired-server-key").

    Tries the standard way first, so a conforming package always gives variant "standard".
    Never raises for a malformed body: None when nothing opens it.
    """
    pkg = body if isinstance(body, dict) else _loads(body)
    if not isinstance(pkg, dict) or not keys:
        return None
    inner = pkg.get("encrypted_payload")
    if not isinstance(inner, dict):
        return None
    fields = {name: _b64(value) for name, value in (
        ("eak", pkg.get("encrypted_aes_key")), ("ciphertext", inner.get("ciphertext")),
        ("nonce", inner.get("nonce")), ("tag", inner.get("tag")))}
    eak, ciphertext, nonce = fields["eak"], fields["ciphertext"], fields["nonce"]
    if eak is None or ciphertext is None or nonce is None or not 8 <= len(nonce[0]) <= 128:
        return None
    tag = fields["tag"]
    base: list[str] = []
    if not all(f[1] for f in (eak, ciphertext, nonce, tag) if f is not None):
        base.append("base64-lenient")
    if len(nonce[0]) != 12:
        base.append("nonce-length")
    layouts = _layouts(ciphertext[0], tag[0] if tag is not None else None)
    for (index, key), (wrap_code, wrap) in itertools.product(enumerate(keys), _WRAPS):
        try:
            aes_key = key.decrypt(eak[0], wrap)
        except Exception:  # noqa: S112 - a failed variant: try the next one
            continue
        if len(aes_key) not in _KEY_SIZES:
            continue
        for sealed, layout_code in layouts:
            try:
                plaintext = AESGCM(aes_key).decrypt(nonce[0], sealed, None)
            except Exception:  # noqa: S112 - InvalidTag: try the next layout
                continue
            codes = [c for c in (wrap_code, _KEY_SIZES[len(aes_key)], layout_code) if c]
            codes += base
            if index:
                codes.append("retired-server-key")
            return Opened(plaintext, "+".join(codes) if codes else STANDARD)
    return None
