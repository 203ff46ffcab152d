"""What the figures send, and the floors: the bare primitives a call cannot avoid.

The floors use ``cryptography`` directly (never nomyo_ref or mock_router), so a cost hidden in
either package cannot hide in its floor too.
"""

from __future__ import annotations

import base64
import json
import secrets
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

OAEP = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(),
                    label=None)
MODEL = "bench-model"
SMALL_MESSAGES = [{"role": "user", "content": "Hello! What is the capital of France?"}]
POST_PATH = "/v1/chat/secure_completion"
LIMIT = 10 * 1024 * 1024
_WORDS = ("lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit", "sed",
          "do", "eiusmod", "tempor", "incididunt", "ut", "labore", "et", "dolore", "magna",
          "aliqua")


def small_payload() -> dict[str, Any]:
    return {"model": MODEL, "messages": SMALL_MESSAGES}


def text_of(size: int) -> str:
    """ASCII prose of exactly ``size`` characters (no JSON escapes needed)."""
    rng = secrets.SystemRandom()
    chunk = " ".join(rng.choice(_WORDS) for _ in range(2000)) + ". "
    return (chunk * (size // len(chunk) + 1))[:size]


def large_payload(target_bytes: int) -> dict[str, Any]:
    """A chat request whose JSON serialisation is just under ``target_bytes``."""
    shell = {"model": MODEL, "messages": [{"role": "user", "content": ""}]}
    overhead = len(json.dumps(shell, separators=(",", ":")).encode()) + 64
    shell["messages"][0]["content"] = text_of(target_bytes - overhead)
    return shell


def completion_for(payload_id: str, content: str) -> dict[str, Any]:
    """A chat.completion as a router answers it, bound to ``payload_id``."""
    return {
        "id": "chatcmpl-bench", "object": "chat.completion", "created": 1_700_000_000,
        "model": MODEL,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 9, "total_tokens": 18},
        "_metadata": {"payload_id": payload_id, "processed_at": 1_700_000_000,
                      "is_encrypted": True, "response_status": "success",
                      "security_tier": "standard"},
    }


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def seal(plaintext: bytes, recipient: rsa.RSAPublicKey) -> bytes:
    """A v1.0 package (JSON bytes) of ``plaintext`` for ``recipient``."""
    key = AESGCM.generate_key(bit_length=256)
    nonce = secrets.token_bytes(12)
    sealed = AESGCM(key).encrypt(nonce, plaintext, None)
    package = {
        "version": "1.0", "algorithm": "hybrid-aes256-rsa4096",
        "encrypted_payload": {"ciphertext": _b64(sealed[:-16]), "nonce": _b64(nonce),
                              "tag": _b64(sealed[-16:])},
        "encrypted_aes_key": _b64(recipient.encrypt(key, OAEP)),
        "key_algorithm": "RSA-OAEP-SHA256", "payload_algorithm": "AES-256-GCM",
        "processed_at": 1_700_000_000,
    }
    return json.dumps(package).encode()


# --- floors --------------------------------------------------------------------------------

@dataclass
class ClientCallFloor:
    """Figure 2: what one small call must do on the client side, and nothing else."""

    client_key: rsa.RSAPrivateKey
    server_public: rsa.RSAPublicKey
    request_plaintext: bytes
    response_plaintext: bytes

    def __post_init__(self) -> None:
        self._aes = AESGCM(AESGCM.generate_key(bit_length=256))
        self._nonce = secrets.token_bytes(12)
        self._wrapped = self.client_key.public_key().encrypt(secrets.token_bytes(32), OAEP)
        self._response = self._aes.encrypt(self._nonce, self.response_plaintext, None)

    def __call__(self) -> None:
        aes_key = secrets.token_bytes(32)
        self.server_public.encrypt(aes_key, OAEP)                       # wrap request key
        AESGCM(aes_key).encrypt(secrets.token_bytes(12), self.request_plaintext, None)
        self.client_key.decrypt(self._wrapped, OAEP)                    # unwrap answer key
        self._aes.decrypt(self._nonce, self._response, None)


@dataclass
class RouterRequestFloor:
    """Figure 3: what the router must do per request: unwrap the request key (router private
    key), open the request, wrap a fresh answer key to the client's key, seal the answer."""

    router_key: rsa.RSAPrivateKey
    client_public: rsa.RSAPublicKey
    request_plaintext: bytes
    response_plaintext: bytes

    def __post_init__(self) -> None:
        self._aes = AESGCM(AESGCM.generate_key(bit_length=256))
        self._nonce = secrets.token_bytes(12)
        self._wrapped = self.router_key.public_key().encrypt(secrets.token_bytes(32), OAEP)
        self._request = self._aes.encrypt(self._nonce, self.request_plaintext, None)

    def __call__(self) -> None:
        self.router_key.decrypt(self._wrapped, OAEP)
        self._aes.decrypt(self._nonce, self._request, None)
        aes_key = secrets.token_bytes(32)
        self.client_public.encrypt(aes_key, OAEP)
        AESGCM(aes_key).encrypt(secrets.token_bytes(12), self.response_plaintext, None)


class EncryptFloor:
    """Figure 4, request side: JSON of the request, AES-GCM, base64, the package's JSON (and
    the one RSA public-key wrap of the AES key, which any encryption needs). Compact JSON
    without ASCII escaping: the cheapest serialisation a careful client would pick."""

    def __init__(self, payload: dict[str, Any], server_public: rsa.RSAPublicKey) -> None:
        self.payload = payload
        self.server_public = server_public

    def __call__(self) -> bytes:
        data = json.dumps(self.payload, ensure_ascii=False, separators=(",", ":")).encode()
        key = AESGCM.generate_key(bit_length=256)
        nonce = secrets.token_bytes(12)
        sealed = AESGCM(key).encrypt(nonce, data, None)
        package = {"version": "1.0", "encrypted_payload": {
            "ciphertext": _b64(sealed[:-16]), "nonce": _b64(nonce), "tag": _b64(sealed[-16:])},
            "encrypted_aes_key": _b64(self.server_public.encrypt(key, OAEP))}
        return json.dumps(package, separators=(",", ":")).encode()


class DecryptFloor:
    """Figure 4, answer side: parse the package, base64-decode, one RSA private-key unwrap,
    AES-GCM open, parse the plaintext JSON."""

    def __init__(self, body: bytes, client_key: rsa.RSAPrivateKey) -> None:
        self.body = body
        self.client_key = client_key

    def __call__(self) -> dict[str, Any]:
        package = json.loads(self.body)
        sealed = package["encrypted_payload"]
        ciphertext = base64.b64decode(sealed["ciphertext"])
        tag = base64.b64decode(sealed["tag"])
        nonce = base64.b64decode(sealed["nonce"])
        key = self.client_key.decrypt(base64.b64decode(package["encrypted_aes_key"]), OAEP)
        return json.loads(AESGCM(key).decrypt(nonce, ciphertext + tag, None))


# --- the router app called directly (figure 3) ---------------------------------------------

class DirectASGI:
    """Call an ASGI app with one POST, no socket and no HTTP client in between."""

    def __init__(self, app: Any, client_public_pem: str, body: bytes) -> None:
        self.app = app
        self.body = body
        self.base_headers = [
            (b"host", b"router.bench"),
            (b"content-type", b"application/octet-stream"),
            (b"content-length", str(len(body)).encode()),
            (b"x-public-key", quote(client_public_pem).encode()),
        ]

    async def post(self) -> tuple[int, bytes]:
        headers = [*self.base_headers, (b"x-payload-id", str(uuid.uuid4()).encode())]
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                 "method": "POST", "scheme": "http", "path": POST_PATH,
                 "raw_path": POST_PATH.encode(), "query_string": b"", "root_path": "",
                 "headers": headers, "client": ("127.0.0.1", 40000),
                 "server": ("127.0.0.1", 80)}
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": self.body, "more_body": False}
            return {"type": "http.disconnect"}

        status = 0
        chunks: list[bytes] = []

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, send)
        return status, b"".join(chunks)
