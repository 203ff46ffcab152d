"""The replay cache (SRV-21, spec 1.0.1): a package the router decrypted once is refused with
409 ``{"detail": "replayed request"}`` when it arrives again within the window.

Why: nothing binds a request package to ``X-Public-Key``, ``X-Payload-ID`` or the API key, so
whoever recorded one request body (a logging TLS terminator) could resend it with their own
public key and read the answer to someone else's prompt (review finding S-1). The wrapped AES
key is fresh for every package a conforming client builds (ENC-8, RTY-15), so its SHA-256 is
a cheap, exact identity of the package. Only packages that decrypted enter the cache, so
garbage cannot fill it and a client whose package failed may resend it.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

DEFAULT_WINDOW = 600.0
DEFAULT_MAX_ENTRIES = 100_000


class ReplayCache:
    """SHA-256 of decoded ``encrypted_aes_key`` bytes -> when it was first decrypted.

    ``window`` seconds (0 disables the cache: nothing is kept, nothing is refused). Bounded
    by ``max_entries``; when full, the oldest entry goes first (``evicted`` counts them), so a
    long load test cannot grow memory without limit. ``clock`` is injectable for tests.
    """

    def __init__(self, window: float = DEFAULT_WINDOW, *,
                 max_entries: int = DEFAULT_MAX_ENTRIES,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self.clock = clock
        self.evicted = 0
        self._lock = threading.Lock()
        self._seen: OrderedDict[bytes, float] = OrderedDict()

    @property
    def window(self) -> float:
        return self._window

    @window.setter
    def window(self, value: float) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0 \
                or value == float("inf"):
            raise ValueError("replay window must be a finite number of seconds >= 0")
        self._window = float(value)

    @property
    def enabled(self) -> bool:
        return self._window > 0

    @staticmethod
    def digest(encrypted_aes_key: bytes) -> bytes:
        """The cache key of a package: SHA-256 of its decoded wrapped AES key."""
        return hashlib.sha256(encrypted_aes_key).digest()

    def _purge(self, now: float) -> None:
        while self._seen:
            oldest, added = next(iter(self._seen.items()))
            if now - added < self._window:
                break
            del self._seen[oldest]

    def seen_before(self, encrypted_aes_key: bytes, *, add: bool = True) -> bool:
        """True when this package was decrypted within the window (a replay); otherwise
        remember it (when ``add``) and return False. Atomic: of two concurrent copies of one
        package, exactly one is first."""
        if not self.enabled:
            return False
        key = self.digest(encrypted_aes_key)
        with self._lock:
            now = self.clock()
            self._purge(now)
            if key in self._seen:
                return True
            if add:
                self._seen[key] = now
                while len(self._seen) > self.max_entries:
                    self._seen.popitem(last=False)
                    self.evicted += 1
            return False

    def clear(self) -> None:
        with self._lock:
            self._seen.clear()
            self.evicted = 0

    def __len__(self) -> int:
        with self._lock:
            self._purge(self.clock())
            return len(self._seen)
