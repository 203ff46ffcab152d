"""`create` is the one operation every implementation has: `unsupported` there is a crash.

The suite lets a port answer `unsupported` for what the spec lets it lack (key files, the
low-level API, ...), and reports those checks NOT APPLICABLE. A port answering
`unsupported` to `create` would otherwise turn nearly every check NOT APPLICABLE and the
run green; here that answer becomes an `internal` error, so each check using it is ERRORED
and the run fails with a message that says why.
"""

from __future__ import annotations

from typing import Any

from conformance.adapter import ErrorInfo, Kind, Outcome

MESSAGE = (
    "create answered 'unsupported': create is the one operation every implementation must "
    "provide (spec/testee.md), so nothing can be judged"
)


class CreateRequired:
    """Wraps an adapter; everything but `create` passes through unchanged."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    @property
    def wrapped(self) -> Any:
        """The adapter as given (for code that needs its own type)."""
        return self._inner

    def create(self, *args: Any, **kwargs: Any) -> Outcome:
        outcome = self._inner.create(*args, **kwargs)
        error = getattr(outcome, "error", None)
        if error is not None and error.kind == Kind.UNSUPPORTED.value:
            return Outcome.failure(
                ErrorInfo(Kind.INTERNAL.value, MESSAGE, type_name="unsupported"),
                outcome.warnings,
            )
        return outcome
