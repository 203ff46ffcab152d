"""Shared machinery of in-process Python adapters: one event loop, warnings, error mapping.

An async port is driven from synchronous checks by running every coroutine on one event
loop owned by the adapter (in a daemon thread), so a client built in one call can be reused
by the next: its connection pool and locks stay bound to the same loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
import warnings
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any, TypeVar

from conformance.adapter import AdapterError, ErrorInfo, Kind, Outcome

T = TypeVar("T")

# Generous: the implementation's own timeouts should fire first; this only stops a hang.
DEFAULT_CALL_TIMEOUT = 120.0


class LoopThread:
    """An asyncio loop running forever in a daemon thread."""

    def __init__(self, name: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    def run(self, factory: Callable[[], Awaitable[T]], timeout: float = DEFAULT_CALL_TIMEOUT) -> T:
        """Run the coroutine made by `factory` on the loop and wait for its result."""
        if self._loop.is_closed():
            raise AdapterError("the adapter is closed")

        async def wrapper() -> T:
            return await factory()

        future = asyncio.run_coroutine_threadsafe(wrapper(), self._loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError as exc:
            future.cancel()
            raise AdapterError(f"operation did not finish within {timeout:.0f} s") from exc

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self._loop.close()


@contextlib.contextmanager
def recorded_warnings() -> Iterator[list[str]]:
    """Record every warning raised meanwhile (any thread) as "Category: message"."""
    texts: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield texts
        finally:
            texts.extend(f"{w.category.__name__}: {w.message}" for w in caught)


def error_info(exc: BaseException, kinds: Mapping[type, Kind]) -> ErrorInfo:
    """Map an exception to ErrorInfo: the most specific class in `kinds` wins (MRO order)."""
    kind = Kind.INTERNAL
    for klass in type(exc).__mro__:
        if klass in kinds:
            kind = kinds[klass]
            break
    status = getattr(exc, "status_code", None)
    details = getattr(exc, "error_details", None)
    message = getattr(exc, "message", None)
    if not isinstance(message, str):
        try:
            message = str(exc)
        except Exception:  # a port's broken __str__ (e.g. .message not a str): show, don't crash
            message = f"<str() of {type(exc).__name__} failed; .message is {message!r}>"
    return ErrorInfo(
        kind=kind.value,
        message=message,
        status_code=status if isinstance(status, int) else None,
        details=_jsonable(details),
        type_name=f"{type(exc).__module__}.{type(exc).__qualname__}",
    )


def _jsonable(value: Any) -> Any:
    """Details must cross process and report boundaries: keep JSON-like values only."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return repr(value)


def guarded(
    kinds: Mapping[type, Kind], run: Callable[[], Any]
) -> tuple[Any, ErrorInfo | None, list[str]]:
    """Call `run`, turning implementation exceptions into ErrorInfo and recording warnings.

    AdapterError passes through: it is the adapter's failure, not the implementation's.
    """
    with recorded_warnings() as texts:
        try:
            result = run()
        except AdapterError:
            raise
        except Exception as exc:
            return None, error_info(exc, kinds), texts
    return result, None, texts


def outcome_of(kinds: Mapping[type, Kind], run: Callable[[], Any]) -> Outcome:
    """`guarded` as an Outcome."""
    result, error, texts = guarded(kinds, run)
    if error is not None:
        return Outcome.failure(error, texts)
    return Outcome.success(result, texts)
