"""Payload ids: fresh for every call, and the only thing that binds an answer to its request.

Version 1.0 responses are encrypted to the client's public key but not signed: anyone who
has that public key (it travels in a header) can make an answer that decrypts. The check of
`_metadata.payload_id` against the request's X-Payload-ID is what stops an answer recorded
for one request from being replayed as the answer to another.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conformance import expect
from conformance.checks._support import (
    MODEL,
    UUID4,
    calls_on_one_client,
    expect_kind,
    last_post,
    messages,
    posts,
)
from mock_router import Scenario


@pytest.mark.req("PID-1", "PID-2", "HDR-2")
def test_payload_id_is_canonical_uuid4(ccall: Any, router: Any) -> None:
    """X-Payload-ID is a random UUIDv4 in the canonical lower-case 36-character form, and the
    returned _metadata.payload_id is that same id (servers and logs match ids textually)."""
    result = expect.ok(ccall(model=MODEL, messages=messages()), "a completion")
    sent = last_post(router).headers.get("x-payload-id")
    expect.true(sent is not None and bool(UUID4.match(sent)), "a canonical lower-case UUIDv4", sent)
    expect.equal(result.get("_metadata", {}).get("payload_id"), sent, "_metadata.payload_id")


@pytest.mark.req("PID-3", "PID-1")
def test_payload_ids_never_repeat(impl: Any, call: Any, make_config: Any, router: Any) -> None:
    """No two calls share a payload id, on one client or across clients: a repeated id lets a
    recorded answer to the first call pass the binding check of the second."""
    config = make_config()
    outcomes = []
    if "client_reuse" in impl.capabilities:
        outcomes += calls_on_one_client(impl, config, 6)
    outcomes += [call(model=MODEL, messages=messages(), config=config) for _ in range(2)]
    for outcome in outcomes:
        expect.ok(outcome, "a completion")
    ids = [s.headers.get("x-payload-id") for s in posts(router)]
    expect.equal(len(set(ids)), len(ids), f"distinct payload ids over {len(ids)} calls")
    expect.true(all(UUID4.match(i or "") for i in ids), "every id a canonical UUIDv4", ids)


OTHER_IDS = st.one_of(
    st.none(),
    st.builds(lambda: str(uuid.uuid4())),
    st.sampled_from(["", "x", "00000000-0000-4000-8000-000000000000", " "]),
)


@pytest.mark.req("PID-6", "PID-7", "RTY-5")
@given(other=OTHER_IDS)
def test_answer_bound_to_another_id_is_refused(ccall: Any, router: Any, other: str | None) -> None:
    """An answer whose _metadata.payload_id is missing or another id is refused with
    SecurityError, and not retried (it is not a transient failure)."""
    router.reset()
    router.push(Scenario.payload_id(other))
    outcome = ccall(model=MODEL, messages=messages())
    expect_kind(outcome, "security", f"answer bound to {other!r}")
    expect.equal(len(posts(router)), 1, "POSTs (a refused answer is not retried)")


@pytest.mark.req("PID-6")
def test_replayed_answer_of_an_earlier_call_is_refused(ccall: Any, router: Any) -> None:
    """An answer bound to an earlier call's id (a replay) is refused: SecurityError."""
    expect.ok(ccall(model=MODEL, messages=messages()), "a completion")
    previous = last_post(router).headers.get("x-payload-id", "")
    router.reset()
    router.push(Scenario.payload_id(previous))
    expect_kind(ccall(model=MODEL, messages=messages()), "security", "an earlier call's id")


@pytest.mark.req("PID-5", "PID-7")
def test_answer_without_metadata_is_refused(ccall: Any, router: Any) -> None:
    """An answer with no _metadata cannot be bound to the request: SecurityError."""
    router.push(Scenario.no_metadata())
    expect_kind(ccall(model=MODEL, messages=messages()), "security", "answer without _metadata")


@pytest.mark.req("PID-8", "RTY-12")
def test_retry_may_reuse_the_payload_id_and_still_binds(
    impl: Any, ccall: Any, make_config: Any, router: Any
) -> None:
    """A retried call is still bound to one of its own ids: the answer to the retry is
    accepted (a port that re-generates the id must bind to the new one)."""
    if "max_retries" not in impl.capabilities:
        expect.not_applicable("needs capability max_retries")
    router.push(Scenario.status(503, {"detail": "busy"}))
    outcome = ccall(model=MODEL, messages=messages(), config=make_config(max_retries=1))
    result = expect.ok(outcome, "a completion after one retry")
    ids = [s.headers.get("x-payload-id") for s in posts(router)]
    expect.equal(len(ids), 2, "POSTs")
    expect.equal(result["_metadata"]["payload_id"], ids[-1], "_metadata.payload_id")
