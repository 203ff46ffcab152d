"""Retries: transient failures are retried a bounded number of times, nothing else is.

The risks: retrying a 400/401/403 hammers the service with a request that cannot succeed (and
locks accounts); not retrying a 503 turns a blip into an outage for the application; an
unbounded or miscounted retry loop multiplies load exactly when the service is struggling;
a resend of the byte-identical package is refused by a server's replay cache.
Attempts are counted where they arrive: the router's record of POSTs, whatever the router
answered them (a check never needs a completion to count).
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import pytest

from conformance import expect
from conformance import strategies as cs
from conformance.adapter import Kind
from conformance.checks._client_support import answer_times
from conformance.checks._support import (
    KEY_PATH,
    MODEL,
    expect_kind,
    kind_for_status,
    messages,
    posts,
)
from mock_router import Scenario

OTHER_ID = "00000000-0000-4000-8000-000000000000"


def _busy(status: int, times: int, **kw: Any) -> Scenario:
    return Scenario.status(status, {"detail": f"transient {status}"}, times=times, **kw)


#: The requirement that maps each status to its kind (spec 13.1).
STATUS_REQUIREMENT = {
    400: "ERR-1", 401: "ERR-2", 403: "ERR-3", 404: "ERR-4", 429: "ERR-5",
    500: "ERR-6", 502: "ERR-7", 504: "ERR-7", 503: "ERR-8",
}  # fmt: skip


def _last_answer_kind(
    ccall: Any, make_config: Any, router: Any, outcome: Any, status: int
) -> None:
    """The exhausted call raised the exception of its last answer (`status`). A wrong kind
    that the client also gives for that status on a single attempt is its status mapping,
    judged by ERR-1..9: then this is BLOCKED by that requirement, not a second failure."""
    wanted = kind_for_status(status)
    error = outcome.error
    if error is not None and error.kind != wanted:
        router.reset()
        router.push(_busy(status, 1))
        single = ccall(model=MODEL, messages=messages(), config=make_config(max_retries=0))
        if single.error is not None and single.error.kind == error.kind:
            expect.blocked(
                STATUS_REQUIREMENT.get(status, "ERR-9"),
                f"status {status} gives kind {error.kind} even on a single attempt",
            )
    expect_kind(outcome, wanted, f"status {status} after the attempts ran out")


def _attempts(router: Any, expected: int, what: str) -> None:
    expect.equal(len(posts(router)), expected, what)


@pytest.mark.req("RTY-1", "RTY-6")
@pytest.mark.requires("max_retries")
@pytest.mark.parametrize("status", cs.RETRYABLE_STATUSES)
def test_retryable_status_is_retried_max_retries_times(
    ccall: Any, make_config: Any, router: Any, status: int
) -> None:
    """Evidence: request, answer. 429/500/502/503/504 on every attempt: max_retries+1
    attempts (RTY-1), then the exception for that status (RTY-6)."""
    router.push(_busy(status, 3))
    outcome = ccall(model=MODEL, messages=messages(), config=make_config(max_retries=1))
    with expect.clause("RTY-1"):
        _attempts(router, 2, f"POSTs for {status} with max_retries=1")
    with expect.clause("RTY-6"):
        _last_answer_kind(ccall, make_config, router, outcome, status)


@pytest.mark.req("RTY-1")
@pytest.mark.requires("max_retries")
def test_retry_then_success(ccall: Any, make_config: Any, router: Any) -> None:
    """Evidence: request. A 503 followed by the router's normal answer: the retry is made
    (two POSTs), and the call does not end in the 503's exception."""
    router.push(_busy(503, 1))
    outcome = ccall(model=MODEL, messages=messages(), config=make_config(max_retries=2))
    _attempts(router, 2, "POSTs (a 503, then the retry)")
    expect.true(
        outcome.error is None or outcome.error.kind != "service_unavailable",
        "not the 503's exception (the retry was answered)",
        outcome,
    )


@pytest.mark.req("RTY-1")
@pytest.mark.requires("max_retries")
def test_dropped_connection_is_retried(ccall: Any, make_config: Any, router: Any) -> None:
    """Evidence: request. Network failures are retried like 5xx: two drops with
    max_retries=2 give a third POST."""
    router.push(Scenario.drop(times=2))
    ccall(model=MODEL, messages=messages(), config=make_config(max_retries=2))
    _attempts(router, 3, "POSTs (two dropped, one answered)")


@pytest.mark.req("RTY-6")
@pytest.mark.requires("max_retries")
def test_last_answer_decides_the_exception(ccall: Any, make_config: Any, router: Any) -> None:
    """Evidence: answer. When attempts run out, the exception is the one for the LAST
    answer (a 503, then a 500: ServerError)."""
    router.push(_busy(503, 1), _busy(500, 1))
    outcome = ccall(model=MODEL, messages=messages(), config=make_config(max_retries=1))
    if len(posts(router)) != 2:
        expect.blocked("RTY-1", f"{len(posts(router))} POST(s), not 2: no last answer to judge")
    _last_answer_kind(ccall, make_config, router, outcome, 500)


@pytest.mark.req("RTY-2")
def test_default_is_two_retries(ccall: Any, make_config: Any, router: Any) -> None:
    """Evidence: request. Without a configured max_retries the client makes at most 3
    attempts (and at least 3 for a retryable failure)."""
    router.push(_busy(503, 5))
    ccall(model=MODEL, messages=messages(), config=make_config(max_retries=None))
    _attempts(router, 3, "POSTs with the default max_retries")


@pytest.mark.req("RTY-3")
@pytest.mark.requires("max_retries")
def test_zero_retries_is_one_attempt(ccall: Any, make_config: Any, router: Any) -> None:
    """Evidence: request. max_retries=0: exactly one attempt, even for a retryable status."""
    router.push(_busy(503, 3))
    ccall(model=MODEL, messages=messages(), config=make_config(max_retries=0))
    _attempts(router, 1, "POSTs with max_retries=0")


@pytest.mark.req("RTY-4")
@pytest.mark.requires("max_retries")
@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 418, 422, 501])
def test_non_retryable_status_is_tried_once(
    ccall: Any, make_config: Any, router: Any, status: int
) -> None:
    """Evidence: request. 400, 401, 403, 404 and other statuses are never retried (a 400 may
    be followed by a key re-fetch, but not by another POST while the key is unchanged)."""
    router.push(_busy(status, 3))
    ccall(model=MODEL, messages=messages(), config=make_config(max_retries=2))
    _attempts(router, 1, f"POSTs for {status}")


#: 200 answers a client must refuse (sections 11 and 12.2), and the requirement refusing it.
REFUSED_ANSWERS: dict[str, tuple[Scenario, str]] = {
    "tampered tag": (Scenario.tamper("tag", times=3), "CHK-8"),
    "other version": (Scenario.package(version="0.9", times=3), "CHK-3"),
    "bound to another id": (Scenario.payload_id(OTHER_ID, times=3), "PID-6"),
}


@pytest.mark.req("RTY-5")
@pytest.mark.requires("max_retries")
@pytest.mark.parametrize("answer", list(REFUSED_ANSWERS))
def test_refused_answer_is_not_retried(
    ccall: Any, make_config: Any, router: Any, answer: str
) -> None:
    """Evidence: request. A 200 answer the client refuses (a tampered tag, another version,
    bound to another payload id) is raised at once, with max_retries=2: one POST. A retry
    would run the inference again for an answer someone tampered with."""
    scenario, refusing = REFUSED_ANSWERS[answer]
    router.push(scenario)
    outcome = ccall(model=MODEL, messages=messages(), config=make_config(max_retries=2))
    if outcome.error is None:
        expect.blocked(refusing, f"the client accepted the answer ({answer})")
    expect.equal(len(posts(router)), 1, f"POSTs for a 200 answer {answer}")


@pytest.mark.req("RTY-15")
@pytest.mark.requires("max_retries")
@pytest.mark.parametrize("cause", ["503", "drop"])
def test_every_attempt_is_encrypted_anew(
    ccall: Any, make_config: Any, router: Any, cause: str
) -> None:
    """Evidence: request. The packages of a call's retry attempts differ from each other:
    each has its own encrypted_aes_key and nonce (SHOULD): a byte-identical resend is what a
    server's replay cache refuses."""
    first = _busy(503, 1) if cause == "503" else Scenario.drop()
    router.push(first, _busy(503, 1))
    ccall(model=MODEL, messages=messages(), config=make_config(max_retries=2))
    sent = posts(router)
    if len(sent) < 2:
        expect.blocked("RTY-1", f"{len(sent)} POST(s): no retry to compare")
    bodies = [s.body for s in sent]
    expect.true(len(set(bodies)) == len(bodies), "a different package per attempt", "identical")
    packages = [s.package for s in sent if isinstance(s.package, dict)]
    if len(packages) == len(sent):
        for member in ("encrypted_aes_key", "nonce"):
            values = [_member(p, member) for p in packages]
            expect.true(
                len(set(map(repr, values))) == len(values),
                f"a fresh {member} per attempt",
                f"{values[0]!r:.40} repeated",
            )


def _member(package: dict[str, Any], name: str) -> Any:
    inner = package.get("encrypted_payload")
    if name == "nonce":
        return inner.get("nonce") if isinstance(inner, dict) else None
    return package.get(name)


@pytest.mark.req("RTY-9")
@pytest.mark.requires("max_retries", "retry_backoff")
def test_retry_after_is_honoured(ccall: Any, make_config: Any, router: Any) -> None:
    """Evidence: request. Retry-After: 1 on a 503 makes the client wait about a second (its
    own backoff is set to 10 ms here): the server knows when it can take the request again."""
    router.push(Scenario.status(503, {"detail": "later"}, headers={"Retry-After": "1"}))
    with answer_times(router) as answered:
        ccall(model=MODEL, messages=messages(), config=make_config(max_retries=1))
    sent = posts(router)
    if len(sent) < 2:
        expect.blocked("RTY-1", f"{len(sent)} POST(s): no retry to time")
    waited = sent[1].time - answered.get(sent[0].seq, sent[0].time)
    expect.true(waited >= 0.8, "a wait of about 1 s before the retry", f"{waited:.3f} s")


@pytest.mark.req("RTY-10")
@pytest.mark.requires("max_retries", "retry_after_cap")
@pytest.mark.parametrize("value", ["3600", "1000000000000"])
def test_retry_after_never_exceeds_the_cap(
    ccall: Any, make_config: Any, router: Any, value: str
) -> None:
    """Evidence: request. Retry-After: 3600 (or 10**12) with retry_after_cap=0.2 s: the
    client waits at most the cap, so the retry comes within seconds (the bound of 10 s is
    generous; a client that obeys the header waits an hour). A hostile or broken server must
    not be able to park a client indefinitely."""
    router.push(_busy(503, 2, headers={"Retry-After": value}))
    config = make_config(max_retries=1, retry_after_cap=0.2)
    start = time.monotonic()
    ccall(model=MODEL, messages=messages(), config=config)
    elapsed = time.monotonic() - start
    expect.true(elapsed < 10, "the call to end within 10 s (cap 0.2 s)", f"{elapsed:.1f} s")
    if len(posts(router)) != 2:
        expect.blocked("RTY-1", f"{len(posts(router))} POST(s) with max_retries=1, not 2")


@pytest.mark.req("RTY-11")
@pytest.mark.requires("max_retries")
@pytest.mark.parametrize("value", ["-1", "soon", "", "1e3x", "Wed, 21 Oct 2015 07:28:00 GMT"])
def test_bad_retry_after_is_ignored(ccall: Any, make_config: Any, router: Any, value: str) -> None:
    """Evidence: request, answer. A negative or unparseable Retry-After is ignored: the retry
    still happens, and the header causes no error (no crash, no ValueError)."""
    router.push(Scenario.status(503, {"detail": "x"}, headers={"Retry-After": value}))
    outcome = ccall(model=MODEL, messages=messages(), config=make_config(max_retries=1))
    error = outcome.error
    expect.true(
        error is None or error.kind not in (Kind.INTERNAL.value, Kind.VALUE.value),
        f"no error caused by Retry-After {value!r}",
        outcome,
    )
    _attempts(router, 2, f"POSTs (the retry after Retry-After {value!r})")


@pytest.mark.req("RTY-13")
@pytest.mark.requires("max_retries")
def test_key_fetch_is_retried(call: Any, make_config: Any, router: Any) -> None:
    """Evidence: request. A 503 on the key fetch is retried like one on the POST (SHOULD).
    Only the fetches before the first POST count: a re-fetch after a refused POST is the
    rotation check of DISC-15, judged there."""
    router.push(_busy(503, 1, path=KEY_PATH))
    call(model=MODEL, messages=messages(), config=make_config(max_retries=1))
    first_post = next(
        (i for i, s in enumerate(router.seen) if s.method == "POST"), len(router.seen)
    )
    before = [s for s in router.seen[:first_post] if s.method == "GET" and s.path == KEY_PATH]
    expect.equal(len(before), 2, "key fetches before the first POST (a 503, then the retry)")


@pytest.mark.req("RTY-14", "ERR-19")
@pytest.mark.requires("max_retries")
@pytest.mark.parametrize("value", [-1, -5, 2.5], ids=["-1", "-5", "2.5"])
def test_bad_max_retries_refused(ccall: Any, make_config: Any, router: Any, value: Any) -> None:
    """Evidence: client behaviour, request. A negative or non-integer max_retries is a
    caller error: ValueError at construction (RTY-14), before anything is sent (ERR-19)."""
    outcome = ccall(model=MODEL, messages=messages(), config=make_config(max_retries=value))
    with expect.clause("RTY-14"):
        expect_kind(outcome, "value", f"max_retries={value}")
    if outcome.error is not None and outcome.error.kind == "value":
        with expect.clause("ERR-19"):
            expect.true(
                not router.seen,
                "nothing sent before the ValueError",
                [f"{s.method} {s.path}" for s in router.seen],
            )


BASE = 0.15
RETRIES = 4
#: A jitter below this on every one of the four retries is taken for no jitter at all: a
#: client adding U(0, delay/2) gets there with probability
#: (0.05/0.075)(0.05/0.15)(0.05/0.3)(0.05/0.6) = 0.003; a client adding none always, unless
#: its own overhead between the router's answer and its next attempt exceeds 50 ms on every
#: retry (3 to 15 ms on an idle machine).
JITTER_SEEN = 0.05


@pytest.mark.req("RTY-7", "RTY-8")
@pytest.mark.requires("max_retries", "retry_backoff")
def test_backoff_doubles_with_jitter(call: Any, make_config: Any, router: Any) -> None:
    """Evidence: request. With base 0.15 s the waits before retries 1 to 4 (from the
    router's answer to the next attempt's arrival) are 0.15, 0.3, 0.6 and 1.2 s (RTY-7) plus
    a jitter of at most half that (RTY-8), and the jitter is there: the four waits are not
    all the computed delays. Backoff that does not grow keeps hammering a
    struggling service; clients without jitter retry in step."""
    router.push(_busy(503, RETRIES + 1))
    config = make_config(max_retries=RETRIES, retry_backoff=BASE)
    with answer_times(router) as answered:
        call(model=MODEL, messages=messages(), config=config)
    sent = posts(router)
    if len(sent) != RETRIES + 1:
        expect.blocked("RTY-1", f"{len(sent)} POSTs with max_retries={RETRIES}")
    waits = [b.time - answered.get(a.seq, a.time) for a, b in itertools.pairwise(sent)]
    bases = [BASE * 2**n for n in range(RETRIES)]
    shown = ", ".join(f"{w:.3f}" for w in waits)
    doubling = all(w >= base * 0.9 for w, base in zip(waits, bases, strict=True))
    doubling = doubling and all(w <= base * 2 + 0.3 for w, base in zip(waits, bases, strict=True))
    with expect.clause("RTY-7"):
        expect.true(doubling, f"waits of about {bases} s (+ jitter)", f"{shown} s")
    if not doubling:
        expect.blocked("RTY-7", "the waits do not follow base*2**(n-1): jitter not judged")
    excess = [w - base for w, base in zip(waits, bases, strict=True)]
    with expect.clause("RTY-8"):
        expect.true(
            all(e <= base * 0.5 + 0.15 for e, base in zip(excess, bases, strict=True)),
            "a jitter of at most half the computed delay",
            f"waits {shown} s for delays {bases}",
        )
        expect.true(
            any(e >= JITTER_SEEN for e in excess),
            f"a random jitter (at least {JITTER_SEEN} s above the delay on some retry)",
            f"waits {shown} s for delays {bases}: no jitter",
        )
