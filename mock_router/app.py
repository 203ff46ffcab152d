"""The Starlette application: the two protocol endpoints, 404/405 in FastAPI's shape, and the
admin endpoints when enabled.

CPU-heavy work (RSA private-key operations, JSON of up to 16 MiB, AES of the answer) runs in a
worker thread so the event loop keeps serving other requests meanwhile.
"""

from __future__ import annotations

import base64
import copy
import itertools
import json
import logging
import platform
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from . import crypto
from .record import SeenRequest
from .scenarios import KEY_PATH, POST_PATH, Scenario
from .validation import (
    Refusal,
    check_api_key,
    check_chat_request,
    check_content_length,
    check_content_type,
    check_payload_id,
    check_plaintext_size,
    check_tier,
    check_tier_policy,
    decode_public_key_header,
    parse_json_object,
    parse_package,
)

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import rsa

    from .router import MockRouter

logger = logging.getLogger("mock_router")

_ARRIVALS = itertools.count(1)

#: The status a SeenRequest records for a dropped connection (no status was ever completed).
DROPPED = 0


class DroppedConnection(httpx.RemoteProtocolError):
    """Raised by the app to cut a connection mid-answer (Scenario.drop).

    Over a socket uvicorn then closes the connection and the client's httpx raises
    RemoteProtocolError. Over ``httpx.ASGITransport`` this exception itself reaches the
    caller, and it *is* an ``httpx.RemoteProtocolError``, so both look alike to a client.
    """


class _DropResponse(Response):
    """Start a 200 answer that promises more bytes than it sends, then fail."""

    def __init__(self) -> None:
        super().__init__(status_code=200)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", b"4096")]})
        await send({"type": "http.response.body", "body": b'{"version": "1.0", ',
                    "more_body": True})
        raise DroppedConnection("mock_router dropped the connection (Scenario.drop)")


@dataclass
class _Seen:
    """Mutable notes about one request, frozen into a SeenRequest at the end."""

    method: str
    path: str
    headers: dict[str, str]
    time: float
    body: bytes = b""
    package: dict[str, Any] | None = None
    plaintext: bytes | None = None
    payload: Any = None
    client_pem: str | None = None
    client_key: Any = None
    tier: str = "standard"
    scenario: Scenario | None = None
    seq: int = field(default_factory=lambda: next(_ARRIVALS))


def _headers(request: Request) -> dict[str, str]:
    out: dict[str, str] = {}
    for raw_name, raw_value in request.headers.raw:
        name = raw_name.decode("latin-1").lower()
        value = raw_value.decode("latin-1")
        out[name] = f"{out[name]}, {value}" if name in out else value
    return out


def _safe_for_log(value: str | None) -> str:
    if value is None:
        return "-"
    if 0 < len(value) <= 128 and all("\x21" <= c <= "\x7e" for c in value):
        return value
    return repr(value[:40])


def _error(status: int, detail: str) -> Response:
    return JSONResponse({"detail": detail}, status_code=status)


def _raw_response(sc: Scenario, head_only: bool = False) -> Response:
    """The answer of Scenario.status."""
    code = sc.params["code"]
    body = sc.params["body"]
    ctype = sc.params["content_type"]
    if body is None:
        content, default_type = b"", None
    elif isinstance(body, (bytes, bytearray)):
        content, default_type = bytes(body), "application/octet-stream"
    elif isinstance(body, str):
        content, default_type = body.encode("utf-8"), "text/plain; charset=utf-8"
    else:
        content, default_type = json.dumps(body).encode("utf-8"), "application/json"
    if code < 200 or code in (204, 304) or head_only:
        content = b""  # these answers cannot carry a body on the wire
    headers = dict(sc.params["headers"])
    media = ctype or default_type
    if media and not any(k.lower() == "content-type" for k in headers):
        headers["content-type"] = media
    return Response(content, status_code=code, headers=headers)


def _metadata(payload_id: str, tier: str, now: int) -> dict[str, Any]:
    return {
        "payload_id": payload_id,
        "processed_at": now,
        "is_encrypted": True,
        "response_status": "success",
        "security_tier": tier,
        "memory_protection": {
            "platform": platform.system().lower() or "linux",
            "memory_locking": False,
            "secure_zeroing": True,
            "core_dump_prevention": False,
        },
        "cuda_device": {"available": False, "device_hash": _device_hash()},
    }


def _device_hash() -> str:
    from .router import FAKE_DEVICE_HASH

    return FAKE_DEVICE_HASH


def _flip(b64text: str) -> str:
    raw = bytearray(base64.b64decode(b64text))
    if not raw:
        return crypto.b64(b"\x00")
    raw[0] ^= 0x01
    return crypto.b64(bytes(raw))


class _Handlers:
    def __init__(self, router: MockRouter) -> None:
        self.router = router

    # -- common ------------------------------------------------------------------------
    async def _before(self, path: str) -> tuple[Scenario | None, bool]:
        """Take this request's scenario, draw the injected failure, wait the latency."""
        sc = self.router.scenarios.take(path)
        failure = sc is None and self.router.draw_failure()
        if self.router.latency > 0:
            await anyio.sleep(self.router.latency)
        if sc is not None and sc.kind == "delay":
            await anyio.sleep(sc.params["seconds"])
        return sc, failure

    def _finish(self, seen: _Seen, status: int, refusal: Refusal | None,
                scenario_name: str | None = None) -> None:
        self.router.record.add(SeenRequest(
            method=seen.method, path=seen.path, headers=seen.headers, body=seen.body,
            package=seen.package, plaintext=seen.plaintext, payload=seen.payload,
            client_public_key_pem=seen.client_pem, payload_id=seen.headers.get("x-payload-id"),
            status=status, refusal=refusal.detail if refusal else None, time=seen.time,
            scenario=scenario_name, security_tier=seen.headers.get("x-security-tier"),
            seq=seen.seq))
        logger.info("%s %s %s payload_id=%s%s%s", seen.method, seen.path,
                    status if status != DROPPED else "dropped",
                    _safe_for_log(seen.headers.get("x-payload-id")),
                    f" scenario={scenario_name}" if scenario_name else "",
                    f" refused: {refusal.reason}" if refusal else "")

    def _special(self, seen: _Seen, sc: Scenario | None, failure: bool,
                 refusal: Refusal | None, head_only: bool = False) -> Response | None:
        """The answer of a status/drop scenario or an injected failure, else None."""
        if failure:
            self._finish(seen, self.router.failure_status, refusal, "failure")
            return _error(self.router.failure_status, "injected failure (mock_router "
                          "--failure-rate)")
        if sc is None:
            return None
        if sc.kind == "status":
            self._finish(seen, sc.params["code"], refusal, "status")
            return _raw_response(sc, head_only)
        if sc.kind == "drop":
            self._finish(seen, DROPPED, refusal, "drop")
            return _DropResponse()
        return None

    # -- GET /pki/public_key -------------------------------------------------------------
    async def public_key(self, request: Request) -> Response:
        seen = _Seen(request.method, request.url.path, _headers(request), time.time())
        sc, failure = await self._before(KEY_PATH)
        special = self._special(seen, sc, failure, None, request.method == "HEAD")
        if special is not None:
            return special
        self._finish(seen, 200, None, "delay" if sc else None)
        # What FastAPI's PlainTextResponse sends: text/plain; charset=utf-8.
        return PlainTextResponse(self.router.public_key_pem)

    # -- POST /v1/chat/secure_completion -------------------------------------------------
    async def secure_completion(self, request: Request) -> Response:
        seen = _Seen(request.method, request.url.path, _headers(request), time.time())
        sc, failure = await self._before(POST_PATH)
        refusal: Refusal | None = None
        body: bytes | None = None
        try:
            await self._check(request, seen)
        except Refusal as exc:
            refusal = exc
        if refusal is None:
            # One worker-thread hop for all the RSA/AES/JSON work of the request.
            answer = not failure and (sc is None or sc.kind not in ("status", "drop"))
            refusal, body = await anyio.to_thread.run_sync(self._process, seen, sc, answer)
        special = self._special(seen, sc, failure, refusal)
        if special is not None:
            return special
        if refusal is not None:
            self._finish(seen, refusal.status, refusal, sc.kind if sc else None)
            return _error(refusal.status, refusal.detail)
        assert body is not None  # no failure and no status/drop scenario: an answer was made
        self._finish(seen, 200, None, sc.kind if sc else None)
        if sc is not None and sc.kind == "content_type":
            media = sc.params["value"]
            if media is None:  # Response adds no Content-Type without a media type
                return Response(body, status_code=200)
            return Response(body, status_code=200, headers={"content-type": media})
        return Response(body, status_code=200, media_type="application/json")

    def _process(self, seen: _Seen, sc: Scenario | None, answer: bool
                 ) -> tuple[Refusal | None, bytes | None]:
        """Decrypt and check the package, then (when asked) build the encrypted answer.

        Runs in a worker thread so the event loop keeps serving while RSA works.
        """
        try:
            self._decrypt(seen)
            return None, self._answer(seen, sc) if answer else None
        except Refusal as exc:
            return exc, None

    async def _read_body(self, request: Request) -> bytes:
        limit = self.router.max_body_bytes
        chunks: list[bytes] = []
        size = 0
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise Refusal(413, f"request body too large: more than {limit} bytes")
                chunks.append(chunk)
        except ClientDisconnect:
            raise Refusal(400, "client disconnected before the body was complete") from None
        return b"".join(chunks)

    async def _check(self, request: Request, seen: _Seen) -> None:
        """The checks up to the package, in order (see validation.py); fills ``seen``.

        The package checks and decryption follow in :meth:`_process`.
        """
        h = seen.headers
        check_content_length(h.get("content-length"), self.router.max_body_bytes)
        seen.body = await self._read_body(request)
        check_api_key(h.get("authorization"), self.router.api_keys)
        check_content_type(h.get("content-type"))
        check_payload_id(h.get("x-payload-id"))
        seen.tier = check_tier(h.get("x-security-tier"))
        seen.client_pem, seen.client_key = decode_public_key_header(h.get("x-public-key"))

    def _decrypt(self, seen: _Seen) -> None:
        seen.package, fields = parse_package(seen.body)
        key = self.router.current_key().private
        try:
            plaintext = crypto.decrypt(key, fields.encrypted_aes_key, fields.ciphertext,
                                       fields.nonce, fields.tag)
        except crypto.DecryptionFailed:
            raise Refusal(400, "decryption failed") from None
        seen.plaintext = plaintext
        check_plaintext_size(plaintext)
        seen.payload = parse_json_object(plaintext, "decrypted payload")
        check_chat_request(seen.payload)
        check_tier_policy(self.router.tier_policy, seen.tier, seen.payload["model"])

    def _answer(self, seen: _Seen, sc: Scenario | None) -> bytes:
        """Build, shape (scenario) and encrypt the 200 answer (runs in a worker thread)."""
        payload_id = seen.headers["x-payload-id"]
        now = int(time.time())
        kind = sc.kind if sc else None
        params = sc.params if sc else {}
        meta = _metadata(payload_id, seen.tier, now)
        if kind == "plaintext":
            plaintext = params["raw"]
        else:
            if kind == "completion":
                completion = copy.deepcopy(params["obj"])
                own = completion.get("_metadata")
                completion["_metadata"] = {**meta, **(own if isinstance(own, dict) else {})}
            else:
                completion_id = "chatcmpl-" + crypto.hashlib_sha256_hex(payload_id)[:24]
                completion = self.router.model.complete(seen.payload, completion_id=completion_id,
                                                        created=now)
                completion["_metadata"] = meta
            if kind == "payload_id":
                if params["value"] is None:
                    completion["_metadata"].pop("payload_id", None)
                else:
                    completion["_metadata"]["payload_id"] = params["value"]
            elif kind == "no_metadata":
                completion.pop("_metadata", None)
            plaintext = json.dumps(completion).encode("utf-8")
        recipient: rsa.RSAPublicKey = (self.router.other_key() if kind == "wrong_recipient"
                                       else seen.client_key)
        package: dict[str, Any] = crypto.encrypt(
            recipient, plaintext, params["padding"] if kind == "key_wrap" else None)
        package["processed_at"] = now
        if kind == "tamper":
            name = params["field"]
            if name == "encrypted_aes_key":
                package[name] = _flip(package[name])
            else:
                package["encrypted_payload"][name] = _flip(package["encrypted_payload"][name])
        elif kind == "package":
            for name, value in params["overrides"].items():
                if value is None:
                    package.pop(name, None)
                else:
                    package[name] = copy.deepcopy(value)
        return json.dumps(package).encode("utf-8")

    # -- 404 / 405 -----------------------------------------------------------------------
    async def http_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        seen = _Seen(request.method, request.url.path, _headers(request), time.time())
        detail = exc.detail if isinstance(exc.detail, str) else "error"
        refusal = Refusal(exc.status_code, detail)
        if not request.url.path.startswith("/_mock/"):
            self._finish(seen, exc.status_code, refusal)
        return JSONResponse({"detail": detail}, status_code=exc.status_code,
                            headers=dict(exc.headers or {}))


def build_app(router: MockRouter) -> Starlette:
    """The ASGI app of ``router`` (admin routes only when ``router.admin``)."""
    handlers = _Handlers(router)
    routes = [
        Route(KEY_PATH, handlers.public_key, methods=["GET"]),
        Route(POST_PATH, handlers.secure_completion, methods=["POST"]),
    ]
    if router.admin:
        from .admin import admin_routes

        routes.extend(admin_routes(router))
    return Starlette(routes=routes, exception_handlers={HTTPException: handlers.http_error})
