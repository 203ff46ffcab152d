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
    expect_kind,
    json_roundtrip,
    messages,
    payload_of,
    plaintext_of,
    posts,
    sent_posts,
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


#: The parameters of the seed API reference (REQ-3); every other keyword is REQ-13's alone.
SEED_PARAMS = frozenset(
    {"temperature", "max_tokens", "top_p", "frequency_penalty", "presence_penalty", "stop",
     "n", "tools", "tool_choice", "user"}
)  # fmt: skip


def _parsed(plaintext: bytes) -> Any:
    """The plaintext as REQ-1 wants it (UTF-8, no BOM, JSON), or None."""
    if plaintext.startswith(b"\xef\xbb\xbf"):
        return None
    try:
        return json.loads(plaintext.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None


def _check_sent(
    router: Any, model: str, msgs: Any, params: dict[str, Any], ids: tuple[str, ...]
) -> None:
    """Judge the last POST's plaintext (the router's decryption, or the tolerant one when it
    refused the package) against what the caller asked, one clause per id in `ids`."""
    seen = sent_posts(router)[-1]
    plaintext = plaintext_of(seen)
    payload = _parsed(plaintext)
    with expect.clause("REQ-1"):
        expect.true(
            isinstance(payload, dict),
            "a UTF-8 JSON object without a byte order mark",
            plaintext[:200],
        )
    if not isinstance(payload, dict):
        expect.blocked(by="REQ-1", why="the plaintext is not a UTF-8 JSON object")
    if "REQ-2" in ids:
        with expect.clause("REQ-2"):
            expect.equal(payload.get("model"), model, "model")
            expect.equal(payload.get("messages"), json_roundtrip(msgs), "messages")
    for name, value in params.items():
        seed = name in SEED_PARAMS
        if seed and "REQ-3" not in ids:
            continue
        with expect.clause(*(("REQ-3", "REQ-13") if seed else ("REQ-13",))):
            expect.true(name in payload, f"parameter {name!r} in the plaintext", sorted(payload))
            expect.equal(payload[name], json_roundtrip(value), f"parameter {name!r}")
    if "REQ-5" in ids:
        with expect.clause("REQ-5"):
            added = sorted(set(payload) - {"model", "messages"} - set(params))
            expect.true(not added, "no member the caller did not pass", f"added {added}")


@pytest.mark.req("REQ-1", "REQ-2", "REQ-3", "REQ-5", "REQ-13")
@given(model=cs.model_names(), msgs=cs.messages(), params=cs.chat_params())
@example(model=MODEL, msgs=messages(), params=FULL_PARAMS)
def test_plaintext_is_model_messages_and_parameters(
    ccall: Any, router: Any, model: str, msgs: list[dict[str, Any]], params: dict[str, Any]
) -> None:
    """Evidence: request. The decrypted plaintext is exactly {model, messages, parameters} as
    the caller gave them: nothing lost, changed or added (a port that injects defaults
    changes model behaviour)."""
    router.reset()
    ccall(model=model, messages=msgs, **params)
    _check_sent(router, model, msgs, params, ("REQ-1", "REQ-2", "REQ-3", "REQ-5", "REQ-13"))


@pytest.mark.req("REQ-13", "REQ-1")
@given(extra=cs.extra_params())
@example(extra=UNKNOWN_PARAMS)
def test_unknown_parameters_pass_through(ccall: Any, router: Any, extra: dict[str, Any]) -> None:
    """Evidence: request. Parameters the port does not know reach the server unchanged
    (OpenAI compatibility: new server features must not need a new client)."""
    router.reset()
    ccall(model=MODEL, messages=messages(), **extra)
    _check_sent(router, MODEL, messages(), extra, ("REQ-1", "REQ-13"))


@pytest.mark.req("REQ-2", "REQ-1")
def test_every_tricky_string_in_one_request(ccall: Any, router: Any) -> None:
    """Evidence: request. All the hand-picked hard strings (NUL, combining marks, RTL, astral,
    noncharacters, JSON escapes, U+2028) survive unchanged: no NFC normalisation, no escaping
    bugs."""
    msgs = [{"role": "user", "content": text} for text in cs.TRICKY]
    model = "modèle-\u00e9\u0301"
    ccall(model=model, messages=msgs)
    _check_sent(router, model, msgs, {}, ("REQ-1", "REQ-2"))


@pytest.mark.req("REQ-6")
@given(tier=cs.valid_tiers())
def test_tier_and_api_key_never_in_plaintext(
    impl: Any, ccall: Any, make_config: Any, router: Any, tier: str
) -> None:
    """Evidence: request. security_tier, api_key and base_url travel as headers (or select
    the router) only: inside the plaintext they would reach the model host and its logs."""
    router.reset()
    api_key = "key-zq9-plaintext-check"
    kwargs: dict[str, Any] = {}
    if "security_tier" in impl.capabilities:
        kwargs["security_tier"] = tier
    config = make_config(api_key=api_key) if "api_key" in impl.capabilities else make_config()
    ccall(model=MODEL, messages=messages(), config=config, **kwargs)
    seen = sent_posts(router)[-1]
    plaintext = plaintext_of(seen)
    payload = _parsed(plaintext)
    names = sorted({"security_tier", "api_key", "base_url"} & set(payload or {}))
    expect.true(not names, "no security_tier, api_key or base_url member", names)
    text = plaintext.decode("utf-8", "replace")
    expect.true(api_key not in text, "the API key absent from the plaintext", text[:200])
    expect.true(config.base_url not in text, "the base URL absent from the plaintext", text[:200])


@pytest.mark.req("REQ-7")
@given(stream=st.sampled_from([True, "true", 1]))
def test_stream_true_is_never_sent(ccall: Any, router: Any, stream: Any) -> None:
    """Evidence: request, client behaviour. Encrypted inference does not stream: a plaintext
    with stream other than false never leaves the client. A client that sends nothing must
    have refused the call (ValueError, a caller error found locally)."""
    router.reset()
    outcome = ccall(model=MODEL, messages=messages(), stream=stream)
    sent = posts(router)
    if not sent:
        expect_kind(outcome, "value", f"stream={stream!r} refused, as nothing was sent")
        return
    for seen in sent:
        payload = payload_of(seen)
        value = payload.get("stream") if isinstance(payload, dict) else None
        expect.true(value in (None, False), "no plaintext with stream other than false", value)


@pytest.mark.req("REQ-8")
def test_stream_true_is_refused_locally(ccall: Any, router: Any) -> None:
    """Evidence: client behaviour, request. stream=True is best refused locally with
    ValueError, not by a confusing server 400; stream=False passes through as false."""
    outcome = ccall(model=MODEL, messages=messages(), stream=True)
    expect_kind(outcome, "value", "stream=True")
    expect.true(not router.seen, "nothing sent", [s.path for s in router.seen])
    ccall(model=MODEL, messages=messages(), stream=False)
    payload = payload_of(sent_posts(router)[-1])
    value = payload.get("stream", "absent") if isinstance(payload, dict) else payload
    expect.true(value is False, "stream=False sent as false", value)


@pytest.mark.req("REQ-11", "ERR-19")
@given(value=st.sampled_from([float("nan"), float("inf"), float("-inf")]))
def test_non_json_values_are_refused(ccall: Any, router: Any, value: float) -> None:
    """Evidence: client behaviour. NaN and Infinity are not JSON: a port that emits them
    sends a body other languages (and the spec) reject. They must be refused locally with
    ValueError."""
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
    """Evidence: client behaviour. A model that is not a non-empty string, or messages that
    are not a list, is a caller error best caught before encrypting and sending."""
    router.reset()
    args: dict[str, Any] = {"model": MODEL, "messages": messages()}
    args[bad[0]] = bad[1]
    outcome = ccall(**args)
    expect_kind(outcome, "value")
    expect.true(not router.seen, "nothing sent", [s.path for s in router.seen])
