"""Payload ids: fresh for every call, and the only thing that binds an answer to its request.

Version 1.0 responses are encrypted to the client's public key but not signed: anyone who
has that public key (it travels in a header) can make an answer that decrypts. The check of
`_metadata.payload_id` against the request's X-Payload-ID is what stops an answer recorded
for one request from being replayed as the answer to another. The answers here are scripted
from the request's headers alone, so they reach the client even when the router refuses its
package.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conformance import expect
from conformance.checks._support import (
    MODEL,
    UUID4,
    answered,
    client,
    expect_kind,
    messages,
    resent,
    rotated_key,
    sent_posts,
)
from mock_router import REQUEST_ID, Scenario
from mock_router.scenarios import PAYLOAD_ID_TRANSFORMS

#: A completion as a server sends it, without _metadata (PID-5 adds one of another type).
BARE_COMPLETION: dict[str, Any] = {
    "id": "chatcmpl-pid5",
    "object": "chat.completion",
    "created": 1700000000,
    "model": MODEL,
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}


def _is_uuid4(text: str | None) -> bool:
    """A version-4, RFC 9562 variant UUID in any spelling uuid.UUID reads (PID-1)."""
    try:
        value = uuid.UUID(text or "")
    except ValueError:
        return False
    return value.version == 4 and value.variant == uuid.RFC_4122


@pytest.mark.req("PID-1", "PID-2", "HDR-2")
def test_payload_id_is_canonical_uuid4(ccall: Any, router: Any) -> None:
    """Evidence: request. Every POST carries X-Payload-ID (HDR-2); its value is a random
    UUID of version 4 (PID-1) written in the canonical lower-case 36-character form (PID-2):
    servers and logs match ids textually."""
    ccall(model=MODEL, messages=messages())
    for seen in sent_posts(router):
        sent = seen.headers.get("x-payload-id")
        with expect.clause("HDR-2"):
            expect.true(sent is not None, "an X-Payload-ID header", sorted(seen.headers))
        # a header sent twice (HDR-12's matter) is recorded joined: judge each copy
        for value in (sent or "").split(", ") if sent else ():
            with expect.clause("PID-1"):
                expect.true(_is_uuid4(value), "a version-4 UUID", value)
            with expect.clause("PID-2"):
                expect.true(bool(UUID4.match(value)), "the canonical lower-case form", value)


@pytest.mark.req("PID-3", "PID-1")
def test_payload_ids_never_repeat(impl: Any, call: Any, make_config: Any, router: Any) -> None:
    """Evidence: request. No two calls share a payload id, on one client or across clients:
    a repeated id lets a recorded answer to the first call pass the binding check of the
    second."""
    config = make_config()
    per_call: list[set[str]] = []

    def one(handle: Any = None) -> None:
        router.reset()
        if handle is None:
            call(model=MODEL, messages=messages(), config=config)
        else:
            impl.create(config, MODEL, messages(), {}, client=handle)
        per_call.append({s.headers.get("x-payload-id", "") for s in sent_posts(router)})

    if "client_reuse" in impl.capabilities:
        with client(impl, config) as handle:
            for _ in range(6):
                one(handle)
    for _ in range(2):
        one()
    ids = [i for ids in per_call for i in sorted(ids)]
    expect.equal(len(set(ids)), len(ids), f"distinct payload ids over {len(per_call)} calls")


#: Values of _metadata.payload_id that do not bind the answer (None: member absent).
OTHER_IDS = st.one_of(
    st.none(),
    st.builds(lambda: str(uuid.uuid4())),
    st.sampled_from(["", "x", "00000000-0000-4000-8000-000000000000", " ", 12345, ["x"]]),
)


@pytest.mark.req("PID-6", "PID-7", "RTY-5")
@given(other=OTHER_IDS)
def test_answer_bound_to_another_id_is_refused(ccall: Any, router: Any, other: Any) -> None:
    """Evidence: answer. An answer whose _metadata.payload_id is missing, not a string, or
    another id is refused with SecurityError (PID-6), is never returned (PID-7), and is not
    retried: it is not a transient failure (RTY-5)."""
    router.reset()
    router.push(Scenario.metadata(payload_id=other, always=True))
    outcome = ccall(model=MODEL, messages=messages())
    answered(router, "metadata")
    with expect.clause("PID-7"):
        expect.true(not outcome.ok, "the mis-bound answer never returned", outcome)
    with expect.clause("PID-6"):
        expect_kind(outcome, "security", f"answer bound to {other!r}")
    with expect.clause("RTY-5"):
        expect.equal(len(sent_posts(router)), 1, "POSTs (a refused answer is not retried)")


@pytest.mark.req("PID-6")
@pytest.mark.parametrize("transform", PAYLOAD_ID_TRANSFORMS)
def test_near_miss_of_the_own_id_is_refused(ccall: Any, router: Any, transform: str) -> None:
    """Evidence: answer. An answer bound to a near miss of the request's own X-Payload-ID
    (upper-cased, hyphens removed, a trailing space, the last character dropped) is not
    "exactly equal" to it: refused with SecurityError (PID-6). A client comparing
    case-insensitively, without hyphens, after strip() or by prefix accepts it."""
    router.push(Scenario.payload_id_like(transform, always=True))
    outcome = ccall(model=MODEL, messages=messages())
    answered(router, "payload_id_like")
    with expect.clause("PID-6"):
        expect.true(not outcome.ok, f"the answer bound to the id {transform} never returned",
                    outcome)  # fmt: skip
        expect_kind(outcome, "security", f"an answer bound to the own id, {transform}")


@pytest.mark.req("PID-7")
def test_top_level_payload_id_never_binds_the_answer(ccall: Any, router: Any) -> None:
    """Evidence: answer. An answer whose decrypted _metadata.payload_id names another id is
    refused with SecurityError even when the package's unencrypted top level carries a
    member "payload_id" equal to the request's own X-Payload-ID: the binding is read from
    what decrypted, nothing else (PID-7)."""
    router.push(Scenario.payload_id(str(uuid.uuid4()), top_level=REQUEST_ID, always=True))
    outcome = ccall(model=MODEL, messages=messages())
    answered(router, "payload_id")
    with expect.clause("PID-7"):
        expect.true(not outcome.ok, "the answer bound only outside the encryption refused",
                    outcome)  # fmt: skip
        expect_kind(outcome, "security", "an answer bound by a top-level payload_id")


@pytest.mark.req("PID-6")
def test_replayed_answer_of_an_earlier_call_is_refused(ccall: Any, router: Any) -> None:
    """Evidence: answer. An answer bound to an earlier call's id (a replay) is refused:
    SecurityError."""
    ccall(model=MODEL, messages=messages())
    previous = sent_posts(router)[-1].headers.get("x-payload-id", "")
    router.reset()
    router.push(Scenario.metadata(payload_id=previous, always=True))
    outcome = ccall(model=MODEL, messages=messages())
    if answered(router, "metadata").headers.get("x-payload-id") == previous:
        expect.blocked(by="PID-3", why="the second call used the first call's payload id")
    expect_kind(outcome, "security", "an answer bound to an earlier call's id")


#: _metadata values that cannot bind an answer ("missing": the member is absent).
NOT_OBJECTS: dict[str, Any] = {
    "missing": ...,
    "null": None,
    "list": [],
    "string": "x",
    "zero": 0,
    "true": True,
}


@pytest.mark.req("PID-5", "PID-7")
@pytest.mark.parametrize("metadata", list(NOT_OBJECTS))
def test_answer_without_metadata_is_refused(ccall: Any, router: Any, metadata: str) -> None:
    """Evidence: answer. An answer whose plaintext has no _metadata, or a _metadata that is
    not an object ([], "x", 0, null), cannot be bound to the request: SecurityError (PID-5),
    and never returned (PID-7)."""
    value = NOT_OBJECTS[metadata]
    if value is ...:
        router.push(Scenario.no_metadata(always=True))
        kind = "no_metadata"
    else:
        raw = json.dumps({**BARE_COMPLETION, "_metadata": value}).encode("utf-8")
        router.push(Scenario.plaintext(raw, always=True))
        kind = "plaintext"
    outcome = ccall(model=MODEL, messages=messages())
    answered(router, kind)
    with expect.clause("PID-7"):
        expect.true(not outcome.ok, "the unbound answer never returned", outcome)
    with expect.clause("PID-5"):
        expect_kind(outcome, "security", f"an answer whose _metadata is {metadata}")


@pytest.mark.req("PID-10", "PID-6")
@pytest.mark.requires("max_retries")
def test_every_attempt_carries_the_payload_id(
    ccall: Any, make_config: Any, router: Any
) -> None:
    """Evidence: request, answer. A retried call sends the call's payload id on every attempt
    (PID-10), and the answer to the retry, bound to that id, is accepted (PID-6)."""
    router.push(Scenario.status(503, {"detail": "busy"}))
    outcome = ccall(model=MODEL, messages=messages(), config=make_config(max_retries=1))
    ids = [s.headers.get("x-payload-id") for s in sent_posts(router)]
    expect.evidence(ids[1:], "a retry after the 503", blocked_by="RTY-1",
                    why="the client did not retry the 503")  # fmt: skip
    with expect.clause("PID-10"):
        expect.equal(ids, [ids[0]] * len(ids), "X-Payload-ID of each attempt")
    with expect.clause("PID-6"):
        expect.true(
            outcome.error is None or outcome.error.kind != "security",
            "the answer bound to the retry's X-Payload-ID accepted",
            outcome,
        )


@pytest.mark.req("PID-10", "PID-6")
@pytest.mark.requires("client_reuse")
def test_rotation_resend_carries_the_payload_id(impl: Any, make_config: Any, router: Any) -> None:
    """Evidence: request, answer. The resend after a key rotation carries the call's payload
    id (PID-10), and the answer to it, bound to that id, is accepted (PID-6)."""
    config = make_config()
    with client(impl, config) as handle:
        impl.create(config, MODEL, messages(), {}, client=handle)  # caches the server key
        with rotated_key(router):
            router.reset()
            outcome = impl.create(config, MODEL, messages(), {}, client=handle)
            seen = sent_posts(router)
    resent(router, seen, "resend after the rotation")
    ids = [s.headers.get("x-payload-id") for s in seen]
    with expect.clause("PID-10"):
        expect.equal(ids, [ids[0]] * len(ids), "X-Payload-ID of the call and its resend")
    with expect.clause("PID-6"):
        expect.true(
            outcome.error is None or outcome.error.kind != "security",
            "the answer bound to the resend's X-Payload-ID accepted",
            outcome,
        )
