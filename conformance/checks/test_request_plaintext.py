"""What the port encrypts: the router decrypts it and compares it with what the caller asked.

The risk: a port that loses, renames, normalises or adds parameters sends the model something
other than what the application asked, silently; one that puts the tier, the API key or the
base URL inside the plaintext leaks routing or credentials to the model host.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from conformance import expect
from conformance import strategies as cs
from conformance.checks._support import (
    MODEL,
    accepted,
    expect_kind,
    json_roundtrip,
    last_post,
    messages,
)

#: Every seed parameter at once (a port that drops any one fails this example).
FULL_PARAMS: dict[str, Any] = {
    "temperature": 0.7,
    "max_tokens": 64,
    "top_p": 0.9,
    "frequency_penalty": 0.5,
    "presence_penalty": -0.5,
    "stop": ["\n\n", "END"],
    "n": 2,
    "tools": [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ],
    "tool_choice": "auto",
    "user": "user-42",
}

#: Parameters the client does not know; they must pass through unchanged.
UNKNOWN_PARAMS: dict[str, Any] = {
    "seed": 7,
    "response_format": {"type": "json_object"},
    "logit_bias": {"50256": -100},
    "x_vendor_option": [1, "two", None, {"three": 3.5}],
}


def _expected_plaintext(model: str, msgs: Any, params: dict[str, Any]) -> dict[str, Any]:
    return json_roundtrip({"model": model, "messages": msgs, **params})


def _check_sent(router: Any, outcome: Any, model: str, msgs: Any, params: dict[str, Any]) -> None:
    expect.ok(outcome, "a completion")
    seen = last_post(router)
    accepted(seen)
    expect.equal(seen.payload, _expected_plaintext(model, msgs, params), "decrypted plaintext")


@pytest.mark.req("REQ-1", "REQ-2", "REQ-3", "REQ-5")
@given(model=cs.model_names(), msgs=cs.messages(), params=cs.chat_params())
@example(model=MODEL, msgs=messages(), params=FULL_PARAMS)
def test_plaintext_is_model_messages_and_parameters(
    ccall: Any, router: Any, model: str, msgs: list[dict[str, Any]], params: dict[str, Any]
) -> None:
    """The decrypted plaintext is exactly {model, messages, parameters} as the caller gave them:
    nothing lost, changed or added (a port that injects defaults changes model behaviour)."""
    router.reset()
    outcome = ccall(model=model, messages=msgs, **params)
    _check_sent(router, outcome, model, msgs, params)
    seen = last_post(router)
    expect.true(
        json.loads(seen.plaintext.decode("utf-8")) == seen.payload,
        "plaintext to be UTF-8 JSON",
        seen.plaintext[:200],
    )


@pytest.mark.req("REQ-4")
@given(extra=cs.extra_params())
@example(extra=UNKNOWN_PARAMS)
def test_unknown_parameters_pass_through(ccall: Any, router: Any, extra: dict[str, Any]) -> None:
    """Parameters the port does not know reach the server unchanged (OpenAI compatibility:
    new server features must not need a new client)."""
    router.reset()
    outcome = ccall(model=MODEL, messages=messages(), **extra)
    _check_sent(router, outcome, MODEL, messages(), extra)


@pytest.mark.req("REQ-2", "REQ-1")
def test_every_tricky_string_in_one_request(ccall: Any, router: Any) -> None:
    """All the hand-picked hard strings (NUL, combining marks, RTL, astral, noncharacters,
    JSON escapes, U+2028) survive unchanged: no NFC normalisation, no escaping bugs."""
    msgs = [{"role": "user", "content": text} for text in cs.TRICKY]
    _check_sent(
        router, ccall(model="modèle-\u00e9\u0301", messages=msgs), "modèle-\u00e9\u0301", msgs, {}
    )


@pytest.mark.req("REQ-6")
@given(tier=cs.valid_tiers())
def test_tier_and_api_key_never_in_plaintext(
    impl: Any, ccall: Any, make_config: Any, router: Any, tier: str
) -> None:
    """security_tier and api_key travel as headers only: inside the plaintext they would
    reach the model host and its logs."""
    router.reset()
    api_key = "key-zq9-plaintext-check"
    kwargs: dict[str, Any] = {}
    if "security_tier" in impl.capabilities:
        kwargs["security_tier"] = tier
    config = make_config(api_key=api_key) if "api_key" in impl.capabilities else make_config()
    outcome = ccall(model=MODEL, messages=messages(), config=config, **kwargs)
    expect.ok(outcome, "a completion")
    payload = last_post(router).payload
    expect.equal(sorted(payload), ["messages", "model"], "plaintext members")
    text = last_post(router).plaintext.decode("utf-8")
    expect.true(api_key not in text, "the API key absent from the plaintext", text[:200])


@pytest.mark.req("REQ-7")
@given(stream=st.sampled_from([True, "true", 1]))
def test_stream_true_is_never_sent(ccall: Any, router: Any, stream: Any) -> None:
    """Encrypted inference does not stream: a plaintext with stream other than false must
    never leave the client (whatever the client does instead)."""
    router.reset()
    ccall(model=MODEL, messages=messages(), stream=stream)
    sent = [s.payload.get("stream") for s in router.seen if isinstance(s.payload, dict)]
    expect.true(
        all(v in (None, False) for v in sent), "no plaintext with stream other than false", sent
    )


@pytest.mark.req("REQ-8")
def test_stream_true_is_refused_locally(ccall: Any, router: Any) -> None:
    """stream=True is best refused locally with ValueError, not by a confusing server 400."""
    outcome = ccall(model=MODEL, messages=messages(), stream=True)
    expect_kind(outcome, "value", "stream=True")
    expect.true(not router.seen, "nothing sent", [s.path for s in router.seen])


@pytest.mark.req("REQ-11", "ERR-19")
@given(value=st.sampled_from([float("nan"), float("inf"), float("-inf")]))
def test_non_json_values_are_refused(ccall: Any, router: Any, value: float) -> None:
    """NaN and Infinity are not JSON: a port that emits them sends a body other languages
    (and the spec) reject. They must be refused locally with ValueError."""
    router.reset()
    outcome = ccall(model=MODEL, messages=messages(), temperature=value)
    expect_kind(outcome, "value")
    expect.true(not router.seen, "nothing sent", [s.path for s in router.seen])


@pytest.mark.req("REQ-12")
@given(
    bad=st.sampled_from(
        [
            ("model", ""),
            ("model", None),
            ("model", 5),
            ("messages", "hi"),
            ("messages", {"role": "user"}),
        ]
    )
)
def test_malformed_model_or_messages_refused(ccall: Any, router: Any, bad: tuple[str, Any]) -> None:
    """A model that is not a non-empty string, or messages that are not a list, is a caller
    error best caught before encrypting and sending."""
    router.reset()
    args: dict[str, Any] = {"model": MODEL, "messages": messages()}
    args[bad[0]] = bad[1]
    outcome = ccall(**args)
    expect_kind(outcome, "value")
    expect.true(not router.seen, "nothing sent", [s.path for s in router.seen])
