"""The package test vectors in spec/vectors/ are well-formed, correct and reproducible.

The receiver used here is written in this file with `cryptography` alone (no project code):
structure checks, then strict base64, RSA-OAEP-SHA256 and AES-256-GCM, then the size limit,
the plaintext and (for responses) the payload-id binding. Every valid vector must open to
exactly its plaintext; every invalid vector must be refused at its declared stage. Each
invalid vector that imitates a real bug must also open when that one bug is made (for
example OAEP-SHA1 unwrapping for WrongOaepHash), so it tests that defect and nothing else.
An "acceptable" vector (non-canonical base64 bits, PKG-10) must open with this lenient receiver
and be refused, at its stage, by one that insists on canonical base64. A missing data file
fails the run: nothing here is skipped.
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

DATA_FILES = ("packages.json", "keys.json", "vectors.schema.json", "key-forms.json",
              "key-forms.schema.json", "README.md", "generate.py")


def read_json(name: str) -> dict[str, Any]:
    """A data file, or an empty document when it is missing: test_data_files_are_present then
    fails with the file's name (the parametrised tests below simply have nothing to run)."""
    path = VECTORS / name
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


DOC: dict[str, Any] = read_json("packages.json")
KEYS: dict[str, Any] = read_json("keys.json") or {"keys": {}}
KEY_FORMS: dict[str, Any] = read_json("key-forms.json") or {"tests": []}
PRIVATE: dict[str, rsa.RSAPrivateKey] = {
    kid: serialization.load_pem_private_key(k["privateKeyPem"].encode(), password=None)  # type: ignore[misc]
    for kid, k in KEYS["keys"].items()
}
CASES: list[tuple[dict[str, Any], dict[str, Any]]] = [
    (group, test) for group in DOC.get("testGroups", []) for test in group["tests"]
]
# What spec/testee.md says each failing stage must raise (canonical error kinds).
KIND_OF_STAGE = {
    "key": "value",
    "structure": "value",
    "size": "value",
    "crypto": "security",
    "plaintext": "security",
    "binding": "security",
}
STRICT_B64 = re.compile(r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$")
# PKG-10: what a sender emits; a receiver MAY insist on it
CANONICAL_B64 = re.compile(r"^(?:[A-Za-z0-9+/]{4})*"
                           r"(?:[A-Za-z0-9+/][AQgw]==|[A-Za-z0-9+/]{2}[AEIMQUYcgkosw048]=)?$")
OAEP_SHA256 = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


def ids(case: tuple[dict[str, Any], dict[str, Any]]) -> str:
    group, test = case
    return f"tc{test['tcId']}-{group['keyId']}-{group['direction']}-{'+'.join(test['flags'])}"


VALID = [c for c in CASES if c[1]["result"] == "valid"]
INVALID = [c for c in CASES if c[1]["result"] == "invalid"]
ACCEPTABLE = [c for c in CASES if c[1]["result"] == "acceptable"]


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


def strict_b64(text: str, canonical: bool = False) -> bytes:
    if not (CANONICAL_B64 if canonical else STRICT_B64).fullmatch(text):
        raise Refused("crypto", "not standard padded base64")
    return base64.b64decode(text, validate=True)


class Duplicate(ValueError):
    """A JSON object repeats a member name (CHK-18, SRV-20)."""


def unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    names = [name for name, _ in pairs]
    if len(names) != len(set(names)):
        raise Duplicate("duplicate member name")
    return dict(pairs)


def first_wins(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A parser with the bug CHK-18 catches, keeping the first occurrence of a name."""
    out: dict[str, Any] = {}
    for name, value in pairs:
        out.setdefault(name, value)
    return out


Pairs = Callable[[list[tuple[str, Any]]], dict[str, Any]]


def check_structure(body: Any, direction: str, pairs: Pairs = unique_pairs) -> dict[str, Any]:
    if isinstance(body, str):
        try:
            body = json.loads(body, object_pairs_hook=pairs)
        except ValueError as exc:
            raise Refused("structure", "not JSON, or a repeated member name") from exc
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


def open_package(group: dict[str, Any], test: dict[str, Any], *, canonical: bool = False,
                 pairs: Pairs = unique_pairs) -> bytes:
    """Open a vector exactly as a conforming receiver must; raise Refused(stage) if it must not.

    canonical: also refuse non-zero unused base64 bits (PKG-10's MAY). pairs: how JSON objects
    are built (unique_pairs refuses repeated names; dict or first_wins imitate the two bugs).
    """
    key = PRIVATE[group["keyId"]]
    if key.key_size < 2048:
        raise Refused("key", "key under 2048 bits")
    package = check_structure(body_of(test), group["direction"], pairs)
    inner = package["encrypted_payload"]
    ciphertext = strict_b64(inner["ciphertext"], canonical)
    nonce = strict_b64(inner["nonce"], canonical)
    tag = strict_b64(inner["tag"], canonical)
    wrapped = strict_b64(package["encrypted_aes_key"], canonical)
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
        # str, not bytes: a BOM is an error, as it must be; repeated names too (CHK-18)
        obj = json.loads(plaintext.decode("utf-8"), object_pairs_hook=pairs)
    except ValueError as exc:
        raise Refused("plaintext", "not UTF-8 JSON, or a repeated member name") from exc
    if not isinstance(obj, dict):
        raise Refused("plaintext", "not an object")
    if group["direction"] == "response":
        meta = obj.get("_metadata")
        if not isinstance(meta, dict) or meta.get("payload_id") != test["payloadId"]:
            raise Refused("binding", "_metadata.payload_id")
    return plaintext


# ------------------------------------------------------------------ the file itself


@pytest.mark.parametrize("name", DATA_FILES)
def test_data_files_are_present(name: str) -> None:
    """A deleted or renamed data file fails the run (issue 10): it is never a skip."""
    assert (VECTORS / name).is_file(), f"spec/vectors/{name} is missing"


def test_the_file_holds_vectors() -> None:
    assert len(CASES) >= 250
    assert DOC["numberOfTests"] == len(CASES)
    assert set(KEYS["keys"]) == {"rsa1024", "rsa2048", "rsa4096"}


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
    assert path.is_file(), "spec/requirements.json is missing"
    listed = json.loads(path.read_text(encoding="utf-8"))["requirements"]
    # only ids that are judged: a replaced or retired id has no verdict to charge
    active = {r["id"] for r in listed if not r.get("retired") and "replaced_by" not in r}
    named = {rid for ids in DOC["flagRequirements"].values() for rid in ids}
    assert named <= active, sorted(named - active)


def test_expected_kind_follows_the_contract() -> None:
    for group, test in CASES:
        if test["result"] == "valid":
            assert test["expectedKind"] is None
            assert test["stage"] is None
        else:  # invalid, or acceptable: what a receiver that refuses it must raise
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
        "PlaintextUtf16", "Base64NonCanonicalBits", "DuplicateMemberPackage",
        "DuplicateMemberPlaintext",
    }
    assert required <= flags, required - flags
    combos = {(g["keyId"], g["direction"]) for g, t in VALID}
    assert {("rsa2048", "request"), ("rsa2048", "response"), ("rsa4096", "request"),
            ("rsa4096", "response")} <= combos
    missing = {t["comment"] for g, t in CASES
               if t["flags"] == ["MissingField"] and g["direction"] == "request"}
    assert len(missing) == 9
    assert any(t["flags"] == ["AlgorithmFieldsAbsent"] for _, t in VALID)
    # PKG-10 for every base64 member that can carry unused bits, with 2 and with 4 of them
    fields = {t["comment"].split()[0] for _, t in ACCEPTABLE}
    assert fields == {"ciphertext", "tag", "encrypted_aes_key"}
    assert {"2 unused bits" in t["comment"] for _, t in ACCEPTABLE} == {True, False}
    assert {g["direction"] for g, _ in ACCEPTABLE} == {"request", "response"}


def test_published_tcids_keep_their_cases() -> None:
    """Generator 1.0.0 published tcIds 1-243; 1.1.0 only appends (README: never renumber)."""
    by_id = {t["tcId"]: (g["keyId"], g["direction"], t["comment"]) for g, t in CASES}
    assert by_id[1] == ("rsa2048", "request",
                        "chat request as the official client serialises it")
    assert by_id[72][2] == "plaintext contains a 0xff byte"
    assert by_id[73][2].startswith("plaintext is the JSON object encoded in UTF-16-LE")
    assert by_id[157][2].startswith("plaintext is the JSON object encoded in UTF-16-LE")
    assert by_id[243][0] == "rsa1024"
    assert min(t["tcId"] for _, t in CASES if "Base64NonCanonicalBits" in t["flags"]) > 243


def test_utf8_flags_say_what_the_bytes_are() -> None:
    """Issue 10: tcId 73 and 157 are valid UTF-8 (UTF-16 text of ASCII), invalid as JSON."""
    seen = {"PlaintextNotUtf8": 0, "PlaintextUtf16": 0}
    for _, test in INVALID:
        flags = set(test["flags"]) & set(seen)
        if not flags:
            continue
        data = bytes.fromhex(test["plaintextHex"])
        try:
            data.decode("utf-8")
            utf8 = True
        except UnicodeDecodeError:
            utf8 = False
        assert utf8 == ("PlaintextUtf16" in flags), test["tcId"]
        for flag in flags:
            seen[flag] += 1
    assert all(seen.values()), seen


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
    with pytest.raises(Refused) as refused:  # a canonical-only receiver refuses it there too
        open_package(group, test, canonical=True)
    assert refused.value.stage == test["stage"], str(refused.value)


@pytest.mark.parametrize("case", ACCEPTABLE, ids=ids)
def test_acceptable_vector_allows_both_outcomes(
    case: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    """PKG-10: a receiver MAY refuse non-zero unused bits. Both receivers conform: the lenient
    one opens the package to its plaintext, the canonical one refuses it at the stated stage."""
    group, test = case
    assert open_package(group, test) == expected_plaintext(test)
    with pytest.raises(Refused) as refused:
        open_package(group, test, canonical=True)
    assert refused.value.stage == test["stage"]
    # no sender may produce it: the package schema (what a sender emits) refuses it
    schema = json.loads((SCHEMAS / "package.schema.json").read_text(encoding="utf-8"))
    assert not Draft202012Validator(schema).is_valid(body_of(test))


@pytest.mark.parametrize(
    "case", [c for c in INVALID if {"DuplicateMemberPackage", "DuplicateMemberPlaintext"}
             & set(c[1]["flags"])], ids=ids)
def test_duplicate_member_vector_fools_a_lax_parser(
    case: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    """Each repeated-name vector is opened whole by a last-wins (Python's dict) or a first-wins
    parser: it tests the duplicate rule (CHK-18) and nothing else."""
    group, test = case
    opened = 0
    for pairs in (dict, first_wins):
        try:
            open_package(group, test, pairs=pairs)
        except Refused:
            continue
        opened += 1
    assert opened >= 1


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


# ------------------------------------------------------------------ key forms (5.2, 9.2)

PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(?:[A-Za-z0-9+/=]+\r?\n)+"
                       r"-----END \1-----")


def judge_key_text(text: str) -> str:
    """The fingerprint of the key a server key answer holds, or Refused: exactly one PEM block
    labelled PUBLIC KEY with only whitespace around it (DISC-14, SRV-24), an RSA key of 2048 to
    16384 bits with exponent 65537 (DISC-3, DISC-24, SRV-7, SRV-25). CRLF and a missing final
    newline are fine (KEY-3)."""
    stripped = text.strip()
    block = PEM_BLOCK.fullmatch(stripped)
    if block is None or block.group(1) != "PUBLIC KEY":
        raise Refused("key", "not exactly one PUBLIC KEY block")
    try:
        key = serialization.load_pem_public_key(stripped.encode("ascii"))
    except ValueError as exc:
        raise Refused("key", "not a parseable SubjectPublicKeyInfo") from exc
    if not isinstance(key, rsa.RSAPublicKey):
        raise Refused("key", "not RSA")
    if not 2048 <= key.key_size <= 16384 or key.public_numbers().e != 65537:
        raise Refused("key", "size or exponent")
    der = key.public_bytes(serialization.Encoding.DER,
                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def test_key_forms_match_their_schema_and_name_requirements() -> None:
    schema = json.loads((VECTORS / "key-forms.schema.json").read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    Draft202012Validator(schema).validate(KEY_FORMS)
    listed = json.loads((ROOT / "spec" / "requirements.json").read_text(encoding="utf-8"))
    active = {r["id"] for r in listed["requirements"] if "replaced_by" not in r}
    assert set(KEY_FORMS["requirements"]) <= active
    assert [t["id"] for t in KEY_FORMS["tests"]] == list(range(1, len(KEY_FORMS["tests"]) + 1))
    comments = " ".join(t["comment"] for t in KEY_FORMS["tests"] if t["result"] == "invalid")
    for what in ("PKCS#1", "certificate", "two SPKI blocks", "text before", "exponent 3",
                 "16392-bit", "Ed25519", "rsa1024"):
        assert what in comments, what


@pytest.mark.parametrize("form", KEY_FORMS["tests"], ids=lambda t: f"form{t['id']}")
def test_key_form_verdict(form: dict[str, Any]) -> None:
    if form["result"] == "valid":
        assert judge_key_text(form["text"]) == form["spkiSha256"]
    else:
        with pytest.raises(Refused):
            judge_key_text(form["text"])


def test_key_forms_catch_a_lax_pem_loader() -> None:
    """Why the strict form rule exists: a plain PEM loader (Python cryptography) accepts the
    PKCS#1 block and text or a second block around the key, which DISC-14 refuses."""
    lax = 0
    for form in KEY_FORMS["tests"]:
        if form["result"] != "invalid":
            continue
        try:
            serialization.load_pem_public_key(form["text"].encode("ascii"))
        except ValueError:
            continue
        lax += 1
    assert lax >= 4


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
    # key forms use no randomness at all
    assert (tmp_path / "key-forms.json").read_bytes() == committed["key-forms.json"]
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
