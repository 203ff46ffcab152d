"""``MockRouter``: the router's state (keys, policy, model, scenarios, record) and its app.

State is shared between the thread that scripts the router (a test, the admin endpoint) and
the thread uvicorn serves from, so every mutable part is either replaced atomically (the key
tuple) or guarded by a lock (scenario queue, record).
"""

from __future__ import annotations

import hashlib
import os
import random
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from . import crypto
from .model import FakeModel, ScriptType
from .record import DEFAULT_MAX_ENTRIES, Record, SeenRequest
from .replay import DEFAULT_WINDOW, ReplayCache
from .scenarios import Scenario, ScenarioQueue
from .validation import MAX_BODY_BYTES, parse_tier_policy

FAKE_DEVICE_NAME = "mock-router fake accelerator"
FAKE_DEVICE_HASH = hashlib.sha256(FAKE_DEVICE_NAME.encode()).hexdigest()
#: How many rotated-out server keys are kept for the tolerant decryption of the record.
RETIRED_KEYS_KEPT = 4


@dataclass(frozen=True)
class _ServerKey:
    private: rsa.RSAPrivateKey
    pem: str
    fingerprint: str


def _coerce_key(key: Any) -> rsa.RSAPrivateKey:
    if isinstance(key, rsa.RSAPrivateKey):
        return key
    if isinstance(key, (str, bytes)):
        data = key.encode() if isinstance(key, str) else key
        loaded = serialization.load_pem_private_key(data, password=None)
        if isinstance(loaded, rsa.RSAPrivateKey):
            return loaded
    raise TypeError("server_key must be an RSA private key object or its PEM")


class MockRouter:
    """A mock NOMYO router: build it, then serve ``router.app`` in-process or over a socket.

    ``server_key``: an RSA private key object (or its PEM); None generates one of ``key_size``.
    ``api_keys``: accepted bearer tokens (None or empty: no authentication).
    ``tier_policy``: {tier: allowed models}; a tier that is not listed allows every model.
    ``model``: a FakeModel, or a script for one (list of replies or callable), or None (echo).
    ``admin``: mount the /_mock/* endpoints (off by default; they show plaintext).
    ``latency``: seconds added to every request; ``failure_rate`` (0..1) of requests answer
    ``failure_status`` instead, drawn from a ``seed``-ed generator so a run can be replayed.
    ``replay_window``: seconds a decrypted package is remembered by the replay cache (SRV-21;
    a package seen again gets 409 "replayed request"); 0 switches the cache off.
    ``replay_includes_failures``: whether a package answered with a scripted status, a drop or
    an injected failure enters the cache too (a server whose backend failed after decryption).
    Off by default: those answers stand for failures in front of the router's processing, so
    a client that resends the identical package (allowed before 1.0.1, RTY-15 says SHOULD
    NOT) is judged on its retries, not on the cache; switch it on to test RTY-15 by behaviour.
    """

    def __init__(self, server_key: Any = None, *, key_size: int = 4096,
                 api_keys: Iterable[str] | None = None,
                 tier_policy: Mapping[str, Iterable[str]] | None = None,
                 model: FakeModel | ScriptType | None = None, admin: bool = False,
                 latency: float = 0.0, failure_rate: float = 0.0, failure_status: int = 503,
                 seed: int | None = None, max_seen: int = DEFAULT_MAX_ENTRIES,
                 max_body_bytes: int = MAX_BODY_BYTES, replay_window: float = DEFAULT_WINDOW,
                 replay_includes_failures: bool = False) -> None:
        if not 0.0 <= failure_rate <= 1.0:
            raise ValueError("failure_rate must be between 0 and 1")
        if latency < 0:
            raise ValueError("latency must be >= 0")
        self.key_size = key_size
        self._key = self._make_key(server_key if server_key is not None
                                   else crypto.generate_key(key_size))
        self.api_keys: tuple[str, ...] = tuple(api_keys or ())
        self.tier_policy = parse_tier_policy(tier_policy)
        self.model = model if isinstance(model, FakeModel) else FakeModel(model)
        self.admin = admin
        self.latency = float(latency)
        self.failure_rate = float(failure_rate)
        self.failure_status = failure_status
        self.rng = random.Random(seed)  # noqa: S311 - fault injection, not crypto
        self.max_body_bytes = max_body_bytes
        self.scenarios = ScenarioQueue()
        self.record = Record(max_entries=max_seen)
        self.replay_cache = ReplayCache(replay_window)
        self.replay_includes_failures = bool(replay_includes_failures)
        #: (key, monotonic time until which it still decrypts) of the last rotated-out keys
        self._retired: tuple[tuple[rsa.RSAPrivateKey, float], ...] = ()
        self._other_key: rsa.RSAPrivateKey | None = None
        self._other_lock = threading.Lock()
        from .app import build_app  # the app needs the router; the router owns the app

        self.app = build_app(self)

    # -- construction helpers ------------------------------------------------------------
    @classmethod
    def from_key_file(cls, path: str | os.PathLike[str], *, create: bool = False,
                      **kwargs: Any) -> MockRouter:
        """A router whose key comes from a PEM file (so clients can pin it across runs).

        With ``create=True`` a missing file is made: a new key of ``key_size`` bits is saved
        there (PKCS#8, mode 0600).
        """
        target = Path(path)
        if target.exists() or not create:
            return cls(crypto.load_private_key_file(target), **kwargs)
        key = crypto.generate_key(kwargs.get("key_size", 4096))
        crypto.save_private_key_file(key, target)
        return cls(key, **kwargs)

    def save_key(self, path: str | os.PathLike[str]) -> Path:
        """Save the current server private key (PKCS#8 PEM, mode 0600)."""
        return crypto.save_private_key_file(self._key.private, path)

    @staticmethod
    def _make_key(key: Any) -> _ServerKey:
        private = _coerce_key(key)
        return _ServerKey(private, crypto.public_pem(private), crypto.fingerprint(private))

    # -- the contract --------------------------------------------------------------------
    @property
    def public_key_pem(self) -> str:
        """The server's public key as served on /pki/public_key."""
        return self._key.pem

    @property
    def fingerprint(self) -> str:
        """Lower-case hex SHA-256 of the server key's DER SubjectPublicKeyInfo."""
        return self._key.fingerprint

    @property
    def server_key(self) -> rsa.RSAPrivateKey:
        """The current server private key (tests use it to decrypt what clients sent)."""
        return self._key.private

    @property
    def seen(self) -> list[SeenRequest]:
        """A snapshot copy of what the router received, in arrival order."""
        return self.record.snapshot()

    def push(self, *scenarios: Scenario) -> None:
        """Queue answers for the next requests (FIFO per endpoint, each ``times`` uses)."""
        self.scenarios.push(*scenarios)

    @property
    def replay_window(self) -> float:
        """Seconds the replay cache remembers a decrypted package (0: cache off); settable."""
        return self.replay_cache.window

    @replay_window.setter
    def replay_window(self, seconds: float) -> None:
        self.replay_cache.window = seconds

    def reset(self) -> None:
        """Forget queued scenarios, what was seen and the replay cache (so conformance checks
        stay independent of each other)."""
        self.scenarios.clear()
        self.record.clear()
        self.replay_cache.clear()

    def rotate_key(self, new_key: Any = None, *, grace: float = 0.0) -> str:
        """Use a new server key from now on; returns its fingerprint.

        By default the rotation is abrupt: requests still encrypted to the old key get 400
        "decryption failed", the answer that makes a client re-fetch the key (DISC-15..19,
        which the conformance suite tests this way). ``grace``: seconds the old key still
        decrypts (SRV-36 asks a server for at least 3600).
        """
        if isinstance(grace, bool) or not isinstance(grace, (int, float)) or not grace >= 0:
            raise ValueError("grace must be a number of seconds >= 0")
        old = (self._key.private, time.monotonic() + float(grace))
        self._key = self._make_key(new_key if new_key is not None
                                   else crypto.generate_key(self.key_size))
        self._retired = (old, *self._retired)[:RETIRED_KEYS_KEPT]
        return self._key.fingerprint

    # -- used by the app -----------------------------------------------------------------
    def current_key(self) -> _ServerKey:
        return self._key

    def record_keys(self) -> tuple[rsa.RSAPrivateKey, ...]:
        """The server keys a request is recorded with: the current one, then the retired
        ones (the tolerant decryption tries them all, for the evidence)."""
        return (self._key.private, *(key for key, _ in self._retired))

    def decryption_keys(self) -> tuple[rsa.RSAPrivateKey, ...]:
        """The keys that decrypt a request now: the current one, then retired keys still in
        their grace period (``rotate_key(grace=...)``)."""
        now = time.monotonic()
        return (self._key.private, *(key for key, until in self._retired if until > now))

    def other_key(self) -> rsa.RSAPublicKey:
        """A key that is nobody's: the recipient of Scenario.wrong_recipient answers."""
        with self._other_lock:
            if self._other_key is None:
                self._other_key = crypto.generate_key(2048)
            return self._other_key.public_key()

    def draw_failure(self) -> bool:
        """Whether this request gets the injected failure (seeded, thread-safe enough)."""
        return self.failure_rate > 0 and self.rng.random() < self.failure_rate
