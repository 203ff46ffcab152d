"""The admin endpoints: absent unless enabled; scenarios, seen, reset, rotate-key."""

from __future__ import annotations

import httpx
import pytest

from mock_router import MockRouter

from .wire import POST_PATH

pytestmark = pytest.mark.asyncio(loop_scope="session")

CHAT = {"model": "m", "messages": [{"role": "user", "content": "admin test"}]}


@pytest.fixture
def admin_router(server_key):
    return MockRouter(server_key, key_size=2048, admin=True)


@pytest.fixture
async def admin_http(admin_router):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=admin_router.app),
                                 base_url="http://r") as c:
        yield c


@pytest.mark.parametrize(("method", "path"), [
    ("POST", "/_mock/scenarios"), ("GET", "/_mock/scenarios"), ("GET", "/_mock/seen"),
    ("POST", "/_mock/reset"), ("POST", "/_mock/rotate-key")])
async def test_admin_absent_by_default(http, router, method, path):
    r = await http.request(method, path, json=[])
    assert r.status_code == 404
    assert router.seen == []  # admin paths are never recorded


async def test_push_scenarios_over_http(admin_http, admin_router, wire):
    r = await admin_http.post("/_mock/scenarios", json={"scenarios": [
        {"kind": "status", "code": 429, "body": {"detail": "slow down"}, "times": 2},
        {"kind": "status", "code": 503, "path": "/pki/public_key"},
        {"kind": "tamper", "field": "tag"},
        {"kind": "package", "overrides": {"version": "0.9"}},
        {"kind": "delay", "seconds": 0},
    ]})
    assert r.status_code == 200, r.text
    assert r.json()["queued"] == 5
    pending = (await admin_http.get("/_mock/scenarios")).json()["pending"]
    assert [p["kind"] for p in pending] == ["status", "status", "tamper", "package", "delay"]
    assert pending[0]["remaining"] == 2
    assert (await admin_http.get("/pki/public_key")).status_code == 503
    pem = admin_router.public_key_pem
    codes = [(await wire.create(admin_http, CHAT, server_pem=pem, decrypt=False))
             .response.status_code for _ in range(3)]
    assert codes == [429, 429, 200]
    res = await wire.create(admin_http, CHAT, server_pem=pem, decrypt=False)
    assert res.response.json()["version"] == "0.9"


@pytest.mark.parametrize(("body", "needle"), [
    ({"scenarios": [{"kind": "nope"}]}, "unknown scenario kind"),
    ({"scenarios": [{"kind": "status"}]}, "needs 'code'"),
    ({"scenarios": [{"kind": "tamper", "field": "x"}]}, "tamper field"),
    ({"scenarios": "x"}, "expected"),
    ([1], "JSON object"),
])
async def test_bad_scenario_descriptions(admin_http, admin_router, body, needle):
    r = await admin_http.post("/_mock/scenarios", json=body)
    assert r.status_code == 400
    assert needle in r.json()["detail"]
    assert admin_router.scenarios.pending() == []


async def test_bad_json_to_admin(admin_http):
    r = await admin_http.post("/_mock/scenarios", content=b"{")
    assert r.status_code == 400


async def test_seen_over_http_shows_plaintext_but_not_the_api_key(admin_http, wire):
    res = await wire.create(admin_http, CHAT, api_key="hush")
    await admin_http.post(POST_PATH, content=b"x")
    data = (await admin_http.get("/_mock/seen")).json()
    get, post, bad = data["seen"]
    assert get["path"] == "/pki/public_key"
    assert post["payload"] == CHAT
    assert post["payload_id"] == res.payload_id
    assert post["headers"]["authorization"] == "<redacted>"
    assert "hush" not in (await admin_http.get("/_mock/seen")).text
    assert bad["status"] == 415
    assert bad["refusal"]
    last = (await admin_http.get("/_mock/seen", params={"limit": "1"})).json()["seen"]
    assert last == [bad]
    assert (await admin_http.get("/_mock/seen", params={"limit": "x"})).status_code == 400


async def test_reset_and_rotate(admin_http, admin_router, wire):
    await wire.create(admin_http, CHAT)
    await admin_http.post("/_mock/scenarios", json=[{"kind": "drop"}])
    assert (await admin_http.post("/_mock/reset")).status_code == 200
    assert admin_router.seen == []
    assert admin_router.scenarios.pending() == []
    old = admin_router.fingerprint
    r = await admin_http.post("/_mock/rotate-key")
    assert r.json()["fingerprint"] == admin_router.fingerprint != old
    assert admin_router.server_key.key_size == 2048  # rotation keeps the router's key size
