"""What the router saw: one ``SeenRequest`` per request, kept in a bounded record.

Every request is recorded, refused and undecryptable ones included, because the conformance
suite judges a port from this evidence whatever the router answered: the headers and raw
body always; the package whenever the body is a JSON object; the router's refusal as a code
(``refusal_code``, see codes.py) and a text (``refusal``); the plaintext when the router
decrypted it; and, on demand, ``tolerant`` (the plaintext opened for judging even when the
package is non-conforming), ``fault`` (the one root fault, with its requirement ids) and
``faults`` (all of them).

The record holds plaintext, so it lives in memory only and leaves the process only over the
admin endpoint, which a person has to switch on. It is bounded by count and by bytes so a long
session cannot grow memory without limit (the oldest entries go first).
"""

from __future__ import annotations

import base64
import functools
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from .evidence import Fault, Opened, tolerant_open

#: Refusals at the package and decryption steps: there the tolerant decryption knows better
#: what the port did wrong than the router's first failed check does.
_PACKAGE_STAGE = frozenset({
    "payload_member_missing", "payload_member_type", "base64_invalid", "nonce_length",
    "tag_length", "aes_key_empty", "decryption_failed"})

DEFAULT_MAX_ENTRIES = 10_000
DEFAULT_MAX_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class SeenRequest:
    """One request as the router received it, and what it answered."""

    method: str
    path: str
    headers: dict[str, str]          # lower-case names; repeated headers joined with ", "
    body: bytes                      # b"" when refused before reading (e.g. 413)
    package: dict[str, Any] | None   # the body as a JSON object, refused or not (last wins)
    plaintext: bytes | None          # what the router decrypted (else None: see ``tolerant``)
    payload: Any                     # the decoded JSON of the plaintext, or None
    client_public_key_pem: str | None
    payload_id: str | None           # the X-Payload-ID header as sent (even when invalid)
    status: int                      # the status answered (None never: drops record 0)
    refusal: str | None              # the detail when refused, else None
    time: float                      # time.time() at arrival
    scenario: str | None = None      # kind of the scenario that shaped the answer, if any
    security_tier: str | None = None  # the X-Security-Tier header as sent
    seq: int = 0                     # arrival number: ``seen`` is sorted by it
    refusal_code: str | None = None  # codes.REFUSAL_CODES key when refused, else None
    notes: tuple[str, ...] = ()      # codes.NOTE_CODES the router noticed but accepted
    client_key_bits: int | None = None  # size of the X-Public-Key RSA key, even if refused
    #: The server keys at arrival (current first, then retired ones) for ``tolerant``.
    server_keys: tuple[Any, ...] = field(default=(), repr=False, compare=False)

    def size(self) -> int:
        return len(self.body) + len(self.plaintext or b"")

    @property
    def valid(self) -> bool:
        """The router found nothing to refuse (every check of spec 9.2 passed). Differs from
        ``status == 200`` when a scenario answered: a scripted status for a valid request,
        or a scripted answer (``always=True``) for a refused one."""
        return self.refusal_code is None

    @functools.cached_property
    def tolerant(self) -> Opened | None:
        """The request's plaintext for judging, however the package was built: ``Opened(
        plaintext, variant)`` (variant "standard" when conforming), or None when no known
        variant opens it. Never used to accept a request; computed on first use (a few RSA
        operations for a package the router could not open)."""
        if self.plaintext is not None:
            return Opened(self.plaintext, "standard")
        if not self.body or not self.server_keys:
            return None
        return tolerant_open(self.package if self.package is not None else self.body,
                             self.server_keys)

    @functools.cached_property
    def faults(self) -> tuple[Fault, ...]:
        """Everything wrong with the request: the refusal, the deviations the tolerant
        decryption needed, and the accepted deviations (notes), without repeats."""
        found: list[Fault] = []
        if self.refusal_code is not None:
            found.append(Fault.of(self.refusal_code, self.refusal))
        if self.method == "POST":
            opened = self.tolerant if self.refusal_code is not None else None
            found.extend(opened.faults if opened is not None else ())
        found.extend(Fault.of(code) for code in self.notes)
        out: list[Fault] = []
        for fault in found:
            if fault.code not in {f.code for f in out}:
                out.append(fault)
        return tuple(out)

    @functools.cached_property
    def fault(self) -> Fault | None:
        """The root fault of a refused request (None when the router found nothing to refuse):
        the router's refusal, except that a package refused at the package or decryption step
        but opened by the tolerant decryption is charged to what that needed (e.g. "tag
        appended to the ciphertext", ENC-3, rather than "'encrypted_payload.tag' is
        missing")."""
        if self.refusal_code is None:
            return None
        if self.refusal_code in _PACKAGE_STAGE and self.tolerant is not None \
                and self.tolerant.faults:
            return self.tolerant.faults[0]
        return Fault.of(self.refusal_code, self.refusal)

    def to_json(self, *, redact_authorization: bool = True,
                evidence: bool = False) -> dict[str, Any]:
        """A JSON-able view for the admin endpoint (bytes as base64, plus UTF-8 text);
        ``evidence`` adds the tolerant variant and the faults (costs RSA work)."""
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
            "refusal_code": self.refusal_code,
            "notes": list(self.notes),
            "client_key_bits": self.client_key_bits,
            "valid": self.valid,
            **(self._evidence_json() if evidence else {}),
        }

    def _evidence_json(self) -> dict[str, Any]:
        opened = self.tolerant
        fault = self.fault
        return {
            "tolerant_variant": opened.variant if opened is not None else None,
            "fault": ({"code": fault.code, "text": fault.text,
                       "requirements": list(fault.requirements)} if fault else None),
            "faults": [{"code": f.code, "text": f.text, "requirements": list(f.requirements)}
                       for f in self.faults],
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
