"""Answer size and nesting: accepted up to the floor every client supports, never a crash
beyond it.

The risks: a client with a lower limit fails answers every conforming server may send (long
completions, deep tool-call arguments); one without any bound, or one whose parser overflows
its stack, can be crashed by an answer anyone who saw its public key can build (19.1). CHK-19
fixes the floor (16 MiB bodies, 64 levels) and lets a client refuse beyond it with the kind of
the stage: ValueError for the package, SecurityError for the plaintext; an `internal` crash is
never allowed.
"""

from __future__ import annotations

from typing import Any

import pytest

from conformance import expect
from conformance.adapter import operation_timeout
from conformance.checks._support import MODEL, answered, expect_kind, messages
from mock_router import Scenario

MIB = 1024 * 1024
#: A plaintext whose package stays under 16 MiB (base64 adds a third, the rest ~1 KiB).
PLAINTEXT_UNDER_16_MIB = 12 * MIB - 4096

#: Answers a client MUST accept (the floor of CHK-19).
ACCEPTED: dict[str, Scenario] = {
    "body-16MiB": Scenario.large(16 * MIB, where="package", always=True),
    "plaintext-12MiB": Scenario.large(PLAINTEXT_UNDER_16_MIB, where="plaintext", always=True),
    "package-depth-64": Scenario.nested(64, where="package", always=True),
    "plaintext-depth-64": Scenario.nested(64, where="plaintext", always=True),
}

#: Answers a client MAY refuse (with the kind of that stage), and must never crash on.
BEYOND: dict[str, tuple[Scenario, str]] = {
    "body-33MiB": (Scenario.large(33 * MIB, where="package", always=True), "value"),
    "package-depth-129": (Scenario.nested(129, where="package", always=True), "value"),
    "package-depth-100000": (Scenario.nested(100_000, where="package", always=True), "value"),
    "plaintext-depth-129": (Scenario.nested(129, where="plaintext", always=True), "security"),
    "plaintext-depth-100000": (
        Scenario.nested(100_000, where="plaintext", always=True),
        "security",
    ),
}


@pytest.mark.req("CHK-19")
@pytest.mark.parametrize("case", list(ACCEPTED))
def test_answers_up_to_the_floor_accepted(impl: Any, ccall: Any, router: Any, case: str) -> None:
    """Evidence: answer. A 200 body of 16 MiB (the padding an unknown package member, PKG-9),
    a 12 MiB plaintext, and JSON nested 64 levels in the package or the plaintext are
    accepted: no client may set its limits lower."""
    scenario = ACCEPTED[case]
    router.push(scenario)
    with operation_timeout(impl, 60.0):
        outcome = ccall(model=MODEL, messages=messages())
    answered(router, scenario.kind)
    expect.ok(outcome, f"the answer ({case}) returned")


@pytest.mark.req("CHK-19")
@pytest.mark.parametrize("case", list(BEYOND))
def test_larger_or_deeper_answers_never_crash(
    impl: Any, ccall: Any, router: Any, case: str
) -> None:
    """Evidence: answer. A body over 32 MiB, or JSON nested 129 or 100000 levels, is accepted
    or refused with the kind of its stage (ValueError for the package, SecurityError for the
    plaintext), never with a crash (a stack overflow, an out-of-memory, an exception of no
    canonical kind)."""
    scenario, kind = BEYOND[case]
    router.push(scenario)
    with operation_timeout(impl, 60.0):
        outcome = ccall(model=MODEL, messages=messages())
    answered(router, scenario.kind)
    if not outcome.ok:
        expect_kind(outcome, kind, f"the answer ({case}) refused with the kind of its stage")
