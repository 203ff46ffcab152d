"""An adapter for any in-process Python port that follows the seed API.

The seed API (spec, seed api-reference) is `SecureChatCompletion(base_url, allow_http,
api_key, secure_memory, ...)` with coroutine `create(model, messages, **kwargs)`,
`SecureCompletionClient` with `generate_keys`, `load_keys`, coroutine `encrypt_payload` and
`decrypt_response`, and the exception classes. A Python port following it needs only a
subclass naming its module, exception mapping and which ClientConfig fields it accepts:

    class MyAdapter(SeedPortAdapter):
        name = "myport"
        def __init__(self):
            super().__init__(importlib.import_module("myport"))
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping
from types import ModuleType
from typing import Any

from conformance import adapter as A
from conformance.adapter import Adapter, ClientConfig, Kind, Outcome
from conformance.adapters._inprocess import LoopThread, guarded, outcome_of

# Exception class names of the seed, and their canonical kinds.
SEED_KINDS: dict[str, Kind] = {
    "AuthenticationError": Kind.AUTHENTICATION,
    "InvalidRequestError": Kind.INVALID_REQUEST,
    "ForbiddenError": Kind.FORBIDDEN,
    "RateLimitError": Kind.RATE_LIMIT,
    "ServerError": Kind.SERVER,
    "ServiceUnavailableError": Kind.SERVICE_UNAVAILABLE,
    "APIConnectionError": Kind.CONNECTION,
    "APIError": Kind.API,
    "SecurityError": Kind.SECURITY,
}
# Only ValueError is a built-in the seed names (caller errors). A network failure must reach
# the caller as the port's own APIConnectionError: a built-in ConnectionError (or an httpx
# exception) escaping a port is a defect, so it maps to `internal`, never to `connection`.
BUILTIN_KINDS: dict[type, Kind] = {ValueError: Kind.VALUE}


class SeedPortAdapter(Adapter):
    """Drives `module.SecureChatCompletion` / `module.SecureCompletionClient` in-process."""

    language = "python"
    # Constructor keywords of SecureChatCompletion per ClientConfig field (None: unsupported).
    chat_options: Mapping[str, str | None] = {
        "api_key": "api_key",
        "secure_memory": "secure_memory",
        "key_dir": "key_dir",
        "max_retries": "max_retries",
        "timeout": "timeout",
        "ca_cert": "ca_bundle",
        "server_key_sha256": "server_key_sha256",
        "retry_backoff": "retry_backoff",
        "retry_after_cap": "retry_after_cap",
    }
    # Constructor keywords of SecureCompletionClient per ClientConfig field.
    low_level_options: Mapping[str, str | None] = {
        "secure_memory": "secure_memory",
        "max_retries": "max_retries",
        "timeout": "timeout",
        "ca_cert": "ca_bundle",
        "server_key_sha256": "server_key_sha256",
        "retry_backoff": "retry_backoff",
        "retry_after_cap": "retry_after_cap",
    }

    def __init__(self, module: ModuleType) -> None:
        self.module = module
        self.version = str(getattr(module, "__version__", "unknown"))
        self.loggers = (module.__name__,)
        self.kinds: dict[type, Kind] = dict(BUILTIN_KINDS)
        for class_name, kind in SEED_KINDS.items():
            klass = getattr(module, class_name, None)
            if isinstance(klass, type):
                self.kinds[klass] = kind
        self._loop = LoopThread(f"conformance-{module.__name__}")

    # -- clients --------------------------------------------------------------------------

    def _kwargs(self, config: ClientConfig, options: Mapping[str, str | None]) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"allow_http": config.allow_http}
        for field_name, keyword in options.items():
            value = getattr(config, field_name)
            if value is not None and keyword is not None:
                kwargs[keyword] = value
        return kwargs

    def _build_chat(self, config: ClientConfig) -> Any:
        kwargs = self._kwargs(config, self.chat_options)

        async def build() -> Any:  # built on the loop: locks and pools bind to it
            return self.module.SecureChatCompletion(base_url=config.base_url, **kwargs)

        return self._loop.run(build)

    def open_client(self, config: ClientConfig) -> Outcome:
        outcome = outcome_of(self.kinds, lambda: self._build_chat(config))
        if outcome.ok:
            return Outcome.success({"client": outcome.result}, outcome.warnings)
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
        extra = dict(kwargs or {})
        owned = client is None
        if owned and config is None:
            raise A.AdapterError("create needs a config or a client")

        def run() -> Any:
            nonlocal client
            if client is None:
                client = self._build_chat(config)  # type: ignore[arg-type]
            chat = client
            return self._loop.run(lambda: chat.create(model, messages, **extra))

        try:
            result, error, texts = guarded(self.kinds, run)
        finally:
            if owned and client is not None:
                self.close_client(client)
        if error is not None:
            return Outcome.failure(error, texts)
        return Outcome.success(result, texts)

    def close_client(self, handle: Any) -> None:
        for name in ("aclose", "close"):
            method = getattr(handle, name, None)
            if callable(method):
                try:
                    if inspect.iscoroutinefunction(method):
                        self._loop.run(method, timeout=10)
                    else:
                        method()
                except Exception:  # noqa: S110 - closing must never fail a check
                    pass
                return

    # -- keys -----------------------------------------------------------------------------

    @property
    def low_level_class(self) -> Any:
        """SecureCompletionClient; in the official package the name is also a submodule."""
        found = self.module.SecureCompletionClient
        if isinstance(found, ModuleType):
            found = found.SecureCompletionClient
        return found

    def _bare_low_level(self) -> Any:
        return self.low_level_class("https://127.0.0.1")

    def generate_keys(self, directory: str, password: str | None = None) -> Outcome:
        def run() -> dict[str, str]:
            low = self._bare_low_level()
            low.generate_keys(save_to_file=True, key_dir=directory, password=password)
            return {
                "private_key_path": os.path.join(directory, "private_key.pem"),
                "public_key_path": os.path.join(directory, "public_key.pem"),
            }

        return outcome_of(self.kinds, run)

    def load_keys(
        self,
        private_key_path: str,
        public_key_path: str | None = None,
        password: str | None = None,
    ) -> Outcome:
        def run() -> dict[str, Any]:
            low = self._bare_low_level()
            low.load_keys(private_key_path, public_key_path, password)
            return {"public_key_pem": _pem_text(getattr(low, "public_key_pem", None))}

        return outcome_of(self.kinds, run)

    # -- low level ------------------------------------------------------------------------

    def encrypt_payload(
        self, config: ClientConfig | None, payload: Any, *, client: Any = None
    ) -> Outcome:
        def run() -> dict[str, Any]:
            low = client
            if low is None:
                if config is None:
                    raise A.AdapterError("encrypt_payload needs a config or a client")
                kwargs = self._kwargs(config, self.low_level_options)

                async def build() -> Any:
                    made = self.low_level_class(config.base_url, **kwargs)
                    made.generate_keys()
                    return made

                low = self._loop.run(build)
            body = self._loop.run(lambda: low.encrypt_payload(payload))
            return {
                "body": bytes(body),
                "public_key_pem": _pem_text(getattr(low, "public_key_pem", None)),
                "client": low,
            }

        return outcome_of(self.kinds, run)

    def decrypt_response(self, body: bytes, payload_id: str, *, client: Any) -> Outcome:
        return outcome_of(
            self.kinds, lambda: self._loop.run(lambda: client.decrypt_response(body, payload_id))
        )

    def close(self) -> None:
        self._loop.close()


def _pem_text(value: Any) -> str | None:
    if isinstance(value, bytes):
        return value.decode("ascii", "replace")
    return value if isinstance(value, str) else None


CAPS_ALL = frozenset(A.CAPABILITIES)
