"""The Starlette application: the two protocol endpoints, 404/405 in FastAPI's shape, and the
admin endpoints when enabled.

CPU-heavy work (RSA private-key operations, JSON of up to 16 MiB, AES of the answer) runs in a
worker thread so the event loop keeps serving other requests meanwhile.

Every POST is recorded with what the conformance suite needs to judge it whatever the router
answered (record.py): the refusal code, the package parsed whenever the body is a JSON object,
the server keys for the tolerant decryption. A package that decrypts enters the replay cache
(replay.py) unless the answer is a scripted failure (``MockRouter.replay_includes_failures``).
"""

from __future__ import annotations

import base64
import copy
import itertools
import json
import logging
import platform
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from . import crypto, shaping
from .model import scripted_completion
from .record import SeenRequest
from .scenarios import (
    KEY_PATH,
    POST_PATH,
    REQUEST_ID,
    Scenario,
    tamper_base64,
    transform_payload_id,
)
from .validation import (
    DEFAULT_TIER,
    TIERS,
    Refusal,
    check_api_key,
    check_chat_request,
    check_content_encoding,
    check_content_length,
    check_content_type,
    check_payload_id,
    check_plaintext_size,
    check_single,
    check_tier,
    check_tier_policy,
    decode_public_key_header,
    parse_json_object,
    parse_package,
)

if TYPE_CHECKING:
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
    client_key_bits: int | None = None
    tier: str = "standard"
    scenario: Scenario | None = None
    notes: tuple[str, ...] = ()
    server_keys: tuple[Any, ...] = ()
    seq: int = field(default_factory=lambda: next(_ARRIVALS))


class _CannotScript(Exception):
    """The request lacks what a scripted answer needs (X-Payload-ID, a usable X-Public-Key)."""


def _lenient_client_key(value: str | None) -> rsa.RSAPublicKey | None:
    """The X-Public-Key's RSA key, whatever its size or label, for the record and for scripted
    answers (never to accept a request); None when there is none."""
    if not value:
        return None
    try:
        key = serialization.load_pem_public_key(urllib.parse.unquote_to_bytes(value))
    except Exception:  # not a key at all
        return None
    return key if isinstance(key, rsa.RSAPublicKey) else None


def _lenient_object(body: bytes) -> dict[str, Any] | None:
    """The body as a JSON object for the record (duplicate names: the last wins), or None."""
    if not body:
        return None
    try:
        value = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


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


def _plaintext_text(completion: dict[str, Any], sc: Scenario | None) -> str:
    """The answer's plaintext JSON, shaped by a duplicate/large/nested scenario aimed at it."""
    where = sc.params.get("where") if sc is not None else None
    if sc is None or where not in ("plaintext", "metadata"):
        return json.dumps(completion)
    if sc.kind == "duplicate":
        path = ("_metadata",) if where == "metadata" else ()
        return shaping.with_duplicate(completion, path, sc.params["member"], sc.params["value"])
    if sc.kind == "large":
        return shaping.padded_completion(completion, sc.params["size"])
    if sc.kind == "nested":
        return shaping.nested(completion, sc.params["depth"])
    return json.dumps(completion)


def _package_text(package: dict[str, Any], sc: Scenario | None) -> str:
    """The answer's body, shaped by a duplicate/large/nested scenario aimed at the package."""
    where = sc.params.get("where") if sc is not None else None
    if sc is None or where not in ("package", "encrypted_payload"):
        return json.dumps(package)
    if sc.kind == "duplicate":
        path = ("encrypted_payload",) if where == "encrypted_payload" else ()
        return shaping.with_duplicate(package, path, sc.params["member"], sc.params["value"])
    if sc.kind == "large":
        return shaping.padded_package(package, sc.params["size"])
    if sc.kind == "nested":
        return shaping.nested(package, sc.params["depth"])
    return json.dumps(package)


def _own(value: Any, payload_id: str) -> Any:
    """A scenario value with ``REQUEST_ID`` standing for the request's own payload id."""
    return payload_id if value == REQUEST_ID else copy.deepcopy(value)


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
            seq=seen.seq, refusal_code=refusal.code if refusal else None, notes=seen.notes,
            client_key_bits=seen.client_key_bits, server_keys=seen.server_keys))
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
        seen.server_keys = self.router.record_keys()
        sc, failure = await self._before(POST_PATH)
        refusal: Refusal | None = None
        try:
            await self._check(request, seen)
        except Refusal as exc:
            refusal = exc
        # One worker-thread hop for all the RSA/AES/JSON work of the request.
        answer = not failure and (sc is None or sc.kind not in ("status", "drop"))
        refusal, body = await anyio.to_thread.run_sync(self._process, seen, sc, answer, refusal)
        special = self._special(seen, sc, failure, refusal)
        if special is not None:
            return special
        if body is None:
            assert refusal is not None  # no answer is made only for a refusal
            self._finish(seen, refusal.status, refusal, sc.kind if sc else None)
            return _error(refusal.status, refusal.detail)
        # 200: a valid request, or a scripted answer (always=True) despite ``refusal``
        self._finish(seen, 200, refusal, sc.kind if sc else None)
        if sc is not None and sc.kind == "content_type":
            media = sc.params["value"]
            if media is None:  # Response adds no Content-Type without a media type
                return Response(body, status_code=200)
            return Response(body, status_code=200, headers={"content-type": media})
        return Response(body, status_code=200, media_type="application/json")

    def _process(self, seen: _Seen, sc: Scenario | None, answer: bool,
                 refusal: Refusal | None) -> tuple[Refusal | None, bytes | None]:
        """Decrypt and check the package (unless ``refusal`` already decided), fill in the
        record's evidence, then (when ``answer``) build the encrypted answer: for a valid
        request, or for any request when the scenario says ``always``.

        Runs in a worker thread so the event loop keeps serving while RSA works.
        """
        if refusal is None:
            try:
                self._decrypt(seen, remember=answer or self.router.replay_includes_failures)
            except Refusal as exc:
                refusal = exc
        if seen.package is None:
            seen.package = _lenient_object(seen.body)
        if seen.client_key_bits is None:
            key = _lenient_client_key(seen.headers.get("x-public-key"))
            seen.client_key_bits = key.key_size if key is not None else None
        scripted = sc is not None and sc.always
        if not answer or (refusal is not None and not scripted):
            return refusal, None
        try:
            return refusal, self._answer(seen, sc, scripted)
        except Refusal as exc:  # the fake model refuses a parameter
            return exc, None
        except _CannotScript:
            return refusal, None

    async def _read_body(self, request: Request) -> bytes:
        limit = self.router.max_body_bytes
        chunks: list[bytes] = []
        size = 0
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise Refusal(413, f"request body too large: more than {limit} bytes",
                                  code="body_too_large")
                chunks.append(chunk)
        except ClientDisconnect:
            raise Refusal(400, "client disconnected before the body was complete",
                          code="body_incomplete") from None
        return b"".join(chunks)

    async def _check(self, request: Request, seen: _Seen) -> None:
        """The checks up to the package, in order (see validation.py); fills ``seen``.

        The package checks and decryption follow in :meth:`_process`.
        """
        h = seen.headers
        counts: dict[str, int] = {}
        for raw_name, _ in request.headers.raw:
            name = raw_name.decode("latin-1").lower()
            counts[name] = counts.get(name, 0) + 1
        check_content_length(h.get("content-length"), self.router.max_body_bytes)
        seen.body = await self._read_body(request)
        check_single(counts, "authorization")
        check_api_key(h.get("authorization"), self.router.api_keys)
        check_single(counts, "content-type")
        check_content_type(h.get("content-type"))
        check_content_encoding(h.get("content-encoding"))
        check_single(counts, "x-payload-id", "x-security-tier", "x-public-key")
        check_payload_id(h.get("x-payload-id"))
        seen.tier = check_tier(h.get("x-security-tier"))
        seen.client_pem, seen.client_key = decode_public_key_header(h.get("x-public-key"))
        seen.client_key_bits = seen.client_key.key_size

    def _decrypt(self, seen: _Seen, *, remember: bool) -> None:
        """Steps 5-11 of the order in validation.py. ``remember``: a package that decrypts
        enters the replay cache (False for a scripted failure answer, see
        MockRouter.replay_includes_failures)."""
        seen.package, fields = parse_package(seen.body)
        seen.notes = fields.notes
        cache = self.router.replay_cache
        if cache.seen_before(fields.encrypted_aes_key, add=False):  # step 7, before the RSA
            raise Refusal(409, "replayed request", code="replayed_request")
        failure: crypto.DecryptionFailed | None = None
        for key in self.router.decryption_keys():  # the current key, then graced old ones
            try:
                plaintext = crypto.decrypt(key, fields.encrypted_aes_key, fields.ciphertext,
                                           fields.nonce, fields.tag)
                break
            except crypto.DecryptionFailed as exc:
                failure = failure or exc
        else:
            step = ("AES key did not unwrap" if failure is not None and failure.step == "unwrap"
                    else "GCM did not verify")
            raise Refusal(400, "decryption failed", reason=f"decryption failed ({step})",
                          code="decryption_failed")
        seen.plaintext = plaintext
        # atomic check-and-add: of two concurrent copies only the first is answered
        if cache.seen_before(fields.encrypted_aes_key, add=remember):
            raise Refusal(409, "replayed request", code="replayed_request")
        check_plaintext_size(plaintext)
        seen.payload = parse_json_object(plaintext, "decrypted payload", prefix="plaintext")
        check_chat_request(seen.payload)
        check_tier_policy(self.router.tier_policy, seen.tier, seen.payload["model"])

    def _answer(self, seen: _Seen, sc: Scenario | None, scripted: bool) -> bytes:
        """Build, shape (scenario) and encrypt the 200 answer (runs in a worker thread).

        ``scripted``: from the headers alone (the fixed completion, never the model's), for a
        scenario with ``always=True``, whatever the request's package holds.
        """
        payload_id = seen.headers.get("x-payload-id")
        client_key = seen.client_key
        if scripted and client_key is None:
            client_key = _lenient_client_key(seen.headers.get("x-public-key"))
        if payload_id is None or client_key is None:
            raise _CannotScript
        tier = seen.tier
        if scripted:  # the tier header may not have been checked before the refusal
            asked = seen.headers.get("x-security-tier")
            tier = asked if asked in TIERS else DEFAULT_TIER
        now = int(time.time())
        kind = sc.kind if sc else None
        params = sc.params if sc else {}
        meta = _metadata(payload_id, tier, now)
        completion_id = "chatcmpl-" + crypto.hashlib_sha256_hex(payload_id)[:24]
        if kind == "plaintext":
            plaintext = params["raw"]
        else:
            if kind == "completion":
                completion = copy.deepcopy(params["obj"])
                own = completion.get("_metadata")
                completion["_metadata"] = {**meta, **(own if isinstance(own, dict) else {})}
            else:
                completion = (scripted_completion(completion_id, now) if scripted
                              else self.router.model.complete(
                                  seen.payload, completion_id=completion_id, created=now))
                completion["_metadata"] = meta
            if kind == "payload_id":
                if params["value"] is None:
                    completion["_metadata"].pop("payload_id", None)
                else:
                    completion["_metadata"]["payload_id"] = _own(params["value"], payload_id)
            elif kind == "payload_id_like":
                completion["_metadata"]["payload_id"] = transform_payload_id(
                    payload_id, params["transform"])
            elif kind == "no_metadata":
                completion.pop("_metadata", None)
            elif kind == "metadata":
                for name, value in params["overrides"].items():
                    if value is None:
                        completion["_metadata"].pop(name, None)
                    else:
                        completion["_metadata"][name] = _own(value, payload_id)
            plaintext = _plaintext_text(completion, sc).encode("utf-8")
        recipient: rsa.RSAPublicKey = (self.router.other_key() if kind == "wrong_recipient"
                                       else client_key)
        try:
            package: dict[str, Any] = crypto.encrypt(
                recipient, plaintext, params["padding"] if kind == "key_wrap" else None)
        except ValueError:  # a key too small to wrap an AES key (only a scripted answer's)
            if scripted:
                raise _CannotScript from None
            raise
        package["processed_at"] = now
        if kind == "tamper":
            name = params["field"]
            holder = package if name == "encrypted_aes_key" else package["encrypted_payload"]
            how = params.get("how", "flip")
            changed = _flip(holder[name]) if how == "flip" else tamper_base64(holder[name], how)
            assert changed is not None  # strip-padding is for the tag, always "=="-padded
            holder[name] = changed
        elif kind == "package":
            for name, value in params["overrides"].items():
                if value is None:
                    package.pop(name, None)
                else:
                    package[name] = _own(value, payload_id)
        elif kind == "payload_id" and "top_level" in params:
            package["payload_id"] = _own(params["top_level"], payload_id)
        elif kind == "payload_member":
            package["encrypted_payload"][params["name"]] = copy.deepcopy(params["value"])
        return _package_text(package, sc).encode("utf-8")

    # -- 404 / 405 -----------------------------------------------------------------------
    async def http_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        seen = _Seen(request.method, request.url.path, _headers(request), time.time())
        detail = exc.detail if isinstance(exc.detail, str) else "error"
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        refusal = Refusal(exc.status_code, detail, code=code)
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
