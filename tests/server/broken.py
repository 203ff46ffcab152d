"""Broken routers: mock_router's app behind an ASGI middleware that adds exactly one defect.

The middleware sees each request and answer whole (bodies up to 16 MiB; larger or chunked
bodies pass through untouched, so the size checks meet the router's own behaviour), and
gives the defect four places to act: the key endpoint's answer, the request before the
router sees it, the completion inside a 200 answer, and the answer as it leaves.

To change what is inside a 200 answer, the middleware puts its own key into X-Public-Key,
opens the router's answer, lets the defect change the completion or the sealing, and seals
the result to the client's key (`reseal`). Request-side defects that need the plaintext open
the request with the router's key and seal it again (`open_request`, `seal_request`).
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from conformance.server.wire import (
    PROTOCOL_WRAP,
    b64,
    encode_public_key,
    gcm_open,
    public_pem,
    seal,
    strict_b64decode,
    unwrap,
)

KEY_PATH = "/pki/public_key"
POST_PATH = "/v1/chat/secure_completion"
BUFFER_LIMIT = 16 * 1024 * 1024
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass
class Request:
    """One request as the middleware holds it (header names lower-case, in order)."""

    method: str
    headers: list[tuple[str, str]]
    body: bytes
    notes: dict[str, Any] = field(default_factory=dict)

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k == name), None)

    def set_header(self, name: str, value: str | None) -> None:
        self.headers = [(k, v) for k, v in self.headers if k != name]
        if value is not None:
            self.headers.append((name, value))


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    @property
    def detail(self) -> str | None:
        try:
            value = json.loads(self.body)
        except ValueError:
            return None
        return value.get("detail") if isinstance(value, dict) else None


def json_response(status: int, detail: Any) -> Response:
    return Response(status, [("content-type", "application/json")],
                    json.dumps({"detail": detail}).encode())


@dataclass(frozen=True)
class Keys:
    """The router's private key, and the middleware's own pair for resealing answers."""

    server: rsa.RSAPrivateKey
    own: rsa.RSAPrivateKey


class Defect:
    """One defect; the defaults change nothing. `fails`: the ids the suite must fail."""

    name = "none"
    fails: tuple[str, ...] = ()
    also: tuple[str, ...] = ()  # ids run too (blocking ones a BLOCKED verdict names)
    options: tuple[str, ...] = ()  # extra suite options (a declared policy)
    router: dict[str, Any] = {}  # noqa: RUF012 - MockRouter keyword arguments, read only
    reseal = False  # whether 200 answers go through `completion` and `seal`

    def key_answer(self, response: Response, keys: Keys) -> Response:
        return response

    async def request(self, request: Request, keys: Keys) -> Request | Response:
        return request

    def completion(self, completion: dict[str, Any], request: Request) -> dict[str, Any]:
        return completion

    def seal(self, plaintext: bytes, client: rsa.RSAPublicKey, request: Request
             ) -> dict[str, Any]:
        return seal(client, plaintext).package

    def content_type(self) -> str:
        return "application/json"

    async def response(self, response: Response, request: Request, keys: Keys) -> Response:
        return response

    def wants_reseal(self, request: Request, client: rsa.RSAPublicKey) -> bool:
        """Reseal only answers to keys the router itself would take (one defect at a time)."""
        text = urllib.parse.unquote(request.header("x-public-key") or "").strip()
        return (text.startswith("-----BEGIN PUBLIC KEY-----") and text.count("BEGIN") == 1
                and 2048 <= client.key_size <= 16384 and client.public_numbers().e == 65537)

    def passthrough(self, scope: dict[str, Any]) -> Response | None:
        """An answer for a request whose body is not buffered (None: the router's)."""
        return None


# -- request helpers -------------------------------------------------------------------------

@dataclass(frozen=True)
class Opened:
    package: dict[str, Any]
    aes_key: bytes
    nonce: bytes
    plaintext: bytes


def open_request(body: bytes, server: rsa.RSAPrivateKey) -> Opened | None:
    """The request's plaintext (None when the package does not open the protocol's way)."""
    try:
        package = json.loads(body)
        inner = package["encrypted_payload"]
        nonce = strict_b64decode(inner["nonce"])
        data = strict_b64decode(inner["ciphertext"]) + strict_b64decode(inner["tag"])
        aes_key = unwrap(server, strict_b64decode(package["encrypted_aes_key"]), PROTOCOL_WRAP)
    except (ValueError, KeyError, TypeError):
        return None
    if aes_key is None:
        return None
    plaintext = gcm_open(aes_key, nonce, data)
    return None if plaintext is None else Opened(package, aes_key, nonce, plaintext)


def seal_request(package: dict[str, Any], plaintext: bytes, server: rsa.RSAPrivateKey) -> bytes:
    """`package` with `plaintext` sealed anew to the router (other members kept)."""
    fresh = seal(server.public_key(), plaintext).package
    out = {**package, "encrypted_payload": fresh["encrypted_payload"],
           "encrypted_aes_key": fresh["encrypted_aes_key"]}
    return json.dumps(out).encode()


def client_key(request: Request) -> rsa.RSAPublicKey | None:
    value = request.header("x-public-key")
    if value is None:
        return None
    try:
        key = serialization.load_pem_public_key(urllib.parse.unquote_to_bytes(value))
    except (ValueError, TypeError):
        return None
    return key if isinstance(key, rsa.RSAPublicKey) else None


def reopen(response: Response, own: rsa.RSAPrivateKey) -> bytes | None:
    """The plaintext of the router's answer, sealed to the middleware's own key."""
    try:
        package = json.loads(response.body)
        inner = package["encrypted_payload"]
        aes_key = unwrap(own, strict_b64decode(package["encrypted_aes_key"]), PROTOCOL_WRAP)
        if aes_key is None:
            return None
        return gcm_open(aes_key, strict_b64decode(inner["nonce"]),
                        strict_b64decode(inner["ciphertext"]) + strict_b64decode(inner["tag"]))
    except (ValueError, KeyError, TypeError):
        return None


# -- the middleware --------------------------------------------------------------------------

class BrokenApp:
    """ASGI: `inner` (mock_router's app) behind `defect`."""

    def __init__(self, inner: Any, defect: Defect, keys: Keys) -> None:
        self.inner = inner
        self.defect = defect
        self.keys = keys

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.inner(scope, receive, send)
            return
        if scope["method"] == "GET" and scope["path"] == KEY_PATH:
            answer = await self._call(scope, b"")
            await _send(send, self.defect.key_answer(answer, self.keys))
            return
        length = dict(scope["headers"]).get(b"content-length")
        if scope["method"] != "POST" or length is None or int(length) > BUFFER_LIMIT:
            own = self.defect.passthrough(scope)
            if own is None:
                await self.inner(scope, receive, send)
            else:
                await _send(send, own)
            return
        body = await _read(receive)
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        request = Request("POST", headers, body)
        original = replace(request, headers=list(headers))
        changed = await self.defect.request(request, self.keys)
        if isinstance(changed, Response):
            await _send(send, changed)
            return
        client = client_key(changed) if self.defect.reseal else None
        if client is not None and not self.defect.wants_reseal(changed, client):
            client = None
        if client is not None:
            changed.set_header("x-public-key", encode_public_key(public_pem(self.keys.own)))
        answer = await self._call(_with(scope, changed), changed.body)
        if client is not None and answer.status == 200:
            answer = self._reseal(answer, client, original)
        await _send(send, await self.defect.response(answer, original, self.keys))

    def _reseal(self, answer: Response, client: rsa.RSAPublicKey, request: Request) -> Response:
        plaintext = reopen(answer, self.keys.own)
        if plaintext is None:
            return json_response(500, "broken router: cannot reopen the answer")
        completion = self.defect.completion(json.loads(plaintext), request)
        package = self.defect.seal(json.dumps(completion).encode(), client, request)
        return Response(200, [("content-type", self.defect.content_type())],
                        json.dumps(package).encode())

    async def _call(self, scope: dict[str, Any], body: bytes) -> Response:
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        parts: dict[str, Any] = {"status": 500, "headers": [], "body": b""}

        async def capture(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                parts["status"] = message["status"]
                parts["headers"] = [(k.decode("latin-1").lower(), v.decode("latin-1"))
                                    for k, v in message.get("headers", [])]
            elif message["type"] == "http.response.body":
                parts["body"] += message.get("body", b"")

        await self.inner(scope, receive, capture)
        return Response(parts["status"], parts["headers"], parts["body"])


def _with(scope: dict[str, Any], request: Request) -> dict[str, Any]:
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in request.headers
               if k != "content-length"]
    headers.append((b"content-length", str(len(request.body)).encode()))
    return {**scope, "headers": headers}


async def _read(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _send(send: Send, response: Response) -> None:
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.headers
               if k != "content-length"]
    headers.append((b"content-length", str(len(response.body)).encode()))
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": response.body})


def b64_lines(data: bytes, width: int = 76) -> str:
    """MIME-style base64 with line breaks (what PKG-6 forbids)."""
    text = b64(data)
    return "\n".join(text[i:i + width] for i in range(0, len(text), width))
