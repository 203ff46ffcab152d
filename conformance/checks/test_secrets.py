"""No plaintext, message content, API key or private key in exceptions, logs or reprs.

The risks: exception messages end up in crash reports, error trackers and support tickets;
log records end up in log aggregation. A port that puts the prompt or the API key in either
undoes the encryption for everyone who can read those systems. The checks provoke every kind
of failure with marked secrets and scan everything the port exposes.
"""

from __future__ import annotations

import json
import secrets as random_secrets
from typing import Any

import pytest

from conformance import expect
from conformance.adapter import Outcome
from conformance.checks._client_support import port_logs
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


def _provocations(
    secret: dict[str, str],
) -> dict[str, tuple[Scenario | None, dict[str, Any], str]]:
    """Failures to provoke: (scenario for the router, extra create kwargs, the kind of the
    error the spec names for it)."""
    return {
        "401": (Scenario.status(401, {"detail": "invalid API key"}), {}, "authentication"),
        "400": (Scenario.status(400, {"detail": "bad request"}), {}, "invalid_request"),
        "403": (Scenario.status(403, {"detail": "not for this tier"}), {}, "forbidden"),
        "429": (Scenario.status(429, {"detail": "slow down"}), {}, "rate_limit"),
        "500 text": (Scenario.status(500, b"<html>oops</html>"), {}, "server"),
        "503 empty": (Scenario.status(503, None), {}, "service_unavailable"),
        "key fetch 500": (Scenario.status(500, {"detail": "k"}, path=KEY_PATH), {}, "server"),
        "dropped": (Scenario.drop(), {}, "connection"),
        "tampered": (Scenario.tamper("tag"), {}, "security"),
        "wrong recipient": (Scenario.wrong_recipient(), {}, "security"),
        "not an object": (Scenario.plaintext(b"[1]"), {}, "security"),
        "not json": (Scenario.plaintext(b"\xffnot json"), {}, "security"),
        "no metadata": (Scenario.no_metadata(), {}, "security"),
        "other payload id": (
            Scenario.payload_id("00000000-0000-4000-8000-000000000000"),
            {},
            "security",
        ),
        "bad version": (Scenario.package(version="0.9"), {}, "value"),
        "200 not json": (Scenario.status(200, b"nonsense"), {}, "value"),
        "stream": (None, {"stream": True}, "value"),
        "nan": (None, {"temperature": float("nan")}, "value"),
        "over the limit": (None, {"_huge": True}, "value"),
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
    for name, (scenario, kwargs, _) in _provocations(secret).items():
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
    """Evidence: client behaviour. Across every failure the suite can provoke (HTTP errors,
    crypto failures, binding failures, local refusals), no exception message or detail
    contains the API key, the message content, a tool definition or private key material.
    Every error is scanned; the provocations that ended in the error the spec names for them
    are the evidence that the port was exercised at all (an implementation that answers
    `unsupported` to everything is NOT APPLICABLE, not passed)."""
    secret = _secrets()
    outcomes = _provoke_all(call, ccall, make_config, router, secret)
    for outcome in outcomes.values():
        expect.applicable(
            outcome
        ) if outcome.error and outcome.error.kind == "unsupported" else None
    kinds = {name: kind for name, (_, _, kind) in _provocations(secret).items()}
    named = [n for n, o in outcomes.items() if o.error is not None and o.error.kind == kinds[n]]
    expect.evidence(named, "a provocation ending in the error the spec names for it")
    for name, outcome in outcomes.items():
        if outcome.error is not None:
            no_leak(f"the error for {name}", texts_of(outcome.error), secret)


@pytest.mark.req("LOG-2")
@pytest.mark.requires("log_capture", "api_key")
def test_no_secret_in_any_log_record(
    impl: Any, call: Any, ccall: Any, make_config: Any, router: Any
) -> None:
    """Evidence: client behaviour. With every logger of the port at DEBUG (the root, the
    adapter's loggers and every logger under the port's package, whatever level the port
    pinned them at, each with our handler attached), neither a call nor any failure writes
    the API key, message content or key material into a log record."""
    secret = _secrets()
    config = make_config(api_key=secret["API key"])
    with port_logs(impl) as records:
        router.push(Scenario.status(418, {"detail": "scripted"}))
        ccall(model=MODEL, messages=_messages(secret), config=config)
        _provoke_all(call, ccall, make_config, router, secret)
    port_records = [r for r in records if not r.name.startswith(ROUTER_LOGGERS)]
    for record in port_records:
        try:
            text = record.getMessage()
        except Exception:  # a broken format string is not a leak
            text = str(record.msg)
        no_leak(f"log record {record.name}:{record.levelname}", text, secret)


@pytest.mark.req("LOG-4")
@pytest.mark.requires("api_key", "client_reuse")
def test_client_repr_hides_the_api_key(impl: Any, make_config: Any) -> None:
    """Evidence: client behaviour. The port's printed forms of a client object (repr() and
    str() in Python; over cmd: the testee's client.describe op) never show the API key
    (they end up in debug output and tracebacks). A port that cannot show them is NOT
    APPLICABLE, never passed."""
    secret = _secrets()
    config = make_config(api_key=secret["API key"])
    with client(impl, config) as handle:
        forms = expect.applicable(impl.describe_client(handle))
    shown = expect.ok(forms, "the client's printed forms")
    expect.evidence(shown or [], "a printed form of the client")
    for number, text in enumerate(shown):
        no_leak(f"printed form {number + 1} of the client", str(text), secret)


@pytest.mark.req("LOG-1")
@pytest.mark.requires("api_key")
def test_no_api_key_in_authentication_error(call: Any, make_config: Any, router: Any) -> None:
    """Evidence: answer. The most tempting place to leak: the 401 error must not quote the
    rejected key."""
    secret = _secrets()
    router.push(Scenario.status(401, {"detail": "invalid API key"}))
    outcome = call(
        model=MODEL, messages=_messages(secret), config=make_config(api_key=secret["API key"])
    )
    error = expect_kind(outcome, "authentication")
    no_leak("the authentication error", texts_of(error), secret)


#: Error bodies that echo the call's API key (a gateway quoting the rejected header), and a
#: text around the key that shows the client carried that part of the body.
ECHOES: dict[str, tuple[int, Any, str]] = {
    "detail": (401, {"detail": "invalid API key KEY"}, "invalid API key"),
    "member": (400, {"detail": "bad", "received": {"authorization": "Bearer KEY"}}, "Bearer"),
    "text": (403, b"<html>key KEY is not allowed</html>", "is not allowed"),
}


def _echo(body: Any, key: str) -> Any:
    if isinstance(body, bytes):
        return body.replace(b"KEY", key.encode())
    return json.loads(json.dumps(body).replace("KEY", key))


@pytest.mark.req("ERR-20", "LOG-1")
@pytest.mark.requires("api_key")
@pytest.mark.parametrize("shape", list(ECHOES))
def test_api_key_in_error_body_is_redacted(
    call: Any, make_config: Any, router: Any, shape: str
) -> None:
    """Evidence: answer. An error body that echoes the call's API key (in detail, in another
    member, in a non-JSON text): the key is replaced by [redacted] before detail, message and
    error_details are made (ERR-20), so no exception carries it (LOG-1). Where the client
    carried that part of the body (message, error_details), [redacted] stands for the key."""
    secret = _secrets()
    status, body, around = ECHOES[shape]
    router.push(Scenario.status(status, _echo(body, secret["API key"])))
    outcome = call(
        model=MODEL, messages=_messages(secret), config=make_config(api_key=secret["API key"])
    )
    error = expect.applicable(outcome).error
    if error is None:
        expect.blocked("ERR-1", f"status {status} gave no exception")
    only_key = {"API key": secret["API key"]}
    with expect.clause("ERR-20", "LOG-1"):
        no_leak(f"the error for a {status} echoing the key ({shape})", texts_of(error), only_key)
    details = json.dumps(error.details, default=repr)
    with expect.clause("ERR-20"):
        for where, text in (("message", error.message), ("error_details", details)):
            if around in text:
                expect.true(
                    "[redacted]" in text,
                    f"{where} with [redacted] where the key was",
                    text[:200].replace(secret["API key"], "<the API key>"),
                )
