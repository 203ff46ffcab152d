"""SRV-21 (spec 1.0.1): the replay cache, and the S-1 attack it stops.

S-1: nothing binds a request package to X-Public-Key, X-Payload-ID or the API key, so whoever
recorded a request body could resend it with their own key and read the victim's answer.
"""

from __future__ import annotations

import asyncio
import json
import uuid
import warnings

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from mock_router import MockRouter, ReplayCache, Scenario, serve
from mock_router.__main__ import build_parser

from .test_router_cli import Running
from .wire import POST_PATH, headers_for, open_package, pem_of, seal

pytestmark = pytest.mark.asyncio(loop_scope="session")

CHAT = {"model": "m", "messages": [{"role": "user", "content": "the victim's prompt"}]}


def _body(router: MockRouter, payload: dict | None = None) -> bytes:
    return json.dumps(seal(router.public_key_pem,
                           json.dumps(payload or CHAT).encode())).encode()


async def _post(http: httpx.AsyncClient, body: bytes, client_pem: str, **opts) -> httpx.Response:
    return await http.post(POST_PATH, content=body,
                           headers=headers_for(client_pem, str(uuid.uuid4()), **opts))


@pytest.fixture
def attacker_key(other_server_key: rsa.RSAPrivateKey) -> rsa.RSAPrivateKey:
    """Another RSA key (the session's spare 2048-bit key) standing for the attacker's."""
    return other_server_key


def _asgi(router: MockRouter) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=router.app),
                             base_url="http://router.test")


async def test_s1_recorded_body_resent_with_another_client_key_is_refused(
        server_key, wire, attacker_key):
    router = MockRouter(server_key, api_keys=["victim-key", "attacker-key"])
    body = _body(router)
    async with _asgi(router) as http:
        first = await _post(http, body, wire.pem, api_key="victim-key")
        assert first.status_code == 200, first.text
        # the attacker: same bytes, their own public key, payload id and API key
        replay = await _post(http, body, pem_of(attacker_key), api_key="attacker-key")
    assert replay.status_code == 409
    assert replay.json() == {"detail": "replayed request"}
    assert replay.headers["content-type"] == "application/json"
    seen = router.seen[-1]
    assert (seen.status, seen.refusal_code, seen.refusal) == (409, "replayed_request",
                                                              "replayed request")
    assert seen.fault is not None
    assert seen.fault.requirements == ("RTY-15",)


async def test_s1_attack_works_without_the_cache(server_key, wire, attacker_key):
    """The control: with the cache off the replayed body is answered, to the attacker's key,
    with the victim's prompt (what the cache is there to stop)."""
    router = MockRouter(server_key, replay_window=0)
    body = _body(router)
    async with _asgi(router) as http:
        assert (await _post(http, body, wire.pem)).status_code == 200
        replay = await _post(http, body, pem_of(attacker_key))
    assert replay.status_code == 200
    answer = json.loads(open_package(attacker_key, replay.json()))
    assert answer["choices"][0]["message"]["content"] == "the victim's prompt"


async def test_fresh_packages_are_never_refused(http, router, wire):
    for _ in range(3):
        assert (await wire.create(http, CHAT)).response.status_code == 200
    assert [s.status for s in router.seen if s.method == "POST"] == [200, 200, 200]


async def test_a_package_that_failed_decryption_may_be_resent(http, router, wire):
    """Only packages that decrypted enter the cache: a garbled package is refused 400 every
    time, never 409 (and a client may resend a package the router could not open)."""
    pkg = seal(router.public_key_pem, json.dumps(CHAT).encode())
    pkg["encrypted_payload"]["ciphertext"] = "AAAA" + pkg["encrypted_payload"]["ciphertext"][4:]
    body = json.dumps(pkg).encode()
    statuses = [(await _post(http, body, wire.pem)).status_code for _ in range(2)]
    assert statuses == [400, 400]
    assert len(router.replay_cache) == 0


async def test_a_package_refused_before_decryption_does_not_enter_the_cache(
        http, router, wire):
    body = _body(router)
    r = await http.post(POST_PATH, content=body, headers={
        **headers_for(wire.pem, str(uuid.uuid4())), "Content-Type": "application/json"})
    assert r.status_code == 415
    assert (await _post(http, body, wire.pem)).status_code == 200


async def test_a_package_refused_after_decryption_is_remembered(http, router, wire):
    """Decrypted, then refused for its plaintext: it is in the cache (SRV-21 keys on the
    decryption, not on the answer)."""
    body = _body(router, {"model": "m", "messages": [], "stream": True})
    assert (await _post(http, body, wire.pem)).status_code == 400
    assert (await _post(http, body, wire.pem)).status_code == 409


async def test_reset_clears_the_cache(http, router, wire):
    body = _body(router)
    assert (await _post(http, body, wire.pem)).status_code == 200
    router.reset()
    assert (await _post(http, body, wire.pem)).status_code == 200
    assert (await _post(http, body, wire.pem)).status_code == 409


async def test_window_expires(http, router, wire):
    now = [1000.0]
    router.replay_cache.clock = lambda: now[0]
    router.replay_window = 600
    body = _body(router)
    assert (await _post(http, body, wire.pem)).status_code == 200
    now[0] += 599
    assert (await _post(http, body, wire.pem)).status_code == 409
    now[0] += 2  # 601 s after the first decryption
    assert (await _post(http, body, wire.pem)).status_code == 200


async def test_default_window_is_600_seconds(server_key):
    assert MockRouter(server_key).replay_window == 600.0
    assert build_parser().parse_args([]).replay_window == 600.0
    with pytest.raises(ValueError, match="replay window"):
        MockRouter(server_key, replay_window=-1)


async def test_concurrent_copies_only_one_is_answered(http, router, wire):
    body = _body(router)
    answers = await asyncio.gather(*(_post(http, body, wire.pem) for _ in range(4)))
    assert sorted(a.status_code for a in answers) == [200, 409, 409, 409]


async def test_scripted_failures_leave_the_cache_alone_by_default(http, router, wire):
    """A retry of the identical package after a scripted 503 or drop is answered: those
    answers stand for failures in front of the router (replay_includes_failures=False)."""
    body = _body(router)
    router.push(Scenario.status(503, {"detail": "busy"}))
    assert (await _post(http, body, wire.pem)).status_code == 503
    assert (await _post(http, body, wire.pem)).status_code == 200


async def test_scripted_failures_enter_the_cache_when_asked(server_key, wire):
    router = MockRouter(server_key, replay_includes_failures=True)
    body = _body(router)
    router.push(Scenario.status(503, {"detail": "busy"}))
    async with _asgi(router) as http:
        assert (await _post(http, body, wire.pem)).status_code == 503
        assert (await _post(http, body, wire.pem)).status_code == 409


async def test_cache_is_bounded():
    cache = ReplayCache(600, max_entries=2)
    for key in (b"a", b"b", b"c"):
        assert not cache.seen_before(key)
    assert len(cache) == 2
    assert cache.evicted == 1
    assert not cache.seen_before(b"a")  # evicted, so no longer refused
    assert cache.seen_before(b"c")


async def test_cli_replay_window_option(tmp_path, server_key, wire):
    """--replay-window 0 switches the cache off in a router run by hand."""
    key_file = tmp_path / "key.pem"
    MockRouter(server_key).save_key(key_file)
    run = Running("--port", "0", "--key-file", str(key_file), "--replay-window", "0",
                  "--log-level", "warning")
    try:
        url = run.banner()["url"]
        router = MockRouter(server_key)
        body = _body(router)
        async with httpx.AsyncClient(base_url=url) as http:
            statuses = [(await _post(http, body, wire.pem)).status_code for _ in range(2)]
        assert statuses == [200, 200]
    finally:
        run.kill()
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--replay-window", "-5"])


# -- the other half of issue 13's "done when": a client's own retry still succeeds ---------

def _nomyo_ref_call(url: str, client_key: rsa.RSAPrivateKey, max_retries: int) -> dict:
    """One call of nomyo_ref (tests may import it; mock_router never does)."""
    import nomyo_ref
    from nomyo_ref import SecureCompletionClient

    async def run() -> dict:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # allow_http on loopback
            client = SecureCompletionClient(url, allow_http=True, max_retries=max_retries,
                                            retry_backoff=0.01, secure_memory=False)
        client.private_key = client_key
        client.public_key_pem = nomyo_ref.keys.public_pem(client_key)
        async with client:
            return await client.send_secure_request(CHAT, str(uuid.uuid4()))

    return asyncio.run(run())


def _run_in_thread(fn, *args):
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(fn, *args).result(timeout=60)


async def test_nomyo_ref_retry_after_a_scripted_failure_succeeds(server_key, client_key):
    router = MockRouter(server_key)
    router.push(Scenario.status(503, {"detail": "busy"}))
    with serve(router) as server:
        answer = _run_in_thread(_nomyo_ref_call, server.url, client_key, 1)
    assert answer["choices"][0]["message"]["content"] == "the victim's prompt"
    assert [s.status for s in router.seen if s.method == "POST"] == [503, 200]


async def test_nomyo_ref_retry_after_a_failure_past_decryption_succeeds(server_key,
                                                                        client_key):
    """Against a server whose 503 came after decryption (the package is in its cache), a
    retry succeeds only when the client encrypts it anew (RTY-15: nomyo_ref's re-encryption
    per attempt, issue 13; this test fails against a client that resends the same bytes)."""
    router = MockRouter(server_key, replay_includes_failures=True)
    router.push(Scenario.status(503, {"detail": "busy"}))
    with serve(router) as server:
        answer = _run_in_thread(_nomyo_ref_call, server.url, client_key, 1)
    assert answer["choices"][0]["message"]["content"] == "the victim's prompt"
    posts = [s for s in router.seen if s.method == "POST"]
    assert [s.status for s in posts] == [503, 200]
    assert posts[0].package["encrypted_aes_key"] != posts[1].package["encrypted_aes_key"]
