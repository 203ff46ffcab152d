"""The built-in `nomyo` adapter: the official client from PyPI (nomyo 0.2.9), in-process.

What it can and cannot be told, declared honestly as capabilities:
- no pinning, no retry_backoff (it sleeps 1 s, 2 s, 4 s ...), no timeout (900 s fixed);
- ca_cert works through the environment: it builds a fresh httpx client per request with
  the default `verify=True, trust_env=True`, and httpx then trusts exactly SSL_CERT_FILE;
  the adapter sets that variable around each call (under a lock) and restores it after.
Exception mapping: its APIConnectionError is not an APIError subclass (mapped explicitly),
ValueError is `value`; the built-in ConnectionError its key fetch raises internally is not
mapped (it would be `internal`: only the port's own APIConnectionError is `connection`).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from conformance import adapter as A
from conformance.adapter import ClientConfig, Outcome
from conformance.adapters.seed_port import SeedPortAdapter

_ENV_LOCK = threading.RLock()


@contextlib.contextmanager
def trusted_ca(path: str | None) -> Iterator[None]:
    """SSL_CERT_FILE=path for the duration (nothing changes when path is None)."""
    if path is None:
        yield
        return
    with _ENV_LOCK:
        old = os.environ.get("SSL_CERT_FILE")
        os.environ["SSL_CERT_FILE"] = path
        try:
            yield
        finally:
            if old is None:
                os.environ.pop("SSL_CERT_FILE", None)
            else:
                os.environ["SSL_CERT_FILE"] = old


class OfficialAdapter(SeedPortAdapter):
    """nomyo (PyPI) in-process."""

    name = "nomyo"
    capabilities = frozenset(
        {
            A.CREATE,
            A.API_KEY,
            A.SECURITY_TIER,
            A.ALLOW_HTTP,
            A.CA_CERT,
            A.MAX_RETRIES,
            A.CLIENT_REUSE,
            A.PYTHON_API,
            A.KEY_FILES,
            A.KEY_DIR,
            A.KEY_PASSWORD,
            A.LOW_LEVEL,
            A.LOG_CAPTURE,
            A.WARNINGS,
        }
    )
    chat_options: Mapping[str, str | None] = {
        "api_key": "api_key",
        "secure_memory": "secure_memory",
        "key_dir": "key_dir",
        "max_retries": "max_retries",
    }
    low_level_options: Mapping[str, str | None] = {
        "secure_memory": "secure_memory",
        "max_retries": "max_retries",
    }

    def __init__(self) -> None:
        module = importlib.import_module("nomyo")
        super().__init__(module)
        # A dict so ca_cert follows a client handle into later create() calls.
        self._ca_of: dict[int, str] = {}

    def open_client(self, config: ClientConfig) -> Outcome:
        outcome = super().open_client(config)
        if outcome.ok and config.ca_cert is not None:
            self._ca_of[id(outcome.result["client"])] = config.ca_cert
        return outcome

    def create(
        self,
        config: ClientConfig | None,
        model: str,
        messages: Any,
        kwargs: Mapping[str, Any] | None = None,
        *,
        client: Any = None,
    ) -> Outcome:
        ca = self._ca_of.get(id(client)) if client is not None else None
        if ca is None and config is not None:
            ca = config.ca_cert
        with trusted_ca(ca):
            return super().create(config, model, messages, kwargs, client=client)

    def close_client(self, handle: Any) -> None:
        self._ca_of.pop(id(handle), None)
        super().close_client(handle)

    def encrypt_payload(
        self, config: ClientConfig | None, payload: Any, *, client: Any = None
    ) -> Outcome:
        with trusted_ca(config.ca_cert if config is not None else None):
            return super().encrypt_payload(config, payload, client=client)


def make() -> OfficialAdapter:
    return OfficialAdapter()
