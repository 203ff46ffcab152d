"""The one-defect broken routers, each with the requirement ids the suite must fail for it.

Every server check is failed by at least one of them (test_server_proof asserts it). Each
is a small subclass of `broken.Defect` acting at one place: the key endpoint, the request,
the completion inside the answer, the sealing of the answer, or the answer as it leaves.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import os
import re
import urllib.parse
import uuid
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from conformance.server.wire import (
    ALGORITHM,
    KEY_ALGORITHM,
    PAYLOAD_ALGORITHM,
    VERSION,
    b64,
    key_wraps,
    strict_b64decode,
    unwrap,
)
from tests.server.broken import (
    Defect,
    Keys,
    Request,
    Response,
    b64_lines,
    json_response,
    open_request,
    seal_request,
)

MAX_BODY = 16 * 1024 * 1024


def sealed(client: rsa.RSAPublicKey, plaintext: bytes, *, aes_key: bytes | None = None,
           nonce: bytes | None = None, aad: bytes | None = None, wrap: str = "oaep-sha256",
           tag_appended: bool = False) -> dict[str, Any]:
    """An answer package built as told (the defects' own sealing)."""
    aes_key = aes_key if aes_key is not None else os.urandom(32)
    nonce = nonce if nonce is not None else os.urandom(12)
    box = AESGCM(aes_key).encrypt(nonce, plaintext, aad)
    ciphertext, tag = box[:-16], box[-16:]
    return {
        "version": VERSION,
        "algorithm": ALGORITHM,
        "encrypted_payload": {"ciphertext": b64(box if tag_appended else ciphertext),
                              "nonce": b64(nonce), "tag": b64(tag)},
        "encrypted_aes_key": b64(client.encrypt(aes_key, key_wraps()[wrap])),
        "key_algorithm": KEY_ALGORITHM,
        "payload_algorithm": PAYLOAD_ALGORITHM,
    }


class Resealing(Defect):
    reseal = True


# -- the key endpoint ------------------------------------------------------------------------

class KeyTwoBlocks(Defect):
    name, fails = "key-two-blocks", ("DISC-20",)

    def key_answer(self, response: Response, keys: Keys) -> Response:
        return Response(200, response.headers, response.body + response.body)


class KeyRotatesEveryCall(Defect):
    name, fails = "key-changes-between-calls", ("DISC-20",)
    calls = 0

    def key_answer(self, response: Response, keys: Keys) -> Response:
        self.calls += 1
        if self.calls == 1:
            return response
        return Response(200, response.headers, public_pem_of(keys.own).encode())


class KeyAsJson(Defect):
    name, fails = "key-content-type-json", ("DISC-21",)

    def key_answer(self, response: Response, keys: Keys) -> Response:
        return Response(200, [("content-type", "application/json")], response.body)


class KeyTooSmall(Defect):
    name, fails = "server-key-1536-bits", ("DISC-22", "DISC-23")
    router = {"key_bits": 1536}  # noqa: RUF012


class Key2048(Defect):
    name, fails = "server-key-2048-bits", ("DISC-23",)
    router = {"key_bits": 2048}  # noqa: RUF012


class KeyPkcs1(Defect):
    name, fails = "key-served-as-pkcs1", ("KEY-3", "DISC-20")

    def key_answer(self, response: Response, keys: Keys) -> Response:
        pem = keys.server.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.PKCS1)
        return Response(200, response.headers, pem)


def public_pem_of(key: rsa.RSAPrivateKey) -> str:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


# -- what is inside a 200 answer -------------------------------------------------------------

class Unavailable(Defect):
    name, fails = "valid-requests-get-503", ("SRV-18",)

    async def response(self, response: Response, request: Request, keys: Keys) -> Response:
        return json_response(503, "backend unavailable") if response.status == 200 else response


class AnswerTextPlain(Resealing):
    name, fails = "answer-content-type-text-plain", ("SRV-19",)

    def content_type(self) -> str:
        return "text/plain"


class WrongRecipient(Resealing):
    name, fails = "answer-wrapped-to-another-key", ("ENC-5", "RSP-1")

    def seal(self, plaintext: bytes, client: rsa.RSAPublicKey, request: Request
             ) -> dict[str, Any]:
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
        return sealed(other, plaintext)


class PackageEdit(Resealing):
    """A 200 package with one member changed (value None: removed)."""

    path: tuple[str, ...] = ()
    value: Any = None

    def seal(self, plaintext: bytes, client: rsa.RSAPublicKey, request: Request
             ) -> dict[str, Any]:
        package = sealed(client, plaintext)
        node = package
        for part in self.path[:-1]:
            node = node[part]
        if self.value is None:
            node.pop(self.path[-1])
        else:
            node[self.path[-1]] = self.value(node[self.path[-1]]) if callable(self.value) \
                else self.value
        return package


class ProcessedAtString(PackageEdit):
    name, fails = "processed-at-a-string", ("RSP-2",)
    path, value = ("processed_at",), "just now"


class NoKeyAlgorithm(PackageEdit):
    name, fails = "answer-without-key-algorithm", ("PKG-1",)
    path = ("key_algorithm",)


class Version11(PackageEdit):
    name, fails = "answer-version-1.1", ("PKG-2",)
    path, value = ("version",), "1.1"


class OtherAlgorithm(PackageEdit):
    name, fails = "answer-algorithm-hybrid-aes128", ("PKG-3",)
    path, value = ("algorithm",), "hybrid-aes128-rsa2048"


class OtherPayloadAlgorithm(PackageEdit):
    name, fails = "answer-payload-algorithm-aes-128-gcm", ("PKG-4",)
    path, value = ("payload_algorithm",), "AES-128-GCM"


class TagNumber(PackageEdit):
    name, fails = "answer-tag-a-number", ("PKG-5",)
    path, value = ("encrypted_payload", "tag"), 16


class Base64LineBreaks(PackageEdit):
    name, fails = "answer-base64-with-line-breaks", ("PKG-6",)
    path = ("encrypted_payload", "ciphertext")

    @staticmethod
    def value(text: str) -> str:  # type: ignore[override]
        return b64_lines(strict_b64decode(text), 40)


class Base64NonCanonical(PackageEdit):
    name, fails = "answer-base64-unused-bits-set", ("PKG-10",)
    path = ("encrypted_payload", "tag")

    @staticmethod
    def value(text: str) -> str:  # type: ignore[override]
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
        last = text.rstrip("=")[-1]
        bumped = alphabet[alphabet.index(last) | 1]  # 16 bytes: 4 unused bits in that char
        return text.rstrip("=")[:-1] + bumped + "=" * (len(text) - len(text.rstrip("=")))


class Nonce16(Resealing):
    name, fails = "answer-nonce-16-bytes", ("PKG-7",)

    def seal(self, plaintext: bytes, client: rsa.RSAPublicKey, request: Request
             ) -> dict[str, Any]:
        return sealed(client, plaintext, nonce=os.urandom(16))


class Aes128(Resealing):
    name, fails = "answer-aes-128-key", ("ENC-1",)

    def seal(self, plaintext: bytes, client: rsa.RSAPublicKey, request: Request
             ) -> dict[str, Any]:
        return sealed(client, plaintext, aes_key=os.urandom(16))


class AadPayloadId(Resealing):
    name, fails = "answer-aad-payload-id", ("ENC-2",)

    def seal(self, plaintext: bytes, client: rsa.RSAPublicKey, request: Request
             ) -> dict[str, Any]:
        return sealed(client, plaintext, aad=(request.header("x-payload-id") or "").encode())


class TagAppended(Resealing):
    name, fails = "answer-tag-appended-to-ciphertext", ("ENC-3",)

    def seal(self, plaintext: bytes, client: rsa.RSAPublicKey, request: Request
             ) -> dict[str, Any]:
        return sealed(client, plaintext, tag_appended=True)


class OaepSha1(Resealing):
    name, fails = "answer-key-wrapped-oaep-sha1", ("ENC-4",)

    def seal(self, plaintext: bytes, client: rsa.RSAPublicKey, request: Request
             ) -> dict[str, Any]:
        return sealed(client, plaintext, wrap="oaep-sha1")


class NonceReused(Resealing):
    name, fails = "answer-reuses-request-nonce", ("ENC-9",)

    def seal(self, plaintext: bytes, client: rsa.RSAPublicKey, request: Request
             ) -> dict[str, Any]:
        nonce = strict_b64decode(json.loads(request.body)["encrypted_payload"]["nonce"])
        return sealed(client, plaintext, nonce=nonce)


class SameKeyAndNonce(Resealing):
    name, fails = "answers-share-key-and-nonce", ("ENC-8",)
    fixed_key, fixed_nonce = os.urandom(32), os.urandom(12)

    def seal(self, plaintext: bytes, client: rsa.RSAPublicKey, request: Request
             ) -> dict[str, Any]:
        return sealed(client, plaintext, aes_key=self.fixed_key, nonce=self.fixed_nonce)


class CompletionEdit(Resealing):
    """The completion with one change."""

    def completion(self, completion: dict[str, Any], request: Request) -> dict[str, Any]:
        self.edit(completion)
        return completion

    def edit(self, completion: dict[str, Any]) -> None:
        raise NotImplementedError


class ObjectName(CompletionEdit):
    name, fails = "completion-object-chat-completions", ("RSP-3",)

    def edit(self, completion: dict[str, Any]) -> None:
        completion["object"] = "chat.completions"


class NoFinishReason(CompletionEdit):
    name, fails = "choice-without-finish-reason", ("RSP-4",)

    def edit(self, completion: dict[str, Any]) -> None:
        for choice in completion["choices"]:
            choice.pop("finish_reason", None)


class ReasoningNotString(CompletionEdit):
    name, fails = "reasoning-content-a-number", ("RSP-5",)

    def edit(self, completion: dict[str, Any]) -> None:
        completion["choices"][0]["message"]["reasoning_content"] = 42


class UsageSum(CompletionEdit):
    name, fails = "usage-total-not-the-sum", ("RSP-6",)

    def edit(self, completion: dict[str, Any]) -> None:
        completion["usage"]["total_tokens"] += 1


class PayloadIdNotEchoed(CompletionEdit):
    name, fails = "payload-id-not-echoed", ("PID-4",)

    def edit(self, completion: dict[str, Any]) -> None:
        completion["_metadata"]["payload_id"] = str(uuid.uuid4())


class MetadataIncomplete(CompletionEdit):
    name, fails = "metadata-without-memory-protection", ("RSP-8",)

    def edit(self, completion: dict[str, Any]) -> None:
        completion["_metadata"].pop("memory_protection", None)


class DeviceName(CompletionEdit):
    name, fails = "cuda-device-name-in-clear", ("RSP-9",)

    def edit(self, completion: dict[str, Any]) -> None:
        completion["_metadata"]["cuda_device"]["name"] = "NVIDIA A100-SXM4-80GB"


class NoSecurityTier(CompletionEdit):
    name, fails, also = "metadata-without-security-tier", ("SRV-23",), ("TIER-10",)

    def edit(self, completion: dict[str, Any]) -> None:
        completion["_metadata"].pop("security_tier", None)


class TierIgnored(Defect):
    name, fails = "tier-ignored", ("TIER-10",)

    async def request(self, request: Request, keys: Keys) -> Request | Response:
        if request.header("x-security-tier") in ("high", "maximum"):
            request.set_header("x-security-tier", None)  # served at the default tier
        return request


class MixesUpUnderLoad(Defect):
    name, fails = "answers-mixed-up-under-load", ("PID-4",)
    last: str | None = None

    async def request(self, request: Request, keys: Keys) -> Request | Response:
        self.last = request.header("x-payload-id")
        await asyncio.sleep(0.2)  # simultaneous requests overwrite `last` meanwhile
        if self.last is not None:  # the id of whichever request came last
            request.set_header("x-payload-id", self.last)
        return request


# -- the request: headers --------------------------------------------------------------------

class NoAuthAccepted(Defect):
    name, fails = "missing-api-key-accepted", ("SRV-3",)
    options = ("--server-api-key=k1",)
    router = {"api_keys": ["k1"]}  # noqa: RUF012

    async def request(self, request: Request, keys: Keys) -> Request | Response:
        if request.header("authorization") is None:
            request.set_header("authorization", "Bearer k1")
        return request


class AnyContentType(Defect):
    name, fails = "any-content-type-accepted", ("SRV-4",)

    async def request(self, request: Request, keys: Keys) -> Request | Response:
        request.set_header("content-type", "application/octet-stream")
        return request


class Decompresses(Defect):
    name, fails = "gzip-body-decompressed", ("SRV-38",)

    async def request(self, request: Request, keys: Keys) -> Request | Response:
        coding = request.header("content-encoding")
        if coding == "gzip":
            request.body = gzip.decompress(request.body)
        request.set_header("content-encoding", None)
        return request


class LongPayloadIdCut(Defect):
    name, fails = "long-payload-id-cut-to-128", ("SRV-5",)

    async def request(self, request: Request, keys: Keys) -> Request | Response:
        value = request.header("x-payload-id")
        if value is not None and len(value) > 128:
            request.set_header("x-payload-id", value[:128])
        return request


class MissingKey422(Defect):
    name, fails = "missing-public-key-422", ("SRV-6",)

    async def request(self, request: Request, keys: Keys) -> Request | Response:
        if request.header("x-public-key") is None:
            return json_response(422, [{"loc": ["header", "x-public-key"], "msg": "missing"}])
        return request


class Pkcs1Accepted(Defect):
    name, fails = "pkcs1-client-key-accepted", ("SRV-24",)

    async def request(self, request: Request, keys: Keys) -> Request | Response:
        value = urllib.parse.unquote(request.header("x-public-key") or "")
        if "BEGIN RSA PUBLIC KEY" in value:
            key = serialization.load_pem_public_key(value.encode())
            pem = key.public_bytes(serialization.Encoding.PEM,
                                   serialization.PublicFormat.SubjectPublicKeyInfo)
            request.set_header("x-public-key", urllib.parse.quote(pem.decode()))
        return request


class SmallKeysAccepted(Resealing):
    name, fails = "small-client-keys-accepted", ("SRV-7",)

    def wants_reseal(self, request: Request, client: rsa.RSAPublicKey) -> bool:
        return client.key_size < 2048  # the router is shown a key it takes instead


class OddExponentAccepted(Resealing):
    name, fails = "exponent-3-client-key-accepted", ("SRV-25",)

    def wants_reseal(self, request: Request, client: rsa.RSAPublicKey) -> bool:
        return client.public_numbers().e != 65537


class RepeatsJoined(Defect):
    name, fails = "repeated-header-fields-accepted", ("SRV-26",)

    async def request(self, request: Request, keys: Keys) -> Request | Response:
        seen: set[str] = set()
        kept = []
        for name, value in request.headers:
            if name in seen and name != "authorization":
                continue
            seen.add(name)
            kept.append((name, value))
        request.headers = kept
        return request


class PlusAsSpace(Defect):
    name, fails = "public-key-plus-decoded-as-space", ("HDR-5",)

    async def request(self, request: Request, keys: Keys) -> Request | Response:
        value = request.header("x-public-key")
        if value is not None:  # form decoding: '+' becomes a space
            request.set_header("x-public-key", value.replace("+", "%20"))
        return request


class RefusesCrlf(Defect):
    name, fails = "public-key-with-crlf-refused", ("KEY-3",)

    async def request(self, request: Request, keys: Keys) -> Request | Response:
        if "\r" in urllib.parse.unquote(request.header("x-public-key") or ""):
            return json_response(400, "X-Public-Key must use LF line ends")
        return request


class TierCaseInsensitive(Defect):
    name, fails = "tier-compared-case-insensitively", ("TIER-1",)

    async def request(self, request: Request, keys: Keys) -> Request | Response:
        tier = request.header("x-security-tier")
        if tier is not None:
            request.set_header("x-security-tier", tier.lower())
        return request


class UnknownTierIgnored(Defect):
    name, fails = "unknown-tier-ignored", ("TIER-6",)

    async def request(self, request: Request, keys: Keys) -> Request | Response:
        if request.header("x-security-tier") not in (None, "standard", "high", "maximum"):
            request.set_header("x-security-tier", None)
        return request


class PolicyNotEnforced(Defect):
    name, fails = "declared-tier-policy-not-enforced", ("TIER-7",)
    options = ("--server-policy=tier-403=maximum",)


# -- the request: package --------------------------------------------------------------------

def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


def _bad_base64(package: Any) -> bool:
    if not isinstance(package, dict) or not isinstance(package.get("encrypted_payload"), dict):
        return False
    inner = package["encrypted_payload"]
    values = [package.get("encrypted_aes_key"), *(inner.get(m) for m in
                                                  ("ciphertext", "nonce", "tag"))]
    for value in values:
        try:
            strict_b64decode(value)
        except ValueError:
            if isinstance(value, str):
                return True
    return False


class ServerErrorOnBadBase64(Defect):
    name, fails = "500-on-bad-base64", ("SRV-17", "SRV-10", "PKG-10")

    async def request(self, request: Request, keys: Keys) -> Request | Response:
        if _bad_base64(_json(request.body)):
            return json_response(500, "Internal Server Error")
        return request


class LenientBase64(Defect):
    name, fails = "lenient-base64-decoding", ("PKG-10",)

    async def request(self, request: Request, keys: Keys) -> Request | Response:
        package = _json(request.body)
        if not isinstance(package, dict) or not isinstance(package.get("encrypted_payload"),
                                                           dict):
            return request

        def fix(text: Any) -> Any:
            if not isinstance(text, str):
                return text
            core = re.sub(r"\s", "", text).replace("-", "+").replace("_", "/").rstrip("=")
            core = re.sub(r"[^A-Za-z0-9+/]", "", core)
            core = core[: len(core) - len(core) % 4] if len(core) % 4 == 1 else core
            return b64(base64.b64decode(core + "=" * (-len(core) % 4)))

        inner = package["encrypted_payload"]
        for member in ("ciphertext", "nonce", "tag"):
            inner[member] = fix(inner.get(member))
        package["encrypted_aes_key"] = fix(package.get("encrypted_aes_key"))
        request.body = json.dumps(package).encode()
        return request


class MissingVersionDefaulted(Defect):
    name, fails = "missing-version-defaulted", ("SRV-8",)

    async def request(self, request: Request, keys: Keys) -> Request | Response:
        package = _json(request.body)
        if isinstance(package, dict) and "version" not in package:
            package["version"] = "1.0"
            request.body = json.dumps(package).encode()
        return request


class AnyVersion(Defect):
    name, fails = "any-version-accepted", ("SRV-9",)

    async def request(self, request: Request, keys: Keys) -> Request | Response:
        package = _json(request.body)
        if isinstance(package, dict) and "version" in package:
            package["version"] = "1.0"
            request.body = json.dumps(package).encode()
        return request


class DuplicatesLastWins(Defect):
    name, fails = "duplicate-members-last-wins", ("SRV-20",)

    async def request(self, request: Request, keys: Keys) -> Request | Response:
        package = _json(request.body)
        if not isinstance(package, dict):
            return request
        request.body = json.dumps(package).encode()
        opened = open_request(request.body, keys.server)
        if opened is not None:
            plain = _json(opened.plaintext)
            if isinstance(plain, dict):
                request.body = seal_request(opened.package, json.dumps(plain).encode(),
                                            keys.server)
        return request


class NoReplayCache(Defect):
    name, fails = "no-replay-cache", ("SRV-21",)

    async def request(self, request: Request, keys: Keys) -> Request | Response:
        opened = open_request(request.body, keys.server)
        if opened is not None:  # sealed anew: the router never sees the same package twice
            request.body = seal_request(opened.package, opened.plaintext, keys.server)
        return request


class UnknownMembersRefused(Defect):
    name, fails = "unknown-package-members-refused", ("PKG-9",)

    async def request(self, request: Request, keys: Keys) -> Request | Response:
        package = _json(request.body)
        known = {"version", "algorithm", "encrypted_payload", "encrypted_aes_key",
                 "key_algorithm", "payload_algorithm"}
        if isinstance(package, dict) and set(package) - known:
            return json_response(400, "unknown package member")
        return request


class UnknownInnerRefused(Defect):
    name, fails = "unknown-encrypted-payload-members-refused", ("PKG-11",)

    async def request(self, request: Request, keys: Keys) -> Request | Response:
        package = _json(request.body)
        inner = package.get("encrypted_payload") if isinstance(package, dict) else None
        if isinstance(inner, dict) and set(inner) - {"ciphertext", "nonce", "tag"}:
            return json_response(400, "unknown encrypted_payload member")
        return request


# -- the request: decryption -----------------------------------------------------------------

def _unwraps(request: Request, server: rsa.RSAPrivateKey, wrap: str = "oaep-sha256"
             ) -> bytes | None:
    package = _json(request.body)
    try:
        return unwrap(server, strict_b64decode(package["encrypted_aes_key"]), wrap)
    except (ValueError, KeyError, TypeError):
        return None


class DecryptionDetails(Defect):
    name, fails = "decryption-failures-told-apart", ("SRV-11",)

    async def response(self, response: Response, request: Request, keys: Keys) -> Response:
        if response.detail == "decryption failed":
            which = ("tag mismatch" if _unwraps(request, keys.server) is not None
                     else "cannot unwrap the AES key")
            return json_response(400, which)
        return response


class DecryptionTiming(Defect):
    name, fails = "gcm-failure-answered-slowly", ("SRV-11",)

    async def response(self, response: Response, request: Request, keys: Keys) -> Response:
        if response.detail == "decryption failed" and _unwraps(request, keys.server):
            await asyncio.sleep(0.6)  # far past the check's slack, even on a loaded machine
        return response


class OaepSha1Accepted(Defect):
    name, fails = "request-key-oaep-sha1-accepted", ("ENC-6",)

    async def request(self, request: Request, keys: Keys) -> Request | Response:
        if _unwraps(request, keys.server) is None:
            aes_key = _unwraps(request, keys.server, "oaep-sha1")
            if aes_key is not None:  # the fallback: wrap it again the protocol's way
                package = json.loads(request.body)
                wrapped = keys.server.public_key().encrypt(aes_key, key_wraps()["oaep-sha256"])
                package["encrypted_aes_key"] = b64(wrapped)
                request.body = json.dumps(package).encode()
        return request


class TagNotVerified(Defect):
    name, fails = "gcm-tag-not-verified", ("ENC-7",)

    async def request(self, request: Request, keys: Keys) -> Request | Response:
        aes_key = _unwraps(request, keys.server)
        if aes_key is None or open_request(request.body, keys.server) is not None:
            return request
        package = json.loads(request.body)
        try:
            nonce = strict_b64decode(package["encrypted_payload"]["nonce"])
            data = strict_b64decode(package["encrypted_payload"]["ciphertext"])
        except (ValueError, KeyError):
            return request
        if len(nonce) != 12:
            return request
        counter = nonce + b"\x00\x00\x00\x02"  # GCM's keystream, the tag never checked
        decryptor = Cipher(algorithms.AES(aes_key), modes.CTR(counter)).decryptor()
        plaintext = decryptor.update(data) + decryptor.finalize()
        request.body = seal_request(package, plaintext, keys.server)
        return request


# -- the request: plaintext ------------------------------------------------------------------

class PlaintextEdit(Defect):
    """Opens the request, changes the plaintext, seals it again."""

    async def request(self, request: Request, keys: Keys) -> Request | Response:
        opened = open_request(request.body, keys.server)
        if opened is None:
            return request
        changed = self.edit(opened.plaintext)
        if isinstance(changed, Response):
            return changed
        if changed is not None:
            request.body = seal_request(opened.package, changed, keys.server)
        return request

    def edit(self, plaintext: bytes) -> bytes | Response | None:
        raise NotImplementedError


def _chat(plaintext: bytes) -> dict[str, Any] | None:
    value = _json(plaintext)
    return value if isinstance(value, dict) else None


class PlaintextLimit8MiB(PlaintextEdit):
    name, fails = "plaintext-limit-8-mib", ("SRV-12",)

    def edit(self, plaintext: bytes) -> bytes | Response | None:
        if len(plaintext) > 8 * 1024 * 1024:
            return json_response(413, "plaintext too large")
        return None


class BomAccepted(PlaintextEdit):
    name, fails = "plaintext-bom-stripped", ("SRV-13",)

    def edit(self, plaintext: bytes) -> bytes | Response | None:
        return plaintext[3:] if plaintext.startswith(b"\xef\xbb\xbf") else None


class ChatEdit(PlaintextEdit):
    def edit(self, plaintext: bytes) -> bytes | Response | None:
        chat = _chat(plaintext)
        if chat is None:
            return None
        self.fix(chat)
        return json.dumps(chat).encode()

    def fix(self, chat: dict[str, Any]) -> None:
        raise NotImplementedError


class ModelDefaulted(ChatEdit):
    name, fails = "invalid-model-defaulted", ("SRV-32",)

    def fix(self, chat: dict[str, Any]) -> None:
        if not isinstance(chat.get("model"), str) or not chat["model"]:
            chat["model"] = "mock-model"


class MessagesDefaulted(ChatEdit):
    name, fails = "invalid-messages-defaulted", ("SRV-33",)

    def fix(self, chat: dict[str, Any]) -> None:
        if not isinstance(chat.get("messages"), list) or not chat["messages"]:
            chat["messages"] = [{"role": "user", "content": "hi"}]


class RoleDefaulted(ChatEdit):
    name, fails = "missing-role-defaulted", ("SRV-34",)

    def fix(self, chat: dict[str, Any]) -> None:
        messages = chat.get("messages")
        if isinstance(messages, list):
            for message in messages:
                if isinstance(message, dict) and not isinstance(message.get("role"), str):
                    message["role"] = "user"


class StreamServed(ChatEdit):
    name, fails = "stream-true-answered-200", ("SRV-15",)

    def fix(self, chat: dict[str, Any]) -> None:
        if chat.get("stream") is True:
            del chat["stream"]


class StreamLenient(ChatEdit):
    name, fails = "stream-not-boolean-ignored", ("SRV-35",)

    def fix(self, chat: dict[str, Any]) -> None:
        if "stream" in chat and not isinstance(chat["stream"], bool):
            del chat["stream"]


# -- answers to refusals ---------------------------------------------------------------------

class PlainTextErrors(Defect):
    name, fails = "plain-text-error-bodies", ("SRV-16",)

    async def response(self, response: Response, request: Request, keys: Keys) -> Response:
        if response.status < 400:
            return response
        text = f"Error: {response.detail}".encode()
        return Response(response.status, [("content-type", "text/plain")], text)


class EchoesContent(Defect):
    name, fails = "detail-echoes-message-content", ("LOG-5",)

    async def response(self, response: Response, request: Request, keys: Keys) -> Response:
        opened = open_request(request.body, keys.server)
        if response.status < 400 or opened is None:
            return response
        excerpt = opened.plaintext[:200].decode("utf-8", errors="replace")
        return json_response(response.status, f"{response.detail} in {excerpt}")


class EchoesAuthorization(Defect):
    name, fails = "detail-echoes-authorization", ("LOG-7",)

    async def response(self, response: Response, request: Request, keys: Keys) -> Response:
        if response.status < 400:
            return response
        value = request.header("authorization") or "none"
        return json_response(response.status, f"{response.detail} (Authorization: {value})")


# -- the order of the checks -----------------------------------------------------------------

class ContentTypeBeforeSize(Defect):
    name, fails = "content-type-checked-before-body-size", ("SRV-27",)

    def passthrough(self, scope: dict[str, Any]) -> Response | None:
        media = dict(scope["headers"]).get(b"content-type", b"").split(b";")[0].strip()
        return None if media == b"application/octet-stream" else json_response(415, "type")


class HeadersBeforeAuth(Defect):
    name, fails = "payload-id-checked-before-api-key", ("SRV-28",)
    options = ("--server-api-key=k1",)
    router = {"api_keys": ["k1"]}  # noqa: RUF012

    async def request(self, request: Request, keys: Keys) -> Request | Response:
        if request.header("x-payload-id") is None:
            return json_response(400, "missing X-Payload-ID header")
        return request


class PackageBeforeHeaders(Defect):
    name, fails = "package-parsed-before-content-type", ("SRV-29",)

    async def request(self, request: Request, keys: Keys) -> Request | Response:
        if not isinstance(_json(request.body), dict):
            return json_response(400, "request body is not a JSON object")
        return request


class TierPolicyFirst(Defect):
    name, fails = "tier-policy-applied-first", ("SRV-30", "SRV-31")
    options = ("--server-policy=tier-403=maximum",)
    router = {"tier_policy": {"maximum": ["other-model"]}}  # noqa: RUF012

    async def request(self, request: Request, keys: Keys) -> Request | Response:
        if request.header("x-security-tier") == "maximum":
            return json_response(403, "model not allowed for this tier")
        return request


# -- the body size ---------------------------------------------------------------------------

class DeclaredSizeWrongStatus(Defect):
    name, fails = "declared-oversize-answered-400", ("SRV-2",)

    def passthrough(self, scope: dict[str, Any]) -> Response | None:
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and int(length) > MAX_BODY:
            return json_response(400, "bad request")
        return None


class StreamedSizeWrongStatus(Defect):
    name, fails = "streamed-oversize-answered-400", ("SRV-2",)

    def passthrough(self, scope: dict[str, Any]) -> Response | None:
        if dict(scope["headers"]).get(b"content-length") is None:
            return json_response(400, "chunked bodies are not supported")
        return None


ALL: tuple[Defect, ...] = tuple(cls() for cls in (
    KeyTwoBlocks, KeyRotatesEveryCall, KeyAsJson, KeyTooSmall, Key2048, KeyPkcs1,
    Unavailable, AnswerTextPlain, WrongRecipient, ProcessedAtString, NoKeyAlgorithm, Version11,
    OtherAlgorithm, OtherPayloadAlgorithm, TagNumber, Base64LineBreaks, Base64NonCanonical,
    Nonce16, Aes128, AadPayloadId, TagAppended, OaepSha1, NonceReused, SameKeyAndNonce,
    ObjectName, NoFinishReason, ReasoningNotString, UsageSum, PayloadIdNotEchoed,
    MetadataIncomplete, DeviceName, NoSecurityTier, TierIgnored, MixesUpUnderLoad,
    NoAuthAccepted, AnyContentType, Decompresses, LongPayloadIdCut, MissingKey422,
    Pkcs1Accepted, SmallKeysAccepted, OddExponentAccepted, RepeatsJoined, PlusAsSpace,
    RefusesCrlf, TierCaseInsensitive, UnknownTierIgnored, PolicyNotEnforced,
    ServerErrorOnBadBase64, LenientBase64, MissingVersionDefaulted, AnyVersion,
    DuplicatesLastWins, NoReplayCache, UnknownMembersRefused, UnknownInnerRefused,
    DecryptionDetails, DecryptionTiming, OaepSha1Accepted, TagNotVerified, PlaintextLimit8MiB,
    BomAccepted, ModelDefaulted, MessagesDefaulted, RoleDefaulted, StreamServed, StreamLenient,
    PlainTextErrors, EchoesContent, EchoesAuthorization, ContentTypeBeforeSize,
    HeadersBeforeAuth, PackageBeforeHeaders, TierPolicyFirst, DeclaredSizeWrongStatus,
    StreamedSizeWrongStatus,
))
