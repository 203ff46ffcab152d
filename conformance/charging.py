"""Which requirement each assertion of a check is charged to, and BLOCKED.

A check may judge several clauses (several requirement ids). An assertion made inside
``expect.clause("ERR-13")`` is charged to ERR-13 alone: when it fails, only ERR-13 fails,
and the check goes on, so a second defect under another id of the same check is still seen
(soft assertions). Inside a hypothesis example the failure is raised at once instead
(hypothesis needs the exception to shrink); the check's other ids are then BLOCKED by the
failed one, because their later assertions were never reached.

An assertion outside any clause is charged to every id of the check (one-id checks need no
clause at all).

``Blocked`` ends a check that cannot observe its property because something judged
elsewhere is broken: never a pass, never a second copy of that other failure.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

from _pytest.outcomes import Skipped

BLOCKED_PREFIX = "BLOCKED by "


class Blocked(Skipped):
    """The check cannot observe its property: requirement `by` (judged elsewhere) is broken.

    A pytest skip underneath, so hypothesis and pytest let it through untouched; the plugin
    turns it into the verdict BLOCKED and confirms at the end that `by` did fail.
    """

    def __init__(self, by: str, why: str) -> None:
        super().__init__(msg=f"{BLOCKED_PREFIX}{by}: {why}", pytrace=False)
        self.by = by
        self.why = why
        self.judged: frozenset[str] = frozenset()  # ids a passed clause judged before


def blocked_by(reason: str) -> str | None:
    """The blocking requirement id named in a skip reason, if it is a BLOCKED one."""
    if not reason.startswith(BLOCKED_PREFIX):
        return None
    return reason[len(BLOCKED_PREFIX) :].split(":", 1)[0].strip() or None


@dataclass(frozen=True)
class Charge:
    """One failed assertion and the requirement ids it is charged to."""

    ids: tuple[str, ...]
    message: str


class ChargedAssertion(AssertionError):
    """A failed assertion charged to `ids` (raised at once, inside hypothesis)."""

    def __init__(self, ids: tuple[str, ...], message: str) -> None:
        super().__init__(message)
        self.ids = ids


class ChargedFailures(AssertionError):
    """The soft failures of one check, raised when its body has finished (or was BLOCKED)."""

    def __init__(self, charges: list[Charge], blocked: Blocked | None = None) -> None:
        text = "\n".join(f"[{', '.join(c.ids)}] {c.message}" for c in charges)
        super().__init__(text)
        self.charges = charges
        self.blocked = blocked


class ClauseError(Exception):
    """A check charges an id its markers do not name (a defect of the check: ERRORED)."""


@dataclass
class Ledger:
    """The soft failures of the check running now."""

    allowed: tuple[str, ...]
    failures: list[Charge] = field(default_factory=list)
    passed: set[str] = field(default_factory=set)  # ids whose clauses all held so far


_active: Ledger | None = None


@contextlib.contextmanager
def running(ids: tuple[str, ...]) -> Iterator[Ledger]:
    """Collect the soft failures of one check (the plugin wraps every check in this)."""
    global _active
    previous, _active = _active, Ledger(ids)
    try:
        yield _active
    finally:
        _active = previous


def _in_hypothesis() -> bool:
    try:
        from hypothesis import currently_in_test_context
    except ImportError:  # pragma: no cover - hypothesis is a dependency of the suite
        return False
    return bool(currently_in_test_context())


def message_of(exc: BaseException) -> str:
    return str(exc).strip() or type(exc).__name__


@contextlib.contextmanager
def clause(*ids: str) -> Iterator[None]:
    """Charge the assertions inside to `ids` only (see the module docstring)."""
    ledger = _active
    if not ids:
        raise ClauseError("expect.clause() needs at least one requirement id")
    if ledger is not None:
        foreign = [rid for rid in ids if rid not in ledger.allowed]
        if foreign:
            raise ClauseError(
                f"expect.clause({', '.join(ids)}): {', '.join(foreign)} not among the check's "
                f"requirement ids ({', '.join(ledger.allowed)})"
            )
    try:
        yield
        if ledger is not None:
            ledger.passed.update(ids)
    except ChargedAssertion:
        raise  # an inner clause already charged it
    except AssertionError as exc:
        if ledger is None or _in_hypothesis():
            raise ChargedAssertion(tuple(ids), message_of(exc)) from exc
        ledger.failures.append(Charge(tuple(ids), message_of(exc)))


def finish(ledger: Ledger, error: BaseException | None) -> BaseException | None:
    """What a check ends with, given its soft failures and what its body raised (if any).

    A BLOCKED check keeps the verdicts of the clauses it did judge before it stopped: their
    ids travel on the exception (`judged`) and PASS instead of being BLOCKED."""
    if isinstance(error, Blocked):
        failed = {rid for c in ledger.failures for rid in c.ids}
        error.judged = frozenset(ledger.passed - failed)
    if not ledger.failures:
        return error
    charges = list(ledger.failures)
    blocked = None
    if isinstance(error, Blocked):
        blocked = error
    elif isinstance(error, ChargedAssertion):
        charges.append(Charge(error.ids, message_of(error)))
    elif isinstance(error, AssertionError):
        charges.append(Charge(ledger.allowed, message_of(error)))
    elif error is not None:
        return error  # a crash stays a crash (ERRORED)
    return ChargedFailures(charges, blocked)


def charged_ids(exc: BaseException | None, all_ids: tuple[str, ...]) -> tuple[set[str], bool]:
    """The ids a failure is charged to, and whether the check stopped early (hard failure)."""
    if exc is None:
        return set(), False
    group = getattr(exc, "exceptions", None)
    if isinstance(group, tuple) and group:
        found: set[str] = set()
        stopped = False
        for sub in group:
            ids, early = charged_ids(sub, all_ids)
            found |= ids
            stopped = stopped or early
        return found, stopped
    if isinstance(exc, ChargedFailures):
        return {rid for c in exc.charges for rid in c.ids}, exc.blocked is not None
    if isinstance(exc, ChargedAssertion):
        return set(exc.ids), True
    return set(all_ids), True


def messages_by_id(exc: BaseException | None, all_ids: tuple[str, ...]) -> dict[str, list[str]]:
    """Each failed id's own messages (a multi-id check does not repeat one text under all)."""
    out: dict[str, list[str]] = {}
    if exc is None:
        return out
    group = getattr(exc, "exceptions", None)
    if isinstance(group, tuple) and group:
        for sub in group:
            for rid, texts in messages_by_id(sub, all_ids).items():
                out.setdefault(rid, []).extend(t for t in texts if t not in out.get(rid, []))
        return out
    if isinstance(exc, ChargedFailures):
        for charge in exc.charges:
            for rid in charge.ids:
                out.setdefault(rid, []).append(charge.message)
        return out
    ids = exc.ids if isinstance(exc, ChargedAssertion) else all_ids
    for rid in ids:
        out.setdefault(rid, []).append(message_of(exc))
    return out
