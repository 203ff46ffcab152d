"""SecureChatCompletion: the seed's OpenAI-shaped entry point.

``create`` builds the request object from ``model``, ``messages`` and every other keyword
(OpenAI parameters and unknown extras alike pass through unchanged into the encrypted
payload), sends it with a fresh UUIDv4 payload id through one shared
``SecureCompletionClient``, and returns the decrypted completion. Three keywords are consumed
and never enter the payload (spec API-5): ``security_tier`` (the ``X-Security-Tier`` header),
``api_key`` (this call's bearer token instead of the client's) and ``base_url`` (this call
goes to another router, under the same HTTPS rule; one cached SecureCompletionClient per
router, sharing this object's key pair).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from types import TracebackType
from typing import Any

from . import protocol
from .client import SecureCompletionClient
from .urls import normalise_base_url

DEFAULT_BASE_URL = "https://api.nomyo.ai"


class SecureChatCompletion:
    """OpenAI-compatible secure chat completions (``await chat.create(model, messages)``).

    Keys: with ``key_dir``, ``private_key.pem``/``public_key.pem`` there are loaded, or made
    (4096-bit) and saved on first use; without it, a key pair lives in memory for this
    object's lifetime. Usable as ``async with``; otherwise ``await chat.aclose()``.
    """

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        allow_http: bool = False,
        api_key: str | None = None,
        secure_memory: bool = True,
        *,
        key_dir: str | os.PathLike[str] | None = None,
        max_retries: int = 2,
        timeout: float = 60.0,
        ca_bundle: str | os.PathLike[str] | None = None,
        server_key_sha256: str | Sequence[str] | None = None,
        retry_backoff: float = 1.0,
        retry_after_cap: float = 60.0,
    ) -> None:
        self.api_key = protocol.check_api_key(api_key)
        self._options: dict[str, Any] = {
            "secure_memory": secure_memory,
            "max_retries": max_retries,
            "timeout": timeout,
            "ca_bundle": ca_bundle,
            "server_key_sha256": server_key_sha256,
            "retry_backoff": retry_backoff,
            "retry_after_cap": retry_after_cap,
        }
        self.allow_http = bool(allow_http)
        self.client = SecureCompletionClient(base_url, allow_http, **self._options)
        self.client._key_dir = key_dir
        self.key_dir = key_dir
        # Other routers reached through a per-call base_url, by normalised URL.
        self._routers: dict[str, SecureCompletionClient] = {self.client.router_url: self.client}

    def __repr__(self) -> str:
        return f"SecureChatCompletion(base_url={self.base_url!r})"

    async def _router_for(self, base_url: object) -> SecureCompletionClient:
        """The client for a per-call ``base_url`` (checked by the HTTPS rule before use)."""
        if base_url is None:
            return self.client
        if not isinstance(base_url, str):
            raise ValueError("base_url must be a string")
        with warnings.catch_warnings():
            # Only warn about plain HTTP the first time a router is used (below).
            warnings.simplefilter("ignore")
            url = normalise_base_url(base_url, allow_http=self.allow_http)
        router = self._routers.get(url)
        if router is None:
            router = SecureCompletionClient(base_url, self.allow_http, **self._options)
            self._routers[router.router_url] = router
        if router.private_key is None:
            private_key, _ = await self.client._ensure_keys()
            if router.private_key is None:
                router._install_private_key(private_key)
        return router

    @property
    def base_url(self) -> str:
        """The normalised base URL every call goes to."""
        return self.client.router_url

    async def create(self, model: str, messages: list[dict[str, Any]], **kwargs: Any
                     ) -> dict[str, Any]:
        """One encrypted chat completion; returns the decrypted ``chat.completion`` dict.

        Raises ValueError (bad tier, header-unsafe values, stream=True, payload over 10 MiB
        or not JSON, malformed answer), SecurityError, or an APIError subclass for the
        router's answer; see the README for the full table.
        """
        security_tier = protocol.check_security_tier(kwargs.pop("security_tier", None))
        api_key = kwargs.pop("api_key", None)
        api_key = self.api_key if api_key is None else protocol.check_api_key(api_key)
        base_url = kwargs.pop("base_url", None)
        payload = protocol.build_payload(model, messages, kwargs)
        router = await self._router_for(base_url)
        return await router.send_secure_request(
            payload, protocol.new_payload_id(), api_key, security_tier
        )

    async def acreate(self, model: str, messages: list[dict[str, Any]], **kwargs: Any
                      ) -> dict[str, Any]:
        """Async alias of :meth:`create` (same arguments, same result)."""
        return await self.create(model, messages, **kwargs)

    async def aclose(self) -> None:
        """Close the pooled connections (of every router this object talked to)."""
        for router in list(self._routers.values()):
            await router.aclose()

    async def __aenter__(self) -> SecureChatCompletion:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
