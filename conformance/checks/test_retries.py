"""Retries: transient failures are retried a bounded number of times, nothing else is.

The risks: retrying a 400/401/403 hammers the service with a request that cannot succeed (and
locks accounts); not retrying a 503 turns a blip into an outage for the application; an
unbounded or miscounted retry loop multiplies load exactly when the service is struggling.
Attempts are counted where they arrive: the router's record of POSTs.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import pytest

from conformance import expect
from conformance import strategies as cs
from conformance.checks._support import (
    KEY_PATH,
    MODEL,
    expect_kind,
    key_fetches,
    kind_for_status,
    messages,
    posts,
)
from mock_router import Scenario


def _busy(status: int, times: int, **kw: Any) -> Scenario:
    return Scenario.status(status, {"detail": f"transient {status}"}, times=times, **kw)


@pytest.mark.req("RTY-1", "RTY-6")
@pytest.mark.requires("max_retries")
@pytest.mark.parametrize("status", cs.RETRYABLE_STATUSES)
def test_retryable_status_is_retried_max_retries_times(
    ccall: Any, make_config: Any, router: Any, status: int
) -> None:
    """429/500/502/503/504 on every attempt: max_retries+1 attempts, then the exception for
    that status."""
    router.push(_busy(status, 3))
    outcome = ccall(model=MODEL, messages=messages(), config=make_config(max_retries=1))
    expect_kind(outcome, kind_for_status(status), f"status {status} after retries")
    expect.equal(len(posts(router)), 2, f"POSTs for {status} with max_retries=1")


@pytest.mark.req("RTY-1")
@pytest.mark.requires("max_retries")
def test_retry_then_success(ccall: Any, make_config: Any, router: Any) -> None:
    """A 503 followed by a good answer gives the good answer (the retry is real)."""
    router.push(_busy(503, 1))
    expect.ok(ccall(model=MODEL, messages=messages(), config=make_config(max_retries=2)))
    expect.equal(len(posts(router)), 2, "POSTs")


@pytest.mark.req("RTY-1", "ERR-10")
@pytest.mark.requires("max_retries")
def test_dropped_connection_is_retried(ccall: Any, make_config: Any, router: Any) -> None:
    """Network failures are retried like 5xx: two drops with max_retries=2, then success."""
    router.push(Scenario.drop(times=2))
    expect.ok(ccall(model=MODEL, messages=messages(), config=make_config(max_retries=2)))
    expect.equal(len(posts(router)), 3, "POSTs (two dropped, one answered)")


@pytest.mark.req("RTY-6")
@pytest.mark.requires("max_retries")
def test_last_answer_decides_the_exception(ccall: Any, make_config: Any, router: Any) -> None:
    """When attempts run out, the exception is the one for the LAST answer."""
    router.push(_busy(503, 1), _busy(500, 1))
    outcome = ccall(model=MODEL, messages=messages(), config=make_config(max_retries=1))
    expect_kind(outcome, "server", "503 then 500")


@pytest.mark.req("RTY-2")
def test_default_is_two_retries(ccall: Any, make_config: Any, router: Any) -> None:
    """Without a configured max_retries the client makes at most 3 attempts (and at least 3
    for a retryable failure)."""
    router.push(_busy(503, 5))
    outcome = ccall(model=MODEL, messages=messages(), config=make_config(max_retries=None))
    expect_kind(outcome, "service_unavailable")
    expect.equal(len(posts(router)), 3, "POSTs with the default max_retries")


@pytest.mark.req("RTY-3")
@pytest.mark.requires("max_retries")
def test_zero_retries_is_one_attempt(ccall: Any, make_config: Any, router: Any) -> None:
    """max_retries=0: exactly one attempt, even for a retryable status."""
    router.push(_busy(503, 3))
    expect_kind(
        ccall(model=MODEL, messages=messages(), config=make_config(max_retries=0)),
        "service_unavailable",
    )
    expect.equal(len(posts(router)), 1, "POSTs with max_retries=0")


@pytest.mark.req("RTY-4")
@pytest.mark.requires("max_retries")
@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 418, 422, 501])
def test_non_retryable_status_is_tried_once(
    ccall: Any, make_config: Any, router: Any, status: int
) -> None:
    """400, 401, 403, 404 and other statuses are never retried (a 400 may be followed by a
    key re-fetch, but not by another POST while the key is unchanged)."""
    router.push(_busy(status, 3))
    outcome = ccall(model=MODEL, messages=messages(), config=make_config(max_retries=2))
    expect_kind(outcome, kind_for_status(status), f"status {status}")
    expect.equal(len(posts(router)), 1, f"POSTs for {status}")


@pytest.mark.req("RTY-9")
@pytest.mark.requires("max_retries", "retry_backoff")
def test_retry_after_is_honoured(ccall: Any, make_config: Any, router: Any) -> None:
    """Retry-After: 1 on a 503 makes the client wait about a second (its own backoff is set to
    10 ms here): the server knows when it can take the request again."""
    router.push(Scenario.status(503, {"detail": "later"}, headers={"Retry-After": "1"}))
    expect.ok(ccall(model=MODEL, messages=messages(), config=make_config(max_retries=1)))
    first, second = posts(router)[:2]
    waited = second.time - first.time
    expect.true(waited >= 0.8, "a wait of about 1 s before the retry", f"{waited:.3f} s")


@pytest.mark.req("RTY-10")
@pytest.mark.requires("max_retries", "retry_after_cap")
@pytest.mark.parametrize("value", ["3600", "1000000000000"])
def test_retry_after_never_exceeds_the_cap(
    ccall: Any, make_config: Any, router: Any, value: str
) -> None:
    """Retry-After: 3600 (or 10**12) with retry_after_cap=0.2 s: the client waits at most the
    cap, so one retry and the error come within seconds (the bound of 10 s is generous; a
    client that obeys the header waits an hour). A hostile or broken server must not be able
    to park a client indefinitely."""
    router.push(_busy(503, 2, headers={"Retry-After": value}))
    config = make_config(max_retries=1, retry_after_cap=0.2)
    start = time.monotonic()
    outcome = ccall(model=MODEL, messages=messages(), config=config)
    elapsed = time.monotonic() - start
    expect_kind(outcome, "service_unavailable", f"503 with Retry-After {value}")
    expect.equal(len(posts(router)), 2, "POSTs with max_retries=1")
    expect.true(elapsed < 10, "the call to end within 10 s (cap 0.2 s)", f"{elapsed:.1f} s")


@pytest.mark.req("RTY-11")
@pytest.mark.requires("max_retries")
@pytest.mark.parametrize("value", ["-1", "soon", "", "1e3x", "Wed, 21 Oct 2015 07:28:00 GMT"])
def test_bad_retry_after_is_ignored(ccall: Any, make_config: Any, router: Any, value: str) -> None:
    """A negative or unparseable Retry-After is ignored: the retry still happens, no error."""
    router.push(Scenario.status(503, {"detail": "x"}, headers={"Retry-After": value}))
    outcome = ccall(model=MODEL, messages=messages(), config=make_config(max_retries=1))
    expect.ok(outcome, f"a completion despite Retry-After {value!r}")
    expect.equal(len(posts(router)), 2, "POSTs")


@pytest.mark.req("RTY-13")
@pytest.mark.requires("max_retries")
def test_key_fetch_is_retried(call: Any, make_config: Any, router: Any) -> None:
    """A 503 on the key fetch is retried like one on the POST (SHOULD)."""
    router.push(_busy(503, 1, path=KEY_PATH))
    expect.ok(call(model=MODEL, messages=messages(), config=make_config(max_retries=1)))
    expect.equal(len(key_fetches(router)), 2, "key fetches")


@pytest.mark.req("RTY-14", "ERR-19")
@pytest.mark.requires("max_retries")
@pytest.mark.parametrize("value", [-1, -5])
def test_negative_max_retries_refused(
    ccall: Any, make_config: Any, router: Any, value: int
) -> None:
    """A negative max_retries is a caller error: ValueError (at construction), nothing sent."""
    outcome = ccall(model=MODEL, messages=messages(), config=make_config(max_retries=value))
    expect_kind(outcome, "value", f"max_retries={value}")
    expect.true(not router.seen, "nothing sent", [s.path for s in router.seen])


@pytest.mark.req("RTY-7", "RTY-8")
@pytest.mark.requires("max_retries", "retry_backoff")
def test_backoff_doubles(call: Any, make_config: Any, router: Any) -> None:
    """With base 0.2 s the waits before retries 1 and 2 are about 0.2 s and 0.4 s (plus at
    most half again of jitter): backoff that does not grow keeps hammering a struggling
    service."""
    router.push(_busy(503, 3))
    config = make_config(max_retries=2, retry_backoff=0.2)
    expect_kind(ccall_free(call, config), "service_unavailable")
    times = [s.time for s in posts(router)]
    expect.equal(len(times), 3, "POSTs")
    waits = [b - a for a, b in itertools.pairwise(times)]
    for number, (wait, base) in enumerate(zip(waits, (0.2, 0.4), strict=True), start=1):
        expect.true(
            base * 0.9 <= wait <= base * 1.5 + 0.25,
            f"a wait of {base} s (+ up to half of jitter) before retry {number}",
            f"{wait:.3f} s",
        )


def ccall_free(call: Any, config: Any) -> Any:
    """One call on a fresh client (timing checks must not share a pooled client)."""
    return call(model=MODEL, messages=messages(), config=config)
