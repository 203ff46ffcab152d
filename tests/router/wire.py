"""An independent minimal client of the v1.0 wire format, for testing the router.

Written from the spec with ``cryptography`` primitives only: it shares no code with
mock_router (which it checks) nor with nomyo_ref.
"""

from __future__ import annotations

import base64
import json
import os
import urllib.parse
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_PATH = "/pki/public_key"
POST_PATH = "/v1/chat/secure_completion"
OAEP = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


def pem_of(key: rsa.RSAPrivateKey | rsa.RSAPublicKey) -> str:
    pub = key.public_key() if isinstance(key, rsa.RSAPrivateKey) else key
    return pub.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def seal(recipient_pem: str, plaintext: bytes) -> dict[str, Any]:
    """A v1.0 package of ``plaintext`` for the holder of ``recipient_pem``."""
    pub = serialization.load_pem_public_key(recipient_pem.encode())
    assert isinstance(pub, rsa.RSAPublicKey)
    key = os.urandom(32)
    nonce = os.urandom(12)
    sealed = AESGCM(key).encrypt(nonce, plaintext, None)
    return {
        "version": "1.0",
        "algorithm": "hybrid-aes256-rsa4096",
        "encrypted_payload": {"ciphertext": b64(sealed[:-16]), "nonce": b64(nonce),
                              "tag": b64(sealed[-16:])},
        "encrypted_aes_key": b64(pub.encrypt(key, OAEP)),
        "key_algorithm": "RSA-OAEP-SHA256",
        "payload_algorithm": "AES-256-GCM",
    }


def open_package(private_key: rsa.RSAPrivateKey, package: dict[str, Any]) -> bytes:
    """Decrypt a package (raises on any failure)."""
    inner = package["encrypted_payload"]
    key = private_key.decrypt(base64.b64decode(package["encrypted_aes_key"]), OAEP)
    ct = base64.b64decode(inner["ciphertext"]) + base64.b64decode(inner["tag"])
    return AESGCM(key).decrypt(base64.b64decode(inner["nonce"]), ct, None)


def headers_for(client_pem: str, payload_id: str, *, api_key: str | None = None,
                tier: str | None = None, escape_slash: bool = False) -> dict[str, str]:
    """The request headers a client sends (Python clients leave '/' unescaped)."""
    h = {
        "X-Payload-ID": payload_id,
        "X-Public-Key": urllib.parse.quote(client_pem, safe="" if escape_slash else "/"),
        "Content-Type": "application/octet-stream",
    }
    if api_key is not None:
        h["Authorization"] = f"Bearer {api_key}"
    if tier is not None:
        h["X-Security-Tier"] = tier
    return h


@dataclass
class Result:
    response: httpx.Response
    payload_id: str
    package: dict[str, Any] | None = None
    plaintext: bytes | None = None

    @property
    def completion(self) -> dict[str, Any]:
        assert self.plaintext is not None, self.response.text
        return json.loads(self.plaintext)


class WireClient:
    """Fetch the key, send one encrypted request, decrypt the 200 answer."""

    def __init__(self, client_key: rsa.RSAPrivateKey) -> None:
        self.key = client_key
        self.pem = pem_of(client_key)

    async def server_pem(self, http: httpx.AsyncClient) -> str:
        r = await http.get(KEY_PATH)
        assert r.status_code == 200, r.text
        return r.text

    async def create(self, http: httpx.AsyncClient, payload: dict[str, Any] | bytes, *,
                     server_pem: str | None = None, payload_id: str | None = None,
                     decrypt: bool = True, **header_opts: Any) -> Result:
        pem = server_pem or await self.server_pem(http)
        plaintext = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        pid = payload_id or str(uuid.uuid4())
        body = json.dumps(seal(pem, plaintext)).encode()
        r = await http.post(POST_PATH, content=body,
                            headers=headers_for(self.pem, pid, **header_opts))
        result = Result(r, pid)
        if r.status_code == 200 and decrypt:
            result.package = r.json()
            result.plaintext = open_package(self.key, result.package)
        return result
