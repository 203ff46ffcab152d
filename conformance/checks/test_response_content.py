"""What the caller gets back: exactly what the server sent, plus the client's own _metadata.

The risks: a port that drops or rewrites members of the completion (tool calls, reasoning
content, unknown future members, unicode) hands the application something the model never
said; one that loses the server's _metadata hides which tier actually served the request.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import example, given

from conformance import expect
from conformance import strategies as cs
from conformance.checks._support import MODEL, json_roundtrip, last_post, messages
from mock_router import Scenario

OWN_KEYS = ("payload_id", "processed_at", "is_encrypted", "encryption_algorithm")

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


@pytest.mark.req("RSP-10", "CHK-15", "CHK-16", "HDR-2")
@given(completion=cs.completion_for(), server_meta=cs.json_values(max_leaves=3))
@example(completion=TOOL_CALL_COMPLETION, server_meta={"tier_note": "maximum"})
def test_result_is_what_the_server_sent(
    ccall: Any, router: Any, completion: dict[str, Any], server_meta: Any
) -> None:
    """Every member of the decrypted completion comes back unchanged; _metadata keeps the
    server's keys and gains payload_id (= X-Payload-ID), processed_at, is_encrypted=true and
    encryption_algorithm."""
    router.reset()
    sent = dict(completion)
    sent["_metadata"] = {"server_only_key": server_meta}
    router.push(Scenario.completion(sent))
    result = expect.ok(ccall(model=MODEL, messages=messages()), "a completion")
    expect.true(isinstance(result, dict), "a dict", type(result).__name__)
    body = {k: v for k, v in result.items() if k != "_metadata"}
    expect.equal(body, json_roundtrip(completion), "completion members")
    meta = result.get("_metadata")
    expect.true(isinstance(meta, dict), "a _metadata object", meta)
    expect.equal(meta.get("server_only_key"), json_roundtrip(server_meta), "server _metadata key")
    missing = [k for k in OWN_KEYS if k not in meta]
    expect.true(not missing, f"the client's _metadata keys {OWN_KEYS}", f"missing {missing}")
    expect.equal(meta["payload_id"], last_post(router).headers.get("x-payload-id"), "payload_id")
    expect.equal(meta["is_encrypted"], True, "is_encrypted")
    expect.equal(meta["encryption_algorithm"], "hybrid-aes256-rsa4096", "encryption_algorithm")
    processed = meta["processed_at"]
    expect.true(
        processed is None or isinstance(processed, (int, float)),
        "processed_at a number or null",
        processed,
    )
