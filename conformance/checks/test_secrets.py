"""No plaintext, message content, API key or private key in exceptions, logs or reprs.

The risks: exception messages end up in crash reports, error trackers and support tickets;
log records end up in log aggregation. A port that puts the prompt or the API key in either
undoes the encryption for everyone who can read those systems. The checks provoke every kind
of failure with marked secrets and scan everything the port exposes.
"""

from __future__ import annotations

import logging
import secrets as random_secrets
from collections.abc import Callable
from typing import Any

import pytest

from conformance import expect
from conformance.adapter import Outcome
from conformance.checks._support import (
    KEY_PATH,
    MAX_PLAINTEXT,
    MODEL,
    client,
    expect_kind,
    no_leak,
    texts_of,
)
from mock_router import Scenario

ROUTER_LOGGERS = ("mock_router", "uvicorn", "asyncio")


def _secrets() -> dict[str, str]:
    token = random_secrets.token_hex(8)
    return {
        "API key": f"sk-secret-{token}",
        "message content": f"CONTENT-SECRET-{token}",
        "tool argument": f"TOOLARG-SECRET-{token}",
        "private key material": "PRIVATE KEY-----",
    }


def _provocations(secret: dict[str, str]) -> dict[str, tuple[Scenario | None, dict[str, Any]]]:
    """Failures to provoke: (scenario for the router, extra create kwargs)."""
    return {
        "401": (Scenario.status(401, {"detail": "invalid API key"}), {}),
        "400": (Scenario.status(400, {"detail": "bad request"}), {}),
        "403": (Scenario.status(403, {"detail": "not for this tier"}), {}),
        "429": (Scenario.status(429, {"detail": "slow down"}), {}),
        "500 text": (Scenario.status(500, b"<html>oops</html>"), {}),
        "503 empty": (Scenario.status(503, None), {}),
        "key fetch 500": (Scenario.status(500, {"detail": "k"}, path=KEY_PATH), {}),
        "dropped": (Scenario.drop(), {}),
        "tampered": (Scenario.tamper("tag"), {}),
        "wrong recipient": (Scenario.wrong_recipient(), {}),
        "not an object": (Scenario.plaintext(b"[1]"), {}),
        "not json": (Scenario.plaintext(b"\xffnot json"), {}),
        "no metadata": (Scenario.no_metadata(), {}),
        "other payload id": (Scenario.payload_id("00000000-0000-4000-8000-000000000000"), {}),
        "bad version": (Scenario.package(version="0.9"), {}),
        "200 not json": (Scenario.status(200, b"nonsense"), {}),
        "stream": (None, {"stream": True}),
        "nan": (None, {"temperature": float("nan")}),
        "over the limit": (None, {"_huge": True}),
    }


def _messages(secret: dict[str, str], huge: bool = False) -> list[dict[str, Any]]:
    content = secret["message content"]
    if huge:
        content = content + "y" * (MAX_PLAINTEXT + 10)
    return [
        {"role": "system", "content": f"Keep this private: {content}"},
        {"role": "user", "content": content},
    ]


def _tools(secret: dict[str, str]) -> list[dict[str, Any]]:
    return [
        {
            "type": "function",
            "function": {
                "name": "lookup",
                "description": secret["tool argument"],
                "parameters": {"type": "object", "properties": {}},
            },
        }
    ]


def _provoke_all(
    call: Any, ccall: Any, make_config: Any, router: Any, secret: dict[str, str]
) -> dict[str, Outcome]:
    """Every provocation; the key-fetch one on a fresh client (a reused one has the key)."""
    outcomes: dict[str, Outcome] = {}
    config = make_config(api_key=secret["API key"])
    for name, (scenario, kwargs) in _provocations(secret).items():
        router.reset()
        if scenario is not None:
            router.push(scenario)
        extra = dict(kwargs)
        huge = bool(extra.pop("_huge", False))
        how = call if name.startswith("key fetch") else ccall
        outcomes[name] = how(
            model=MODEL,
            messages=_messages(secret, huge),
            config=config,
            tools=_tools(secret),
            **extra,
        )
    return outcomes


@pytest.mark.req("LOG-1")
@pytest.mark.requires("api_key")
def test_no_secret_in_any_error(call: Any, ccall: Any, make_config: Any, router: Any) -> None:
    """Across every failure the suite can provoke (HTTP errors, crypto failures, binding
    failures, local refusals), no exception message or detail contains the API key, the
    message content, a tool definition or private key material."""
    secret = _secrets()
    outcomes = _provoke_all(call, ccall, make_config, router, secret)
    errors = {name: o.error for name, o in outcomes.items() if o.error is not None}
    expect.true(
        len(errors) >= len(outcomes) // 2,
        "most provocations to end in an error",
        sorted(set(outcomes) - set(errors)),
    )
    for name, error in errors.items():
        no_leak(f"the error for {name}", texts_of(error), secret)


@pytest.mark.req("LOG-2")
@pytest.mark.requires("log_capture", "api_key")
def test_no_secret_in_any_log_record(
    call: Any, ccall: Any, make_config: Any, router: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """With logging at DEBUG, neither a successful call nor any failure writes the API key,
    message content or key material into a log record."""
    secret = _secrets()
    caplog.set_level(logging.DEBUG)
    config = make_config(api_key=secret["API key"])
    expect.ok(ccall(model=MODEL, messages=_messages(secret), config=config), "a completion")
    _provoke_all(call, ccall, make_config, router, secret)
    port_records = [r for r in caplog.records if not r.name.startswith(ROUTER_LOGGERS)]
    for record in port_records:
        try:
            text = record.getMessage()
        except Exception:  # a broken format string is not a leak
            text = str(record.msg)
        no_leak(f"log record {record.name}:{record.levelname}", text, secret)


@pytest.mark.req("LOG-4")
@pytest.mark.requires("api_key", "client_reuse")
def test_client_repr_hides_the_api_key(impl: Any, make_config: Any) -> None:
    """repr() and str() of a client object never show the API key (they end up in debug
    output and tracebacks)."""
    secret = _secrets()
    config = make_config(api_key=secret["API key"])
    with client(impl, config) as handle:
        shown: list[Callable[[Any], str]] = [repr, str]
        for show in shown:
            no_leak(f"{show.__name__}() of the client", show(handle), secret)


@pytest.mark.req("LOG-1")
@pytest.mark.requires("api_key")
def test_no_api_key_in_authentication_error(call: Any, make_config: Any, router: Any) -> None:
    """The most tempting place to leak: the 401 error must not quote the rejected key."""
    secret = _secrets()
    router.push(Scenario.status(401, {"detail": "invalid API key"}))
    outcome = call(
        model=MODEL, messages=_messages(secret), config=make_config(api_key=secret["API key"])
    )
    error = expect_kind(outcome, "authentication")
    no_leak("the authentication error", texts_of(error), secret)
