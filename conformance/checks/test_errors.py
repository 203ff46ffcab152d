"""Non-200 answers: the right exception kind, the status kept, the server's detail kept.

The risks: an application that catches RateLimitError to back off, or ForbiddenError to pick
another tier, breaks when a port maps statuses differently; an error body of an unexpected
shape (a proxy's HTML page, an empty 502) must never crash the client with KeyError; a
message that drops the server's detail leaves the user guessing; a client without a working
timeout hangs on a server that stopped answering.

Each clause of section 13 is charged to its own id: the exception kind to the status's id
(ERR-1 to ERR-9), `status_code` to ERR-11, the detail to ERR-12/13/14, the message to ERR-15,
`error_details` to ERR-16, a crash to ERR-17.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from conformance import expect
from conformance import strategies as cs
from conformance.adapter import ErrorInfo, Kind, Outcome
from conformance.checks._client_support import connection_error, stalled_call
from conformance.checks._support import (
    MODEL,
    STATUS_KINDS,
    expect_kind,
    kind_for_status,
    messages,
    posts,
)
from mock_router import Scenario

#: Statuses whose answers must not carry a body (the router's HTTP stack refuses one).
BODYLESS = frozenset({204, 205, 304})
#: The id of the status table row that names a status (13.1); every other status is ERR-9.
STATUS_IDS: dict[int, str] = {
    400: "ERR-1",
    401: "ERR-2",
    403: "ERR-3",
    404: "ERR-4",
    429: "ERR-5",
    500: "ERR-6",
    502: "ERR-7",
    504: "ERR-7",
    503: "ERR-8",
}
TABLE_IDS = ("ERR-1", "ERR-2", "ERR-3", "ERR-4", "ERR-5", "ERR-6", "ERR-7", "ERR-8", "ERR-9")
BODY_IDS = ("ERR-11", "ERR-12", "ERR-13", "ERR-14", "ERR-15", "ERR-16", "ERR-17")
LIMIT = 1024
ONE_MIB = 1024 * 1024


def status_id(status: int) -> str:
    return STATUS_IDS.get(status, "ERR-9")


def _raw(body: Any) -> bytes:
    """The bytes the router sends for `body` (bytes as they are, other values as JSON)."""
    if body is None:
        return b""
    return body if isinstance(body, bytes) else json.dumps(body).encode()


def _answer(call: Any, router: Any, status: int, body: Any, **scenario: Any) -> Outcome:
    router.reset()
    router.push(Scenario.status(status, body, **scenario))
    return call(model=MODEL, messages=messages())


def judge_kind(outcome: Outcome, status: int, crash_id: str) -> ErrorInfo:
    """The exception kind for `status`, charged to its table row; a crash (kind internal) is
    charged to `crash_id`. Without an exception nothing else can be judged (BLOCKED)."""
    sid = status_id(status)
    error = outcome.error
    if error is None:
        with expect.clause(sid):
            raise AssertionError(f"expected <error {kind_for_status(status)}>, actual <{outcome}>")
        expect.blocked(sid, f"status {status} gave no exception")
    if error.kind == Kind.UNSUPPORTED.value:
        expect.not_applicable(error.message or "create is unsupported")
    if error.kind == Kind.INTERNAL.value:
        with expect.clause(crash_id):
            raise AssertionError(
                f"status {status}: expected <error {kind_for_status(status)}>, "
                f"actual <a crash: {error}>"
            )
        expect.blocked(crash_id, f"status {status} crashed the client")
    with expect.clause(sid):
        expect_kind(outcome, kind_for_status(status), f"status {status}")
    with expect.clause("ERR-11"):
        expect.equal(error.status_code, status, f"status {status}: status_code")
    return error


def _windows(text: str, size: int = 8) -> list[str]:
    """ASCII-only substrings of `text`: what survives a wrong decoding or cut."""
    plain = [text[i : i + size] for i in range(0, max(len(text) - size, 0) + 1, size)]
    return [w for w in plain if len(w) == size and w.isascii() and w.strip()]


def judge_body(error: ErrorInfo, body: Any, *, over_limit_may_be_text: bool = False) -> None:
    """ERR-12 to ERR-16 for one error body (13.2, 13.3), each clause charged to its id.

    `over_limit_may_be_text`: the body is a JSON object over 1 MiB, which a client MAY treat
    as non-JSON text (then the ERR-13 rule applies to it).
    """
    raw = _raw(body)
    message, details = error.message, error.details
    parsed: Any
    try:
        parsed = json.loads(raw.decode("utf-8")) if raw else None
        is_json = bool(raw)
    except ValueError:
        parsed, is_json = None, False
    text = raw.decode("utf-8", errors="replace")
    as_text = {"detail": text[:LIMIT]} if text else {}
    if is_json and isinstance(parsed, dict) and over_limit_may_be_text and details != parsed:
        _judge_text(error, text)  # treated as text: allowed above 1 MiB, then cut (ERR-13)
        return
    if is_json and isinstance(parsed, dict) and "detail" in parsed:
        _judge_detail_member(error, parsed, text)
        return
    if is_json and isinstance(parsed, dict):
        with expect.clause("ERR-15"):
            expect.true(bool(message.strip()), "a non-empty default message", repr(message))
        with expect.clause("ERR-14"):
            expect.true(
                details != as_text,
                "detail None for an object without 'detail' (not the body text)",
                details,
            )
            if len(text) > 2:  # "{}" could be part of any default text
                expect.true(
                    text not in message,
                    "detail None for an object without 'detail': a default message, not the "
                    "body's JSON text",
                    message[:200],
                )
        if details != as_text:
            with expect.clause("ERR-16"):
                expect.equal(details, parsed, "error_details (the JSON object body)")
        return
    if not raw:
        with expect.clause("ERR-15"):
            expect.true(bool(message.strip()), "a non-empty default message", repr(message))
        with expect.clause("ERR-14"):
            expect.true(
                not (isinstance(details, dict) and "detail" in details),
                "detail None for an empty body (error_details without 'detail')",
                details,
            )
        if not (isinstance(details, dict) and "detail" in details):
            with expect.clause("ERR-16"):
                expect.equal(details, {}, "error_details for an empty body")
        return
    _judge_text(error, text)


def _judge_detail_member(error: ErrorInfo, parsed: dict[str, Any], text: str) -> None:
    """ERR-12: a JSON object with `detail`; the message (ERR-15), error_details (ERR-16)."""
    message, details = error.message, error.details
    value = parsed["detail"]
    unparsed = details == {"detail": text[:LIMIT]} and details != parsed
    with expect.clause("ERR-12"):
        expect.true(
            not unparsed,
            "the JSON object body parsed (error_details the object)",
            f"error_details {json.dumps(details)[:160]} (the body read as text)",
        )
    if unparsed:
        return  # the message and error_details follow from reading it as text
    if isinstance(value, str):
        with expect.clause("ERR-15"):
            expect.true(
                value in message,
                f"the message to contain the detail {value[:80]!r}",
                message[:300],
            )
    else:
        renderings = [json.dumps(value), json.dumps(value, separators=(",", ":"))]
        shown = any(r in message for r in renderings)
        other = [str(value), repr(value)]
        with expect.clause("ERR-12" if any(o in message for o in other) else "ERR-15"):
            expect.true(
                shown,
                f"the message to contain the detail rendered as JSON {renderings[0][:80]!r}",
                message[:300],
            )
    with expect.clause("ERR-16"):
        expect.equal(details, parsed, "error_details (the JSON object body)")


def _judge_text(error: ErrorInfo, text: str) -> None:
    """ERR-13: a non-empty body that is not a JSON object: its text, replaced decoding, cut
    to 1024 characters; the message (ERR-15), error_details (ERR-16)."""
    message, details = error.message, error.details
    detail = text[:LIMIT]
    if detail in message:
        if len(text) > LIMIT:
            with expect.clause("ERR-13"):
                expect.true(
                    text[: LIMIT + 1] not in message,
                    f"the detail cut to {LIMIT} characters",
                    f"the message holds more of the {len(text)}-character body",
                )
    else:
        seen_some = any(w in message for w in _windows(detail))
        with expect.clause("ERR-13" if seen_some else "ERR-15"):
            expect.true(
                False,
                f"the message to contain the body text {detail[:60]!r}... "
                f"({len(detail)} characters, U+FFFD for invalid UTF-8)",
                message[:300],
            )
    shaped = isinstance(details, dict) and set(details) == {"detail"}
    if shaped and isinstance(details["detail"], str):
        with expect.clause("ERR-13"):
            got = details["detail"]
            expect.true(
                got == detail,
                f"error_details['detail'] the body text cut to {LIMIT} characters "
                f"({len(detail)} characters)",
                f"{len(got)} characters: {got[:60]!r}",
            )
    else:
        with expect.clause("ERR-16"):
            expect.equal(details, {"detail": detail}, "error_details for a non-object body")


@pytest.mark.req(*TABLE_IDS[:8], "ERR-11")
@pytest.mark.parametrize("status", sorted(cs.SEED_STATUSES))
def test_seed_status_maps_to_its_kind(ccall: Any, router: Any, status: int) -> None:
    """Evidence: answer. Each status of the seed table raises its exception (canonical kind,
    charged to that status's row) with .status_code the HTTP status (ERR-11)."""
    outcome = _answer(ccall, router, status, {"detail": f"status {status} detail"})
    judge_kind(outcome, status, status_id(status))


@pytest.mark.req("ERR-9", "ERR-11")
@given(status=cs.error_statuses(include_seed=False).filter(lambda s: s >= 200))
@example(status=418)
@example(status=302)
@example(status=201)
@example(status=409)
@example(status=501)
def test_any_other_status_is_api_error(ccall: Any, router: Any, status: int) -> None:
    """Evidence: answer. Every status outside the table (2xx other than 200, 3xx, other
    4xx/5xx, 409 included) is APIError itself (ERR-9) with its status_code (ERR-11)."""
    body = None if status in BODYLESS else {"detail": "other"}
    judge_kind(_answer(ccall, router, status, body), status, "ERR-9")


#: Error bodies every client meets: (id, status, body). Bodies as bytes are sent raw.
BODIES: list[tuple[str, int, Any]] = [
    ("400-detail-text", 400, {"detail": "model not allowed"}),
    ("401-detail-object", 401, {"detail": {"a": 1}}),
    ("422-detail-list", 422, {"detail": [{"loc": ["body"], "msg": "field required"}]}),
    ("429-detail-null", 429, {"detail": None}),
    ("403-object-without-detail", 403, {"code": 7}),
    ("418-detail-text", 418, {"detail": "I am a teapot"}),
    ("404-html", 404, b"<html>Not Found</html>"),
    ("404-json-array", 404, b"[1, 2]"),
    ("400-json-string", 400, b'"just a string"'),
    ("401-json-null", 401, b"null"),
    ("403-json-number", 403, b"42"),
    ("502-html", 502, b"<html>Bad Gateway</html>"),
    ("503-empty", 503, None),
    ("500-invalid-utf8", 500, b"\xff\xfe not utf-8"),
    ("500-text-over-1024", 500, b"<html>" + b"a" * 1100 + b"</html>"),
    ("418-utf8-over-1024-code-points", 418, ("\u00e9" * 1100).encode()),
]


@pytest.mark.req(*TABLE_IDS, *BODY_IDS)
@pytest.mark.parametrize(("status", "body"), [b[1:] for b in BODIES], ids=[b[0] for b in BODIES])
def test_error_body(ccall: Any, router: Any, status: int, body: Any) -> None:
    """Evidence: answer. The error bodies proxies and servers send (object with a string or
    other detail, object without detail, JSON that is not an object, HTML, invalid UTF-8,
    text over 1024 characters, empty): the status's kind, status_code, the detail in the
    message, error_details as 13.3 says, never a crash. Every clause is judged even when an
    earlier one fails."""
    error = judge_kind(_answer(ccall, router, status, body), status, "ERR-17")
    judge_body(error, body)


@pytest.mark.req(*TABLE_IDS, *BODY_IDS)
@given(status=st.sampled_from((*cs.SEED_STATUSES, 418, 501)), shaped=cs.error_bodies())
@example(status=401, shaped=("detail_other", {"detail": {"a": 1}}))
def test_error_body_of_any_shape(
    ccall: Any, router: Any, status: int, shaped: tuple[str, Any]
) -> None:
    """Evidence: answer. Generated error bodies of every shape, judged as test_error_body
    (here the first failing clause ends the example and shrinks it)."""
    _, body = shaped
    error = judge_kind(_answer(ccall, router, status, body), status, "ERR-17")
    judge_body(error, body)


@pytest.mark.req("ERR-1", "ERR-11", "ERR-12", "ERR-13", "ERR-15", "ERR-16", "ERR-17")
@pytest.mark.parametrize(
    "size", [2_000, 100_000, ONE_MIB - 64, 2 * ONE_MIB], ids=["2k", "100k", "1MiB", "2MiB"]
)
def test_huge_error_body(ccall: Any, router: Any, size: int) -> None:
    """Evidence: answer. A JSON error body up to 1 MiB (1,048,576 bytes) is parsed: its
    detail is the detail, whatever its size (ERR-12); a larger one MAY be read as text, then
    cut to 1024 characters (ERR-13); none crashes the client (ERR-17)."""
    detail = "x" * (size - len('{"detail": ""}'))
    body = {"detail": detail}
    error = judge_kind(_answer(ccall, router, 400, body), 400, "ERR-17")
    judge_body(error, body, over_limit_may_be_text=size > ONE_MIB)


#: Every kind a non-200 answer can be raised as (spec 13.1).
API_ERROR_KINDS = frozenset({*STATUS_KINDS.values(), "api"})


@pytest.mark.req("ERR-18")
@given(content_type=st.sampled_from(["text/plain", "text/html", "application/octet-stream"]))
def test_json_body_parsed_whatever_content_type(ccall: Any, router: Any, content_type: str) -> None:
    """Evidence: answer. A JSON error body is read as JSON whatever Content-Type says
    (proxies mislabel): error_details is the object, not {"detail": <its text>}."""
    body = {"detail": "labelled wrongly", "code": 7}
    outcome = _answer(ccall, router, 400, body, content_type=content_type)
    # The kind of a 400 is ERR-1's to judge: any API error carries the evidence read here.
    error = expect_kind(outcome, API_ERROR_KINDS, f"an API error for a 400 ({content_type})")
    expect.equal(error.details, body, f"error_details of a JSON body labelled {content_type}")


@pytest.mark.req("ERR-10")
def test_dropped_connection_is_connection_error(impl: Any, ccall: Any, router: Any) -> None:
    """Evidence: client behaviour. A connection dropped without an answer is
    APIConnectionError (the port's own class) with status_code None."""
    router.push(Scenario.drop())
    connection_error(impl, ccall(model=MODEL, messages=messages()), "dropped connection")
    expect.evidence(posts(router), "the POST whose connection was dropped")


@pytest.mark.req("ERR-10")
def test_unreachable_server_is_connection_error(impl: Any, call: Any, make_config: Any) -> None:
    """Evidence: client behaviour. Nothing listening (connection refused) is
    APIConnectionError (the port's own class) with status_code None, not a crash."""
    config = make_config(base_url="http://127.0.0.1:9", timeout=5.0)
    connection_error(impl, call(model=MODEL, messages=messages(), config=config), "refused")


@pytest.mark.req("ERR-10")
@pytest.mark.requires("timeout")
def test_stalled_post_times_out(impl: Any, call: Any, make_config: Any, router: Any) -> None:
    """Evidence: client behaviour. The POST gets no answer at all: with timeout=1 s the call
    ends in APIConnectionError (status_code None) within 5 s."""
    stalled_call(impl, call, make_config, router.public_key_pem, "post")


@pytest.mark.req("API-21")
@pytest.mark.requires("timeout")
@pytest.mark.parametrize("stall", ["key", "post"])
def test_timeout_covers_the_whole_answer(
    impl: Any, call: Any, make_config: Any, router: Any, stall: str
) -> None:
    """Evidence: client behaviour. An answer that starts at once and then trickles a byte
    every 0.25 s (so no single read ever waits long): with timeout=1 s the exchange (key
    fetch, or POST) still ends within 5 s in APIConnectionError. A timeout per read only
    lets a slow server hold the client for as long as it likes."""
    stalled_call(impl, call, make_config, router.public_key_pem, stall, trickle=True)


@pytest.mark.req("TLS-11", "ERR-9")
@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_redirect_is_not_followed(ccall: Any, router: Any, http_server: Any, status: int) -> None:
    """Evidence: request, answer. A 3xx is APIError (ERR-9) and its Location is never
    contacted (TLS-11): following a redirect would send the encrypted request and the API
    key wherever the redirect points."""
    target = f"{http_server.url}/v1/chat/secure_completion?redirected=1"
    outcome = _answer(ccall, router, status, None, headers={"Location": target})
    with expect.clause("ERR-9"):
        expect_kind(outcome, "api", f"redirect {status}")
    with expect.clause("TLS-11"):
        expect.equal(len(posts(router)), 1, "POSTs (the redirect target was contacted)")
        expect.true(
            router.seen[-1].method == "POST",
            "no request after the redirecting POST",
            [(s.method, s.path) for s in router.seen],
        )
