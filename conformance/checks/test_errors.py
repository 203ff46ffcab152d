"""Non-200 answers: the right exception kind, the status kept, the server's detail kept.

The risks: an application that catches RateLimitError to back off, or ForbiddenError to pick
another tier, breaks when a port maps statuses differently; an error body of an unexpected
shape (a proxy's HTML page, an empty 502) must never crash the client with KeyError; a
message that drops the server's detail leaves the user guessing.
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
    kind_for_status,
    messages,
    posts,
)
from mock_router import Scenario

#: Statuses whose answers must not carry a body (the router's HTTP stack refuses one).
BODYLESS = frozenset({204, 205, 304})


def _expected_detail(shape: str, body: Any) -> str | None:
    """The detail the spec derives from an error body (ERR-12..14)."""
    if isinstance(body, dict):
        if "detail" not in body:
            return None
        value = body["detail"]
        return value if isinstance(value, str) else json.dumps(value)
    if body is None:
        return None
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    text = raw.decode("utf-8", errors="replace")[:1024]
    return text or None


def _expected_details(body: Any, detail: str | None) -> dict[str, Any]:
    """error_details (ERR-16): the object body, else {"detail": detail}, else {}."""
    if isinstance(body, dict):
        return body
    return {"detail": detail} if detail is not None else {}


def _answer(call: Any, router: Any, status: int, body: Any, **scenario: Any) -> Any:
    router.reset()
    router.push(Scenario.status(status, body, **scenario))
    return call(model=MODEL, messages=messages())


@pytest.mark.req("ERR-1", "ERR-2", "ERR-3", "ERR-4", "ERR-5", "ERR-6", "ERR-7", "ERR-8", "ERR-11")
@pytest.mark.parametrize("status", sorted(cs.SEED_STATUSES))
def test_seed_status_maps_to_its_kind(ccall: Any, router: Any, status: int) -> None:
    """Each status of the seed table raises its exception (canonical kind) with .status_code
    the HTTP status."""
    outcome = _answer(ccall, router, status, {"detail": f"status {status} detail"})
    error = expect_kind(outcome, kind_for_status(status), f"status {status}")
    expect.equal(error.status_code, status, "status_code")


@pytest.mark.req("ERR-9", "ERR-11", "ERR-17", "TLS-11")
@given(status=cs.error_statuses(include_seed=False).filter(lambda s: s >= 200))
@example(status=418)
@example(status=302)
@example(status=201)
def test_any_other_status_is_api_error(ccall: Any, router: Any, status: int) -> None:
    """Every status outside the table (2xx other than 200, 3xx, other 4xx/5xx) is APIError
    with its status_code; a 3xx is not followed."""
    body = None if status in BODYLESS else {"detail": "other"}
    error = expect_kind(_answer(ccall, router, status, body), kind_for_status(status), f"{status}")
    expect.equal(error.status_code, status, "status_code")


@pytest.mark.req("ERR-12", "ERR-13", "ERR-14", "ERR-15", "ERR-16", "ERR-17")
@given(status=st.sampled_from((*cs.SEED_STATUSES, 418, 501)), shaped=cs.error_bodies())
@example(status=400, shaped=("detail_str", {"detail": "model not allowed"}))
@example(status=502, shaped=("text", b"<html>Bad Gateway</html>"))
@example(status=503, shaped=("empty", None))
@example(status=403, shaped=("object", {"code": 7}))
@example(status=404, shaped=("json_other", b"[1, 2]"))
@example(status=401, shaped=("detail_other", {"detail": {"a": 1}}))
def test_error_body_of_any_shape(
    ccall: Any, router: Any, status: int, shaped: tuple[str, Any]
) -> None:
    """Whatever the body (object with a string detail, non-string detail, no detail, other
    JSON, not JSON, empty, huge): the right kind, never a crash; .message carries the
    detail; .error_details is the object body, else {"detail": text}, else {}."""
    shape, body = shaped
    error = expect_kind(_answer(ccall, router, status, body), kind_for_status(status), shape)
    expect.equal(error.status_code, status, "status_code")
    detail = _expected_detail(shape, body)
    if detail is not None and shape == "detail_other":
        value = body["detail"]
        renderings = [json.dumps(value), json.dumps(value, separators=(",", ":"))]
        expect.true(
            any(r in error.message for r in renderings),
            f"the message to contain the detail rendered as JSON {renderings[0]!r}",
            error.message[:300],
        )
    elif detail is not None:
        expect.true(
            detail in error.message,
            f"the message to contain the detail {detail[:80]!r}",
            error.message[:300],
        )
    else:
        expect.true(bool(error.message.strip()), "a non-empty default message", error.message)
    expect.equal(error.details, _expected_details(body, detail), "error_details")


@pytest.mark.req("ERR-12", "ERR-15", "ERR-17")
@pytest.mark.parametrize("size", [2_000, 100_000])
def test_huge_error_body(ccall: Any, router: Any, size: int) -> None:
    """A large JSON error body is still a JSON object: its detail is the detail, whatever its
    size (a port that stops parsing at some size reports JSON text as the detail)."""
    detail = "x" * size
    error = expect_kind(_answer(ccall, router, 400, {"detail": detail}), "invalid_request")
    expect.true(
        detail in error.message,
        f"the message to contain the {size}-char detail",
        error.message[:120],
    )
    expect.equal(error.details, {"detail": detail}, "error_details")


@pytest.mark.req("ERR-18", "ERR-12")
@given(content_type=st.sampled_from(["text/plain", "text/html", "application/octet-stream"]))
def test_json_body_parsed_whatever_content_type(ccall: Any, router: Any, content_type: str) -> None:
    """A JSON error body is read as JSON whatever Content-Type says (proxies mislabel)."""
    body = {"detail": "labelled wrongly"}
    outcome = _answer(ccall, router, 400, body, content_type=content_type)
    error = expect_kind(outcome, "invalid_request", content_type)
    expect.true("labelled wrongly" in error.message, "the detail in the message", error.message)
    expect.equal(error.details, body, "error_details")


@pytest.mark.req("ERR-10")
def test_dropped_connection_is_connection_error(ccall: Any, router: Any) -> None:
    """A connection dropped without an answer is APIConnectionError with status_code None."""
    router.push(Scenario.drop())
    error = expect_kind(ccall(model=MODEL, messages=messages()), "connection", "dropped connection")
    expect.equal(error.status_code, None, "status_code")


@pytest.mark.req("ERR-10")
def test_unreachable_server_is_connection_error(ccall: Any, make_config: Any) -> None:
    """Nothing listening (connection refused) is APIConnectionError, not a crash."""
    config = make_config(base_url="http://127.0.0.1:9", timeout=5.0)
    error = expect_kind(ccall(model=MODEL, messages=messages(), config=config), "connection")
    expect.equal(error.status_code, None, "status_code")


@pytest.mark.req("TLS-11", "ERR-9")
@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_redirect_is_not_followed(ccall: Any, router: Any, http_server: Any, status: int) -> None:
    """A 3xx is APIError and its Location is never contacted: following a redirect would send
    the encrypted request and the API key wherever the redirect points."""
    target = f"{http_server.url}/v1/chat/secure_completion?redirected=1"
    outcome = _answer(ccall, router, status, None, headers={"Location": target})
    expect_kind(outcome, "api", f"redirect {status}")
    expect.equal(len(posts(router)), 1, "POSTs (the redirect target was contacted)")
    last = router.seen[-1]
    expect.true(
        last.method == "POST",
        "no request after the redirecting POST",
        [(s.method, s.path) for s in router.seen],
    )
