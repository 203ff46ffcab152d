"""The I/O shell, driven through respx: no sockets, the independent FakeRouter behind it."""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
import trustme
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

import nomyo_ref
from nomyo_ref import (
    APIConnectionError,
    APIError,
    AuthenticationError,
    ForbiddenError,
    InvalidRequestError,
    RateLimitError,
    SecureChatCompletion,
    SecureCompletionClient,
    SecurityError,
    ServerError,
    ServiceUnavailableError,
    fingerprint,
)
from tests.ref import wire
from tests.ref.conftest import BASE, KeyCounter
from tests.ref.wire import FakeRouter, Seen

Router = tuple[FakeRouter, respx.MockRouter]
MESSAGES = [{"role": "user", "content": "top secret message"}]


def chat(**options: Any) -> SecureChatCompletion:
    options.setdefault("retry_backoff", 0.0)
    return SecureChatCompletion(BASE, **options)


def record_sleeps(client: SecureChatCompletion | SecureCompletionClient) -> list[float]:
    inner = client.client if isinstance(client, SecureChatCompletion) else client
    delays: list[float] = []

    async def sleep(seconds: float) -> None:
        delays.append(seconds)

    inner._sleep = sleep
    inner._jitter = lambda: 0.0
    return delays


async def test_create_round_trip_passes_every_parameter(router: Router) -> None:
    fake, _ = router
    params = {"temperature": 0.5, "max_tokens": 7, "top_p": 0.9, "frequency_penalty": 0.1,
              "presence_penalty": 0.2, "stop": ["x"], "n": 1, "stream": False,
              "tools": [{"type": "function", "function": {"name": "f"}}],
              "tool_choice": "auto", "user": "u1", "my_extension": {"a": [1, None]}}
    async with chat(api_key="sk-test") as client:
        result = await client.create("m1", MESSAGES, security_tier="maximum", **params)
    seen = fake.seen[0]
    assert seen.payload == {"model": "m1", "messages": MESSAGES, **params}
    assert seen.headers["authorization"] == "Bearer sk-test"
    assert seen.headers["x-security-tier"] == "maximum"
    assert seen.headers["content-type"] == "application/octet-stream"
    pid = seen.headers["x-payload-id"]
    assert result["choices"][0]["message"]["content"] == "top secret message"
    assert result["_metadata"]["payload_id"] == pid
    assert result["_metadata"]["is_encrypted"] is True
    assert result["_metadata"]["encryption_algorithm"] == "hybrid-aes256-rsa4096"
    assert result["_metadata"]["response_status"] == "success"


async def test_acreate_is_an_alias(router: Router) -> None:
    fake, _ = router
    async with chat() as client:
        result = await client.acreate("m", MESSAGES)
    assert result["model"] == "m"
    assert "authorization" not in fake.seen[0].headers
    assert "x-security-tier" not in fake.seen[0].headers


async def test_one_key_fetch_one_key_pair_one_http_client(router: Router,
                                                          fast_keys: KeyCounter,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    fake, mock = router
    made: list[httpx.AsyncClient] = []
    real = httpx.AsyncClient

    class Counting(real):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(httpx, "AsyncClient", Counting)
    async with chat() as client:
        for _ in range(5):
            await client.create("m", MESSAGES)
    assert fake.key_fetches == 1
    assert len(fast_keys.calls) == 1
    assert len(made) == 1
    assert made[0].is_closed
    assert mock["post"].call_count == 5
    assert len({s.headers["x-payload-id"] for s in fake.seen}) == 5


async def test_twenty_concurrent_calls(router: Router, fast_keys: KeyCounter) -> None:
    fake, mock = router

    async def slow_key(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.02)  # let the other calls pile up behind the fetch
        return fake.key(request)

    mock["key"].side_effect = slow_key
    async with chat() as client:
        results = await asyncio.gather(*(
            client.create("m", [{"role": "user", "content": f"msg {i}"}]) for i in range(20)))
    assert len(fast_keys.calls) == 1
    assert fake.key_fetches == 1
    assert [r["choices"][0]["message"]["content"] for r in results] == \
        [f"msg {i}" for i in range(20)]
    assert len({r["_metadata"]["payload_id"] for r in results}) == 20


@pytest.mark.parametrize(("status", "error"), [(429, RateLimitError), (500, ServerError),
                                               (502, APIError), (503, ServiceUnavailableError),
                                               (504, APIError)])
async def test_retryable_statuses_are_retried_and_bounded(router: Router, status: int,
                                                          error: type[APIError]) -> None:
    fake, mock = router
    fake.script = [httpx.Response(status, json={"detail": "busy"})] * 3
    client = chat(max_retries=2, retry_backoff=0.001)
    delays = record_sleeps(client)
    with pytest.raises(error) as info:
        await client.create("m", MESSAGES)
    assert type(info.value) is error
    assert info.value.status_code == status
    assert info.value.error_details == {"detail": "busy"}
    assert mock["post"].call_count == 3
    assert delays == [0.001, 0.002]
    await client.aclose()


async def test_retry_then_success_resends_the_same_payload_id(router: Router) -> None:
    fake, mock = router
    fake.script = [httpx.Response(503), httpx.ConnectError("refused")]
    client = chat(max_retries=2)
    record_sleeps(client)
    result = await client.create("m", MESSAGES)
    assert mock["post"].call_count == 3
    ids = {json.loads(c.request.headers["x-payload-id"] and '""') or
           c.request.headers["x-payload-id"] for c in mock["post"].calls}
    assert len(ids) == 1
    assert result["_metadata"]["payload_id"] in ids
    await client.aclose()


async def test_max_retries_zero_sends_once(router: Router) -> None:
    fake, mock = router
    fake.script = [httpx.Response(503)]
    client = chat(max_retries=0)
    delays = record_sleeps(client)
    with pytest.raises(ServiceUnavailableError):
        await client.create("m", MESSAGES)
    assert mock["post"].call_count == 1
    assert delays == []
    await client.aclose()


@pytest.mark.parametrize(("retry_after", "expected"), [
    ("5", 5.0), ("1000", 10.0), ("0", 0.0), ("0.5", 0.001), (" 7 ", 7.0), ("-3", 0.001),
    ("soon", 0.001),
    ("Wed, 21 Oct 2015 07:28:00 GMT", 0.001),
])
async def test_retry_after_is_honoured_up_to_the_cap(router: Router, retry_after: str,
                                                     expected: float) -> None:
    fake, _ = router
    fake.script = [httpx.Response(429, headers={"Retry-After": retry_after})]
    client = chat(retry_backoff=0.001, retry_after_cap=10.0)
    delays = record_sleeps(client)
    await client.create("m", MESSAGES)
    assert delays == [expected]
    await client.aclose()


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 418, 501, 302, 201, 204])
async def test_final_statuses_are_not_retried(router: Router, status: int) -> None:
    fake, mock = router
    fake.script = [httpx.Response(status, headers={"Location": "https://evil.test/"},
                                  json={"detail": "no"})]
    client = chat()
    delays = record_sleeps(client)
    with pytest.raises(APIError) as info:
        await client.create("m", MESSAGES)
    assert info.value.status_code == status
    assert mock["post"].call_count == 1
    assert delays == []
    expected = {400: InvalidRequestError, 401: AuthenticationError, 403: ForbiddenError}
    assert type(info.value) is expected.get(status, APIError)
    await client.aclose()


@pytest.mark.parametrize("failure", [httpx.ConnectError("refused"), httpx.ReadTimeout("slow"),
                                     httpx.RemoteProtocolError("dropped"),
                                     httpx.ConnectTimeout("slow")])
async def test_network_failures_are_retried_then_connection_errors(router: Router,
                                                                   failure: Exception) -> None:
    fake, mock = router
    fake.script = [failure] * 3
    client = chat(max_retries=2)
    record_sleeps(client)
    with pytest.raises(APIConnectionError) as info:
        await client.create("m", MESSAGES)
    assert info.value.status_code is None
    assert isinstance(info.value, APIError)
    assert mock["post"].call_count == 3
    await client.aclose()


async def test_tls_verification_failure_is_not_retried(router: Router) -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise httpx.ConnectError("cert") from ssl.SSLCertVerificationError("bad cert")

    client = chat(max_retries=2)
    # A plain MockTransport keeps the exception chain (respx rewrites __cause__).
    client.client._http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    with pytest.raises(APIConnectionError, match="TLS"):
        await client.create("m", MESSAGES)
    assert len(calls) == 1
    await client.aclose()


async def test_pinned_key_match(router: Router, server_key: rsa.RSAPrivateKey) -> None:
    pin = ":".join(fingerprint(server_key)[i:i + 2] for i in range(0, 64, 2)).upper()
    async with chat(server_key_sha256=pin) as client:
        await client.create("m", MESSAGES)


async def test_pinned_key_mismatch_sends_nothing(router: Router,
                                                 other_server_key: rsa.RSAPrivateKey) -> None:
    _, mock = router
    async with chat(server_key_sha256=fingerprint(other_server_key)) as client:
        with pytest.raises(SecurityError, match="pinned"):
            await client.create("m", MESSAGES)
    assert mock["post"].call_count == 0


async def test_rotation_is_detected_once_and_resent(router: Router,
                                                    server_key: rsa.RSAPrivateKey,
                                                    other_server_key: rsa.RSAPrivateKey
                                                    ) -> None:
    fake, mock = router
    fake.key_script = [httpx.Response(200, text=wire.spki_pem(server_key))]
    fake.server_key = other_server_key  # the router rotated after the first fetch
    fake.script = [httpx.Response(400, json={"detail": "decryption failed"})]
    async with chat() as client:
        result = await client.create("m", MESSAGES)
        assert result["choices"][0]["message"]["content"] == "top secret message"
        assert fake.key_fetches == 2
        assert mock["post"].call_count == 2
        await client.create("m", MESSAGES)  # the new key is cached
        assert fake.key_fetches == 2


async def test_400_without_rotation_is_not_resent(router: Router) -> None:
    fake, mock = router
    fake.script = [httpx.Response(400, json={"detail": "missing messages"})]
    async with chat() as client:
        with pytest.raises(InvalidRequestError, match="missing messages") as info:
            await client.create("m", MESSAGES)
    assert info.value.error_details == {"detail": "missing messages"}
    assert mock["post"].call_count == 1
    assert fake.key_fetches == 2


async def test_rotation_to_an_unpinned_key_is_a_security_error(
        router: Router, server_key: rsa.RSAPrivateKey,
        other_server_key: rsa.RSAPrivateKey) -> None:
    fake, mock = router
    fake.key_script = [httpx.Response(200, text=wire.spki_pem(server_key))]
    fake.server_key = other_server_key
    fake.script = [httpx.Response(400, json={"detail": "decryption failed"})]
    async with chat(server_key_sha256=fingerprint(server_key)) as client:
        with pytest.raises(SecurityError):
            await client.create("m", MESSAGES)
    assert mock["post"].call_count == 1


@pytest.mark.parametrize("url", ["http://router.test", "HTTP://router.test",
                                 " http://router.test/ ", "http://https://router.test"])
async def test_plain_http_is_refused_and_nothing_is_sent(url: str) -> None:
    with respx.mock(assert_all_called=False) as mock:
        route = mock.route()  # matches anything
        with pytest.raises(SecurityError):
            SecureChatCompletion(url)
        with pytest.raises(SecurityError):
            SecureCompletionClient(url)
        assert route.call_count == 0


@pytest.mark.parametrize("url", ["https://evil@router.test", "https://u:p@router.test",
                                 "ftp://router.test", "https://"])
async def test_malformed_urls_are_refused_and_nothing_is_sent(url: str) -> None:
    with respx.mock(assert_all_called=False) as mock:
        route = mock.route()
        with pytest.raises(ValueError, match="URL"):
            SecureChatCompletion(url, allow_http=True)
        assert route.call_count == 0


async def test_allow_http_warns_and_works(server_key: rsa.RSAPrivateKey,
                                          fast_keys: KeyCounter) -> None:
    fake = FakeRouter(server_key)
    with respx.mock() as mock:
        mock.get("http://127.0.0.1:12434/pki/public_key").mock(side_effect=fake.key)
        mock.post("http://127.0.0.1:12434/v1/chat/secure_completion").mock(
            side_effect=fake.post)
        with pytest.warns(UserWarning, match="insecure"):
            client = SecureChatCompletion("http://127.0.0.1:12434/", allow_http=True)
        async with client:
            await client.create("m", MESSAGES)
    assert len(fake.seen) == 1


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"api_key": "sk\r\nX: y"}, "api_key"), ({"base_url": "ftp://x"}, "URL"),
    ({"stream": True}, "stream"), ({"stream": None}, "stream"), ({"model": ""}, "model"),
    ({"messages": "hi"}, "messages"), ({"security_tier": "ultra"}, "security_tier"),
    ({"security_tier": "high\r\n"}, "tier"),
    ({"payload": float("nan")}, "serialised"),
])
async def test_bad_calls_are_refused_before_anything_is_sent(router: Router,
                                                             kwargs: dict[str, Any],
                                                             match: str) -> None:
    _, mock = router
    call = {"model": "m", "messages": MESSAGES, **kwargs}
    async with chat() as client:
        with pytest.raises(ValueError, match=match):
            await client.create(**call)
    assert mock.calls.call_count == 0


async def test_per_call_api_key_and_base_url(router: Router, server_key: rsa.RSAPrivateKey
                                             ) -> None:
    fake, mock = router
    other = FakeRouter(server_key)
    mock.get("https://other.test/pki/public_key").mock(side_effect=other.key)
    mock.post("https://other.test/v1/chat/secure_completion").mock(side_effect=other.post)
    async with chat(api_key="sk-instance") as client:
        await client.create("m", MESSAGES)
        await client.create("m", MESSAGES, api_key="sk-call")
        for _ in range(2):
            await client.create("m", MESSAGES, base_url=" HTTPS://other.test/ ")
    assert [s.headers["authorization"] for s in fake.seen] == ["Bearer sk-instance",
                                                                "Bearer sk-call"]
    assert "base_url" not in other.seen[0].payload
    assert "api_key" not in fake.seen[1].payload
    assert other.seen[0].headers["authorization"] == "Bearer sk-instance"
    assert other.key_fetches == 1
    assert fake.key_fetches == 1
    assert other.seen[0].headers["x-public-key"] == fake.seen[0].headers["x-public-key"]


async def test_per_call_plain_http_base_url_is_refused(router: Router) -> None:
    _, mock = router
    async with chat() as client:
        with pytest.raises(SecurityError):
            await client.create("m", MESSAGES, base_url="http://router.test")
    assert mock.calls.call_count == 0


@pytest.mark.parametrize("api_key", ["sk\r\nX-Admin: 1", "sk key", "sk\n", "ключ"])
def test_header_unsafe_api_key_is_refused_at_construction(api_key: str) -> None:
    with pytest.raises(ValueError, match="api_key") as info:
        SecureChatCompletion(BASE, api_key=api_key)
    assert api_key not in str(info.value)


async def test_send_secure_request_validates_before_sending(router: Router) -> None:
    _, mock = router
    async with SecureCompletionClient(BASE) as client:
        for args in [({"model": "m"}, "pid\n", None, None), ({"model": "m"}, "p", "a\rb", None),
                     ({"model": "m"}, "p", None, "low"), ({"model": "m", "api_key": "x"},
                                                          "p", None, None)]:
            with pytest.raises(ValueError, match=r"payload|api_key|security_tier"):
                await client.send_secure_request(*args)
    assert mock.calls.call_count == 0


@pytest.mark.parametrize("responder", ["other_id", "no_metadata", "not_json", "list_body",
                                       "downgrade", "tampered", "wrong_key"])
async def test_bad_200_answers_raise_documented_errors(router: Router, responder: str,
                                                       other_server_key: rsa.RSAPrivateKey
                                                       ) -> None:
    fake, _ = router

    def respond(seen: Seen) -> httpx.Response:
        if responder == "other_id":
            return FakeRouter.answer(seen, wire.completion(seen.payload, "another-id"))
        if responder == "no_metadata":
            obj = wire.completion(seen.payload, None)
            del obj["_metadata"]
            return FakeRouter.answer(seen, obj)
        if responder == "not_json":
            return httpx.Response(200, content=b"<html>")
        if responder == "list_body":
            return httpx.Response(200, json=[1])
        if responder == "downgrade":
            return FakeRouter.answer(seen, version="0.9")
        if responder == "tampered":
            response = FakeRouter.answer(seen)
            package = json.loads(response.content)
            package["encrypted_payload"]["tag"] = "AAAAAAAAAAAAAAAAAAAAAA=="
            return httpx.Response(200, json=package)
        seen.client_key = other_server_key.public_key()
        return FakeRouter.answer(seen)

    fake.script = [respond]
    expected = ValueError if responder in ("not_json", "list_body", "downgrade") \
        else SecurityError
    async with chat() as client:
        with pytest.raises(expected) as info:
            await client.create("m", MESSAGES)
    assert type(info.value) in (ValueError, SecurityError)


async def test_huge_200_body_is_refused(router: Router, monkeypatch: pytest.MonkeyPatch
                                        ) -> None:
    fake, _ = router
    monkeypatch.setattr(nomyo_ref.protocol, "MAX_RESPONSE_BYTES", 1000)
    async def chunks() -> Any:
        for _ in range(50):
            yield b"y" * 100

    fake.script = [httpx.Response(200, content=b"x" * 5000),
                   httpx.Response(200, content=chunks())]
    async with chat() as client:
        for _ in range(2):
            with pytest.raises(ValueError, match="too large"):
                await client.create("m", MESSAGES)


async def test_huge_error_body_is_truncated(router: Router) -> None:
    fake, _ = router
    fake.script = [httpx.Response(401, content=b"z" * 5_000_000),
                   httpx.Response(400, json={"detail": "d" * 100_000})]
    async with chat() as client:
        with pytest.raises(AuthenticationError) as info:
            await client.create("m", MESSAGES)
        assert info.value.error_details == {"detail": "z" * 1024}
        with pytest.raises(InvalidRequestError) as bad:
            await client.create("m", MESSAGES)
        assert bad.value.error_details == {"detail": "d" * 100_000}


@pytest.mark.parametrize(("answer", "error"), [
    (httpx.Response(404, json={"detail": "nope"}), APIError),
    (httpx.Response(302, headers={"Location": "https://evil.test/"}), APIError),
    (httpx.Response(200, text="not a key"), SecurityError),
    (httpx.Response(200, content=b"\xff\xfe"), SecurityError),
    (httpx.Response(200, text="x" * 100_000), SecurityError),
])
async def test_bad_key_answers(router: Router, answer: httpx.Response,
                               error: type[Exception]) -> None:
    fake, mock = router
    fake.key_script = [answer]
    async with chat() as client:
        with pytest.raises(error):
            await client.create("m", MESSAGES)
    assert mock["post"].call_count == 0


async def test_small_server_key_is_refused(router: Router, small_key: rsa.RSAPrivateKey
                                           ) -> None:
    fake, mock = router
    fake.key_script = [httpx.Response(200, text=wire.spki_pem(small_key))]
    async with chat() as client:
        with pytest.raises(SecurityError, match="1024-bit"):
            await client.create("m", MESSAGES)
    assert mock["post"].call_count == 0


async def test_key_fetch_is_retried(router: Router) -> None:
    fake, _ = router
    fake.key_script = [httpx.Response(503), httpx.ConnectError("x")]
    client = chat()
    record_sleeps(client)
    await client.create("m", MESSAGES)
    assert fake.key_fetches == 3
    await client.aclose()


async def test_key_dir_creates_then_reuses_keys(router: Router, fast_keys: KeyCounter,
                                                tmp_path: Path) -> None:
    key_dir = tmp_path / "keys"
    async with chat(key_dir=key_dir) as first:
        await first.create("m", MESSAGES)
    assert sorted(p.name for p in key_dir.iterdir()) == ["private_key.pem", "public_key.pem"]
    async with chat(key_dir=str(key_dir)) as second:
        await second.create("m", MESSAGES)
    assert len(fast_keys.calls) == 1
    assert second.client.public_key_pem == first.client.public_key_pem


async def test_corrupt_key_dir_is_never_overwritten(router: Router, tmp_path: Path) -> None:
    (tmp_path / "private_key.pem").write_text("garbage")
    async with chat(key_dir=tmp_path) as client:
        with pytest.raises(ValueError, match=r"private_key\.pem"):
            await client.create("m", MESSAGES)
    assert (tmp_path / "private_key.pem").read_text() == "garbage"


async def test_seed_methods_work_on_their_own(router: Router, client_key: rsa.RSAPrivateKey,
                                              server_key: rsa.RSAPrivateKey) -> None:
    async with SecureCompletionClient(BASE) as client:
        pem = await client.fetch_server_public_key()
        assert pem == wire.spki_pem(server_key)
        package = json.loads(await client.encrypt_payload({"model": "m", "messages": []}))
        assert json.loads(wire.unseal(package, server_key)) == {"model": "m", "messages": []}
        with pytest.raises(SecurityError):
            await client.decrypt_response(b"{}" if False else json.dumps(
                wire.seal(b"{}", client_key.public_key())).encode(), "p")
        client.generate_keys()
        body = json.dumps(wire.seal(json.dumps({"_metadata": {"payload_id": "p"}}).encode(),
                                    client_key.public_key())).encode()
        assert (await client.decrypt_response(body, "p"))["_metadata"]["payload_id"] == "p"
        result = await client.send_secure_request({"model": "m", "messages": MESSAGES}, "p-1",
                                                  "sk", "standard")
        assert result["_metadata"]["payload_id"] == "p-1"


def test_options_are_validated() -> None:
    for kwargs in [{"max_retries": -1}, {"max_retries": 1.5}, {"timeout": 0},
                   {"retry_backoff": -1}, {"retry_after_cap": float("inf")},
                   {"server_key_sha256": "abc"}, {"ca_bundle": "/nonexistent/ca.pem"}]:
        with pytest.raises(ValueError, match=r"must|cannot"):
            SecureChatCompletion(BASE, **kwargs)


def test_ca_bundle_builds_a_verifying_context(tmp_path: Path) -> None:
    ca = trustme.CA()
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    client = SecureCompletionClient(BASE, ca_bundle=path)
    context = client._verify
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert len(context.get_ca_certs()) == 1  # exactly the bundle, not the system store
    default = SecureCompletionClient(BASE)._verify
    assert default.verify_mode == ssl.CERT_REQUIRED
    assert default.check_hostname
    http = client._client()
    assert http.follow_redirects is False


async def test_logs_never_carry_secrets(router: Router, caplog: pytest.LogCaptureFixture
                                        ) -> None:
    fake, _ = router
    fake.script = [httpx.Response(503)]
    caplog.set_level(logging.DEBUG, logger="nomyo_ref")
    client = chat(api_key="sk-very-secret")
    record_sleeps(client)
    await client.create("m", MESSAGES)
    await client.aclose()
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert caplog.records
    assert "sk-very-secret" not in text
    assert "top secret message" not in text
    assert "PRIVATE KEY" not in text


def test_exception_hierarchy() -> None:
    assert issubclass(APIConnectionError, APIError)
    assert not issubclass(SecurityError, APIError)
    for cls in (AuthenticationError, InvalidRequestError, RateLimitError, ForbiddenError,
                ServerError, ServiceUnavailableError):
        assert issubclass(cls, APIError)
    error = APIConnectionError("down", 500)
    assert error.status_code is None
    assert RateLimitError("x").status_code == 429
    assert APIError("x").error_details == {}


def test_client_survives_a_new_event_loop(server_key: rsa.RSAPrivateKey,
                                          fast_keys: KeyCounter) -> None:
    """Two asyncio.run calls on one object: the second gets fresh connections and locks."""
    fake = FakeRouter(server_key)
    client = chat()
    with respx.mock() as mock:
        mock.get(f"{BASE}/pki/public_key").mock(side_effect=fake.key)
        mock.post(f"{BASE}/v1/chat/secure_completion").mock(side_effect=fake.post)
        first = asyncio.run(client.create("m", MESSAGES))
        http = client.client._http
        second = asyncio.run(client.create("m", MESSAGES))
        assert client.client._http is not http
        asyncio.run(client.aclose())
    assert first["_metadata"]["payload_id"] != second["_metadata"]["payload_id"]
    assert fake.key_fetches == 1
    assert len(fast_keys.calls) == 1


async def test_secure_memory_off_changes_nothing_on_the_wire(router: Router) -> None:
    fake, _ = router
    async with chat(secure_memory=False) as plain, chat() as protected:
        a = await plain.create("m", MESSAGES, temperature=1)
        b = await protected.create("m", MESSAGES, temperature=1)
    assert fake.seen[0].payload == fake.seen[1].payload
    assert set(fake.seen[0].package) == set(fake.seen[1].package)
    assert a["choices"] == b["choices"]
    assert plain.client.secure_memory is False


def test_repr_hides_secrets() -> None:
    client = SecureChatCompletion(BASE, api_key="sk-hidden")
    assert "sk-hidden" not in repr(client)
    assert "sk-hidden" not in repr(client.client)
    assert BASE in repr(client)


async def test_timeout_bounds_the_whole_attempt(router: Router) -> None:
    """A server that trickles its body still ends in APIConnectionError after `timeout`."""
    fake, mock = router

    async def trickle() -> Any:
        while True:
            await asyncio.sleep(0.01)
            yield b" "

    fake.script = [httpx.Response(503, content=trickle()) for _ in range(2)]
    client = chat(timeout=0.1, max_retries=1)
    record_sleeps(client)
    with pytest.raises(APIConnectionError, match="timed out") as info:
        await client.create("m", MESSAGES)
    assert info.value.status_code is None
    assert mock["post"].call_count == 2
    await client.aclose()


# --- spec 1.0.1 ------------------------------------------------------------------------------

CALL_HEADERS = ("x-payload-id", "x-public-key", "authorization", "x-security-tier",
                "content-type")


def posts(mock: respx.MockRouter) -> list[httpx.Request]:
    return [call.request for call in mock["post"].calls]


def assert_attempts_encrypted_anew(requests: list[httpx.Request]) -> None:
    """RTY-15: no two attempts share a package, an AES key or a nonce; TIER-5: every attempt
    carries exactly the same call headers; HDR-11: no Content-Encoding, the body is the
    package itself."""
    packages = [json.loads(r.content) for r in requests]
    assert len({r.content for r in requests}) == len(requests)
    assert len({p["encrypted_aes_key"] for p in packages}) == len(requests)
    assert len({p["encrypted_payload"]["nonce"] for p in packages}) == len(requests)
    first = requests[0].headers
    for request in requests:
        for name in CALL_HEADERS:
            assert request.headers.get(name) == first.get(name), name
        assert "content-encoding" not in request.headers


async def test_every_retry_is_encrypted_anew_with_the_same_headers(
        router: Router, server_key: rsa.RSAPrivateKey) -> None:
    fake, mock = router
    fake.script = [httpx.Response(503), httpx.ConnectError("refused"),
                   httpx.Response(502)]
    client = chat(max_retries=3, api_key="sk-retry")
    record_sleeps(client)
    result = await client.create("m", MESSAGES, security_tier="high")
    requests = posts(mock)
    assert len(requests) == 4
    assert_attempts_encrypted_anew(requests)
    assert requests[0].headers["x-security-tier"] == "high"
    assert requests[0].headers["authorization"] == "Bearer sk-retry"
    payloads = [json.loads(wire.unseal(json.loads(r.content), server_key)) for r in requests]
    assert all(p == {"model": "m", "messages": MESSAGES} for p in payloads)
    assert result["_metadata"]["payload_id"] == requests[0].headers["x-payload-id"]
    await client.aclose()


@pytest.mark.parametrize("tier", ["standard", "high", "maximum", None])
async def test_rotation_resend_is_encrypted_anew_and_keeps_the_tier(
        router: Router, server_key: rsa.RSAPrivateKey, other_server_key: rsa.RSAPrivateKey,
        tier: str | None) -> None:
    """TIER-5: the rotation resend carries the call's tier (a client that drops it is served
    at the server's default tier); RTY-15: it is a new package under the new key."""
    fake, mock = router
    fake.key_script = [httpx.Response(200, text=wire.spki_pem(server_key))]
    fake.server_key = other_server_key
    fake.script = [httpx.Response(400, json={"detail": "decryption failed"})]
    async with chat(api_key="sk-rot") as client:
        result = await client.create("m", MESSAGES, security_tier=tier)
    requests = posts(mock)
    assert len(requests) == 2
    assert_attempts_encrypted_anew(requests)
    assert requests[1].headers.get("x-security-tier") == tier
    assert requests[1].headers["authorization"] == "Bearer sk-rot"
    assert json.loads(wire.unseal(json.loads(requests[1].content), other_server_key)) == \
        {"model": "m", "messages": MESSAGES}
    assert fake.seen[0].headers.get("x-security-tier") == tier
    assert result["_metadata"]["security_tier"] == (tier or "standard")


@pytest.mark.parametrize("served", ["standard", None, "Maximum"])
async def test_answer_not_at_the_asked_tier_is_refused(router: Router, served: str | None
                                                       ) -> None:
    """TIER-9: the X-Security-Tier header is unauthenticated; the answer's metadata is what
    says which tier served it. A refused answer is not retried."""
    fake, mock = router

    def respond(seen: Seen) -> httpx.Response:
        obj = wire.completion(seen.payload, seen.headers["x-payload-id"])
        if served is None:
            del obj["_metadata"]["security_tier"]
        else:
            obj["_metadata"]["security_tier"] = served
        return FakeRouter.answer(seen, obj)

    fake.script = [respond]
    async with chat() as client:
        with pytest.raises(SecurityError, match="tier") as info:
            await client.create("m", MESSAGES, security_tier="maximum")
    assert "top secret message" not in str(info.value)
    assert mock["post"].call_count == 1


async def test_send_secure_request_checks_the_tier_too(router: Router) -> None:
    fake, _ = router
    fake.script = [lambda seen: FakeRouter.answer(
        seen, wire.completion(seen.payload, seen.headers["x-payload-id"], "standard"))]
    async with SecureCompletionClient(BASE) as client:
        with pytest.raises(SecurityError, match="tier"):
            await client.send_secure_request({"model": "m", "messages": MESSAGES}, "p-1",
                                             None, "high")
        result = await client.send_secure_request({"model": "m", "messages": MESSAGES},
                                                  "p-2", None, "high")
        assert result["_metadata"]["security_tier"] == "high"


async def test_low_level_decrypt_response_checks_a_given_tier(
        client_key: rsa.RSAPrivateKey) -> None:
    body = json.dumps(wire.seal(json.dumps(
        {"_metadata": {"payload_id": "p", "security_tier": "standard"}}).encode(),
        client_key.public_key())).encode()
    client = SecureCompletionClient(BASE)
    client._install_private_key(client_key)
    assert (await client.decrypt_response(body, "p"))["_metadata"]["payload_id"] == "p"
    assert (await client.decrypt_response(body, "p", security_tier="standard"))
    with pytest.raises(SecurityError, match="tier"):
        await client.decrypt_response(body, "p", security_tier="maximum")
    with pytest.raises(ValueError, match="security_tier"):
        await client.decrypt_response(body, "p", security_tier="max")


async def test_server_processed_at_is_returned(router: Router) -> None:
    """CHK-17: the package's top-level processed_at (unauthenticated) never replaces the
    server's _metadata.processed_at."""
    fake, _ = router

    def respond(seen: Seen) -> httpx.Response:
        obj = wire.completion(seen.payload, seen.headers["x-payload-id"])
        obj["_metadata"]["processed_at"] = 1_650_000_000.5
        return FakeRouter.answer(seen, obj, processed_at=1)

    fake.script = [respond]
    async with chat() as client:
        result = await client.create("m", MESSAGES)
    assert result["_metadata"]["processed_at"] == 1_650_000_000.5


@pytest.mark.parametrize("failure", [
    [httpx.Response(503)] * 3, [httpx.Response(500)] * 3, [httpx.Response(502)] * 3,
    [httpx.Response(504), httpx.Response(503), httpx.ConnectError("refused")],
    [httpx.ConnectError("refused")] * 3, [httpx.ReadTimeout("slow")] * 3,
])
async def test_exhausted_retries_drop_the_cached_server_key(router: Router,
                                                            failure: list[Any]) -> None:
    """DISC-12: after a call that gave up on 5xx answers or network failures, the next call
    fetches the server key anew (a server that lost its key must not wedge the client)."""
    fake, mock = router
    fake.script = list(failure)
    client = chat(max_retries=2)
    record_sleeps(client)
    with pytest.raises(APIError):
        await client.create("m", MESSAGES)
    assert mock["post"].call_count == 3
    assert fake.key_fetches == 1
    await client.create("m", MESSAGES)
    assert fake.key_fetches == 2
    await client.create("m", MESSAGES)
    assert fake.key_fetches == 2
    await client.aclose()


async def test_max_retries_zero_still_drops_the_key(router: Router) -> None:
    fake, _ = router
    fake.script = [httpx.Response(503)]
    async with chat(max_retries=0) as client:
        with pytest.raises(ServiceUnavailableError):
            await client.create("m", MESSAGES)
        await client.create("m", MESSAGES)
    assert fake.key_fetches == 2


@pytest.mark.parametrize("answers", [
    [httpx.Response(429)] * 3,  # rate limiting says nothing about the key
    [httpx.Response(401)], [httpx.Response(403)], [httpx.Response(409)],
    [httpx.Response(503), httpx.Response(401)],  # gave up on a final status, not 5xx
])
async def test_other_failures_keep_the_cached_server_key(router: Router,
                                                         answers: list[Any]) -> None:
    fake, _ = router
    fake.script = list(answers)
    client = chat(max_retries=2)
    record_sleeps(client)
    with pytest.raises(APIError):
        await client.create("m", MESSAGES)
    await client.create("m", MESSAGES)
    assert fake.key_fetches == 1
    await client.aclose()


async def test_drop_spares_a_key_another_call_already_replaced(router: Router) -> None:
    async with chat() as client:
        await client.create("m", MESSAGES)
        inner = client.client
        current = inner._server_key_pem
        assert current is not None
        inner._drop_server_key("-----BEGIN PUBLIC KEY-----\nolder\n", 503)
        assert inner._server_key_pem == current
        inner._drop_server_key(current, 429)
        assert inner._server_key_pem == current
        inner._drop_server_key(current, None)
        assert inner._server_key is None


async def test_cached_server_key_is_refetched_after_an_hour(
        router: Router, other_server_key: rsa.RSAPrivateKey) -> None:
    """DISC-13: a cached key older than 3600 s is fetched again (fake clock)."""
    fake, mock = router
    now = [1000.0]
    async with chat() as client:
        client.client._clock = lambda: now[0]
        await client.create("m", MESSAGES)
        assert fake.key_fetches == 1
        now[0] += 3599.9
        await client.create("m", MESSAGES)
        assert fake.key_fetches == 1
        now[0] += 0.1  # 3600 s after the fetch
        fake.server_key = other_server_key  # the server rotated meanwhile
        result = await client.create("m", MESSAGES)
        assert fake.key_fetches == 2
        assert result["choices"][0]["message"]["content"] == "top secret message"
        assert mock["post"].call_count == 3  # the new key was used at once, no 400 round
        now[0] += 3599
        await client.create("m", MESSAGES)
        assert fake.key_fetches == 2
    assert nomyo_ref.protocol.SERVER_KEY_MAX_AGE == 3600


async def test_pkcs1_server_key_is_refused_and_nothing_is_sent(
        router: Router, server_key: rsa.RSAPrivateKey) -> None:
    """DISC-14: a PKCS#1 "RSA PUBLIC KEY" PEM is refused like any other unusable key."""
    fake, mock = router
    pkcs1 = server_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                 serialization.PublicFormat.PKCS1).decode()
    fake.key_script = [httpx.Response(200, text=pkcs1)]
    async with chat() as client:
        with pytest.raises(SecurityError):
            await client.create("m", MESSAGES)
    assert mock["post"].call_count == 0


async def test_post_has_no_content_encoding(router: Router) -> None:
    """HDR-11: the body is the package bytes as they are."""
    _, mock = router
    async with chat() as client:
        await client.create("m", MESSAGES)
    request = posts(mock)[0]
    assert "content-encoding" not in request.headers
    assert set(json.loads(request.content)) == {
        "version", "algorithm", "encrypted_payload", "encrypted_aes_key", "key_algorithm",
        "payload_algorithm"}


async def test_409_replay_refusal_is_an_api_error_not_retried(router: Router) -> None:
    fake, mock = router
    fake.script = [httpx.Response(409, json={"detail": "replayed request"})]
    client = chat()
    delays = record_sleeps(client)
    with pytest.raises(APIError, match="replayed request") as info:
        await client.create("m", MESSAGES)
    assert type(info.value) is APIError
    assert info.value.status_code == 409
    assert info.value.error_details == {"detail": "replayed request"}
    assert mock["post"].call_count == 1
    assert delays == []
    assert fake.key_fetches == 1
    await client.aclose()


@pytest.mark.parametrize("size", [1_048_575, 1_048_576, 1_048_577, 3_000_000])
async def test_error_json_is_parsed_up_to_one_mib(router: Router, size: int) -> None:
    """ERR-12/ERR-16: the whole JSON of an error body up to 1,048,576 bytes gives the
    detail; a longer body is text (its first 1024 characters), read only so far."""
    fake, _ = router
    body = b'{"detail": "' + b"q" * (size - 14) + b'"}'
    fake.script = [httpx.Response(400, content=body)]
    async with chat() as client:
        with pytest.raises(InvalidRequestError) as info:
            await client.create("m", MESSAGES)
    if size <= 1_048_576:
        assert info.value.error_details == {"detail": "q" * (size - 14)}
    else:
        assert info.value.error_details == {"detail": body[:1024].decode()}


async def test_error_body_whose_first_mib_is_json_is_text(router: Router) -> None:
    fake, _ = router
    body = b'{"detail": "short"}' + b" " * (1024 * 1024) + b"<html>"
    fake.script = [httpx.Response(401, content=body)]
    async with chat() as client:
        with pytest.raises(AuthenticationError) as info:
            await client.create("m", MESSAGES)
    assert info.value.error_details == {"detail": body[:1024].decode()}


async def test_deeply_nested_bodies_end_in_documented_errors(router: Router) -> None:
    """CHK-19/ERR-17: no body reaches a RecursionError."""
    fake, _ = router

    def deep_plaintext(seen: Seen) -> httpx.Response:
        pid = seen.headers["x-payload-id"]
        raw = ('{"x": ' + "[" * 50_000 + "]" * 50_000 + ', "_metadata": {"payload_id": "'
               + pid + '"}}').encode()
        package = wire.seal(raw, seen.client_key)
        return httpx.Response(200, content=json.dumps(package).encode())

    fake.script = [httpx.Response(200, content=b"[" * 200_000),
                   httpx.Response(400, content=b'{"detail": ' + b"[" * 200_000),
                   httpx.Response(503, content=b"{" * 200_000)] + \
        [httpx.Response(503, content=b"[" * 200_000)] * 2 + [deep_plaintext]
    client = chat(max_retries=2)
    record_sleeps(client)
    with pytest.raises(ValueError, match="nested too deeply"):
        await client.create("m", MESSAGES)
    with pytest.raises(InvalidRequestError):
        await client.create("m", MESSAGES)
    with pytest.raises(ServiceUnavailableError):
        await client.create("m", MESSAGES)
    with pytest.raises(SecurityError, match="nested too deeply"):
        await client.create("m", MESSAGES)
    await client.aclose()


async def test_response_over_32_mib_is_refused(router: Router) -> None:
    """CHK-19: the real cap (not a patched one): 32 MiB + 1 byte, streamed or declared."""
    fake, _ = router
    cap = 32 * 1024 * 1024

    async def chunks() -> Any:
        block = b" " * (1024 * 1024)
        for _ in range(32):
            yield block
        yield b"x"

    fake.script = [httpx.Response(200, content=chunks()),
                   httpx.Response(200, content=b" " * (cap + 1))]
    async with chat() as client:
        for _ in range(2):
            with pytest.raises(ValueError, match="too large"):
                await client.create("m", MESSAGES)


async def test_a_16_mib_answer_is_accepted_end_to_end(router: Router) -> None:
    fake, _ = router
    content = "z" * (11 * 1024 * 1024)

    def big(seen: Seen) -> httpx.Response:
        obj = wire.completion(seen.payload, seen.headers["x-payload-id"])
        obj["choices"][0]["message"]["content"] = content
        response = FakeRouter.answer(seen, obj)
        body = response.content[:-1] + b" " * (16 * 1024 * 1024 - len(response.content)) + b"}"
        return httpx.Response(200, content=body)

    fake.script = [big]
    async with chat() as client:
        result = await client.create("m", MESSAGES)
    assert result["choices"][0]["message"]["content"] == content
