"""`RouterSession`: the router under test as the checks see it (the `router_under_test`
fixture).

It seals drafts with the router's key, sends them, and remembers each exchange by its draft,
so a request several checks judge (the valid request every answer check reads, a refusal
that SRV-16, SRV-17 and LOG-5 judge too) is sent once per run: that keeps the live
profile's request count small and the default profile fast. Checks that need a request of
their own (freshness, replay, timing) use `send`, which never reuses.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from conformance import expect
from conformance.server import rawhttp
from conformance.server.analysis import Analysis, analyse
from conformance.server.drafts import Draft, Prepared, prepare
from conformance.server.keys import Keyring
from conformance.server.options import ServerOptions
from conformance.server.transport import Answer, Transport, tls_context


@dataclass(frozen=True)
class Exchange:
    """One request and the router's answer (None: no answer came in time)."""

    prepared: Prepared
    answer: Answer

    @property
    def draft(self) -> Draft:
        return self.prepared.draft

    @functools.cached_property
    def analysis(self) -> Analysis:
        """What the answer of a valid request proves (computed once)."""
        return analyse(self.prepared, self.answer)


def parse_server_key(answer: Answer) -> rsa.RSAPublicKey:
    """The RSA key of a key-endpoint answer, or ValueError saying what is wrong with it."""
    if answer.status != 200:
        raise ValueError(f"the key endpoint answered {answer.describe()}")
    try:
        key = serialization.load_pem_public_key(answer.body)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"the key endpoint's body is not a PEM public key ({exc})") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError(f"the server key is not RSA but {type(key).__name__}")
    return key


class RouterSession:
    """Sends drafts to the router; see the module docstring."""

    def __init__(self, options: ServerOptions, transport: Transport, keyring: Keyring) -> None:
        self.options = options
        self.transport = transport
        self.keyring = keyring
        self._key_answer: Answer | None = None
        self._server_key: rsa.RSAPublicKey | None = None
        self._cache: dict[Draft, Exchange] = {}
        self._lock = threading.Lock()

    @property
    def policy(self) -> Any:
        return self.options.policy

    def key_answer(self) -> Answer:
        """The first answer of the key endpoint (fetched once, shared)."""
        if self._key_answer is None:
            self._key_answer = self.transport.get_key()
        return self._key_answer

    @property
    def server_key(self) -> rsa.RSAPublicKey:
        """The router's key; a check needing it is BLOCKED by DISC-2 when it is unusable."""
        if self._server_key is None:
            try:
                self._server_key = parse_server_key(self.key_answer())
            except ValueError as exc:
                expect.blocked("DISC-2", f"no usable server key to encrypt to: {exc}")
        return self._server_key

    def prepare(self, draft: Draft) -> Prepared:
        return prepare(draft, self.keyring, self.server_key, self.options.model,
                       self.options.api_key)

    def send(self, draft: Draft) -> Exchange:
        """Seal and send `draft` now (never answered from the cache)."""
        prepared = self.prepare(draft)
        if draft.oversize:
            self.transport.count()
            result = rawhttp.declared_oversize(self.options.url, prepared.headers, draft.oversize,
                                               tls_context(self.options))
            answer = self.transport.own(result.answer or Answer(0, {}, b"", result.waited))
        else:
            answer = self.transport.post(prepared.headers, prepared.body)
        return Exchange(prepared, answer)

    def exchange(self, draft: Draft) -> Exchange:
        """The exchange of `draft`, sent once per run and then remembered."""
        with self._lock:
            cached = self._cache.get(draft)
        if cached is not None:
            return cached
        made = self.send(draft)
        with self._lock:
            self._cache.setdefault(draft, made)
        return made

    def send_many(self, drafts: list[Draft]) -> list[Exchange]:
        """All `drafts` at the same moment, one connection each."""
        prepared = [self.prepare(d) for d in drafts]
        answers = self.transport.post_many([(p.headers, p.body) for p in prepared])
        return [Exchange(p, a) for p, a in zip(prepared, answers, strict=True)]
