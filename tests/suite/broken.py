"""Adapters over the toy client: one correct, and one per defect.

``--impl=tests.suite.broken:toy`` runs the suite against the toy client with no defects (it
must pass everything); ``--impl=tests.suite.broken:<defect>`` against the toy client with
that one defect (the check guarding the broken rule must fail). Every name in
``tests.suite.toy_client.DEFECTS`` is a module attribute here.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import types
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from conformance import adapter as A
from conformance.adapter import Adapter, ClientConfig, ErrorInfo, Outcome
from tests.suite.toy_client import DEFECTS, ToyClient, ToyError, ToyOptions


def _options(config: ClientConfig, defects: frozenset[str] = frozenset()) -> ToyOptions:
    """ClientConfig → ToyOptions; None means the toy client's default."""
    defaults = ToyOptions(max_retries=3 if "default_retries_3" in defects else 2)
    return ToyOptions(
        base_url=config.base_url,
        allow_http=config.allow_http,
        api_key=config.api_key,
        ca_cert=config.ca_cert,
        server_key_sha256=config.server_key_sha256,
        max_retries=defaults.max_retries if config.max_retries is None else config.max_retries,
        timeout=defaults.timeout if config.timeout is None else config.timeout,
        retry_backoff=(
            defaults.retry_backoff if config.retry_backoff is None else config.retry_backoff
        ),
        key_dir=config.key_dir,
        secure_memory=True if config.secure_memory is None else config.secure_memory,
    )


class ToyAdapter(Adapter):
    """Drives :class:`ToyClient` in-process; ``defects`` picks the rules it breaks."""

    language = "python"
    version = "toy"
    capabilities = frozenset(
        {
            A.CREATE,
            A.API_KEY,
            A.SECURITY_TIER,
            A.ALLOW_HTTP,
            A.CA_CERT,
            A.PINNING,
            A.MAX_RETRIES,
            A.RETRY_BACKOFF,
            A.CLIENT_REUSE,
            A.KEY_FILES,
            A.LOG_CAPTURE,
            A.WARNINGS,
        }
    )
    loggers = ("toy_client",)

    def __init__(self, defects: frozenset[str] = frozenset()) -> None:
        self.defects = frozenset(defects)
        self.name = "toy" if not defects else "toy+" + "+".join(sorted(defects))

    # -- helpers -----------------------------------------------------------------------------

    @staticmethod
    def _run(action: Callable[[], Any]) -> Outcome:
        """Run an operation, mapping ToyError to its kind and anything else to internal."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                result = action()
            except ToyError as exc:
                error = ErrorInfo(exc.kind, exc.message, exc.status_code, exc.details, "ToyError")
                return Outcome.failure(
                    error, [f"{w.category.__name__}: {w.message}" for w in caught]
                )
            except Exception as exc:
                error = ErrorInfo(A.Kind.INTERNAL.value, str(exc), None, None, type(exc).__name__)
                return Outcome.failure(
                    error, [f"{w.category.__name__}: {w.message}" for w in caught]
                )
        return Outcome.success(result, [f"{w.category.__name__}: {w.message}" for w in caught])

    # -- operations --------------------------------------------------------------------------

    def open_client(self, config: ClientConfig) -> Outcome:
        return self._run(
            lambda: {"client": ToyClient(_options(config, self.defects), self.defects)}
        )

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
        if client is not None:
            return self._run(lambda: client.create(model, messages, **extra))
        if config is None:
            raise A.AdapterError("create needs a config or a client")

        def once() -> Any:
            fresh = ToyClient(_options(config, self.defects), self.defects)
            try:
                return fresh.create(model, messages, **extra)
            finally:
                fresh.close()

        return self._run(once)

    def close_client(self, handle: Any) -> None:
        if isinstance(handle, ToyClient):
            handle.close()

    def generate_keys(self, directory: str, password: str | None = None) -> Outcome:
        return self._run(lambda: _generate_keys(directory, password, self.defects))

    def load_keys(
        self,
        private_key_path: str,
        public_key_path: str | None = None,
        password: str | None = None,
    ) -> Outcome:
        return self._run(lambda: _load_keys(private_key_path, password, self.defects))


def _generate_keys(directory: str, password: str | None, defects: frozenset[str]) -> dict:
    """4096-bit key, private PKCS#8 (password-encrypted when given) 0600, public SPKI 0644."""
    folder = Path(directory)
    folder.mkdir(mode=0o755 if "key_dir_open" in defects else 0o700, parents=True, exist_ok=True)
    bits = 2048 if "weak_generated_key" in defects else 4096
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password.encode())
        if password and "password_ignored" not in defects
        else serialization.NoEncryption()
    )
    priv = folder / "private_key.pem"
    pub = folder / "public_key.pem"
    data = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    fd = os.open(priv, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(priv, 0o644 if "key_file_world_readable" in defects else 0o600)
    pub.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    os.chmod(pub, stat.S_IRUSR | stat.S_IWUSR | stat.S_IRGRP | stat.S_IROTH)
    return {"private_key_path": str(priv), "public_key_path": str(pub)}


def _load_keys(private_key_path: str, password: str | None, defects: frozenset[str]) -> dict:
    """Load a private key; a wrong or missing password is a clear ValueError (kind value)."""
    data = Path(private_key_path).read_bytes()
    secret = password.encode() if password else None
    if "wrong_password_crash" in defects:
        key = serialization.load_pem_private_key(data, password=secret)
    else:
        try:
            key = serialization.load_pem_private_key(data, password=secret)
        except (ValueError, TypeError):
            raise ToyError("value", "cannot load the private key (wrong password?)") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ToyError("value", "not an RSA private key")
    if key.key_size < 2048 and "weak_own_key_accepted" not in defects:
        raise ToyError("value", "the private key is shorter than 2048 bits")
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return {"public_key_pem": pem.decode()}


logging.getLogger("toy_client").addHandler(logging.NullHandler())

#: The toy client with no defect: it must pass the whole suite.
toy = ToyAdapter()

for _name in DEFECTS:
    globals()[_name] = ToyAdapter(frozenset({_name}))
del _name


def adapter_for(defect: str | None) -> ToyAdapter:
    """The adapter for one defect (None: the correct toy client)."""
    return toy if defect is None else ToyAdapter(frozenset({defect}))


# ---------------------------------------------------------------------------------------------
# A seed-shaped Python surface over the toy client (capability python_api), so the checks of
# conformance/checks/test_python_api.py can be proven to fail too. Built per defect set.

API_DEFECTS: dict[str, str] = {
    "missing_export": "does not export ForbiddenError",
    "api_key_before_allow_http": "SecureChatCompletion takes api_key before allow_http",
    "sync_create": "create() is a plain method, not a coroutine",
    "wrong_router_url_default": "SecureCompletionClient defaults router_url to https://api.nomyo.ai",
    "sync_fetch_key": "fetch_server_public_key() is a plain method",
    "error_status_default_none": "exception subclasses do not default status_code",
    "connection_error_outside_api_error": "APIConnectionError subclasses Exception only",
    "constructor_fetches_key": "SecureChatCompletion() fetches the server key on construction",
}


def seed_module(defects: frozenset[str]) -> types.ModuleType:
    """A module with the seed's classes and exceptions; `defects` break its surface."""
    module = types.ModuleType("toy_seed")

    class APIError(Exception):
        def __init__(
            self, message: str, status_code: int | None = None, error_details: Any = None
        ) -> None:
            super().__init__(message)
            self.message, self.status_code, self.error_details = message, status_code, error_details

        def __str__(self) -> str:
            return self.message

    def status_error(name: str, status: int) -> type:
        default = None if "error_status_default_none" in defects else status

        def init(self: Any, message: str, status_code: Any = default, error_details: Any = None):
            APIError.__init__(self, message, status_code, error_details)

        return type(name, (APIError,), {"__init__": init})

    connection_base = Exception if "connection_error_outside_api_error" in defects else APIError

    class SecurityError(Exception):
        pass

    class SecureCompletionClient:
        def __init__(
            self,
            router_url: str = (
                "https://api.nomyo.ai"
                if "wrong_router_url_default" in defects
                else "https://api.nomyo.ai:12434"
            ),
            allow_http: bool = False,
        ) -> None:
            self.router_url, self.allow_http = router_url, allow_http

        def generate_keys(
            self, save_to_file: bool = False, key_dir: str = "client_keys", password: Any = None
        ) -> None:
            raise NotImplementedError

        def load_keys(
            self, private_key_path: str, public_key_path: Any = None, password: Any = None
        ) -> None:
            raise NotImplementedError

        async def encrypt_payload(self, payload: dict) -> bytes:
            raise NotImplementedError

        async def decrypt_response(self, encrypted_response: bytes, payload_id: str) -> dict:
            raise NotImplementedError

        async def send_secure_request(
            self, payload: dict, payload_id: str, api_key: Any = None, security_tier: Any = None
        ) -> dict:
            raise NotImplementedError

    async def fetch_key(self: Any) -> str:
        raise NotImplementedError

    def fetch_key_sync(self: Any) -> str:
        raise NotImplementedError

    SecureCompletionClient.fetch_server_public_key = (  # type: ignore[attr-defined]
        fetch_key_sync if "sync_fetch_key" in defects else fetch_key
    )

    class SecureChatCompletion:
        def __init__(
            self,
            base_url: str = "https://api.nomyo.ai",
            allow_http: bool = False,
            api_key: Any = None,
            secure_memory: bool = True,
            *,
            key_dir: Any = None,
            max_retries: int = 2,
        ) -> None:
            self.client = ToyClient(
                ToyOptions(base_url=base_url, allow_http=allow_http, api_key=api_key,
                           key_dir=key_dir, max_retries=max_retries)
            )  # fmt: skip
            if "constructor_fetches_key" in defects:
                with contextlib.suppress(Exception):
                    self.client._fetch_server_key(self.client._base_url())

        async def create(self, model: str, messages: list, **kwargs: Any) -> dict:
            return self.client.create(model, messages, **kwargs)

        async def acreate(self, model: str, messages: list, **kwargs: Any) -> dict:
            return await self.create(model, messages, **kwargs)

    if "api_key_before_allow_http" in defects:
        original = SecureChatCompletion.__init__

        def reordered(
            self: Any,
            base_url: str = "https://api.nomyo.ai",
            api_key: Any = None,
            allow_http: bool = False,
            secure_memory: bool = True,
            *,
            key_dir: Any = None,
            max_retries: int = 2,
        ) -> None:
            original(self, base_url, allow_http, api_key, secure_memory, key_dir=key_dir,
                     max_retries=max_retries)  # fmt: skip

        SecureChatCompletion.__init__ = reordered  # type: ignore[method-assign]
    if "sync_create" in defects:

        def create_sync(self: Any, model: str, messages: list, **kwargs: Any) -> dict:
            return self.client.create(model, messages, **kwargs)

        SecureChatCompletion.create = create_sync  # type: ignore[assignment,method-assign]

    members: dict[str, Any] = {
        "SecureChatCompletion": SecureChatCompletion,
        "SecureCompletionClient": SecureCompletionClient,
        "APIError": APIError,
        "AuthenticationError": status_error("AuthenticationError", 401),
        "InvalidRequestError": status_error("InvalidRequestError", 400),
        "RateLimitError": status_error("RateLimitError", 429),
        "ForbiddenError": status_error("ForbiddenError", 403),
        "ServerError": status_error("ServerError", 500),
        "ServiceUnavailableError": status_error("ServiceUnavailableError", 503),
        "APIConnectionError": type("APIConnectionError", (connection_base,), {}),
        "SecurityError": SecurityError,
    }
    if "missing_export" in defects:
        del members["ForbiddenError"]
    for name, value in members.items():
        setattr(module, name, value)
    return module


class ToySeedAdapter(ToyAdapter):
    """The toy client with a seed-shaped module (capability python_api)."""

    capabilities = ToyAdapter.capabilities | {A.PYTHON_API}

    def __init__(self, defects: frozenset[str] = frozenset()) -> None:
        super().__init__(frozenset(d for d in defects if d in DEFECTS))
        self.name = "toy_seed" if not defects else "toy_seed+" + "+".join(sorted(defects))
        self.module = seed_module(frozenset(d for d in defects if d in API_DEFECTS))


#: The toy client with the seed-shaped surface and no defect.
toy_seed = ToySeedAdapter()

for _name in (*API_DEFECTS, "api_key_override_ignored"):
    globals()[_name] = ToySeedAdapter(frozenset({_name}))
del _name
