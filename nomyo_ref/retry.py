"""The retry policy, pure: which answers are retried and how long to wait.

429, 500, 502, 503, 504 and network failures are retried up to ``max_retries`` times.
The n-th retry waits ``backoff * 2**(n-1)`` seconds plus a random jitter of at most half of
that, so many clients do not retry in lock-step (spec RTY-7, RTY-8). A ``Retry-After`` header
in delta-seconds form (a non-negative integer) replaces that delay, capped at
``retry_after_cap`` seconds (RTY-9, RTY-10). Anything else in ``Retry-After`` (negative,
fractional, garbage, the HTTP-date form) is ignored (RTY-11).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})


def is_retryable_status(status: int) -> bool:
    """True for the statuses a client may retry; 400/401/403/404 and others are final."""
    return status in RETRYABLE_STATUSES


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a delta-seconds ``Retry-After`` value, or None when absent or garbage."""
    if value is None:
        return None
    text = value.strip()
    if not text or not text.isascii() or not text.isdigit():
        return None
    return float(min(int(text), 10**9))


@dataclass(frozen=True)
class RetryPolicy:
    """Bounds of the retry loop; validated on construction."""

    max_retries: int = 2
    backoff: float = 1.0
    retry_after_cap: float = 60.0

    def __post_init__(self) -> None:
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int) \
                or self.max_retries < 0:
            raise ValueError("max_retries must be an integer >= 0")
        for name in ("backoff", "retry_after_cap"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) \
                    or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0")

    def may_retry(self, retries_done: int) -> bool:
        """Whether another retry is allowed after ``retries_done`` retries."""
        return retries_done < self.max_retries

    def delay(self, attempt: int, jitter: float, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based).

        ``jitter`` is a number in [0, 1) from the caller's random source (pure function).
        """
        if attempt < 1:
            raise ValueError("attempt is 1-based")
        if retry_after is not None:
            return min(retry_after, self.retry_after_cap)
        jitter = min(max(jitter, 0.0), 1.0)
        base = self.backoff * 2 ** (attempt - 1)
        return base * (1.0 + 0.5 * jitter)
