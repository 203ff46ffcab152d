"""Small robustness properties of mock_router found while building the fault tests."""

from __future__ import annotations

import httpx
from cryptography.hazmat.primitives.asymmetric import rsa

from mock_router import POST_PATH, MockRouter, Scenario


async def test_status_scenario_with_unencodable_header(
        rel_server_key: rsa.RSAPrivateKey) -> None:
    router = MockRouter(rel_server_key)
    try:
        router.push(Scenario.status(503, {"detail": "x"}, headers={"Retry-After": "\u0663"}))
    except ValueError:
        return  # refused when made: fine
    transport = httpx.ASGITransport(app=router.app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://router.test") as http:
        answer = await http.post(POST_PATH, content=b"{}")
    assert answer.status_code == 503
