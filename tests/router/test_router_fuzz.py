"""Hypothesis throws malformed requests at the router in-process: never a 5xx, never a crash,
and the router keeps answering a valid request afterwards."""

from __future__ import annotations

import asyncio
import copy
import json
import string
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from mock_router import MockRouter, Scenario

from .wire import KEY_PATH, POST_PATH, headers_for, open_package, seal

CHAT = {"model": "m", "messages": [{"role": "user", "content": "still alive"}]}
SETTINGS = settings(max_examples=150, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


class Harness:
    """One router, one event loop and one in-process client for a whole module."""

    def __init__(self, router: MockRouter, client_pem: str) -> None:
        self.router = router
        self.client_pem = client_pem
        self.loop = asyncio.new_event_loop()
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=router.app),
                                      base_url="http://router.test")

    def post(self, body: bytes, headers: dict[str, str]) -> httpx.Response:
        return self.loop.run_until_complete(self.http.post(POST_PATH, content=body,
                                                           headers=headers))

    def valid_headers(self) -> dict[str, str]:
        return headers_for(self.client_pem, str(uuid.uuid4()))

    def valid_package(self, plaintext: bytes | None = None) -> dict[str, Any]:
        return seal(self.router.public_key_pem,
                    plaintext if plaintext is not None else json.dumps(CHAT).encode())

    def close(self) -> None:
        self.loop.run_until_complete(self.http.aclose())
        self.loop.close()


@pytest.fixture(scope="module")
def harness(server_key, client_key) -> Iterator[Harness]:
    from .wire import pem_of

    h = Harness(MockRouter(server_key, max_seen=100), pem_of(client_key))
    yield h
    # the router survived everything: a valid request still gets a decryptable answer
    r = h.post(json.dumps(h.valid_package()).encode(), h.valid_headers())
    assert r.status_code == 200
    assert json.loads(open_package(client_key, r.json()))["choices"]
    h.close()


def check(r: httpx.Response) -> None:
    assert r.status_code < 500, r.text
    if r.status_code != 200:
        assert isinstance(r.json()["detail"], str)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12)
HEADER_NAMES = st.sampled_from(["X-Payload-ID", "X-Public-Key", "Content-Type",
                                "X-Security-Tier", "Authorization", "Content-Length",
                                "X-Other"])
HEADER_VALUES = st.text(alphabet=string.printable.replace("\r", "").replace("\n", "")
                        .replace("\x0b", "").replace("\x0c", "") + "é€",
                        max_size=60).map(lambda s: s.strip())
PACKAGE_FIELDS = ["version", "algorithm", "encrypted_payload", "encrypted_aes_key",
                  "key_algorithm", "payload_algorithm", "encrypted_payload.ciphertext",
                  "encrypted_payload.nonce", "encrypted_payload.tag"]


@SETTINGS
@given(body=st.binary(max_size=512),
       changes=st.dictionaries(HEADER_NAMES, HEADER_VALUES | st.none(), max_size=4))
def test_random_headers_and_bytes(harness, body, changes):
    headers = harness.valid_headers()
    for name, value in changes.items():
        if name == "Content-Length":
            continue  # httpx sets it from the body
        if value is None:
            headers.pop(name, None)
        else:
            headers[name] = value
    try:
        r = harness.post(body, headers)
    except UnicodeEncodeError:
        return  # httpx refuses non-ASCII header values itself: nothing was sent
    check(r)


@SETTINGS
@given(value=JSON)
def test_random_json_bodies(harness, value):
    check(harness.post(json.dumps(value).encode(), harness.valid_headers()))


@SETTINGS
@given(field=st.sampled_from(PACKAGE_FIELDS), value=JSON | st.just(...))
def test_valid_package_with_one_field_mutated(harness, field, value):
    pkg = harness.valid_package()
    *parents, last = field.split(".")
    target = pkg
    for p in parents:
        target = target[p]
    if value is ...:
        del target[last]
    else:
        assume(target[last] != value)
        target[last] = value
    r = harness.post(json.dumps(pkg).encode(), harness.valid_headers())
    check(r)
    assert r.status_code == 400


CHAT_PARAMS = st.fixed_dictionaries({}, optional={
    "n": JSON | st.integers(-2, 5), "max_tokens": JSON | st.integers(-2, 50),
    "stop": JSON | st.lists(st.text(max_size=3), max_size=3), "stream": JSON,
    "tools": JSON | st.lists(st.fixed_dictionaries({"type": st.just("function"), "function":
                             st.fixed_dictionaries({"name": st.text(max_size=8)}, optional={
                                 "parameters": JSON})}), max_size=3),
    "tool_choice": JSON | st.sampled_from(["auto", "none", "required"]),
    "messages": JSON, "model": JSON})


@SETTINGS
@given(params=CHAT_PARAMS, content=JSON | st.text())
def test_valid_crypto_random_chat_parameters(harness, params, content):
    payload = {**copy.deepcopy(CHAT), **params}
    if "messages" not in params:
        payload["messages"] = [{"role": "user", "content": content}]
    body = json.dumps(harness.valid_package(json.dumps(payload).encode())).encode()
    check(harness.post(body, harness.valid_headers()))


@SETTINGS
@given(plaintext=st.binary(max_size=256) | JSON.map(lambda v: json.dumps(v).encode()))
def test_valid_crypto_random_plaintext(harness, plaintext):
    body = json.dumps(harness.valid_package(plaintext)).encode()
    check(harness.post(body, harness.valid_headers()))


@settings(max_examples=30, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(code=st.integers(100, 599), body=JSON | st.binary(max_size=20))
def test_any_status_scenario_is_answered_as_asked(harness, code, body):
    harness.router.push(Scenario.status(code, body, path=KEY_PATH))
    r = harness.loop.run_until_complete(harness.http.get(KEY_PATH))
    assert r.status_code == code
