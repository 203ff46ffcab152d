"""An independent server side of protocol v1.0, written straight on ``cryptography``.

The tests check nomyo_ref against this, never against nomyo_ref's own crypto module, so a
bug in one cannot hide in the other. ``FakeRouter`` plays the router for respx: it serves the
key, decrypts each POST with the server key, answers a completion encrypted to the key in
``X-Public-Key``, and can be scripted to answer anything else.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import httpx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

OAEP = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


def spki_pem(key: rsa.RSAPrivateKey | rsa.RSAPublicKey) -> str:
    public = key.public_key() if isinstance(key, rsa.RSAPrivateKey) else key
    return public.public_bytes(serialization.Encoding.PEM,
                               serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def seal(plaintext: bytes, recipient: rsa.RSAPublicKey, **overrides: Any) -> dict[str, Any]:
    """A v1.0 package of ``plaintext`` for ``recipient``; ``overrides`` replace top-level
    fields (None deletes one)."""
    key, nonce = os.urandom(32), os.urandom(12)
    sealed = AESGCM(key).encrypt(nonce, plaintext, None)
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    package: dict[str, Any] = {
        "version": "1.0",
        "algorithm": "hybrid-aes256-rsa4096",
        "encrypted_payload": {"ciphertext": b64(sealed[:-16]), "nonce": b64(nonce),
                              "tag": b64(sealed[-16:])},
        "encrypted_aes_key": b64(recipient.encrypt(key, OAEP)),
        "key_algorithm": "RSA-OAEP-SHA256",
        "payload_algorithm": "AES-256-GCM",
        "processed_at": 1_700_000_000,
    }
    for name, value in overrides.items():
        if value is None:
            package.pop(name, None)
        else:
            package[name] = value
    return package


def unseal(package: dict[str, Any], private_key: rsa.RSAPrivateKey) -> bytes:
    """Server-side decryption of a package (raises on any failure)."""
    assert package["version"] == "1.0"
    assert package["algorithm"] == "hybrid-aes256-rsa4096"
    assert package["key_algorithm"] == "RSA-OAEP-SHA256"
    assert package["payload_algorithm"] == "AES-256-GCM"
    inner = package["encrypted_payload"]
    d = lambda s: base64.b64decode(s, validate=True)  # noqa: E731
    nonce, tag = d(inner["nonce"]), d(inner["tag"])
    assert len(nonce) == 12
    assert len(tag) == 16
    key = private_key.decrypt(d(package["encrypted_aes_key"]), OAEP)
    assert len(key) == 32
    return AESGCM(key).decrypt(nonce, d(inner["ciphertext"]) + tag, None)


def completion(payload: dict[str, Any], payload_id: str | None, tier: str = "standard"
               ) -> dict[str, Any]:
    """A chat.completion echoing the last message, bound to ``payload_id``, served at
    ``tier``."""
    messages = payload.get("messages") or [{}]
    last = messages[-1] if isinstance(messages[-1], dict) else {}
    body: dict[str, Any] = {
        "id": "chatcmpl-test", "object": "chat.completion", "created": 1_700_000_000,
        "model": payload.get("model"),
        "choices": [{"index": 0, "message": {"role": "assistant",
                                             "content": last.get("content")},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        "_metadata": {"processed_at": 1_700_000_000, "is_encrypted": True,
                      "response_status": "success", "security_tier": tier},
    }
    if payload_id is not None:
        body["_metadata"]["payload_id"] = payload_id
    return body


@dataclass
class Seen:
    """One POST as the fake router received it."""

    headers: httpx.Headers
    package: dict[str, Any]
    payload: dict[str, Any]
    client_key: rsa.RSAPublicKey


Responder = Callable[[Seen], httpx.Response]


@dataclass
class FakeRouter:
    """respx side effects for both endpoints. ``script`` is consumed FIFO by POSTs; each item
    is an httpx.Response, an exception to raise, or a callable taking the decrypted ``Seen``."""

    server_key: rsa.RSAPrivateKey
    script: list[httpx.Response | Exception | Responder] = field(default_factory=list)
    key_script: list[httpx.Response | Exception] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    key_fetches: int = 0

    def key(self, request: httpx.Request) -> httpx.Response:
        self.key_fetches += 1
        if self.key_script:
            item = self.key_script.pop(0)
            if isinstance(item, Exception):
                raise item
            return item
        return httpx.Response(200, text=spki_pem(self.server_key))

    def post(self, request: httpx.Request) -> httpx.Response:
        item = self.script.pop(0) if self.script else None
        if isinstance(item, Exception):
            raise item
        if isinstance(item, httpx.Response):
            return item
        package = json.loads(request.content)
        payload = json.loads(unseal(package, self.server_key))
        client_key = serialization.load_pem_public_key(
            unquote(request.headers["x-public-key"]).encode())
        assert isinstance(client_key, rsa.RSAPublicKey)
        seen = Seen(request.headers, package, payload, client_key)
        self.seen.append(seen)
        if item is not None:
            return item(seen)
        return self.answer(seen)

    @staticmethod
    def answer(seen: Seen, obj: dict[str, Any] | None = None, **overrides: Any
               ) -> httpx.Response:
        """The normal encrypted answer (or ``obj``) to ``seen``, served at the tier it asked
        for (the server's default, ``standard``, when it asked for none)."""
        body = obj if obj is not None else completion(
            seen.payload, seen.headers["x-payload-id"],
            seen.headers.get("x-security-tier", "standard"))
        package = seal(json.dumps(body).encode(), seen.client_key, **overrides)
        return httpx.Response(200, content=json.dumps(package).encode())
