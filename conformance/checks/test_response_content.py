"""What the caller gets back: exactly what the server sent, plus the client's own _metadata.

The risks: a port that drops or rewrites members of the completion (tool calls, reasoning
content, unknown future members, unicode) hands the application something the model never
said; one that loses the server's _metadata hides which tier actually served the request; one
that reports the package's top-level processed_at (outside the encryption) reports a time
anyone on the path could have set.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import example, given

from conformance import expect
from conformance import strategies as cs
from conformance.checks._support import MODEL, answered, json_roundtrip, messages
from mock_router import Scenario

TOOL_CALL_COMPLETION: dict[str, Any] = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1700000000,
    "model": "mock-model",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "e\u0301 \U0001f600 \u05e9\u05dc\u05d5\u05dd \x00",
                "reasoning_content": "thinking \u2028 aloud",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Zürich"}'},
                    }
                ],
            },
            "finish_reason": "tool_calls",
        }
    ],
    "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
    "x_future_member": {"nested": [1, 2.5, None, True]},
}


#: The server's _metadata.processed_at in these answers: distinctive, so a client that takes
#: the package's top-level processed_at or its own clock instead is seen.
SERVER_TIME = 1234567890.125
#: The server's _metadata (besides payload_id, which the router binds to the request). Its
#: is_encrypted and encryption_algorithm are wrong on purpose: the client writes its own.
SERVER_META: dict[str, Any] = {
    "processed_at": SERVER_TIME,
    "is_encrypted": False,
    "encryption_algorithm": "set-by-the-server",
    "response_status": "success",
    "security_tier": "standard",
    "memory_protection": {"platform": "linux", "memory_locking": True,
                          "secure_zeroing": True, "core_dump_prevention": True},
    "cuda_device": {"available": False, "device_hash": "ab" * 32},
}  # fmt: skip
OWN_KEYS = ("payload_id", "is_encrypted", "encryption_algorithm")


def _returned(call: Any, router: Any, sent: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """Script `sent` as the answer; the result (which must be a dict) and the answered POST."""
    router.reset()
    router.push(Scenario.completion(sent, always=True))
    outcome = call(model=MODEL, messages=messages())
    seen = answered(router, "completion")
    result = expect.ok(outcome, "a completion")
    expect.true(isinstance(result, dict), "a dict", type(result).__name__)
    return result, seen


def _kept(meta: Any, server: dict[str, Any]) -> None:
    """The server's _metadata keys other than the client's own three and processed_at come
    back unchanged (CHK-16)."""
    expect.true(isinstance(meta, dict), "a _metadata object", meta)
    kept = {k: v for k, v in server.items() if k not in (*OWN_KEYS, "processed_at")}
    got = {name: meta.get(name, "<absent>") for name in kept}
    expect.equal(got, json_roundtrip(kept), "the server's other _metadata keys")


@pytest.mark.req("RSP-10", "CHK-16")
@given(completion=cs.completion_for(), server_meta=cs.json_values(max_leaves=3))
@example(completion=TOOL_CALL_COMPLETION, server_meta={"tier_note": "maximum"})
def test_result_is_what_the_server_sent(
    ccall: Any, router: Any, completion: dict[str, Any], server_meta: Any
) -> None:
    """Evidence: answer. Every member of the decrypted completion comes back unchanged
    (RSP-10), and so does every key of the server's _metadata but the client's own three,
    unknown keys included (CHK-16)."""
    server = {**SERVER_META, "server_only_key": server_meta}
    result, _ = _returned(ccall, router, {**completion, "_metadata": server})
    with expect.clause("RSP-10"):
        body = {k: v for k, v in result.items() if k != "_metadata"}
        expect.equal(body, json_roundtrip(completion), "completion members")
    with expect.clause("CHK-16"):
        _kept(result.get("_metadata"), server)


@pytest.mark.req("CHK-16", "CHK-17")
def test_client_sets_its_own_metadata_keys(ccall: Any, router: Any) -> None:
    """Evidence: answer. The client writes payload_id (= the X-Payload-ID of the call),
    is_encrypted=true and encryption_algorithm (the package's algorithm) over whatever the
    server said, keeps the server's other keys (CHK-16), and returns the server's
    processed_at, never the package's top-level one nor its own clock (CHK-17)."""
    result, seen = _returned(ccall, router, {**TOOL_CALL_COMPLETION, "_metadata": SERVER_META})
    meta = result.get("_metadata")
    with expect.clause("CHK-16"):
        _kept(meta, SERVER_META)
    if not isinstance(meta, dict):
        expect.blocked(by="CHK-16", why="the result has no _metadata object")
    with expect.clause("CHK-16"):
        expect.equal(meta.get("payload_id"), seen.headers.get("x-payload-id"), "payload_id")
    with expect.clause("CHK-16"):
        expect.equal(meta.get("is_encrypted"), True, "is_encrypted")
    with expect.clause("CHK-16"):
        expect.equal(
            meta.get("encryption_algorithm"), "hybrid-aes256-rsa4096", "encryption_algorithm"
        )
    with expect.clause("CHK-17"):
        expect.equal(meta.get("processed_at"), SERVER_TIME, "processed_at (the server's)")


@pytest.mark.req("CHK-17")
def test_top_level_processed_at_never_copied(ccall: Any, router: Any) -> None:
    """Evidence: answer. When the server's _metadata has no processed_at, the client returns
    none or null: the package's top-level processed_at is outside the encryption, anyone on
    the path can set it, and it must not appear in the result as if authenticated."""
    router.push(Scenario.metadata(processed_at=None, always=True))
    outcome = ccall(model=MODEL, messages=messages())
    answered(router, "metadata")
    result = expect.ok(outcome, "a completion")
    meta = result.get("_metadata") if isinstance(result, dict) else None
    value = meta.get("processed_at") if isinstance(meta, dict) else None
    expect.true(value is None, "no processed_at (or null) in _metadata", value)
