"""The three ways to run the router, each with a full round trip: in-process (ASGITransport
and respx), loopback HTTP and loopback HTTPS; dropped connections over a real socket; and the
official ``nomyo`` client end to end."""

from __future__ import annotations

import ssl
import warnings

import httpx
import pytest
import respx

from mock_router import MockRouter, Scenario, respx_route, serve

pytestmark = pytest.mark.asyncio(loop_scope="session")

CHAT = {"model": "m", "messages": [{"role": "user", "content": "round trip"}]}


def assert_round_trip(res, router: MockRouter) -> None:
    assert res.response.status_code == 200, res.response.text
    out = res.completion
    assert out["choices"][0]["message"]["content"] == "round trip"
    assert out["_metadata"]["payload_id"] == res.payload_id
    assert router.seen[-1].payload == CHAT


async def test_asgi_transport(router, wire):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=router.app),
                                 base_url="http://anything") as http:
        assert_round_trip(await wire.create(http, CHAT), router)


async def test_respx_route_async(router, wire):
    with respx.mock(assert_all_mocked=True) as mock:
        route = respx_route(router, "http://router.test", respx_mock=mock)
        async with httpx.AsyncClient(base_url="http://router.test") as http:
            assert_round_trip(await wire.create(http, CHAT), router)
        assert route.call_count == 2


async def test_respx_route_sync(router, wire):
    from .wire import headers_for, open_package, seal

    with respx.mock as mock:
        respx_route(router, "http://router.test/", respx_mock=mock, sync=True)
        with httpx.Client(base_url="http://router.test") as http:
            pem = http.get("/pki/public_key").text
            import json
            body = json.dumps(seal(pem, json.dumps(CHAT).encode())).encode()
            r = http.post("/v1/chat/secure_completion", content=body,
                          headers=headers_for(wire.pem, "pid-1"))
    assert r.status_code == 200
    assert json.loads(open_package(wire.key, r.json()))["_metadata"]["payload_id"] == "pid-1"


async def test_loopback_http(router, wire):
    with serve(router) as server:
        assert server.url.startswith("http://127.0.0.1:")
        assert server.port > 0
        assert server.ca_cert_path is None
        async with httpx.AsyncClient(base_url=server.url) as http:
            assert_round_trip(await wire.create(http, CHAT), router)
    with pytest.raises(httpx.ConnectError):  # stopped: nothing listens any more
        async with httpx.AsyncClient(base_url=server.url) as http:
            await http.get("/pki/public_key")


async def test_loopback_https_with_throwaway_ca(router, wire, tmp_path):
    with serve(router, tls=True, cert_dir=tmp_path) as server:
        assert server.url.startswith("https://127.0.0.1:")
        assert server.ca_cert_path == tmp_path / "ca.pem"
        ctx = ssl.create_default_context(cafile=str(server.ca_cert_path))
        async with httpx.AsyncClient(base_url=server.url, verify=ctx) as http:
            assert_round_trip(await wire.create(http, CHAT), router)
        localhost = server.url.replace("127.0.0.1", "localhost")
        async with httpx.AsyncClient(base_url=localhost, verify=ctx) as http:
            assert (await http.get("/pki/public_key")).status_code == 200
        async with httpx.AsyncClient(base_url=server.url) as http:  # system store only
            with pytest.raises(httpx.ConnectError):
                await http.get("/pki/public_key")


async def test_https_temp_cert_dir_is_removed(router):
    with serve(router, tls=True) as server:
        ca = server.ca_cert_path
        assert ca is not None
        assert ca.exists()
    assert not ca.exists()


@pytest.mark.parametrize("path", ["/v1/chat/secure_completion", "/pki/public_key"])
async def test_drop_over_a_socket_is_a_connection_error(router, wire, path):
    router.push(Scenario.drop(path=path))
    with serve(router) as server:
        async with httpx.AsyncClient(base_url=server.url) as http:
            with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
                await wire.create(http, CHAT, server_pem=router.public_key_pem) \
                    if path.startswith("/v1") else await http.get(path)
            # the server survived and answers the next request
            assert_round_trip(await wire.create(http, CHAT), router)


async def test_two_servers_at_once(server_key, wire):
    a, b = MockRouter(server_key), MockRouter(server_key)
    with serve(a) as sa, serve(b) as sb:
        assert sa.port != sb.port
        async with httpx.AsyncClient(base_url=sb.url) as http:
            assert_round_trip(await wire.create(http, CHAT), b)
    assert a.seen == []


async def test_port_in_use_is_an_error(router):
    with serve(router) as server, pytest.raises(RuntimeError, match="could not start"), \
            serve(router, port=server.port):
        pass


# -- the official client from PyPI ---------------------------------------------------------
@pytest.fixture(scope="session")
def official_router() -> MockRouter:
    return MockRouter(key_size=2048)


@pytest.fixture(scope="session")
def official_server(official_router):
    with serve(official_router) as server:
        yield server


@pytest.fixture(scope="session")
def official_client(official_server):
    nomyo = pytest.importorskip("nomyo")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return nomyo.SecureChatCompletion(base_url=official_server.url, allow_http=True,
                                          max_retries=0)


async def test_official_client_gets_a_decrypted_answer(official_client, official_router):
    out = await official_client.create(model="any-model", messages=[
        {"role": "user", "content": "hello from nomyo"}], temperature=0.1,
        security_tier="high")
    assert out["choices"][0]["message"]["content"] == "hello from nomyo"
    assert out["_metadata"]["security_tier"] == "high"
    assert out["_metadata"]["response_status"] == "success"
    post = official_router.seen[-1]
    assert post.status == 200
    assert post.payload["temperature"] == 0.1
    assert "security_tier" not in post.payload
    assert post.headers["x-security-tier"] == "high"
    assert "4096" not in post.client_public_key_pem  # it is a PEM...
    from cryptography.hazmat.primitives import serialization
    assert serialization.load_pem_public_key(
        post.client_public_key_pem.encode()).key_size == 4096


async def test_official_client_sees_errors_and_tampering(official_client, official_router):
    nomyo = pytest.importorskip("nomyo")
    official_router.push(Scenario.status(403, {"detail": "no such tier"}))
    with pytest.raises(nomyo.ForbiddenError):
        await official_client.create(model="m", messages=[{"role": "user", "content": "x"}])
    official_router.push(Scenario.tamper("tag"))
    with pytest.raises(nomyo.SecurityError):
        await official_client.create(model="m", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(nomyo.InvalidRequestError, match="streaming"):
        await official_client.create(model="m", messages=[{"role": "user", "content": "x"}],
                                     stream=True)


async def test_official_client_tool_call(official_client):
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {
        "type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}}}]
    out = await official_client.create(model="m", messages=[
        {"role": "user", "content": "please lookup this"}], tools=tools)
    call = out["choices"][0]["message"]["tool_calls"][0]
    assert call["function"] == {"name": "lookup", "arguments": '{"q": ""}'}
