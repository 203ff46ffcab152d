"""Generate the NOMYO v1.0 package test vectors (spec/vectors/packages.json).

Run from anywhere: ``python spec/vectors/generate.py [--out DIR] [--keys FILE]``.

Wycheproof-style: fixed keys (spec/vectors/keys.json, made once and then reused), packages and
the outcome a conforming receiver must reach. Everything but the RSA encryption of the AES key
is deterministic: AES keys and nonces are derived from SHA-256 of the tcId, so regenerating
changes only ``encrypted_aes_key`` (RSA-OAEP and PKCS#1 v1.5 are randomised). The generator
uses ``cryptography`` primitives directly and nothing from this project, so the vectors can
judge nomyo_ref and mock_router without sharing code with them.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import hashlib
import json
import pathlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.x509.oid import NameOID

GENERATOR_VERSION = "1.1.0"
HERE = pathlib.Path(__file__).resolve().parent
DEFAULT_KEYS = HERE / "keys.json"
MAX_PLAINTEXT = 10 * 1024 * 1024
OAEP_TEST_LABEL = b"nomyo"

KEY_SIZES = {"rsa2048": 2048, "rsa4096": 4096, "rsa1024": 1024}

STAGE_KIND = {
    "key": "value",
    "structure": "value",
    "size": "value",
    "crypto": "security",
    "plaintext": "security",
    "binding": "security",
}

NOTES: dict[str, str] = {
    # valid cases
    "Normal": "A well-formed package as today's clients and server build it; must decrypt.",
    "MinimalPlaintext": "The smallest sensible plaintext (empty message content, or a response "
    "that is only `_metadata`); catches length assumptions and empty-field mishandling.",
    "Unicode": "Non-ASCII text, raw UTF-8 or \\u-escaped (with surrogate pairs); catches "
    "decoders that are not UTF-8 or that re-encode the plaintext.",
    "ProcessedAt": "A response package with the top-level `processed_at` number the deployed "
    "server adds; catches receivers that refuse unknown or extra top-level keys.",
    "ExtraTopLevelKey": "An unknown extra top-level key; receivers must ignore it (forward "
    "compatibility within 1.x).",
    "ToolCalls": "Tool definitions in a request or tool_calls in a response; catches payload "
    "handling that drops structured content.",
    "MaxSizePlaintext": "A request plaintext of exactly 10 MiB (10485760 bytes), the largest "
    "allowed; catches an off-by-one in the size limit. Given as a plaintextRecipe.",
    "AlgorithmFieldsAbsent": "A response package without key_algorithm and/or "
    "payload_algorithm; clients SHOULD accept it (CHK-6: the official client does not require "
    "them). A request package without them is refused (MissingField). SHOULD level: a port "
    "that refuses it fails a SHOULD, not a MUST.",
    # key
    "SmallKey": "The recipient (client) key has 1024 bits; keys under 2048 bits must be refused "
    "before use even though the package itself decrypts correctly.",
    # structure
    "PackageNotJson": "The body is not JSON (text, truncated JSON, empty body); catches "
    "receivers that crash or answer 500 instead of refusing.",
    "PackageNotObject": "The body is JSON but not an object (array, null, string, number); "
    "catches TypeError/KeyError crashes on indexing.",
    "MissingField": "A required field (top level or inside encrypted_payload) is missing; "
    "catches KeyError crashes and defaulting of missing fields. (Responses: key_algorithm and "
    "payload_algorithm may be absent, see AlgorithmFieldsAbsent.)",
    "WrongFieldType": "A required field has the wrong JSON type (number, null, list instead of "
    "a base64 string); catches crashes and implicit conversions.",
    "EncryptedPayloadNotObject": "encrypted_payload is a string, array or null instead of an "
    "object; catches crashes on nested indexing.",
    "WrongVersion": "version is not exactly the string \"1.0\" (\"0.9\", \"2.0\", the number "
    "1.0, ...); catches missing or loose downgrade checks.",
    "WrongAlgorithm": "algorithm is not exactly \"hybrid-aes256-rsa4096\" (unknown scheme, "
    "other case); catches missing or case-insensitive algorithm checks.",
    "WrongKeyAlgorithm": "key_algorithm is not exactly \"RSA-OAEP-SHA256\"; catches receivers "
    "that ignore the declared key-wrapping algorithm.",
    "WrongPayloadAlgorithm": "payload_algorithm is not exactly \"AES-256-GCM\"; catches "
    "receivers that ignore the declared payload algorithm.",
    # crypto
    "WrongOaepHash": "The AES key is wrapped with RSA-OAEP using SHA-1 (hash and MGF1), the "
    "default of many libraries; catches OAEP-SHA1 decryption (e.g. Java's plain "
    "RSA/ECB/OAEPPadding, Node's default oaepHash).",
    "WrongMgfHash": "RSA-OAEP with SHA-256 as hash but MGF1-SHA-1, the Java "
    "OAEPWithSHA-256AndMGF1Padding default; catches a mismatched MGF1 hash.",
    "OaepLabel": "RSA-OAEP-SHA256 with the non-empty label \"nomyo\"; catches receivers that "
    "ignore the label or accept any label.",
    "Pkcs1v15": "The AES key is wrapped with RSA PKCS#1 v1.5 instead of OAEP; catches receivers "
    "that fall back to (or try) v1.5, a Bleichenbacher oracle.",
    "WrongRecipient": "The package is encrypted to a different RSA key than the test group's "
    "key; must fail opaquely, never crash.",
    "ModifiedEncryptedKey": "One bit of encrypted_aes_key is flipped; catches RSA failures that "
    "escape as a non-security error.",
    "WrongAesKeySize": "A 16-byte AES-128 key is wrapped and the payload is AES-128-GCM; "
    "catches receivers that take whatever key length comes out of RSA.",
    "TagAppended": "The tag is appended to the ciphertext (as AESGCM.encrypt and WebCrypto "
    "return it) and also sent in the tag field; catches senders/receivers that concatenate "
    "ciphertext||tag instead of carrying the tag separately.",
    "TruncatedTag": "The tag field holds only the first 12 (or 8) bytes of the correct tag; "
    "catches receivers that accept short GCM tags (min_tag_length below 16).",
    "ModifiedCiphertext": "One bit of the ciphertext is flipped; catches receivers that do not "
    "verify the GCM tag (CTR-only decryption, ignored finalize).",
    "ModifiedTag": "One bit of the tag is flipped; catches receivers that do not verify the tag.",
    "WrongNonceSize": "The payload is really encrypted with an 8- or 16-byte GCM nonce; catches "
    "receivers that accept any nonce length instead of exactly 12 bytes.",
    "Base64NonAlphabet": "A base64 field contains a character outside the standard alphabet "
    "('!', '*', or MIME line breaks) that a lenient decoder silently drops; catches "
    "non-validating base64 decoding (Python's b64decode without validate=True).",
    "Base64MissingPadding": "A base64 field lacks its '=' padding; catches decoders that accept "
    "unpadded input. (Not applicable to the nonce: 12 bytes need no padding.)",
    "Base64UrlSafe": "A base64 field uses the URL-safe alphabet ('-', '_' for '+', '/'); "
    "catches decoders that accept both alphabets.",
    "Base64NonCanonicalBits": "A base64 field whose unused bits before the '=' padding are not "
    "zero (RFC 4648 section 3.5): it decodes to the right bytes. Result 'acceptable': a "
    "receiver MAY refuse it (PKG-10; Go's and Rust's strict decoders do) or accept it "
    "(Python's b64decode(validate=True) does), and no sender may produce it.",
    "DuplicateMemberPackage": "The package text repeats a member name (version, tag), one "
    "occurrence right and one wrong; catches parsers that keep the first or the last "
    "occurrence silently, so that two receivers read one package differently (CHK-18, SRV-20).",
    "DuplicateMemberPlaintext": "The decrypted plaintext repeats a member name (model, "
    "_metadata, payload_id), one occurrence right and one wrong; catches a binding or "
    "model check that a last-wins or first-wins parser can be steered around.",
    # size
    "PlaintextTooLarge": "A request plaintext of 10 MiB + 1 byte (10485761 bytes); must be "
    "refused (clients: ValueError before sending; servers: 413). Given as a plaintextRecipe.",
    # plaintext
    "PlaintextNotUtf8": "The plaintext is not valid UTF-8 (a stray 0xff byte); catches "
    "decoders that replace or drop invalid bytes instead of refusing the plaintext.",
    "PlaintextUtf16": "The JSON object encoded as UTF-16-LE. Its bytes are valid UTF-8 (ASCII "
    "and NUL), but the text is not JSON (NUL characters between the tokens); catches "
    "json.loads(bytes), which detects UTF-16 and decodes it as such.",
    "PlaintextBom": "The plaintext starts with a UTF-8 byte-order mark; the payload is UTF-8 "
    "JSON without BOM (RFC 8259), and json.loads(bytes) silently accepts it.",
    "PlaintextNotJson": "The plaintext decrypts but is not JSON (text, truncated, empty); must be "
    "refused as a security failure, not crash.",
    "PlaintextNotObject": "The plaintext is JSON but not an object (array, string, number, null, "
    "true); catches crashes on `_metadata` / `model` access.",
    # binding (responses only)
    "MissingMetadata": "The response plaintext has no `_metadata`; a client must refuse it "
    "because nothing binds the answer to its request.",
    "MetadataNotObject": "`_metadata` is not an object; catches crashes in the binding check.",
    "PayloadIdMismatch": "`_metadata.payload_id` is absent or differs from the request's "
    "X-Payload-ID (another id, or the same id upper-cased); catches a missing or loose "
    "binding check (responses are encrypted, not signed).",
}

# Requirement ids of spec/requirements.json that each flag exercises.
FLAG_REQUIREMENTS: dict[str, list[str]] = {
    "Normal": ["PKG-1", "ENC-1", "ENC-4"],
    "MinimalPlaintext": ["PKG-1"],
    "Unicode": ["REQ-1"],
    "ProcessedAt": ["PKG-9", "RSP-2", "CHK-17"],
    "ExtraTopLevelKey": ["PKG-9"],
    "ToolCalls": ["REQ-3", "RSP-4"],
    "MaxSizePlaintext": ["REQ-10"],
    "AlgorithmFieldsAbsent": ["CHK-6"],
    "SmallKey": ["KEY-2"],
    "PackageNotJson": ["CHK-1", "SRV-8"],
    "PackageNotObject": ["CHK-1", "SRV-8"],
    "MissingField": ["PKG-1", "CHK-21", "CHK-22", "CHK-23", "SRV-8"],
    "WrongFieldType": ["CHK-21", "CHK-23", "SRV-8"],
    "EncryptedPayloadNotObject": ["PKG-5", "CHK-22", "SRV-8"],
    "WrongVersion": ["PKG-2", "CHK-3", "SRV-9"],
    "WrongAlgorithm": ["PKG-3", "CHK-4", "SRV-9"],
    "WrongKeyAlgorithm": ["PKG-4", "CHK-20", "SRV-9"],
    "WrongPayloadAlgorithm": ["PKG-4", "CHK-20", "SRV-9"],
    "WrongOaepHash": ["ENC-4", "ENC-6", "CHK-9", "SRV-11"],
    "WrongMgfHash": ["ENC-4", "ENC-6", "CHK-9", "SRV-11"],
    "OaepLabel": ["ENC-4", "CHK-9", "SRV-11"],
    "Pkcs1v15": ["ENC-6", "CHK-9", "SRV-11"],
    "WrongRecipient": ["ENC-5", "CHK-9", "SRV-11"],
    "ModifiedEncryptedKey": ["CHK-9", "SRV-11"],
    "WrongAesKeySize": ["ENC-1", "CHK-9", "SRV-11"],
    "TagAppended": ["ENC-3", "CHK-10", "SRV-11"],
    "TruncatedTag": ["ENC-1", "CHK-8", "SRV-10"],
    "ModifiedCiphertext": ["ENC-7", "CHK-10", "SRV-11"],
    "ModifiedTag": ["ENC-7", "CHK-10", "SRV-11"],
    "WrongNonceSize": ["ENC-1", "CHK-8", "SRV-10"],
    "Base64NonAlphabet": ["PKG-6", "PKG-10", "CHK-7", "SRV-10"],
    "Base64MissingPadding": ["PKG-6", "PKG-10", "CHK-7", "SRV-10"],
    "Base64UrlSafe": ["PKG-6", "CHK-7", "SRV-10"],
    "Base64NonCanonicalBits": ["PKG-10"],
    "DuplicateMemberPackage": ["CHK-18", "SRV-20"],
    "DuplicateMemberPlaintext": ["CHK-18", "SRV-20"],
    "PlaintextTooLarge": ["REQ-9", "SRV-12"],
    "PlaintextNotUtf8": ["REQ-1", "CHK-13", "SRV-13"],
    "PlaintextUtf16": ["REQ-1", "CHK-13", "SRV-13"],
    "PlaintextBom": ["REQ-1", "CHK-13", "SRV-13"],
    "PlaintextNotJson": ["CHK-13", "SRV-13"],
    "PlaintextNotObject": ["CHK-13", "SRV-13"],
    "MissingMetadata": ["PID-5"],
    "MetadataNotObject": ["PID-5"],
    "PayloadIdMismatch": ["PID-6"],
}

HEADER = [
    "Test vectors for packages of the NOMYO secure completion protocol v1.0 (spec revision "
    "1.0.1).",
    "A receiver decrypts each package with the private key named by the group's keyId "
    "(keys.json). result 'valid': the plaintext must equal plaintextHex (or the expansion "
    "of plaintextRecipe). result 'invalid': the package must be refused, at the given stage, "
    "with the canonical error kind expectedKind. result 'acceptable': either outcome "
    "conforms: accepted with the plaintext of plaintextHex, or refused at the given stage "
    "with expectedKind (servers: expectedStatus).",
    "tcIds 1 to 243 are those of generator 1.0.0; later cases are appended in groups of "
    "their own, so a published tcId never changes its case.",
    "Stages in the order a receiver meets them: key, structure, crypto, size, plaintext, "
    "binding. See README.md.",
    "Regenerate with: python spec/vectors/generate.py (only encrypted_aes_key changes, "
    "RSA encryption being randomised).",
]


# --------------------------------------------------------------------------- keys


def _make_key(bits: int) -> dict[str, Any]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return _describe_key(key)


def _describe_key(key: rsa.RSAPrivateKey) -> dict[str, Any]:
    pub = key.public_key()
    spki = pub.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return {
        "keySize": key.key_size,
        "publicExponent": pub.public_numbers().e,
        "spkiSha256": hashlib.sha256(spki).hexdigest(),
        "privateKeyPem": key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode("ascii"),
        "publicKeyPem": pub.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode("ascii"),
    }


def load_or_make_keys(path: pathlib.Path) -> tuple[dict[str, Any], bool]:
    """Return (keys document, made) where made says the keys were generated just now."""
    if path.exists():
        doc = json.loads(path.read_text(encoding="utf-8"))
        missing = set(KEY_SIZES) - set(doc["keys"])
        if missing:
            raise SystemExit(f"{path}: keys missing: {sorted(missing)}")
        return doc, False
    doc = {
        "description": "Fixed RSA keys of the NOMYO v1.0 test vectors (public exponent 65537; "
        "private keys PKCS#8 PEM, unencrypted; public keys SubjectPublicKeyInfo PEM; "
        "spkiSha256 is the protocol's key fingerprint). Test keys only: never use them for "
        "anything else. rsa1024 exists only for the 'key under 2048 bits' case.",
        "keys": {kid: _make_key(bits) for kid, bits in KEY_SIZES.items()},
    }
    return doc, True


# --------------------------------------------------------------------------- crypto helpers


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def derive(tc_id: int, label: str, length: int, counter: int) -> bytes:
    """Deterministic per-test AES key and nonce material."""
    seed = f"nomyo-vectors/v1/{label}/{tc_id}/{counter}".encode()
    return hashlib.sha256(seed).digest()[:length]


def oaep(hash_alg: hashes.HashAlgorithm, mgf_alg: hashes.HashAlgorithm, label: bytes | None):
    return padding.OAEP(mgf=padding.MGF1(algorithm=mgf_alg), algorithm=hash_alg, label=label)


WRAP_OAEP_SHA256 = oaep(hashes.SHA256(), hashes.SHA256(), None)


@dataclass
class Sealed:
    aes_key: bytes
    nonce: bytes
    ciphertext: bytes
    tag: bytes
    encrypted_key: bytes


def gcm_encrypt(key: bytes, nonce: bytes, plaintext: bytes) -> tuple[bytes, bytes]:
    enc = Cipher(algorithms.AES(key), modes.GCM(nonce)).encryptor()
    ct = enc.update(plaintext) + enc.finalize()
    return ct, enc.tag


def seal(
    tc_id: int,
    plaintext: bytes,
    recipient: rsa.RSAPublicKey,
    *,
    aes_len: int = 32,
    nonce_len: int = 12,
    wrap: Any = WRAP_OAEP_SHA256,
    want_sym: Callable[[Sealed], bool] | None = None,
    want_key: Callable[[bytes], bool] | None = None,
) -> Sealed:
    """Encrypt like a v1.0 sender, with deterministic AES key and nonce.

    want_sym / want_key: predicates a case needs (e.g. a '+' in some base64 field); the key
    material is re-derived with a counter until want_sym holds, and the RSA wrap is redone
    until want_key holds.
    """
    counter = 0
    while True:
        aes_key = derive(tc_id, "aes-key", aes_len, counter)
        nonce = derive(tc_id, "nonce", nonce_len, counter)
        ct, tag = gcm_encrypt(aes_key, nonce, plaintext)
        sealed = Sealed(aes_key, nonce, ct, tag, b"")
        if want_sym is None or want_sym(sealed):
            break
        counter += 1
    for _ in range(1000):
        sealed.encrypted_key = recipient.encrypt(aes_key, wrap)
        if want_key is None or want_key(sealed.encrypted_key):
            return sealed
    raise RuntimeError("predicate on encrypted_aes_key never held")


def package_of(
    sealed: Sealed, *, tag: bytes | None = None, ciphertext: bytes | None = None
) -> dict:
    return {
        "version": "1.0",
        "algorithm": "hybrid-aes256-rsa4096",
        "encrypted_payload": {
            "ciphertext": b64(sealed.ciphertext if ciphertext is None else ciphertext),
            "nonce": b64(sealed.nonce),
            "tag": b64(sealed.tag if tag is None else tag),
        },
        "encrypted_aes_key": b64(sealed.encrypted_key),
        "key_algorithm": "RSA-OAEP-SHA256",
        "payload_algorithm": "AES-256-GCM",
    }


B64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def non_canonical(text: str) -> str:
    """The same bytes with an unused bit set: flip the lowest bit of the character before the
    padding (2 or 4 unused bits there, RFC 4648 section 3.5). Needs padding to exist."""
    body = text.rstrip("=")
    if body == text:
        raise ValueError("no padding, so no unused bits")
    last = B64_ALPHABET[B64_ALPHABET.index(body[-1]) ^ 1]
    out = body[:-1] + last + text[len(body):]
    assert base64.b64decode(out, validate=True) == base64.b64decode(text, validate=True)
    return out


def has_b64_symbol(data: bytes) -> bool:
    text = b64(data)
    return "+" in text or "/" in text


def flip(data: bytes, index: int, bit: int = 0) -> bytes:
    out = bytearray(data)
    out[index] ^= 1 << bit
    return bytes(out)


# --------------------------------------------------------------------------- plaintexts


def compact(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def official(obj: Any) -> bytes:
    """Serialised as the official Python client does: json.dumps defaults."""
    return json.dumps(obj).encode("utf-8")


def payload_id_for(tc_id: int) -> str:
    raw = bytearray(hashlib.sha256(f"nomyo-vectors/v1/payload-id/{tc_id}".encode()).digest()[:16])
    return str(uuid.UUID(bytes=bytes(raw), version=4))


CHAT_REQUEST = {
    "model": "llama3.1:8b",
    "messages": [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What is the capital of France?"},
    ],
    "temperature": 0.7,
    "max_tokens": 128,
}


def completion(payload_id: str | None, content: str = "The capital of France is Paris.") -> dict:
    obj: dict[str, Any] = {
        "id": "chatcmpl-nomyo-vector",
        "object": "chat.completion",
        "created": 1764115200,
        "model": "llama3.1:8b",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 24, "completion_tokens": 8, "total_tokens": 32},
    }
    if payload_id is not None:
        obj["_metadata"] = {
            "payload_id": payload_id,
            "processed_at": 1764115200.25,
            "is_encrypted": True,
            "response_status": "success",
            "security_tier": "standard",
            "memory_protection": {
                "platform": "linux",
                "memory_locking": True,
                "secure_zeroing": True,
                "core_dump_prevention": True,
            },
            "cuda_device": {
                "available": True,
                "device_hash": hashlib.sha256(b"NVIDIA H100 80GB HBM3").hexdigest(),
            },
        }
    return obj


RECIPE_PREFIX = b'{"model":"nomyo-size-test","messages":[{"role":"user","content":"'
RECIPE_SUFFIX = b'"}]}'


def expand_recipe(recipe: dict[str, Any]) -> bytes:
    """chat_request_padded: a compact chat request whose content is 'a' repeated so that the
    whole plaintext has exactly recipe['size'] bytes (README.md gives the same definition)."""
    if recipe.get("kind") != "chat_request_padded":
        raise ValueError(f"unknown recipe kind {recipe.get('kind')!r}")
    fill = recipe["size"] - len(RECIPE_PREFIX) - len(RECIPE_SUFFIX)
    if fill < 0:
        raise ValueError("recipe size too small")
    return RECIPE_PREFIX + b"a" * fill + RECIPE_SUFFIX


# --------------------------------------------------------------------------- builder


class Builder:
    def __init__(self, keys: dict[str, Any]) -> None:
        self.private = {
            kid: serialization.load_pem_private_key(k["privateKeyPem"].encode(), password=None)
            for kid, k in keys["keys"].items()
        }
        self.groups: list[dict[str, Any]] = []
        self.tc_id = 0

    # ---- group and test plumbing

    def group(self, key_id: str, direction: str) -> dict[str, Any]:
        g = {"keyId": key_id, "direction": direction, "tests": []}
        self.groups.append(g)
        self.key_id = key_id
        self.direction = direction
        self.current = g
        return g

    @property
    def pub(self) -> rsa.RSAPublicKey:
        return self.private[self.key_id].public_key()

    def next_id(self) -> int:
        self.tc_id += 1
        return self.tc_id

    def plaintext(self, tc_id: int) -> bytes:
        """The ordinary plaintext of this direction (what a well-behaved peer sends)."""
        if self.direction == "request":
            return official(CHAT_REQUEST)
        return official(completion(payload_id_for(tc_id)))

    def emit(
        self,
        tc_id: int,
        comment: str,
        flags: list[str],
        *,
        result: str,
        stage: str | None = None,
        package: Any = None,
        package_text: str | None = None,
        plaintext: bytes | None = None,
        sealed: Sealed | None = None,
        recipe: dict[str, Any] | None = None,
    ) -> None:
        test: dict[str, Any] = {"tcId": tc_id, "comment": comment, "flags": flags}
        if package_text is not None:
            test["packageText"] = package_text
        else:
            test["package"] = package
        if recipe is not None:
            test["plaintextRecipe"] = recipe
        elif plaintext is not None:
            test["plaintextHex"] = plaintext.hex()
        if sealed is not None:
            test["aesKeyHex"] = sealed.aes_key.hex()
            test["nonceHex"] = sealed.nonce.hex()
        if self.direction == "response":
            test["payloadId"] = payload_id_for(tc_id)
        test["result"] = result
        test["stage"] = stage
        test["expectedKind"] = None if result == "valid" else STAGE_KIND[stage or ""]
        if self.direction == "request":
            test["expectedStatus"] = 200 if result == "valid" else (413 if stage == "size" else 400)
        for flag in flags:
            if flag not in NOTES:
                raise KeyError(f"flag {flag} has no note")
        self.current["tests"].append(test)

    # ---- case families

    def valid(self, comment: str, flags: list[str], plaintext: bytes | Callable[[int], bytes],
              *, extra: dict[str, Any] | None = None) -> None:
        tc = self.next_id()
        pt = plaintext(tc) if callable(plaintext) else plaintext
        sealed = seal(tc, pt, self.pub)
        pkg = package_of(sealed)
        pkg.update(extra or {})
        self.emit(tc, comment, flags, result="valid", package=pkg, plaintext=pt, sealed=sealed)

    def valid_without(self, *fields: str) -> None:
        """A response package lacking key_algorithm/payload_algorithm: clients SHOULD accept
        it (CHK-6), since today's official client does not require these two fields."""
        tc = self.next_id()
        pt = self.plaintext(tc)
        sealed = seal(tc, pt, self.pub)
        pkg = package_of(sealed)
        for field in fields:
            del pkg[field]
        self.emit(tc, f"response package without {' and '.join(fields)}",
                  ["AlgorithmFieldsAbsent"], result="valid", package=pkg, plaintext=pt,
                  sealed=sealed)

    def invalid_pkg(self, comment: str, flags: list[str], stage: str,
                    mutate: Callable[[dict[str, Any]], Any], **seal_kw: Any) -> None:
        """A correct package, then one mutation of its JSON structure."""
        tc = self.next_id()
        pt = self.plaintext(tc)
        sealed = seal(tc, pt, self.pub, **seal_kw)
        pkg = package_of(sealed)
        replaced = mutate(pkg)
        pkg = pkg if replaced is None else replaced
        self.emit(tc, comment, flags, result="invalid", stage=stage, package=pkg, plaintext=pt,
                  sealed=sealed)

    def invalid_text(self, comment: str, flags: list[str], text_of: Callable[[dict], str]) -> None:
        tc = self.next_id()
        pt = self.plaintext(tc)
        sealed = seal(tc, pt, self.pub)
        text = text_of(package_of(sealed))
        self.emit(tc, comment, flags, result="invalid", stage="structure", package_text=text,
                  plaintext=pt, sealed=sealed)

    def invalid_crypto(self, comment: str, flags: list[str], *,
                       plaintext: bytes | None = None,
                       build: Callable[[Sealed], dict[str, Any]] | None = None,
                       stage: str = "crypto", **seal_kw: Any) -> None:
        tc = self.next_id()
        pt = self.plaintext(tc) if plaintext is None else plaintext
        sealed = seal(tc, pt, seal_kw.pop("recipient", self.pub), **seal_kw)
        pkg = build(sealed) if build else package_of(sealed)
        self.emit(tc, comment, flags, result="invalid", stage=stage, package=pkg, plaintext=pt,
                  sealed=sealed)

    def other_key(self) -> rsa.RSAPublicKey:
        other = "rsa4096" if self.key_id != "rsa4096" else "rsa2048"
        return self.private[other].public_key()

    # ---- the full invalid battery, shared by both directions

    def structure_cases(self) -> None:
        self.invalid_text("body is not JSON", ["PackageNotJson"], lambda p: "not a package")
        self.invalid_text("body is truncated JSON", ["PackageNotJson"],
                          lambda p: json.dumps(p)[:-1])
        self.invalid_text("empty body", ["PackageNotJson"], lambda p: "")
        self.invalid_text("body is a JSON array holding the package", ["PackageNotObject"],
                          lambda p: json.dumps([p]))
        self.invalid_text("body is JSON null", ["PackageNotObject"], lambda p: "null")
        self.invalid_text("body is a JSON string", ["PackageNotObject"], lambda p: '"1.0"')
        self.invalid_text("body is a JSON number", ["PackageNotObject"], lambda p: "1.0")
        for field in ("version", "algorithm", "encrypted_payload", "encrypted_aes_key",
                      "key_algorithm", "payload_algorithm"):
            if self.direction == "response" and field in ("key_algorithm", "payload_algorithm"):
                self.valid_without(field)
                continue
            self.invalid_pkg(f"{field} missing", ["MissingField"], "structure",
                             lambda p, f=field: p.pop(f) and None)
        if self.direction == "response":
            self.valid_without("key_algorithm", "payload_algorithm")
        for field in ("ciphertext", "nonce", "tag"):
            self.invalid_pkg(f"encrypted_payload.{field} missing", ["MissingField"], "structure",
                             lambda p, f=field: p["encrypted_payload"].pop(f) and None)
        self.invalid_pkg("ciphertext is a number", ["WrongFieldType"], "structure",
                         lambda p: p["encrypted_payload"].update(ciphertext=12345))
        self.invalid_pkg("nonce is a list of byte values", ["WrongFieldType"], "structure",
                         lambda p: p["encrypted_payload"].update(nonce=list(range(12))))
        self.invalid_pkg("encrypted_aes_key is null", ["WrongFieldType"], "structure",
                         lambda p: p.update(encrypted_aes_key=None))
        self.invalid_pkg("encrypted_payload is a string (its JSON text)",
                         ["EncryptedPayloadNotObject"], "structure",
                         lambda p: p.update(encrypted_payload=json.dumps(p["encrypted_payload"])))
        self.invalid_pkg("encrypted_payload is an array", ["EncryptedPayloadNotObject"],
                         "structure",
                         lambda p: p.update(
                             encrypted_payload=list(p["encrypted_payload"].values())))
        self.invalid_pkg("encrypted_payload is null", ["EncryptedPayloadNotObject"], "structure",
                         lambda p: p.update(encrypted_payload=None))
        for value, why in (("0.9", "older version (downgrade)"), ("2.0", "newer major version"),
                           (1.0, "the number 1.0, not the string"), ("1", "\"1\", not \"1.0\""),
                           ("1.0 ", "trailing space"), ("", "empty string")):
            self.invalid_pkg(f"version {value!r}: {why}", ["WrongVersion"], "structure",
                             lambda p, v=value: p.update(version=v))
        for value in ("hybrid-aes128-rsa2048", "HYBRID-AES256-RSA4096", "hybrid-chacha20-rsa4096",
                      "none"):
            self.invalid_pkg(f"algorithm {value!r}", ["WrongAlgorithm"], "structure",
                             lambda p, v=value: p.update(algorithm=v))
        for value in ("RSA-OAEP-SHA1", "RSA1_5", "rsa-oaep-sha256"):
            self.invalid_pkg(f"key_algorithm {value!r}", ["WrongKeyAlgorithm"], "structure",
                             lambda p, v=value: p.update(key_algorithm=v))
        for value in ("AES-128-GCM", "AES-256-CBC", "aes-256-gcm"):
            self.invalid_pkg(f"payload_algorithm {value!r}", ["WrongPayloadAlgorithm"],
                             "structure", lambda p, v=value: p.update(payload_algorithm=v))

    def crypto_cases(self) -> None:
        self.invalid_crypto("AES key wrapped with RSA-OAEP-SHA1 (hash and MGF1 SHA-1)",
                            ["WrongOaepHash"], wrap=oaep(hashes.SHA1(), hashes.SHA1(), None))  # noqa: S303
        self.invalid_crypto("AES key wrapped with RSA-OAEP, SHA-256 hash but MGF1-SHA-1",
                            ["WrongMgfHash"], wrap=oaep(hashes.SHA256(), hashes.SHA1(), None))  # noqa: S303
        self.invalid_crypto("AES key wrapped with RSA-OAEP-SHA256 and label \"nomyo\"",
                            ["OaepLabel"], wrap=oaep(hashes.SHA256(), hashes.SHA256(),
                                                     OAEP_TEST_LABEL))
        self.invalid_crypto("AES key wrapped with RSA PKCS#1 v1.5", ["Pkcs1v15"],
                            wrap=padding.PKCS1v15())
        self.invalid_crypto("package encrypted to another RSA key", ["WrongRecipient"],
                            recipient=self.other_key())
        self.invalid_crypto(
            "one bit of encrypted_aes_key flipped (last byte)", ["ModifiedEncryptedKey"],
            build=lambda s: {**package_of(s), "encrypted_aes_key": b64(flip(s.encrypted_key, -1))})
        self.invalid_crypto("AES-128 key (16 bytes) wrapped, payload AES-128-GCM",
                            ["WrongAesKeySize"], aes_len=16)
        self.invalid_crypto(
            "tag appended to the ciphertext (and also in the tag field)", ["TagAppended"],
            build=lambda s: package_of(s, ciphertext=s.ciphertext + s.tag))
        self.invalid_crypto("tag truncated to its first 12 bytes", ["TruncatedTag"],
                            build=lambda s: package_of(s, tag=s.tag[:12]))
        self.invalid_crypto("tag truncated to its first 8 bytes", ["TruncatedTag"],
                            build=lambda s: package_of(s, tag=s.tag[:8]))
        self.invalid_crypto("first bit of the ciphertext flipped", ["ModifiedCiphertext"],
                            build=lambda s: package_of(s, ciphertext=flip(s.ciphertext, 0)))
        self.invalid_crypto("last bit of the ciphertext flipped", ["ModifiedCiphertext"],
                            build=lambda s: package_of(s, ciphertext=flip(s.ciphertext, -1, 7)))
        self.invalid_crypto("first bit of the tag flipped", ["ModifiedTag"],
                            build=lambda s: package_of(s, tag=flip(s.tag, 0)))
        self.invalid_crypto("last bit of the tag flipped", ["ModifiedTag"],
                            build=lambda s: package_of(s, tag=flip(s.tag, -1, 7)))
        self.invalid_crypto("payload encrypted with an 8-byte GCM nonce", ["WrongNonceSize"],
                            nonce_len=8)
        self.invalid_crypto("payload encrypted with a 16-byte GCM nonce", ["WrongNonceSize"],
                            nonce_len=16)
        self.base64_cases()

    def base64_cases(self) -> None:
        def with_field(field: str, text: str) -> Callable[[Sealed], dict[str, Any]]:
            def build(s: Sealed) -> dict[str, Any]:
                pkg = package_of(s)
                if field == "encrypted_aes_key":
                    pkg[field] = text_of(s, text)
                else:
                    pkg["encrypted_payload"][field] = text_of(s, text)
                return pkg
            return build

        raw = {
            "ciphertext": lambda s: s.ciphertext,
            "nonce": lambda s: s.nonce,
            "tag": lambda s: s.tag,
            "encrypted_aes_key": lambda s: s.encrypted_key,
        }

        def text_of(s: Sealed, how: str) -> str:
            field, mode = how.split(":")
            enc = b64(raw[field](s))
            if mode == "bang":
                return enc[:4] + "!" + enc[4:]
            if mode == "star":
                return enc[:8] + "*" + enc[8:]
            if mode == "mime":
                return base64.encodebytes(raw[field](s)).decode("ascii")
            if mode == "nopad":
                return enc.rstrip("=")
            if mode == "urlsafe":
                return enc.replace("+", "-").replace("/", "_")
            raise ValueError(mode)

        # a plaintext whose length is not a multiple of 3, so its base64 has padding
        def padded_plaintext(tc_id: int) -> bytes:
            pt = self.plaintext(tc_id)
            return pt if len(pt) % 3 else b"{ " + pt[1:]

        sym = {
            "ciphertext": lambda s: has_b64_symbol(s.ciphertext),
            "nonce": lambda s: has_b64_symbol(s.nonce),
            "tag": lambda s: has_b64_symbol(s.tag),
        }
        cases = [
            ("ciphertext", "bang", "Base64NonAlphabet", "'!' inserted into ciphertext"),
            ("nonce", "bang", "Base64NonAlphabet", "'!' inserted into nonce"),
            ("tag", "star", "Base64NonAlphabet", "'*' inserted into tag"),
            ("encrypted_aes_key", "mime", "Base64NonAlphabet",
             "encrypted_aes_key with MIME line breaks every 76 characters (base64.encodebytes)"),
            ("ciphertext", "nopad", "Base64MissingPadding", "ciphertext without '=' padding"),
            ("tag", "nopad", "Base64MissingPadding", "tag without its '==' padding"),
            ("encrypted_aes_key", "nopad", "Base64MissingPadding",
             "encrypted_aes_key without '=' padding"),
            ("ciphertext", "urlsafe", "Base64UrlSafe", "ciphertext in the URL-safe alphabet"),
            ("nonce", "urlsafe", "Base64UrlSafe", "nonce in the URL-safe alphabet"),
            ("tag", "urlsafe", "Base64UrlSafe", "tag in the URL-safe alphabet"),
            ("encrypted_aes_key", "urlsafe", "Base64UrlSafe",
             "encrypted_aes_key in the URL-safe alphabet"),
        ]
        for field, mode, flag, comment in cases:
            tc = self.tc_id + 1
            kw: dict[str, Any] = {"plaintext": padded_plaintext(tc)}
            if mode == "urlsafe":
                if field == "encrypted_aes_key":
                    kw["want_key"] = has_b64_symbol
                else:
                    kw["want_sym"] = sym[field]
            self.invalid_crypto(comment, [flag], build=with_field(field, f"{field}:{mode}"), **kw)

    def plaintext_cases(self) -> None:
        cases: list[tuple[str, str, Callable[[int], bytes]]] = [
            ("PlaintextNotUtf8", "plaintext contains a 0xff byte",
             lambda tc: self.plaintext(tc).replace(b'"', b'"\xff', 1)),
            ("PlaintextUtf16", "plaintext is the JSON object encoded in UTF-16-LE (valid UTF-8 "
             "bytes, not JSON)",
             lambda tc: self.plaintext(tc).decode().encode("utf-16-le")),
            ("PlaintextBom", "plaintext starts with a UTF-8 byte-order mark",
             lambda tc: b"\xef\xbb\xbf" + self.plaintext(tc)),
            ("PlaintextNotJson", "plaintext is plain text", lambda tc: b"hello, world"),
            ("PlaintextNotJson", "plaintext is truncated JSON",
             lambda tc: self.plaintext(tc)[:-1]),
            ("PlaintextNotJson", "plaintext is empty", lambda tc: b""),
            ("PlaintextNotObject", "plaintext is a JSON array",
             lambda tc: b"[" + self.plaintext(tc) + b"]"),
            ("PlaintextNotObject", "plaintext is a JSON string", lambda tc: b'"hello"'),
            ("PlaintextNotObject", "plaintext is a JSON number", lambda tc: b"42"),
            ("PlaintextNotObject", "plaintext is JSON null", lambda tc: b"null"),
            ("PlaintextNotObject", "plaintext is JSON true", lambda tc: b"true"),
        ]
        for flag, comment, make in cases:
            tc = self.tc_id + 1
            self.invalid_crypto(comment, [flag], plaintext=make(tc), stage="plaintext")

    def binding_cases(self) -> None:
        def with_meta(meta: Any, drop: bool = False) -> Callable[[int], bytes]:
            def make(tc: int) -> bytes:
                obj = completion(payload_id_for(tc))
                if drop:
                    del obj["_metadata"]
                else:
                    obj["_metadata"] = meta(obj["_metadata"], tc)
                return official(obj)
            return make

        def other_id(meta: dict, tc: int) -> dict:
            return {**meta, "payload_id": payload_id_for(tc + 100000)}

        def upper_id(meta: dict, tc: int) -> dict:
            return {**meta, "payload_id": payload_id_for(tc).upper()}

        def no_id(meta: dict, tc: int) -> dict:
            return {k: v for k, v in meta.items() if k != "payload_id"}

        cases: list[tuple[str, str, Callable[[int], bytes]]] = [
            ("MissingMetadata", "completion without _metadata", with_meta(None, drop=True)),
            ("MetadataNotObject", "_metadata is a string",
             with_meta(lambda m, tc: payload_id_for(tc))),
            ("MetadataNotObject", "_metadata is null", with_meta(lambda m, tc: None)),
            ("PayloadIdMismatch", "_metadata.payload_id is another request's id",
             with_meta(other_id)),
            ("PayloadIdMismatch", "_metadata.payload_id is the right id upper-cased",
             with_meta(upper_id)),
            ("PayloadIdMismatch", "_metadata without payload_id", with_meta(no_id)),
        ]
        for flag, comment, make in cases:
            tc = self.tc_id + 1
            self.invalid_crypto(comment, [flag], plaintext=make(tc), stage="binding")

    # ---- cases added in generator 1.1.0 (spec revision 1.0.1), appended in groups of their own

    def padded_plaintext(self, tc_id: int) -> bytes:
        """The ordinary plaintext, made one byte longer if needed so its base64 is padded."""
        pt = self.plaintext(tc_id)
        return pt if len(pt) % 3 else b"{ " + pt[1:]

    def non_canonical_case(self, field: str) -> None:
        """Result 'acceptable': non-zero unused bits in one base64 field (PKG-10)."""
        tc = self.tc_id + 1
        pt = self.padded_plaintext(tc) if field == "ciphertext" else self.plaintext(tc)

        def build(s: Sealed) -> dict[str, Any]:
            pkg = package_of(s)
            if field == "encrypted_aes_key":
                pkg[field] = non_canonical(pkg[field])
            else:
                pkg["encrypted_payload"][field] = non_canonical(pkg["encrypted_payload"][field])
            return pkg

        tc = self.next_id()
        sealed = seal(tc, pt, self.pub)
        bits = "4" if (package_of(sealed)[field] if field == "encrypted_aes_key" else
                       package_of(sealed)["encrypted_payload"][field]).endswith("==") else "2"
        self.emit(tc, f"{field} with non-zero unused bits before the padding ({bits} unused "
                  "bits; decodes to the right bytes)", ["Base64NonCanonicalBits"],
                  result="acceptable", stage="crypto", package=build(sealed), plaintext=pt,
                  sealed=sealed)

    def duplicate_package_cases(self) -> None:
        """Package texts with a repeated member name: refused before decryption (CHK-18)."""
        def first(member: str, value: str) -> Callable[[dict], str]:
            return lambda p: "{" + json.dumps(member) + ": " + json.dumps(value) + ", " + \
                json.dumps(p)[1:]

        def last(member: str, value: str) -> Callable[[dict], str]:
            return lambda p: json.dumps(p)[:-1] + ", " + json.dumps(member) + ": " + \
                json.dumps(value) + "}"

        def inner_tag_first(p: dict) -> str:
            wrong = b64(flip(base64.b64decode(p["encrypted_payload"]["tag"]), 0))
            text = json.dumps(p)
            anchor = '"encrypted_payload": {'
            return text.replace(anchor, anchor + '"tag": ' + json.dumps(wrong) + ", ", 1)

        cases: list[tuple[str, Callable[[dict], str]]] = [
            ("version given twice, \"2.0\" first and \"1.0\" last (a last-wins parser "
             "accepts it)", first("version", "2.0")),
            ("version given twice, \"1.0\" first and \"2.0\" last (a first-wins parser "
             "accepts it)", last("version", "2.0")),
            ("encrypted_payload.tag given twice, a wrong tag first and the right one last",
             inner_tag_first),
        ]
        for comment, text_of in cases:
            tc = self.next_id()
            pt = self.plaintext(tc)
            sealed = seal(tc, pt, self.pub)
            text = text_of(package_of(sealed))
            self.emit(tc, comment, ["DuplicateMemberPackage"], result="invalid",
                      stage="structure", package_text=text, plaintext=pt, sealed=sealed)

    def duplicate_plaintext_cases(self) -> None:
        """Plaintexts with a repeated member name: refused after decryption (CHK-18, SRV-20)."""
        def prepend(member: str, value: Any) -> Callable[[int], bytes]:
            def make(tc: int) -> bytes:
                text = self.plaintext(tc)
                return b"{" + json.dumps(member).encode() + b": " + \
                    json.dumps(value).encode() + b", " + text[1:]
            return make

        def append(member: str, value: Any) -> Callable[[int], bytes]:
            def make(tc: int) -> bytes:
                return self.plaintext(tc)[:-1] + b", " + json.dumps(member).encode() + \
                    b": " + json.dumps(value).encode() + b"}"
            return make

        def payload_id_twice(tc: int) -> bytes:
            obj = completion(payload_id_for(tc))
            text = official(obj)
            anchor = b'"_metadata": {"payload_id": ' + json.dumps(payload_id_for(tc)).encode()
            assert anchor in text
            return text.replace(anchor, anchor + b', "payload_id": ' +
                                json.dumps(payload_id_for(tc + 100000)).encode(), 1)

        if self.direction == "request":
            cases: list[tuple[str, Callable[[int], bytes]]] = [
                ("request plaintext with model given twice, another model first",
                 prepend("model", "other-model")),
                ("request plaintext with stream given twice, true first and false last",
                 lambda tc: prepend("stream", True)(tc)[:-1] + b', "stream": false}'),
            ]
        else:
            cases = [
                ("_metadata given twice, another request's payload id first (a last-wins "
                 "parser binds to the right one)",
                 prepend("_metadata", {"payload_id": payload_id_for(self.tc_id + 100001)})),
                ("_metadata.payload_id given twice, the right id first and another last (a "
                 "first-wins parser binds to the right one)", payload_id_twice),
                ("the completion's id given twice at the end",
                 append("id", "chatcmpl-duplicate")),
            ]
        for comment, make in cases:
            tc = self.tc_id + 1
            self.invalid_crypto(comment, ["DuplicateMemberPlaintext"], plaintext=make(tc),
                                stage="plaintext")

    def size_case(self, size: int, valid: bool) -> None:
        tc = self.next_id()
        recipe = {"kind": "chat_request_padded", "size": size}
        pt = expand_recipe(recipe)
        sealed = seal(tc, pt, self.pub)
        pkg = package_of(sealed, ciphertext=b"")
        if valid:
            self.emit(tc, "request plaintext of exactly 10 MiB", ["MaxSizePlaintext"],
                      result="valid", package=pkg, sealed=sealed, recipe=recipe)
        else:
            self.emit(tc, "request plaintext of 10 MiB + 1 byte", ["PlaintextTooLarge"],
                      result="invalid", stage="size", package=pkg, sealed=sealed, recipe=recipe)


def unicode_request() -> dict[str, Any]:
    return {
        "model": "llama3.1:8b",
        "messages": [
            {"role": "user", "content": "Grüße aus Köln! 你好，世界 🌍🚀 — ¿qué tal? Ωμέγα"}
        ],
    }


def tools_request() -> dict[str, Any]:
    return {
        "model": "llama3.1:8b",
        "messages": [{"role": "user", "content": "Weather in Paris?"}],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "Current weather for a city",
                    "parameters": {
                        "type": "object",
                        "properties": {"city": {"type": "string"}},
                        "required": ["city"],
                    },
                },
            }
        ],
        "tool_choice": "auto",
    }


def tool_call_completion(tc: int) -> dict[str, Any]:
    obj = completion(payload_id_for(tc))
    obj["choices"][0] = {
        "index": 0,
        "message": {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_0",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"},
                }
            ],
        },
        "finish_reason": "tool_calls",
    }
    return obj


def build(keys: dict[str, Any]) -> dict[str, Any]:
    b = Builder(keys)
    minimal_request = compact({"model": "m", "messages": [{"role": "user", "content": ""}]})
    for key_id in ("rsa2048", "rsa4096"):
        b.group(key_id, "request")
        b.valid("chat request as the official client serialises it", ["Normal"],
                official(CHAT_REQUEST))
        b.valid("minimal chat request, empty content", ["MinimalPlaintext"], minimal_request)
        b.valid("unicode chat request, raw UTF-8", ["Unicode"], compact(unicode_request()))
        b.valid("unicode chat request, \\u escapes", ["Unicode"], official(unicode_request()))
        b.valid("chat request with tools", ["ToolCalls"], official(tools_request()))
        b.valid("unknown extra top-level key in the package", ["ExtraTopLevelKey"],
                official(CHAT_REQUEST), extra={"x-nomyo-extension": {"ignored": True}})
        if key_id == "rsa4096":
            b.size_case(MAX_PLAINTEXT, valid=True)
            b.size_case(MAX_PLAINTEXT + 1, valid=False)
        else:
            b.structure_cases()
        b.crypto_cases()
        if key_id == "rsa2048":
            b.plaintext_cases()

        b.group(key_id, "response")
        b.valid("chat.completion with the server's _metadata", ["Normal"],
                lambda tc: official(completion(payload_id_for(tc))))
        b.valid("minimal plaintext: only _metadata.payload_id", ["MinimalPlaintext"],
                lambda tc: compact({"_metadata": {"payload_id": payload_id_for(tc)}}))
        b.valid("unicode answer, raw UTF-8", ["Unicode"],
                lambda tc: compact(completion(payload_id_for(tc), "Grüße! 你好 🌍 — Ωμέγα")))
        b.valid("unicode answer, \\u escapes", ["Unicode"],
                lambda tc: official(completion(payload_id_for(tc), "Grüße! 你好 🌍 — Ωμέγα")))
        b.valid("response package with processed_at", ["ProcessedAt"],
                lambda tc: official(completion(payload_id_for(tc))),
                extra={"processed_at": 1764115200.5})
        b.valid("response package with integer processed_at and an unknown top-level key",
                ["ProcessedAt", "ExtraTopLevelKey"],
                lambda tc: official(completion(payload_id_for(tc))),
                extra={"processed_at": 1764115200, "x-nomyo-extension": "ignored"})
        b.valid("completion with tool_calls and null content", ["ToolCalls"],
                lambda tc: official(tool_call_completion(tc)))
        if key_id == "rsa2048":
            b.structure_cases()
        b.crypto_cases()
        if key_id == "rsa2048":
            b.plaintext_cases()
            b.binding_cases()

    b.group("rsa1024", "response")
    for comment, make in (
        ("response encrypted to a 1024-bit client key (decrypts, but the key is refused)",
         lambda tc: official(completion(payload_id_for(tc)))),
        ("minimal response encrypted to a 1024-bit client key",
         lambda tc: compact({"_metadata": {"payload_id": payload_id_for(tc)}})),
    ):
        tc = b.next_id()
        pt = make(tc)
        sealed = seal(tc, pt, b.pub)
        b.emit(tc, comment, ["SmallKey"], result="invalid", stage="key",
               package=package_of(sealed), plaintext=pt, sealed=sealed)

    # Generator 1.1.0 (spec revision 1.0.1): appended after every case of 1.0.0, so that no
    # published tcId changes.
    for key_id, direction, fields in (
        ("rsa2048", "request", ("ciphertext", "tag", "encrypted_aes_key")),
        ("rsa2048", "response", ("ciphertext", "tag", "encrypted_aes_key")),
        ("rsa4096", "request", ("encrypted_aes_key",)),
        ("rsa4096", "response", ("encrypted_aes_key",)),
    ):
        b.group(key_id, direction)
        for field in fields:
            b.non_canonical_case(field)
        if key_id == "rsa2048":
            b.duplicate_package_cases()
            b.duplicate_plaintext_cases()

    used = sorted({f for g in b.groups for t in g["tests"] for f in t["flags"]})
    return {
        "algorithm": "NOMYO-HYBRID-AES256GCM-RSAOAEP-SHA256",
        "schema": "vectors.schema.json",
        "generatorVersion": GENERATOR_VERSION,
        "numberOfTests": b.tc_id,
        "header": HEADER,
        "notes": {flag: NOTES[flag] for flag in used},
        "flagRequirements": {flag: FLAG_REQUIREMENTS[flag] for flag in used},
        "recipes": {
            "chat_request_padded": "Plaintext of exactly `size` bytes: the UTF-8 bytes "
            + RECIPE_PREFIX.decode()
            + " followed by the letter a repeated (size - "
            + str(len(RECIPE_PREFIX) + len(RECIPE_SUFFIX))
            + ") times, then "
            + RECIPE_SUFFIX.decode()
            + ". The stored package has an empty encrypted_payload.ciphertext: set it to "
            "base64(AES-256-GCM ciphertext of that plaintext under aesKeyHex and nonceHex, "
            "without the tag); the stored tag is the tag of that encryption.",
        },
        "stages": {
            "key": "the receiver's own RSA key is refused before use (under 2048 bits)",
            "structure": "the package JSON is refused before any decryption (not JSON, not an "
            "object, field missing or of the wrong type, version/algorithm/key_algorithm/"
            "payload_algorithm not the exact v1.0 strings)",
            "crypto": "strict base64 decoding, nonce 12 bytes, tag 16 bytes, RSA-OAEP-SHA256 "
            "unwrap, AES key 32 bytes, AES-256-GCM decryption with tag check",
            "size": "the plaintext is over 10 MiB (10485760 bytes)",
            "plaintext": "the plaintext is not a UTF-8 (no BOM) JSON object",
            "binding": "responses only: _metadata missing, not an object, or its payload_id "
            "differs from payloadId (the request's X-Payload-ID)",
        },
        "testGroups": b.groups,
    }


# --------------------------------------------------------------------------- key forms


def synthetic_modulus(bits: int) -> int:
    """A deterministic odd number of exactly `bits` bits, used as an RSA modulus for the size
    limits (no library checks that a public modulus is a product of two primes)."""
    n = int.from_bytes(hashlib.shake_256(f"nomyo-vectors/v1/modulus/{bits}".encode())
                       .digest((bits + 7) // 8), "big")
    n &= (1 << bits) - 1
    return n | (1 << (bits - 1)) | 1


def spki_pem(key: Any) -> str:
    return key.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")


def fingerprint_of(key: Any) -> str:
    der = key.public_bytes(serialization.Encoding.DER,
                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def self_signed_certificate(key: rsa.RSAPrivateKey) -> str:
    """A certificate for the key: deterministic (fixed names, serial, dates; PKCS#1 v1.5
    signatures are deterministic)."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "nomyo-vectors.invalid")])
    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(start).not_valid_after(start + datetime.timedelta(days=365))
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


KEY_FORM_REQUIREMENTS = ["KEY-3", "DISC-3", "DISC-14", "DISC-24", "SRV-6", "SRV-7", "SRV-24",
                         "SRV-25"]


def build_key_forms(keys: dict[str, Any]) -> dict[str, Any]:
    """Texts a server key answer (GET /pki/public_key) or a percent-decoded X-Public-Key may
    hold, with the verdict of protocol.md 5.2 and 9.2."""
    private = {kid: serialization.load_pem_private_key(k["privateKeyPem"].encode(), None)
               for kid, k in keys["keys"].items()}
    k2048 = private["rsa2048"]
    assert isinstance(k2048, rsa.RSAPrivateKey)
    pub2048 = k2048.public_key()
    pem2048 = spki_pem(pub2048)
    pem4096 = spki_pem(private["rsa4096"].public_key())
    n2048 = pub2048.public_numbers().n
    e3 = rsa.RSAPublicNumbers(3, n2048).public_key()
    max_key = rsa.RSAPublicNumbers(65537, synthetic_modulus(16384)).public_key()
    too_big = rsa.RSAPublicNumbers(65537, synthetic_modulus(16392)).public_key()
    ed = ed25519.Ed25519PrivateKey.from_private_bytes(
        hashlib.sha256(b"nomyo-vectors/v1/ed25519").digest()).public_key()
    pkcs1 = pub2048.public_bytes(serialization.Encoding.PEM,
                                 serialization.PublicFormat.PKCS1).decode("ascii")
    der_b64 = "".join(line for line in pem2048.splitlines() if not line.startswith("-----"))

    cases: list[tuple[str, str, str, Any]] = [
        # (comment, result, text, the key a valid text holds)
        ("rsa2048 as SubjectPublicKeyInfo PEM", "valid", pem2048, pub2048),
        ("rsa4096 as SubjectPublicKeyInfo PEM (what deployed servers publish)", "valid",
         pem4096, private["rsa4096"].public_key()),
        ("rsa2048 SPKI PEM with CRLF line endings (KEY-3)", "valid",
         pem2048.replace("\n", "\r\n"), pub2048),
        ("rsa2048 SPKI PEM without the final newline (KEY-3)", "valid", pem2048.rstrip("\n"),
         pub2048),
        ("rsa2048 SPKI PEM with whitespace before and after the block", "valid",
         "\n  " + pem2048 + "  \n\n", pub2048),
        ("a 16384-bit modulus with exponent 65537, the largest allowed (DISC-22, DISC-24)",
         "valid", spki_pem(max_key), max_key),
        ("rsa2048 as PKCS#1 'BEGIN RSA PUBLIC KEY' (DISC-14, SRV-24)", "invalid", pkcs1, None),
        ("a self-signed X.509 certificate of rsa2048 (DISC-14, SRV-24)", "invalid",
         self_signed_certificate(k2048), None),
        ("two SPKI blocks, rsa2048 then rsa4096 (DISC-14, SRV-24)", "invalid",
         pem2048 + pem4096, None),
        ("text before the block (DISC-14, SRV-24)", "invalid", "server key:\n" + pem2048,
         None),
        ("text after the block (DISC-14, SRV-24)", "invalid", pem2048 + "fingerprint: "
         + fingerprint_of(pub2048) + "\n", None),
        ("the base64 of the DER without PEM lines (DISC-3, SRV-6)", "invalid", der_b64, None),
        ("a PKCS#8 private key instead of a public key (DISC-3, SRV-6)", "invalid",
         keys["keys"]["rsa2048"]["privateKeyPem"], None),
        ("an Ed25519 SPKI: not RSA (DISC-3, SRV-7)", "invalid", spki_pem(ed), None),
        ("rsa1024: under 2048 bits (DISC-3, SRV-7)", "invalid",
         keys["keys"]["rsa1024"]["publicKeyPem"], None),
        ("the rsa2048 modulus with public exponent 3 (DISC-24, SRV-25)", "invalid",
         spki_pem(e3), None),
        ("a 16392-bit modulus: over 16384 bits (DISC-24, SRV-25)", "invalid", spki_pem(too_big),
         None),
    ]
    tests = []
    for number, (comment, result, text, key) in enumerate(cases, start=1):
        test: dict[str, Any] = {"id": number, "comment": comment, "text": text,
                                "result": result}
        if key is not None:
            test["spkiSha256"] = fingerprint_of(key)
        tests.append(test)
    return {
        "schema": "key-forms.schema.json",
        "generatorVersion": GENERATOR_VERSION,
        "description": "Texts that a server key answer (GET /pki/public_key, protocol.md 5.2) "
        "or a percent-decoded X-Public-Key header (9.2) may hold. 'valid': a client accepts it "
        "as the server key (its fingerprint, 3.5, is spkiSha256) and a server accepts it as "
        "the client key. 'invalid': a client raises SecurityError and sends no POST; a server "
        "answers 400. Test data only: the keys are those of keys.json or synthetic moduli.",
        "requirements": KEY_FORM_REQUIREMENTS,
        "tests": tests,
    }


def write_atomically(path: pathlib.Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=HERE,
                        help="directory for packages.json (default: spec/vectors)")
    parser.add_argument("--keys", type=pathlib.Path, default=DEFAULT_KEYS,
                        help="keys file to reuse; generated (into --out) when missing")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    keys, made = load_or_make_keys(args.keys)
    if made:
        target = args.out / "keys.json"
        target.write_text(json.dumps(keys, indent=2) + "\n", encoding="utf-8")
        print(f"generated new keys: {target}")
    doc = build(keys)
    out = args.out / "packages.json"
    write_atomically(out, json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {doc['numberOfTests']} tests to {out}")
    forms = build_key_forms(keys)
    write_atomically(args.out / "key-forms.json", json.dumps(forms, indent=1) + "\n")
    print(f"wrote {len(forms['tests'])} key forms to {args.out / 'key-forms.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
