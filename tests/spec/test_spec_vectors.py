"""The package test vectors in spec/vectors/ are well-formed, correct and reproducible.

The receiver used here is written in this file with `cryptography` alone (no project code):
structure checks, then strict base64, RSA-OAEP-SHA256 and AES-256-GCM, then the size limit,
the plaintext and (for responses) the payload-id binding. Every valid vector must open to
exactly its plaintext; every invalid vector must be refused at its declared stage. Each
invalid vector that imitates a real bug must also open when that one bug is made (for
example OAEP-SHA1 unwrapping for WrongOaepHash), so it tests that defect and nothing else.
"""

from __future__ import annotations

import base64
import hashlib
import json
import pathlib
import re
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from jsonschema import Draft202012Validator

ROOT = pathlib.Path(__file__).resolve().parents[2]
VECTORS = ROOT / "spec" / "vectors"
SCHEMAS = ROOT / "spec" / "schemas"
MAX_PLAINTEXT = 10 * 1024 * 1024

DOC: dict[str, Any] = json.loads((VECTORS / "packages.json").read_text(encoding="utf-8"))
KEYS: dict[str, Any] = json.loads((VECTORS / "keys.json").read_text(encoding="utf-8"))
PRIVATE: dict[str, rsa.RSAPrivateKey] = {
    kid: serialization.load_pem_private_key(k["privateKeyPem"].encode(), password=None)  # type: ignore[misc]
    for kid, k in KEYS["keys"].items()
}
CASES: list[tuple[dict[str, Any], dict[str, Any]]] = [
    (group, test) for group in DOC["testGroups"] for test in group["tests"]
]
# What CONTRACTS.md says each failing stage must raise (canonical error kinds).
KIND_OF_STAGE = {
    "key": "value",
    "structure": "value",
    "size": "value",
    "crypto": "security",
    "plaintext": "security",
    "binding": "security",
}
STRICT_B64 = re.compile(r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$")
OAEP_SHA256 = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


def ids(case: tuple[dict[str, Any], dict[str, Any]]) -> str:
    group, test = case
    return f"tc{test['tcId']}-{group['keyId']}-{group['direction']}-{'+'.join(test['flags'])}"


VALID = [c for c in CASES if c[1]["result"] == "valid"]
INVALID = [c for c in CASES if c[1]["result"] == "invalid"]


# ------------------------------------------------------------------ the reference receiver


class Refused(Exception):
    """A receiver's verdict that the package must be refused, at `stage`."""

    def __init__(self, stage: str, why: str) -> None:
        super().__init__(f"{stage}: {why}")
        self.stage = stage


def expand_recipe(recipe: dict[str, Any]) -> bytes:
    """README.md's chat_request_padded, written again here from its prose definition."""
    assert recipe["kind"] == "chat_request_padded"
    head = b'{"model":"nomyo-size-test","messages":[{"role":"user","content":"'
    tail = b'"}]}'
    return head + b"a" * (recipe["size"] - len(head) - len(tail)) + tail


def expected_plaintext(test: dict[str, Any]) -> bytes:
    if "plaintextRecipe" in test:
        return expand_recipe(test["plaintextRecipe"])
    return bytes.fromhex(test["plaintextHex"])


def body_of(test: dict[str, Any]) -> Any:
    """The package as a receiver sees it, with a recipe's ciphertext filled in."""
    if "packageText" in test:
        return test["packageText"]
    package = json.loads(json.dumps(test["package"]))
    if "plaintextRecipe" in test:
        enc = Cipher(
            algorithms.AES(bytes.fromhex(test["aesKeyHex"])),
            modes.GCM(bytes.fromhex(test["nonceHex"])),
        ).encryptor()
        ciphertext = enc.update(expand_recipe(test["plaintextRecipe"])) + enc.finalize()
        package["encrypted_payload"]["ciphertext"] = base64.b64encode(ciphertext).decode()
    return package


def strict_b64(text: str) -> bytes:
    if not STRICT_B64.fullmatch(text):
        raise Refused("crypto", "not standard padded base64")
    return base64.b64decode(text, validate=True)


def check_structure(body: Any, direction: str) -> dict[str, Any]:
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except ValueError as exc:
            raise Refused("structure", "not JSON") from exc
    if not isinstance(body, dict):
        raise Refused("structure", "not an object")
    # CHK-6: a client SHOULD accept a response without key_algorithm / payload_algorithm
    optional = {"key_algorithm", "payload_algorithm"} if direction == "response" else set()
    for field in ("version", "algorithm", "encrypted_payload", "encrypted_aes_key",
                  "key_algorithm", "payload_algorithm"):
        if field not in body and field not in optional:
            raise Refused("structure", f"{field} missing")
    exact = {"version": "1.0", "algorithm": "hybrid-aes256-rsa4096",
             "key_algorithm": "RSA-OAEP-SHA256", "payload_algorithm": "AES-256-GCM"}
    for field, value in exact.items():
        if field in optional and field not in body:
            continue
        if not isinstance(body[field], str) or body[field] != value:
            raise Refused("structure", f"{field} is not {value!r}")
    inner = body["encrypted_payload"]
    if not isinstance(inner, dict):
        raise Refused("structure", "encrypted_payload not an object")
    for field in ("ciphertext", "nonce", "tag"):
        if not isinstance(inner.get(field), str):
            raise Refused("structure", f"{field} missing or not a string")
    if not isinstance(body["encrypted_aes_key"], str):
        raise Refused("structure", "encrypted_aes_key not a string")
    return body


def open_package(group: dict[str, Any], test: dict[str, Any]) -> bytes:
    """Open a vector exactly as a conforming receiver must; raise Refused(stage) if it must not."""
    key = PRIVATE[group["keyId"]]
    if key.key_size < 2048:
        raise Refused("key", "key under 2048 bits")
    package = check_structure(body_of(test), group["direction"])
    inner = package["encrypted_payload"]
    ciphertext = strict_b64(inner["ciphertext"])
    nonce = strict_b64(inner["nonce"])
    tag = strict_b64(inner["tag"])
    wrapped = strict_b64(package["encrypted_aes_key"])
    if len(nonce) != 12 or len(tag) != 16:
        raise Refused("crypto", "nonce or tag length")
    try:
        aes_key = key.decrypt(wrapped, OAEP_SHA256)
    except ValueError as exc:
        raise Refused("crypto", "RSA-OAEP") from exc
    if len(aes_key) != 32:
        raise Refused("crypto", "AES key not 32 bytes")
    try:
        dec = Cipher(algorithms.AES(aes_key), modes.GCM(nonce, tag)).decryptor()
        plaintext = dec.update(ciphertext) + dec.finalize()
    except InvalidTag as exc:
        raise Refused("crypto", "GCM tag") from exc
    if len(plaintext) > MAX_PLAINTEXT:
        raise Refused("size", "plaintext over 10 MiB")
    try:
        obj = json.loads(plaintext.decode("utf-8"))  # str: a BOM is an error, as it must be
    except ValueError as exc:
        raise Refused("plaintext", "not UTF-8 JSON") from exc
    if not isinstance(obj, dict):
        raise Refused("plaintext", "not an object")
    if group["direction"] == "response":
        meta = obj.get("_metadata")
        if not isinstance(meta, dict) or meta.get("payload_id") != test["payloadId"]:
            raise Refused("binding", "_metadata.payload_id")
    return plaintext


# ------------------------------------------------------------------ the file itself


def test_file_matches_its_schema() -> None:
    schema = json.loads((VECTORS / "vectors.schema.json").read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    errors = list(Draft202012Validator(schema).iter_errors(DOC))
    assert errors == [], [f"{list(e.absolute_path)}: {e.message[:200]}" for e in errors[:5]]


def test_schema_rejects_a_broken_vector() -> None:
    schema = json.loads((VECTORS / "vectors.schema.json").read_text(encoding="utf-8"))
    broken = json.loads(json.dumps(DOC))
    test = broken["testGroups"][0]["tests"][0]
    test["result"] = "invalid"  # an invalid test must name its stage and kind
    assert not Draft202012Validator(schema).is_valid(broken)


def test_tcids_unique_and_counted() -> None:
    tc_ids = [test["tcId"] for _, test in CASES]
    assert len(tc_ids) == len(set(tc_ids)) == DOC["numberOfTests"]


def test_every_flag_is_documented_and_every_note_used() -> None:
    used = {flag for _, test in CASES for flag in test["flags"]}
    assert used == set(DOC["notes"])


def test_flags_name_existing_requirements() -> None:
    assert set(DOC["flagRequirements"]) == set(DOC["notes"])
    path = ROOT / "spec" / "requirements.json"
    if not path.exists():
        pytest.skip("spec/requirements.json not written yet")
    known = {r["id"] for r in json.loads(path.read_text(encoding="utf-8"))["requirements"]}
    named = {rid for ids in DOC["flagRequirements"].values() for rid in ids}
    assert named <= known, sorted(named - known)


def test_expected_kind_follows_the_contract() -> None:
    for group, test in CASES:
        if test["result"] == "valid":
            assert test["expectedKind"] is None
            assert test["stage"] is None
        else:
            assert test["expectedKind"] == KIND_OF_STAGE[test["stage"]], test["tcId"]
        if group["direction"] == "request":
            want = 200 if test["result"] == "valid" else 413 if test["stage"] == "size" else 400
            assert test["expectedStatus"] == want, test["tcId"]


def test_keys_are_what_they_claim() -> None:
    for kid, key in PRIVATE.items():
        info = KEYS["keys"][kid]
        pub = serialization.load_pem_public_key(info["publicKeyPem"].encode())
        assert isinstance(pub, rsa.RSAPublicKey)
        assert pub.public_numbers() == key.public_key().public_numbers()
        assert key.key_size == info["keySize"] == int(kid.removeprefix("rsa"))
        assert pub.public_numbers().e == 65537
        spki = pub.public_bytes(serialization.Encoding.DER,
                                serialization.PublicFormat.SubjectPublicKeyInfo)
        assert info["spkiSha256"] == hashlib.sha256(spki).hexdigest()


def test_coverage_of_the_required_cases() -> None:
    flags = {flag for _, test in CASES for flag in test["flags"]}
    required = {
        "WrongOaepHash", "WrongMgfHash", "OaepLabel", "Pkcs1v15", "TagAppended", "TruncatedTag",
        "ModifiedCiphertext", "ModifiedTag", "WrongNonceSize", "Base64NonAlphabet",
        "Base64MissingPadding", "Base64UrlSafe", "MissingField", "EncryptedPayloadNotObject",
        "WrongAesKeySize", "PlaintextNotUtf8", "PlaintextNotObject", "PlaintextNotJson",
        "WrongVersion", "WrongAlgorithm", "WrongKeyAlgorithm", "WrongPayloadAlgorithm",
        "WrongRecipient", "SmallKey", "MaxSizePlaintext", "PlaintextTooLarge", "ProcessedAt",
    }
    assert required <= flags, required - flags
    combos = {(g["keyId"], g["direction"]) for g, t in VALID}
    assert {("rsa2048", "request"), ("rsa2048", "response"), ("rsa4096", "request"),
            ("rsa4096", "response")} <= combos
    missing = {t["comment"] for g, t in CASES
               if t["flags"] == ["MissingField"] and g["direction"] == "request"}
    assert len(missing) == 9
    assert any(t["flags"] == ["AlgorithmFieldsAbsent"] for _, t in VALID)


def test_committed_files_stay_small() -> None:
    total = sum(p.stat().st_size for p in VECTORS.iterdir() if p.is_file())
    assert total < 2_000_000


# ------------------------------------------------------------------ the verdicts


@pytest.mark.parametrize("case", VALID, ids=ids)
def test_valid_vector_opens_to_its_plaintext(case: tuple[dict[str, Any], dict[str, Any]]) -> None:
    group, test = case
    plaintext = open_package(group, test)
    assert plaintext == expected_plaintext(test)
    assert isinstance(json.loads(plaintext.decode("utf-8")), dict)
    schema = json.loads((SCHEMAS / "package.schema.json").read_text(encoding="utf-8"))
    # the schema says what a sender sends; AlgorithmFieldsAbsent is receiver leniency (CHK-6)
    conforms = Draft202012Validator(schema).is_valid(body_of(test))
    assert conforms == ("AlgorithmFieldsAbsent" not in test["flags"])


@pytest.mark.parametrize("case", INVALID, ids=ids)
def test_invalid_vector_is_refused_at_its_stage(
    case: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    group, test = case
    with pytest.raises(Refused) as refused:
        open_package(group, test)
    assert refused.value.stage == test["stage"], str(refused.value)


def test_valid_plaintexts_match_the_payload_schemas() -> None:
    def v(name: str) -> Draft202012Validator:
        return Draft202012Validator(
            json.loads((SCHEMAS / f"{name}.schema.json").read_text(encoding="utf-8")))

    request, completion = v("chat-request"), v("chat-completion")
    checked = 0
    for group, test in VALID:
        obj = json.loads(expected_plaintext(test))
        if group["direction"] == "request":
            assert request.is_valid(obj), test["tcId"]
            checked += 1
        elif "MinimalPlaintext" not in test["flags"]:
            assert completion.is_valid(obj), test["tcId"]
            checked += 1
    assert checked >= 20


# ------------------------------------------------------------------ one bug away


def lax_b64(flag: str) -> Callable[[str], bytes]:
    if flag == "Base64NonAlphabet":
        return lambda s: base64.b64decode(re.sub(r"[^A-Za-z0-9+/=]", "", s), validate=True)
    if flag == "Base64MissingPadding":
        return lambda s: base64.b64decode(s + "=" * (-len(s) % 4), validate=True)
    if flag == "Base64UrlSafe":
        return lambda s: base64.b64decode(s.replace("-", "+").replace("_", "/"), validate=True)
    return strict_b64


def open_with_bug(group: dict[str, Any], test: dict[str, Any]) -> bytes:
    """Open the package the way an implementation with the vector's bug would."""
    flag = test["flags"][0]
    package = body_of(test)
    inner = package["encrypted_payload"]
    decode = lax_b64(flag)
    ciphertext, nonce, tag, wrapped = (decode(inner["ciphertext"]), decode(inner["nonce"]),
                                       decode(inner["tag"]), decode(package["encrypted_aes_key"]))
    unwrap: Any = {
        "WrongOaepHash": padding.OAEP(mgf=padding.MGF1(hashes.SHA1()),  # noqa: S303
                                      algorithm=hashes.SHA1(), label=None),  # noqa: S303
        "WrongMgfHash": padding.OAEP(mgf=padding.MGF1(hashes.SHA1()),  # noqa: S303
                                     algorithm=hashes.SHA256(), label=None),
        "OaepLabel": padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(),
                                  label=b"nomyo"),
        "Pkcs1v15": padding.PKCS1v15(),
    }.get(flag, OAEP_SHA256)
    keys = [PRIVATE[group["keyId"]]]
    if flag == "WrongRecipient":
        keys = [k for kid, k in PRIVATE.items() if kid != group["keyId"]]
    for key in keys:
        try:
            aes_key = key.decrypt(wrapped, unwrap)
            break
        except ValueError:
            continue
    else:
        raise AssertionError("no key unwraps the AES key")
    if flag == "TagAppended":
        ciphertext, tag = ciphertext[:-16], ciphertext[-16:]
    gcm = modes.GCM(nonce, tag, min_tag_length=len(tag))
    dec = Cipher(algorithms.AES(aes_key), gcm).decryptor()
    return dec.update(ciphertext) + dec.finalize()


ONE_BUG_AWAY = {
    "WrongOaepHash", "WrongMgfHash", "OaepLabel", "Pkcs1v15", "WrongRecipient", "WrongAesKeySize",
    "TagAppended", "TruncatedTag", "WrongNonceSize", "Base64NonAlphabet", "Base64MissingPadding",
    "Base64UrlSafe", "SmallKey",
}


@pytest.mark.parametrize(
    "case", [c for c in INVALID if set(c[1]["flags"]) & ONE_BUG_AWAY], ids=ids
)
def test_invalid_vector_opens_with_exactly_its_bug(
    case: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    group, test = case
    assert open_with_bug(group, test) == expected_plaintext(test)


@pytest.mark.parametrize("case", [c for c in INVALID if c[1]["stage"] in
                                  ("plaintext", "binding", "size")], ids=ids)
def test_late_stage_vectors_decrypt_cleanly(case: tuple[dict[str, Any], dict[str, Any]]) -> None:
    """A plaintext/binding/size vector is cryptographically perfect: only its content is wrong."""
    group, test = case
    package = body_of(test)
    inner = package["encrypted_payload"]
    aes_key = PRIVATE[group["keyId"]].decrypt(strict_b64(package["encrypted_aes_key"]), OAEP_SHA256)
    dec = Cipher(algorithms.AES(aes_key),
                 modes.GCM(strict_b64(inner["nonce"]), strict_b64(inner["tag"]))).decryptor()
    plaintext = dec.update(strict_b64(inner["ciphertext"])) + dec.finalize()
    assert plaintext == expected_plaintext(test)
    assert aes_key.hex() == test["aesKeyHex"]


def test_bom_and_utf16_plaintexts_fool_json_loads_on_bytes() -> None:
    """Why PlaintextBom and the UTF-16 case exist: json.loads(bytes) accepts both."""
    fooled = 0
    for _, test in INVALID:
        if "PlaintextBom" in test["flags"] or "UTF-16" in test["comment"]:
            assert isinstance(json.loads(bytes.fromhex(test["plaintextHex"])), dict)
            fooled += 1
    assert fooled >= 2


# ------------------------------------------------------------------ regeneration


def masked(doc: Any) -> Any:
    """The document with everything that depends on RSA randomness blanked out."""
    if isinstance(doc, dict):
        return {k: "<rsa>" if k == "encrypted_aes_key" else masked(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [masked(v) for v in doc]
    if isinstance(doc, str):
        return re.sub(r'"encrypted_aes_key": "[^"]*"', '"encrypted_aes_key": "<rsa>"', doc)
    return doc


def run_generator(*args: str) -> None:
    subprocess.run([sys.executable, str(VECTORS / "generate.py"), *args], check=True,
                   capture_output=True, timeout=120)


def test_generator_is_deterministic_apart_from_rsa(tmp_path: pathlib.Path) -> None:
    committed = {p.name: p.read_bytes() for p in VECTORS.iterdir() if p.is_file()}
    run_generator("--out", str(tmp_path))
    assert {p.name: p.read_bytes() for p in VECTORS.iterdir() if p.is_file()} == committed
    assert not (tmp_path / "keys.json").exists()  # the committed keys were reused
    fresh = json.loads((tmp_path / "packages.json").read_text(encoding="utf-8"))
    assert masked(fresh) == masked(DOC)
    keys_fresh = [t["package"]["encrypted_aes_key"] for g in fresh["testGroups"]
                  for t in g["tests"] if "package" in t and t["flags"] == ["Normal"]]
    keys_old = [t["package"]["encrypted_aes_key"] for g, t in CASES
                if "package" in t and t["flags"] == ["Normal"]]
    assert keys_fresh != keys_old  # OAEP is randomised: the mask hides something real


def test_generator_makes_keys_when_none_exist(tmp_path: pathlib.Path) -> None:
    run_generator("--out", str(tmp_path), "--keys", str(tmp_path / "keys.json"))
    keys = json.loads((tmp_path / "keys.json").read_text(encoding="utf-8"))
    assert {k: v["keySize"] for k, v in keys["keys"].items()} == {
        "rsa2048": 2048, "rsa4096": 4096, "rsa1024": 1024}
    assert keys["keys"]["rsa2048"]["privateKeyPem"] != KEYS["keys"]["rsa2048"]["privateKeyPem"]
    fresh = json.loads((tmp_path / "packages.json").read_text(encoding="utf-8"))
    assert fresh["numberOfTests"] == DOC["numberOfTests"]


def test_readme_documents_every_flag_and_the_recipe() -> None:
    readme = (VECTORS / "README.md").read_text(encoding="utf-8")
    for flag in DOC["notes"]:
        assert f"| `{flag}` |" in readme, flag
    assert "N − 69" in readme
    small = expand_recipe({"kind": "chat_request_padded", "size": 100})
    assert len(small) == 100
    assert small[65:-4] == b"a" * 31
    assert json.loads(small)["messages"][0]["content"] == "a" * 31
