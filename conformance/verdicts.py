"""Verdict words and how one test phase, one check and one requirement get theirs.

A requirement's verdict is the worst of what its checks charged to it: FAIL > ERRORED >
NON-STRICT > BLOCKED > PASS > NOT APPLICABLE. FAIL is a failed assertion charged to a MUST;
NON-STRICT one charged to a SHOULD/MAY; ERRORED a crash of a fixture, the adapter or the
implementation (kind `internal`); BLOCKED a check that could not observe its property
because another requirement (named) is broken: not a pass, and not a second copy of that
failure; NOT APPLICABLE a check the implementation cannot take part in.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import PurePath
from typing import Any

from conformance.charging import Blocked

PASS = "PASS"
FAIL = "FAIL"
NON_STRICT = "NON-STRICT"
ERRORED = "ERRORED"
BLOCKED = "BLOCKED"
NOT_APPLICABLE = "NOT APPLICABLE"
NO_CHECK = "no check"
NOT_TESTABLE = "not testable"  # the spec marks it testable: false and no check names it

RANK: dict[str, int] = {
    NOT_APPLICABLE: 0, PASS: 1, BLOCKED: 2, NON_STRICT: 3, ERRORED: 4, FAIL: 5
}
FAILING = frozenset({FAIL, ERRORED, NON_STRICT})
PROPERTY = "conformance"  # the key of our entry in report.user_properties
# How hypothesis introduces the minimal failing input (the wording changed across releases).
EXAMPLE_PREFIXES = ("Falsifying", "Failing test case", "Failing example")


def worst(verdicts: Iterable[str]) -> str | None:
    """The worst verdict, or None for none."""
    found = [v for v in verdicts if v in RANK]
    return max(found, key=RANK.__getitem__) if found else None


def stable_id(nodeid: str) -> str:
    """`<module stem>::<test name>[params]`: independent of where the suite is installed."""
    path, sep, rest = nodeid.partition("::")
    if not sep:
        return PurePath(path).stem
    return f"{PurePath(path).stem}::{rest}"


def module_of(check_id: str) -> str:
    return check_id.partition("::")[0]


def _is_assertion(exc: BaseException) -> bool:
    group = getattr(exc, "exceptions", None)
    if isinstance(group, tuple) and isinstance(exc, BaseException) and group:
        return all(_is_assertion(e) for e in group)
    return isinstance(exc, AssertionError)


def falsifying_example(exc: BaseException | None, longrepr_text: str = "") -> str | None:
    """The minimal failing example hypothesis reported, if any."""
    notes: list[str] = []

    def collect(e: BaseException) -> None:
        notes.extend(str(n) for n in getattr(e, "__notes__", ()) or ())
        for sub in getattr(e, "exceptions", ()) or ():
            if isinstance(sub, BaseException):
                collect(sub)

    if exc is not None:
        collect(exc)
    examples = [n.strip() for n in notes if n.startswith(EXAMPLE_PREFIXES)]
    if examples:
        return "\n".join(examples)
    for prefix in EXAMPLE_PREFIXES:
        marker = longrepr_text.find(prefix)
        if marker >= 0:
            block = longrepr_text[marker:].split("\n\n", 1)[0]
            return "\n".join(line.removeprefix("E   ").rstrip() for line in block.splitlines())
    return None


def without_fixtures(example: str | None, fixture_names: Iterable[str]) -> str | None:
    """Drop the fixture arguments (`router=<...>`) hypothesis lists: only inputs matter."""
    if example is None:
        return None
    names = set(fixture_names)
    kept = [
        line
        for line in example.splitlines()
        if not (line.startswith("    ") and line.strip().split("=", 1)[0] in names)
    ]
    return "\n".join(kept)


def failure_message(exc: BaseException | None, fallback: str, limit: int = 2000) -> str:
    """The assertion's own text (expected against actual), trimmed; every failure of a group."""
    if exc is None:
        text = fallback
    elif isinstance(getattr(exc, "exceptions", None), tuple) and exc.exceptions:  # type: ignore[attr-defined]
        text = "\n".join(failure_message(e, "", limit) for e in exc.exceptions)  # type: ignore[attr-defined]
    elif isinstance(exc, AssertionError):
        text = str(exc) or fallback
    else:
        text = f"{type(exc).__name__}: {exc}"
    text = text.strip()
    return text if len(text) <= limit else text[:limit] + " ..."


def phase_verdict(when: str, outcome: str, exc: BaseException | None, strict: bool) -> str | None:
    """The verdict one phase contributes (None: a passing setup/teardown contributes nothing)."""
    if outcome == "passed":
        return PASS if when == "call" else None
    if outcome == "skipped":
        return BLOCKED if isinstance(exc, Blocked) else NOT_APPLICABLE
    if when != "call" or exc is None or not _is_assertion(exc):
        return ERRORED
    return FAIL if strict else NON_STRICT


def skip_reason(longrepr: Any) -> str:
    """The reason text of a skip report."""
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        text = str(longrepr[2])
    else:
        text = str(longrepr or "")
    return text.removeprefix("Skipped: ")
