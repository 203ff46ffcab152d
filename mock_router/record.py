"""What the router saw: one ``SeenRequest`` per request, kept in a bounded record.

The record holds plaintext, so it lives in memory only and leaves the process only over the
admin endpoint, which a person has to switch on. It is bounded by count and by bytes so a long
session cannot grow memory without limit (the oldest entries go first).
"""

from __future__ import annotations

import base64
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

DEFAULT_MAX_ENTRIES = 10_000
DEFAULT_MAX_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class SeenRequest:
    """One request as the router received it, and what it answered."""

    method: str
    path: str
    headers: dict[str, str]          # lower-case names; repeated headers joined with ", "
    body: bytes                      # b"" when refused before reading (e.g. 413)
    package: dict[str, Any] | None   # the parsed request package
    plaintext: bytes | None          # the decrypted request
    payload: Any                     # the decoded JSON of the plaintext, or None
    client_public_key_pem: str | None
    payload_id: str | None           # the X-Payload-ID header as sent (even when invalid)
    status: int                      # the status answered (None never: drops record 0)
    refusal: str | None              # the detail when refused, else None
    time: float                      # time.time() at arrival
    scenario: str | None = None      # kind of the scenario that shaped the answer, if any
    security_tier: str | None = None  # the X-Security-Tier header as sent
    seq: int = 0                     # arrival number: ``seen`` is sorted by it

    def size(self) -> int:
        return len(self.body) + len(self.plaintext or b"")

    def to_json(self, *, redact_authorization: bool = True) -> dict[str, Any]:
        """A JSON-able view for the admin endpoint (bytes as base64, plus UTF-8 text)."""
        headers = dict(self.headers)
        if redact_authorization and "authorization" in headers:
            headers["authorization"] = "<redacted>"
        return {
            "method": self.method,
            "path": self.path,
            "headers": headers,
            "body_base64": base64.b64encode(self.body).decode("ascii"),
            "package": self.package,
            "plaintext": (self.plaintext.decode("utf-8", "replace")
                          if self.plaintext is not None else None),
            "payload": self.payload,
            "client_public_key_pem": self.client_public_key_pem,
            "payload_id": self.payload_id,
            "status": self.status,
            "refusal": self.refusal,
            "time": self.time,
            "scenario": self.scenario,
            "security_tier": self.security_tier,
            "seq": self.seq,
        }


class Record:
    """Thread-safe bounded list of SeenRequest in arrival order."""

    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES,
                 max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._items: deque[SeenRequest] = deque()
        self._bytes = 0
        self.dropped = 0  # how many old entries were let go

    def add(self, seen: SeenRequest) -> None:
        with self._lock:
            self._items.append(seen)
            self._bytes += seen.size()
            while self._items and (len(self._items) > self.max_entries
                                   or (self._bytes > self.max_bytes and len(self._items) > 1)):
                old = self._items.popleft()
                self._bytes -= old.size()
                self.dropped += 1

    def snapshot(self) -> list[SeenRequest]:
        """In arrival order (entries are added when answered, which may differ)."""
        with self._lock:
            return sorted(self._items, key=lambda s: s.seq)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0
            self.dropped = 0
