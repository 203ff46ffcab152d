"""The admin endpoints (``--admin`` / ``MockRouter(admin=True)``): script a running router
from outside the process.

They are absent (404) unless switched on, because ``GET /_mock/seen`` shows the decrypted
requests: a person who starts the router with ``--admin`` on their own machine asks for that.
The Authorization header is always shown as ``<redacted>``.

- ``POST /_mock/scenarios``: body ``{"scenarios": [{...}, ...]}`` or a bare list; each item is
  ``{"kind": ..., "times": 1, "path": "/v1/chat/secure_completion", ...}`` with, per kind:
  status ``code``, ``body``, ``content_type``, ``headers``; payload_id ``value``; tamper
  ``field``; package ``overrides`` (object); plaintext ``raw`` (text, sent as UTF-8);
  completion ``obj``; delay ``seconds``; key_wrap ``padding``; content_type ``value``;
  metadata ``overrides`` (object); duplicate ``member``, ``value``, ``where``; large ``size``,
  ``where``; nested ``depth``, ``where``; no_metadata, wrong_recipient, drop, scripted:
  nothing. Answer-shaping kinds also take ``"always": true`` (answer whatever the request
  holds, see scenarios.py). Answers ``{"queued": N, "pending": [...]}``; 400 with a detail
  for a bad description.
- ``GET /_mock/scenarios``: ``{"pending": [{..., "remaining": N}]}``.
- ``GET /_mock/seen?limit=N&evidence=1``: ``{"seen": [...], "dropped": M}`` (the last N,
  default all); each entry has ``refusal_code``, ``notes``, ``client_key_bits``, ``valid``,
  and with ``evidence=1`` also ``tolerant_variant``, ``fault`` and ``faults``.
- ``POST /_mock/reset``: clear scenarios, the record and the replay cache.
- ``POST /_mock/rotate-key``: new server key; answers ``{"fingerprint": ...}``. An optional
  body ``{"grace": SECONDS}`` keeps the old key decrypting that long (SRV-36).
"""

from __future__ import annotations

import functools
import json
from typing import TYPE_CHECKING

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .scenarios import Scenario

if TYPE_CHECKING:
    from .router import MockRouter

MAX_ADMIN_BODY = 16 * 1024 * 1024


def _dump(obj: object) -> Response:
    """JSON that never fails: ASCII-escaped (lone surrogates survive), NaN allowed."""
    return Response(json.dumps(obj, ensure_ascii=True, allow_nan=True),
                    media_type="application/json")


def _pending(router: MockRouter) -> list[dict[str, object]]:
    return [{**sc.describe(), "remaining": n} for sc, n in router.scenarios.pending()]


def admin_routes(router: MockRouter) -> list[Route]:
    """The /_mock/* routes bound to ``router``."""

    async def push(request: Request) -> Response:
        body = await request.body()
        if len(body) > MAX_ADMIN_BODY:
            return JSONResponse({"detail": "admin request too large"}, status_code=413)
        try:
            data = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            return JSONResponse({"detail": "body is not UTF-8 JSON"}, status_code=400)
        items = data.get("scenarios") if isinstance(data, dict) else data
        if not isinstance(items, list):
            return JSONResponse({"detail": "expected {\"scenarios\": [...]} or a list"},
                                status_code=400)
        try:
            scenarios = [Scenario.from_description(item) for item in items]
        except (ValueError, TypeError) as exc:
            return JSONResponse({"detail": str(exc)}, status_code=400)
        router.push(*scenarios)
        return _dump({"queued": len(scenarios), "pending": _pending(router)})

    async def pending(request: Request) -> Response:
        return _dump({"pending": _pending(router)})

    async def seen(request: Request) -> Response:
        items = router.seen
        limit = request.query_params.get("limit")
        if limit is not None:
            if not limit.isdigit():
                return JSONResponse({"detail": "limit must be a non-negative integer"},
                                    status_code=400)
            items = items[len(items) - int(limit):] if int(limit) else []
        evidence = request.query_params.get("evidence", "") not in ("", "0", "false")

        def render() -> list[dict[str, object]]:
            return [s.to_json(evidence=evidence) for s in items]

        rendered = await anyio.to_thread.run_sync(render) if evidence else render()
        return _dump({"seen": rendered, "dropped": router.record.dropped})

    async def reset(request: Request) -> JSONResponse:
        router.reset()
        return JSONResponse({"reset": True})

    async def rotate(request: Request) -> JSONResponse:
        body = await request.body()
        grace: object = 0.0
        if body.strip():
            try:
                data = json.loads(body.decode("utf-8"))
            except (UnicodeDecodeError, ValueError, RecursionError):
                return JSONResponse({"detail": "body is not UTF-8 JSON"}, status_code=400)
            grace = data.get("grace", 0.0) if isinstance(data, dict) else None
        if isinstance(grace, bool) or not isinstance(grace, (int, float)) or not grace >= 0:
            return JSONResponse({"detail": "grace must be a number of seconds >= 0"},
                                status_code=400)
        fp = await anyio.to_thread.run_sync(
            functools.partial(router.rotate_key, grace=float(grace)))
        return JSONResponse({"fingerprint": fp})

    return [
        Route("/_mock/scenarios", push, methods=["POST"]),
        Route("/_mock/scenarios", pending, methods=["GET"]),
        Route("/_mock/seen", seen, methods=["GET"]),
        Route("/_mock/reset", reset, methods=["POST"]),
        Route("/_mock/rotate-key", rotate, methods=["POST"]),
    ]
