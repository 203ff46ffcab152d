"""The JSON Schemas in spec/schemas/ are valid, and their examples say what they claim.

Every good example must validate; every bad example must be rejected for exactly one reason
(the one its file name names). A package built here with `cryptography` (independently of any
project code) must validate against package.schema.json, and near-misses of it must not.
"""

from __future__ import annotations

import base64
import json
import os
import pathlib
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from jsonschema import Draft202012Validator

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "spec" / "schemas"
EXAMPLES = SCHEMAS / "examples"
NAMES = ["package", "error-body", "chat-request", "chat-completion"]


def load(path: pathlib.Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(load(SCHEMAS / f"{name}.schema.json"))


def example_files() -> list[pathlib.Path]:
    return sorted(EXAMPLES.glob("*/*.json"))


@pytest.mark.parametrize("name", NAMES)
def test_schema_is_valid_draft_2020_12(name: str) -> None:
    schema = load(SCHEMAS / f"{name}.schema.json")
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == f"https://nomyo-conformance.invalid/schemas/{name}.schema.json"
    assert len(schema["description"]) > 80


def test_every_schema_file_is_known_and_has_examples() -> None:
    on_disk = sorted(p.name.removesuffix(".schema.json") for p in SCHEMAS.glob("*.schema.json"))
    assert on_disk == sorted(NAMES)
    assert sorted(p.name for p in EXAMPLES.iterdir() if p.is_dir()) == sorted(NAMES)
    for name in NAMES:
        files = [p.name for p in (EXAMPLES / name).glob("*.json")]
        assert all(f.startswith(("good-", "bad-")) for f in files), files
        assert sum(f.startswith("good-") for f in files) >= 3, name
        assert sum(f.startswith("bad-") for f in files) >= 5, name


@pytest.mark.parametrize(
    "path", example_files(), ids=lambda p: f"{p.parent.name}/{p.stem}"
)
def test_example_matches_its_verdict(path: pathlib.Path) -> None:
    errors = list(validator(path.parent.name).iter_errors(load(path)))
    if path.name.startswith("good-"):
        assert errors == [], [e.message for e in errors]
    else:
        # exactly one rule broken, so the example shows that rule and nothing else
        assert len(errors) == 1, [e.message for e in errors]


# ------------------------------------------------------------------ a real package


@pytest.fixture(scope="module")
def recipient() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def make_package(key: rsa.RSAPublicKey, plaintext: bytes) -> dict[str, Any]:
    aes_key = AESGCM.generate_key(bit_length=256)
    nonce = os.urandom(12)
    sealed = AESGCM(aes_key).encrypt(nonce, plaintext, None)
    wrapped = key.encrypt(
        aes_key,
        padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None),
    )
    return {
        "version": "1.0",
        "algorithm": "hybrid-aes256-rsa4096",
        "encrypted_payload": {
            "ciphertext": b64(sealed[:-16]),
            "nonce": b64(nonce),
            "tag": b64(sealed[-16:]),
        },
        "encrypted_aes_key": b64(wrapped),
        "key_algorithm": "RSA-OAEP-SHA256",
        "payload_algorithm": "AES-256-GCM",
    }


@pytest.mark.parametrize("size", [0, 1, 2, 3, 100, 4097])
def test_package_built_with_cryptography_validates(recipient: rsa.RSAPrivateKey,
                                                   size: int) -> None:
    package = make_package(recipient.public_key(), os.urandom(size))
    errors = list(validator("package").iter_errors(json.loads(json.dumps(package))))
    assert errors == [], [e.message for e in errors]
    response = {**package, "processed_at": 1764115200.5}
    assert list(validator("package").iter_errors(response)) == []


def test_package_near_misses_are_rejected(recipient: rsa.RSAPrivateKey) -> None:
    good = make_package(recipient.public_key(), b'{"model":"m","messages":[]}')
    v = validator("package")
    sealed_tag = base64.b64decode(good["encrypted_payload"]["tag"])
    ciphertext = base64.b64decode(good["encrypted_payload"]["ciphertext"])
    near_misses = {
        "tag appended": {"ciphertext": b64(ciphertext + sealed_tag), "tag": b64(sealed_tag * 2)},
        "tag 12 bytes": {"tag": b64(sealed_tag[:12])},
        "nonce 16 bytes": {"nonce": b64(os.urandom(16))},
        "url-safe": {"ciphertext": "ab-_"},
        "unpadded": {"tag": b64(sealed_tag).rstrip("=")},
        # PKG-10: the last character before "==" is one of A Q g w; its alphabet successor
        # decodes to the same bytes with a non-zero unused bit, which no sender may emit
        "non-canonical bits": {"tag": b64(sealed_tag)[:21]
                               + {"A": "B", "Q": "R", "g": "h", "w": "x"}[b64(sealed_tag)[21]]
                               + "=="},
    }
    for what, change in near_misses.items():
        bad = json.loads(json.dumps(good))
        bad["encrypted_payload"].update(change)
        assert not v.is_valid(bad), what
    assert not v.is_valid({**good, "version": 1.0})
    assert not v.is_valid({**good, "processed_at": "now"})
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 (deliberately too small)
    assert not v.is_valid(make_package(small.public_key(), b"{}"))


def test_chat_request_schema_keeps_config_out_of_the_payload() -> None:
    v = validator("chat-request")
    base = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    assert v.is_valid(base)
    assert v.is_valid({**base, "seed": 1, "logprobs": True})  # extra OpenAI parameters pass
    for key in ("security_tier", "api_key", "base_url"):
        assert not v.is_valid({**base, key: "x"}), key
    # 8.1: roles are not validated by the client; new ones pass through (any string)
    assert v.is_valid({**base, "messages": [{"role": "robot", "content": "hi"}]})
    assert not v.is_valid({**base, "messages": [{"role": None, "content": "hi"}]})


def test_completion_finish_reason_is_a_string() -> None:
    """RSP-4: finish_reason is a string; any string, never null."""
    v = validator("chat-completion")
    good = load(EXAMPLES / "chat-completion" / "good-minimal-metadata.json")
    choice = good["choices"][0]
    for value, ok in (("stop", True), ("abort", True), (None, False), (0, False)):
        changed = {**good, "choices": [{**choice, "finish_reason": value}]}
        assert v.is_valid(changed) is ok, value


def test_completion_schema_requires_payload_binding() -> None:
    v = validator("chat-completion")
    good = load(EXAMPLES / "chat-completion" / "good-minimal-metadata.json")
    assert v.is_valid(good)
    assert not v.is_valid({**good, "_metadata": {}})
    assert not v.is_valid({k: x for k, x in good.items() if k != "_metadata"})


def test_error_body_accepts_both_fastapi_shapes() -> None:
    v = validator("error-body")
    assert v.is_valid({"detail": "decryption failed"})
    assert v.is_valid({"detail": [{"loc": ["body", "model"], "msg": "Field required",
                                   "type": "missing"}]})
    assert not v.is_valid({"detail": None})
