"""Keys made once per session; a fresh router per test around the session server key."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from mock_router import MockRouter

from .wire import WireClient


@pytest.fixture
def router(server_key: rsa.RSAPrivateKey) -> MockRouter:
    return MockRouter(server_key)


@pytest.fixture
def wire(client_key: rsa.RSAPrivateKey) -> WireClient:
    return WireClient(client_key)


@pytest.fixture
async def http(router: MockRouter) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=router.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://router.test") as c:
        yield c
