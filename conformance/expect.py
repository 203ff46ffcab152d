"""Assertion helpers for checks: failures read "expected <..>, actual <..>".

The report quotes these messages under the requirement's text, so a person sees what the
spec wanted against what the implementation did. An outcome of kind `unsupported` makes the
check NOT APPLICABLE (a skip with a recognisable reason, never a pass); one of kind
`internal` (an exception type outside the canonical ones) is a crash of the implementation:
reported ERRORED.

    from conformance import expect
    result = expect.ok(call())
    err = expect.error(call(api_key="x"), kind="authentication", status=401)

Evidence, not chains: `expect.clause("ERR-13")` charges the assertions inside to one
requirement of a multi-requirement check (the others keep their own verdicts);
`expect.blocked(by="ENC-3", why=...)` ends a check that cannot observe its property because
another requirement is broken (verdict BLOCKED, confirmed at the end of the run);
`expect.evidence(items, what)` refuses to judge on nothing (an empty record never passes).
"""

from __future__ import annotations

from collections.abc import Iterable, Sized
from typing import Any, NoReturn, TypeVar

import pytest

from conformance.adapter import ErrorInfo, Kind, Outcome
from conformance.charging import Blocked, clause

__all__ = [
    "ImplementationCrash",
    "applicable",
    "blocked",
    "clause",
    "equal",
    "error",
    "evidence",
    "not_applicable",
    "ok",
    "true",
    "warning",
]

T = TypeVar("T", bound=Sized)

NOT_APPLICABLE = "NOT APPLICABLE"


class ImplementationCrash(Exception):
    """The implementation raised an exception of no canonical kind (verdict ERRORED)."""


def not_applicable(reason: str) -> None:
    """Stop the check as NOT APPLICABLE."""
    pytest.skip(f"{NOT_APPLICABLE}: {reason}")


def blocked(by: str, why: str) -> NoReturn:
    """Stop the check as BLOCKED by requirement `by` (which must fail in this run)."""
    raise Blocked(by, why)


def evidence(items: T, what: str, *, blocked_by: str | None = None, why: str = "") -> T:
    """`items` must hold something: a check never passes on an empty record.

    Without `blocked_by`, nothing observed is a failure of the check's own requirement; with
    it, the check is BLOCKED by that requirement (say why).
    """
    if len(items) == 0:
        if blocked_by is not None:
            blocked(blocked_by, why or f"no {what} to judge")
        raise AssertionError(f"expected <{what}>, actual <nothing observed>")
    return items


def applicable(outcome: Outcome) -> Outcome:
    """Skip as NOT APPLICABLE when the operation is unsupported; crash on `internal`."""
    error = outcome.error
    if error is not None and error.kind == Kind.UNSUPPORTED.value:
        not_applicable(error.message or "operation unsupported by the implementation")
    if error is not None and error.kind == Kind.INTERNAL.value:
        raise ImplementationCrash(f"the implementation crashed: {error}")
    return outcome


def ok(outcome: Outcome, what: str = "a result") -> Any:
    """The outcome must be a success; returns its result."""
    applicable(outcome)
    if outcome.error is not None:
        raise AssertionError(f"expected <{what}>, actual <error {outcome.error}>")
    return outcome.result


def _kinds(kind: str | Kind | Iterable[str | Kind] | None) -> set[str] | None:
    if kind is None:
        return None
    if isinstance(kind, (str, Kind)):
        return {str(kind)}
    return {str(k) for k in kind}


def error(
    outcome: Outcome,
    kind: str | Kind | Iterable[str | Kind],
    *,
    status: int | None = None,
    message_contains: str | None = None,
) -> ErrorInfo:
    """The outcome must be an error of `kind` (one of, when several) and `status`.

    A check always names the kind the spec names: "some error happened" is never a pass.
    """
    wanted = _kinds(kind)
    if not wanted:
        raise TypeError("expect.error() needs the kind(s) the spec names")
    expected = _describe_error(wanted, status, message_contains)
    error_info = outcome.error
    if error_info is None:
        raise AssertionError(f"expected <{expected}>, actual <{outcome}>")
    if error_info.kind not in wanted:
        applicable(outcome)  # unsupported -> NOT APPLICABLE, internal -> crash
    if error_info.kind not in wanted:
        raise AssertionError(f"expected <{expected}>, actual <error {error_info}>")
    if status is not None and error_info.status_code != status:
        raise AssertionError(f"expected <{expected}>, actual <error {error_info}>")
    if message_contains is not None and message_contains not in error_info.message:
        raise AssertionError(f"expected <{expected}>, actual <error {error_info}>")
    return error_info


def _describe_error(wanted: set[str] | None, status: int | None, contains: str | None) -> str:
    parts = ["error"]
    if wanted is not None:
        parts.append(" or ".join(sorted(wanted)))
    if status is not None:
        parts.append(f"status={status}")
    if contains is not None:
        parts.append(f"message containing {contains!r}")
    return " ".join(parts)


def equal(actual: Any, expected: Any, what: str = "") -> None:
    """`actual == expected`, with both in the message."""
    if actual != expected:
        label = f"{what}: " if what else ""
        raise AssertionError(f"{label}expected <{expected!r}>, actual <{actual!r}>")


def true(condition: bool, expected: str, actual: Any) -> None:
    """Assert `condition`; describe the expectation and what was seen instead."""
    if not condition:
        raise AssertionError(f"expected <{expected}>, actual <{actual}>")


def warning(outcome: Outcome, contains: str) -> str:
    """The outcome carries a warning whose text contains `contains` (case-insensitive)."""
    for text in outcome.warnings:
        if contains.lower() in text.lower():
            return text
    raise AssertionError(
        f"expected <a warning containing {contains!r}>, actual <warnings {list(outcome.warnings)}>"
    )
