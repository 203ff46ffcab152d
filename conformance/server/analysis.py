"""What one answer to a valid request proves, requirement by requirement.

The answer is read the way a strict client reads it, and each property gets its own
finding: held, violated (with the expected against the actual), or blocked because an
earlier property it depends on is violated (a package that does not parse has no nonce to
judge). Where the protocol's way fails, the known wrong ways are tried (OAEP-SHA1, the tag
appended to the ciphertext, associated data), both to name the requirement that was broken
and to read on, so one defect does not hide the rest of the answer.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from conformance.server.drafts import Prepared
from conformance.server.options import TIERS
from conformance.server.transport import Answer
from conformance.server.wire import (
    AES_KEY_SIZE,
    EXPECTED_VALUES,
    NONCE_SIZE,
    PACKAGE_MEMBERS,
    PAYLOAD_MEMBERS,
    PROTOCOL_WRAP,
    TAG_SIZE,
    gcm_open,
    is_canonical_b64,
    key_wraps,
    strict_b64decode,
    unwrap,
)

HELD = "held"
VIOLATED = "violated"
BLOCKED = "blocked"
NOT_APPLICABLE = "not applicable"
HEX64 = re.compile(r"^[0-9a-f]{64}$")
METADATA_TYPES: dict[str, tuple[type, ...]] = {
    "processed_at": (int, float),
    "is_encrypted": (bool,),
    "response_status": (str,),
    "security_tier": (str,),
    "memory_protection": (dict,),
    "cuda_device": (dict,),
}
MEMORY_PROTECTION = {
    "platform": str,
    "memory_locking": bool,
    "secure_zeroing": bool,
    "core_dump_prevention": bool,
}


@dataclass(frozen=True)
class Finding:
    state: str
    message: str = ""
    by: str = ""  # the requirement that blocks this one


@dataclass
class Analysis:
    """Findings by requirement id, filled in the order a client reads an answer."""

    exchange_note: str
    findings: dict[str, Finding] = field(default_factory=dict)
    plaintext: bytes | None = None
    completion: Any = None
    aes_key: bytes | None = None
    nonce: bytes | None = None

    def held(self, rid: str) -> None:
        self.findings.setdefault(rid, Finding(HELD))

    def violated(self, rid: str, message: str) -> None:
        self.findings[rid] = Finding(VIOLATED, message)

    def check(self, rid: str, ok: bool, message: str) -> bool:
        if ok:
            self.held(rid)
        else:
            self.violated(rid, message)
        return ok

    def block(self, rids: tuple[str, ...] | list[str], by: str, why: str) -> None:
        for rid in rids:
            self.findings.setdefault(rid, Finding(BLOCKED, why, by))

    def not_applicable(self, rid: str, why: str) -> None:
        self.findings.setdefault(rid, Finding(NOT_APPLICABLE, why))

    def get(self, rid: str) -> Finding:
        return self.findings.get(rid, Finding(NOT_APPLICABLE, "not judged by this answer"))


PACKAGE_IDS = ("PKG-1", "PKG-2", "PKG-3", "PKG-4", "PKG-5", "PKG-6", "PKG-7", "PKG-10",
               "RSP-1", "RSP-2", "SRV-19")
CRYPTO_IDS = ("ENC-1", "ENC-2", "ENC-3", "ENC-4", "ENC-5", "ENC-9")
PLAINTEXT_IDS = ("RSP-3", "RSP-4", "RSP-5", "RSP-6", "PID-4", "RSP-8", "RSP-9",
                 "SRV-23", "TIER-10")
ALL_IDS = ("SRV-18", *PACKAGE_IDS, *CRYPTO_IDS, *PLAINTEXT_IDS)


def analyse(prepared: Prepared, answer: Answer) -> Analysis:
    """Every finding this answer allows (see the module docstring)."""
    result = Analysis(prepared.draft.note)
    if answer.status != 200:
        hint = ""
        if answer.status == 403 and prepared.tier is not None:
            hint = (f" (if the router's policy refuses tier {prepared.tier!r}, declare it: "
                    f"--server-policy tier-403={prepared.tier})")
        result.violated("SRV-18", f"expected <200 with a response package>, actual "
                        f"<{answer.describe()}>{hint}")
        result.block(ALL_IDS, "SRV-18", f"the valid request was answered {answer.status}")
        return result
    result.held("SRV-18")
    result.check("SRV-19", answer.media_type == "application/json",
                 f"expected <Content-Type application/json>, actual "
                 f"<{answer.headers.get('content-type', 'none')}>")
    package = _package(result, answer)
    if package is None:
        return result
    binary = _binary(result, package, prepared)
    if binary is None:
        return result
    _crypto(result, binary, prepared)
    if result.plaintext is not None:
        _completion(result, result.plaintext, prepared)
    return result


def _package(result: Analysis, answer: Answer) -> dict[str, Any] | None:
    try:
        package = json.loads(answer.body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        package = None
    if not isinstance(package, dict):
        message = f"expected <a UTF-8 JSON object>, actual <{answer.text(120)!r}>"
        result.violated("PKG-1", message)
        result.violated("RSP-1", message)
        result.block(ALL_IDS, "PKG-1", "the 200 body is not a JSON object")
        return None
    missing = [m for m in PACKAGE_MEMBERS if m not in package]
    result.check("PKG-1", not missing, f"expected <the six package members>, actual "
                 f"<missing {', '.join(missing)}; members {sorted(package)}>")
    for rid, names in (("PKG-2", ("version",)), ("PKG-3", ("algorithm",)),
                       ("PKG-4", ("key_algorithm", "payload_algorithm"))):
        absent = [n for n in names if n not in package]
        if absent:
            result.block([rid], "PKG-1", f"{', '.join(absent)} missing")
            continue
        wrong = {n: package[n] for n in names if package[n] != EXPECTED_VALUES[n]}
        result.check(rid, not wrong, "expected <" + ", ".join(
            f"{n}={EXPECTED_VALUES[n]!r}" for n in wrong) + f">, actual <{wrong}>")
    if "processed_at" in package:
        value = package["processed_at"]
        result.check("RSP-2", isinstance(value, (int, float)) and not isinstance(value, bool),
                     f"expected <processed_at a JSON number>, actual <{value!r}>")
    else:
        result.not_applicable("RSP-2", "the answer carries no top-level processed_at")
    return package


@dataclass(frozen=True)
class _Binary:
    ciphertext: bytes
    nonce: bytes
    tag: bytes
    wrapped: bytes


def _binary(result: Analysis, package: dict[str, Any], prepared: Prepared) -> _Binary | None:
    inner = package.get("encrypted_payload")
    if not isinstance(inner, dict) or not all(isinstance(inner.get(m), str)
                                              for m in PAYLOAD_MEMBERS):
        result.violated("PKG-5", f"expected <encrypted_payload an object of strings "
                        f"ciphertext, nonce, tag>, actual <{_short(inner)}>")
        result.violated("RSP-1", "encrypted_payload is not an object of three strings")
        result.block(ALL_IDS, "PKG-5", "encrypted_payload cannot be read")
        return None
    result.held("PKG-5")
    texts = {**{m: inner[m] for m in PAYLOAD_MEMBERS},
             "encrypted_aes_key": package.get("encrypted_aes_key")}
    decoded: dict[str, bytes] = {}
    bad: list[str] = []
    for name, text in texts.items():
        try:
            decoded[name] = strict_b64decode(text)
        except ValueError:
            bad.append(f"{name}={_short(text)}")
    if bad:
        result.violated("PKG-6", f"expected <standard base64 with padding>, actual "
                        f"<{'; '.join(bad)}>")
        result.block(ALL_IDS, "PKG-6", "a binary member does not decode")
        return None
    result.held("PKG-6")
    loose = [n for n, t in texts.items() if not is_canonical_b64(t)]
    result.check("PKG-10", not loose, f"expected <canonical base64 (unused bits zero)>, "
                 f"actual <non-canonical {', '.join(loose)}>")
    modulus = (prepared.client_private.key_size + 7) // 8
    sizes = {"nonce": (len(decoded["nonce"]), NONCE_SIZE), "tag": (len(decoded["tag"]), TAG_SIZE),
             "encrypted_aes_key": (len(decoded["encrypted_aes_key"]), modulus)}
    wrong = {n: got for n, (got, want) in sizes.items() if got != want}
    result.check("PKG-7", not wrong, "expected <nonce 12, tag 16, encrypted_aes_key "
                 f"{modulus} bytes>, actual <{wrong}>")
    binary = _Binary(decoded["ciphertext"], decoded["nonce"], decoded["tag"],
                     decoded["encrypted_aes_key"])
    result.nonce = binary.nonce
    if prepared.sealed is not None and binary.nonce == prepared.sealed.nonce:
        result.violated("ENC-9", "expected <a fresh nonce>, actual <the request's nonce, reused>")
    return binary


def _crypto(result: Analysis, binary: _Binary, prepared: Prepared) -> None:
    key = prepared.client_private
    later = [*CRYPTO_IDS, *PLAINTEXT_IDS]
    aes_key = unwrap(key, binary.wrapped, PROTOCOL_WRAP)
    if aes_key is not None:
        result.held("ENC-4")
        result.held("ENC-5")
    else:
        other = _other_wrap(key, binary)
        if other is not None:
            result.violated("ENC-4", f"expected <the AES key wrapped with RSA-OAEP-SHA256 "
                            f"(MGF1-SHA256, no label)>, actual <wrapped with {other[0]}>")
            result.held("ENC-5")
            aes_key = other[1]
        else:
            blocker = "PKG-7" if result.get("PKG-7").state == VIOLATED else "ENC-5"
            if blocker == "ENC-5":
                result.violated("ENC-5", "expected <the AES key wrapped to the X-Public-Key of "
                                "the request>, actual <it unwraps with that key's private half "
                                "under no padding>")
                result.violated("RSP-1", "the answer is not encrypted to the request's "
                                "X-Public-Key")
            result.block(later, blocker, "the AES key cannot be unwrapped")
            return
    if result.get("RSP-1").state != VIOLATED:
        bad = [rid for rid in ("PKG-1", "PKG-2", "PKG-3", "PKG-4")
               if result.get(rid).state == VIOLATED]
        result.check("RSP-1", not bad, f"expected <a package with the six members and the "
                     f"1.0 values>, actual <not so: see {', '.join(bad)}>")
    result.aes_key = aes_key
    if prepared.sealed is not None and aes_key == prepared.sealed.aes_key:
        result.violated("ENC-9", "expected <a fresh AES key>, actual <the request's AES key, "
                        "reused>")
    elif prepared.sealed is not None:
        result.held("ENC-9")  # unless the nonce was already found reused
    if len(aes_key) != AES_KEY_SIZE:
        result.violated("ENC-1", f"expected <a 32-byte AES key>, actual <{len(aes_key)} bytes>")
        result.block(later, "ENC-1", "the AES key is not an AES-256 key")
        return
    if result.get("PKG-7").state == VIOLATED and (len(binary.nonce) != NONCE_SIZE
                                                  or len(binary.tag) != TAG_SIZE):
        result.block(later, "PKG-7", "nonce or tag has the wrong length")
        return
    _gcm(result, aes_key, binary, prepared)


def _other_wrap(key: Any, binary: _Binary) -> tuple[str, bytes] | None:
    """A refused padding the AES key really was wrapped with: it unwraps to 32 bytes that
    open the ciphertext (PKCS#1 v1.5 decryption answers random bytes for a wrong key, by
    design, so unwrapping alone proves nothing)."""
    for name in key_wraps():
        if name == PROTOCOL_WRAP:
            continue
        aes_key = unwrap(key, binary.wrapped, name)
        if aes_key is not None and len(aes_key) == AES_KEY_SIZE and (
            gcm_open(aes_key, binary.nonce, binary.ciphertext + binary.tag) is not None
            or gcm_open(aes_key, binary.nonce, binary.ciphertext) is not None
        ):
            return name, aes_key
    return None


def _gcm(result: Analysis, aes_key: bytes, binary: _Binary, prepared: Prepared) -> None:
    plaintext = gcm_open(aes_key, binary.nonce, binary.ciphertext + binary.tag)
    if plaintext is not None:
        for rid in ("ENC-1", "ENC-2", "ENC-3"):
            result.held(rid)
        result.plaintext = plaintext
        return
    later = PLAINTEXT_IDS
    appended = gcm_open(aes_key, binary.nonce, binary.ciphertext)
    if appended is not None:
        result.violated("ENC-3", "expected <the tag only in `tag`, ciphertext as long as the "
                        f"plaintext>, actual <ciphertext {len(binary.ciphertext)} bytes = "
                        f"plaintext {len(appended)} + the 16-byte tag appended>")
        result.held("ENC-1")
        result.held("ENC-2")
        result.plaintext = appended
        return
    for what, aad in _aad_guesses(prepared):
        opened = gcm_open(aes_key, binary.nonce, binary.ciphertext + binary.tag, aad)
        if opened is not None:
            result.violated("ENC-2", f"expected <GCM with empty associated data>, actual "
                            f"<associated data = {what}>")
            result.held("ENC-1")
            result.held("ENC-3")
            result.plaintext = opened
            return
    result.violated("ENC-1", "expected <AES-256-GCM whose tag verifies under the unwrapped "
                    "key and the nonce>, actual <the tag does not verify>")
    result.block(("ENC-2", "ENC-3", *later), "ENC-1", "the ciphertext does not decrypt")


def _aad_guesses(prepared: Prepared) -> list[tuple[str, bytes]]:
    guesses = [("the payload id", (prepared.payload_id or "").encode()),
               ("the X-Public-Key header", (prepared.key_header or "").encode())]
    guesses += [(f"the string {v!r}", v.encode()) for v in EXPECTED_VALUES.values()]
    return guesses


def _completion(result: Analysis, plaintext: bytes, prepared: Prepared) -> None:
    try:
        obj = json.loads(plaintext.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        obj = None
    if not isinstance(obj, dict):
        result.violated("RSP-3", f"expected <a UTF-8 JSON object>, actual "
                        f"<{len(plaintext)} bytes that are not one>")
        result.block(PLAINTEXT_IDS, "RSP-3", "the plaintext is not a JSON object")
        return
    result.completion = obj
    _top_level(result, obj)
    _choices(result, obj)
    _usage(result, obj)
    _metadata(result, obj, prepared)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _top_level(result: Analysis, obj: dict[str, Any]) -> None:
    wrong = []
    for name, ok in (("id", isinstance(obj.get("id"), str)),
                     ("object", obj.get("object") == "chat.completion"),
                     ("created", _is_int(obj.get("created"))),
                     ("model", isinstance(obj.get("model"), str)),
                     ("choices", isinstance(obj.get("choices"), list)),
                     ("usage", isinstance(obj.get("usage"), dict))):
        if not ok:
            wrong.append(f"{name}={_short(obj.get(name, '<missing>'))}")
    result.check("RSP-3", not wrong, "expected <id string, object 'chat.completion', created "
                 "integer, model string, choices array, usage object>, "
                 f"actual <{'; '.join(wrong)}>")


def _choices(result: Analysis, obj: dict[str, Any]) -> None:
    choices = obj.get("choices")
    if not isinstance(choices, list):
        result.block(["RSP-4", "RSP-5"], "RSP-3", "choices is not an array")
        return
    wrong: list[str] = []
    reasoning: list[str] = []
    for i, choice in enumerate(choices):
        if not isinstance(choice, dict):
            wrong.append(f"choices[{i}] is {_short(choice)}")
            continue
        message = choice.get("message")
        if not _is_int(choice.get("index")):
            wrong.append(f"choices[{i}].index={_short(choice.get('index', '<missing>'))}")
        if not isinstance(choice.get("finish_reason"), str):
            wrong.append(f"choices[{i}].finish_reason="
                         f"{_short(choice.get('finish_reason', '<missing>'))}")
        if not isinstance(message, dict):
            wrong.append(f"choices[{i}].message={_short(message)}")
            continue
        if not isinstance(message.get("role"), str):
            wrong.append(f"choices[{i}].message.role missing or not a string")
        if "content" not in message or not (message["content"] is None
                                            or isinstance(message["content"], str)):
            wrong.append(f"choices[{i}].message.content missing or not a string/null")
        wrong.extend(_tool_calls(i, message.get("tool_calls")))
        if "reasoning_content" in message and not isinstance(message["reasoning_content"], str):
            reasoning.append(f"choices[{i}].message.reasoning_content="
                             f"{_short(message['reasoning_content'])}")
    result.check("RSP-4", not wrong, f"expected <choices of index, message {{role, content}}, "
                 f"finish_reason>, actual <{'; '.join(wrong)}>")
    if any(isinstance(c, dict) and isinstance(c.get("message"), dict)
           and "reasoning_content" in c["message"] for c in choices):
        result.check("RSP-5", not reasoning, f"expected <reasoning_content a string>, actual "
                     f"<{'; '.join(reasoning)}>")
    else:
        result.not_applicable("RSP-5", "the answer carries no reasoning_content")


def _tool_calls(i: int, calls: Any) -> list[str]:
    if calls is None:
        return []
    if not isinstance(calls, list):
        return [f"choices[{i}].message.tool_calls is not an array"]
    wrong = []
    for j, call in enumerate(calls):
        fn = call.get("function") if isinstance(call, dict) else None
        ok = (isinstance(call, dict) and isinstance(call.get("id"), str)
              and call.get("type") == "function" and isinstance(fn, dict)
              and isinstance(fn.get("name"), str) and isinstance(fn.get("arguments"), str))
        if ok:
            try:
                json.loads(fn["arguments"])  # type: ignore[index]
            except ValueError:
                ok = False
        if not ok:
            wrong.append(f"choices[{i}].message.tool_calls[{j}]={_short(call)}")
    return wrong


def _usage(result: Analysis, obj: dict[str, Any]) -> None:
    usage = obj.get("usage")
    if not isinstance(usage, dict):
        result.block(["RSP-6"], "RSP-3", "usage is not an object")
        return
    names = ("prompt_tokens", "completion_tokens", "total_tokens")
    values = {n: usage.get(n) for n in names}
    ok = all(_is_int(v) for v in values.values()) and (
        values["total_tokens"] == values["prompt_tokens"] + values["completion_tokens"])  # type: ignore[operator]
    result.check("RSP-6", ok, "expected <integer prompt_tokens, completion_tokens and "
                 f"total_tokens = their sum>, actual <{values}>")


def _metadata(result: Analysis, obj: dict[str, Any], prepared: Prepared) -> None:
    meta = obj.get("_metadata")
    if not isinstance(meta, dict):
        message = f"expected <a _metadata object>, actual <{_short(meta)}>"
        result.violated("PID-4", message)
        result.violated("RSP-8", message)
        result.violated("SRV-23", message)
        result.block(["RSP-9", "TIER-10"], "PID-4", "no _metadata object")
        return
    got = meta.get("payload_id", "<missing>")
    result.check("PID-4", got == prepared.payload_id, f"expected <_metadata.payload_id = "
                 f"{prepared.payload_id!r}>, actual <{_short(got)}>")
    _metadata_members(result, meta)
    _cuda(result, meta)
    tier = meta.get("security_tier", "<missing>")
    result.check("SRV-23", tier in TIERS, "expected <_metadata.security_tier naming the "
                 f"tier that served it: one of {', '.join(TIERS)}>, actual <{_short(tier)}>")
    if prepared.tier is None:
        result.not_applicable("TIER-10", "the request asked for no tier")
    elif tier not in TIERS:
        result.block(["TIER-10"], "SRV-23", "the answer names no tier")
    else:
        result.check("TIER-10", tier == prepared.tier, f"expected <served at the asked tier "
                     f"{prepared.tier!r}, or 403>, actual <served at {tier!r}>")


def _metadata_members(result: Analysis, meta: dict[str, Any]) -> None:
    wrong = [f"{name}={_short(meta.get(name, '<missing>'))}"
             for name, types in METADATA_TYPES.items()
             if not isinstance(meta.get(name), types) or (
                 name == "processed_at" and isinstance(meta.get(name), bool))]
    if meta.get("is_encrypted") is not True and "is_encrypted" in meta:
        wrong.append(f"is_encrypted={meta['is_encrypted']!r}")
    if meta.get("response_status", "success") != "success":
        wrong.append(f"response_status={meta['response_status']!r}")
    memory = meta.get("memory_protection")
    if isinstance(memory, dict):
        wrong += [f"memory_protection.{k}={_short(memory.get(k, '<missing>'))}"
                  for k, t in MEMORY_PROTECTION.items() if not isinstance(memory.get(k), t)]
    cuda = meta.get("cuda_device")
    if isinstance(cuda, dict) and not isinstance(cuda.get("available"), bool):
        wrong.append(f"cuda_device.available={_short(cuda.get('available', '<missing>'))}")
    result.check("RSP-8", not wrong, "expected <_metadata with processed_at, is_encrypted "
                 "true, response_status 'success', security_tier, memory_protection, "
                 f"cuda_device>, actual <{'; '.join(wrong)}>")


def _cuda(result: Analysis, meta: dict[str, Any]) -> None:
    cuda = meta.get("cuda_device")
    if cuda is None:
        result.not_applicable("RSP-9", "the answer carries no cuda_device")
        return
    if not isinstance(cuda, dict):
        result.violated("RSP-9", f"expected <cuda_device an object>, actual <{_short(cuda)}>")
        return
    wrong = [f"{k}={_short(v)}" for k, v in cuda.items()
             if k not in ("available", "device_hash") and isinstance(v, str)]
    digest = cuda.get("device_hash")
    if digest is not None and not (isinstance(digest, str) and HEX64.match(digest)):
        wrong.append(f"device_hash={_short(digest)} (not a lower-case hex SHA-256)")
    result.check("RSP-9", not wrong, "expected <cuda_device without a device name or other "
                 f"identifier in clear>, actual <{'; '.join(wrong)}>")


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
