"""In-process use without a socket: an httpx transport, and a respx route for code that
builds its own httpx clients (such as the official ``nomyo`` client).

    transport = httpx.ASGITransport(app=router.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://router") as client: ...

    with respx.mock:                       # or respx.mock(assert_all_called=False)
        respx_route(router, "http://router.test")
        ...  # any httpx.AsyncClient aimed at http://router.test now reaches the router

A Scenario.drop raises ``DroppedConnection`` (an ``httpx.RemoteProtocolError``) to the caller
in-process, where a socket would be cut.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from .router import MockRouter


def transport(router: MockRouter) -> httpx.ASGITransport:
    """An httpx transport that hands requests to the router's app directly."""
    return httpx.ASGITransport(app=router.app)


async def _forward(router: MockRouter, request: httpx.Request) -> httpx.Response:
    body = await request.aread()
    copy = httpx.Request(request.method, request.url, headers=request.headers, content=body)
    answer = await httpx.ASGITransport(app=router.app).handle_async_request(copy)
    content = await answer.aread()
    return httpx.Response(answer.status_code, headers=answer.headers, content=content,
                          request=request)


def respx_route(router: MockRouter, base_url: str, *, respx_mock: Any = None,
                sync: bool = False) -> Any:
    """Route every request under ``base_url`` to the router (returns the respx route).

    ``respx_mock``: the respx router to add to (default: the global ``respx`` one, which must
    be active, e.g. inside ``with respx.mock:``). The default side effect is async, for
    ``httpx.AsyncClient``; ``sync=True`` serves ``httpx.Client`` by running the app on a
    private event loop in a worker thread.
    """
    import respx

    mock = respx_mock if respx_mock is not None else respx
    route = mock.route(url__startswith=base_url.rstrip("/"))

    async def forward_async(request: httpx.Request) -> httpx.Response:
        return await _forward(router, request)

    def forward_sync(request: httpx.Request) -> httpx.Response:
        request.read()
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(asyncio.run, _forward(router, request)).result()

    route.side_effect = forward_sync if sync else forward_async
    return route
