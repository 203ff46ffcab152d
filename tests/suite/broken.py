"""Adapters over the toy client: one correct, and one per defect.

``--impl=tests.suite.broken:toy`` runs the suite against the toy client with no defects (it
must pass everything); ``--impl=tests.suite.broken:<defect>`` against the toy client with
that one defect (the check guarding the broken rule must fail). Every name in
``tests.suite.toy_client.DEFECTS`` is a module attribute here.
"""

from __future__ import annotations

import asyncio
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
from tests.suite.toy_client import (
    DEFECTS,
    ToyClient,
    ToyError,
    ToyOptions,
    check_public_file,
    write_key_file,
)


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
        retry_after_cap=(
            defaults.retry_after_cap if config.retry_after_cap is None else config.retry_after_cap
        ),
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
            A.RETRY_AFTER_CAP,
            A.CLIENT_REUSE,
            A.KEY_FILES,
            A.LOG_CAPTURE,
            A.WARNINGS,
            A.LOW_LEVEL,
            A.SECURE_MEMORY,
            A.KEY_DIR,
            A.KEY_PASSWORD,
            A.TIMEOUT,
        }
    )
    loggers = ("toy_client",)

    def __init__(self, defects: frozenset[str] = frozenset()) -> None:
        self.defects = frozenset(defects)
        self.name = "toy" if not defects else "toy+" + "+".join(sorted(defects))
        if "no_pinning" in self.defects:
            self.capabilities = type(self).capabilities - {A.PINNING}

    def describe_client(self, handle: Any) -> Outcome:
        """The toy's printed forms of a client: repr() and str() (LOG-4)."""
        return Outcome.success([repr(handle), str(handle)])

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

    def encrypt_payload(
        self, config: ClientConfig | None, payload: Any, *, client: Any = None
    ) -> Outcome:
        def run() -> dict[str, Any]:
            low = client
            if low is None:
                if config is None:
                    raise A.AdapterError("encrypt_payload needs a config or a client")
                low = ToyClient(_options(config, self.defects), self.defects)
            body = low.encrypt_payload(payload)
            return {"body": body, "public_key_pem": low.public_key_pem(), "client": low}

        return self._run(run)

    def decrypt_response(self, body: bytes, payload_id: str, *, client: Any) -> Outcome:
        return self._run(lambda: client.decrypt_response(body, payload_id))

    def generate_keys(self, directory: str, password: str | None = None) -> Outcome:
        return self._run(lambda: _generate_keys(directory, password, self.defects))

    def load_keys(
        self,
        private_key_path: str,
        public_key_path: str | None = None,
        password: str | None = None,
    ) -> Outcome:
        return self._run(
            lambda: _load_keys(private_key_path, password, self.defects, public_key_path)
        )


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
    write_key_file(priv, data, 0o644 if "key_file_world_readable" in defects else 0o600, defects)
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    write_key_file(pub, public, stat.S_IRUSR | stat.S_IWUSR | stat.S_IRGRP | stat.S_IROTH, defects)
    return {"private_key_path": str(priv), "public_key_path": str(pub)}


def _load_keys(
    private_key_path: str,
    password: str | None,
    defects: frozenset[str],
    public_key_path: str | None = None,
) -> dict:
    """Load a private key; a wrong or missing password is a clear ValueError (kind value), and
    so is a public key file of another key."""
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
        if "non_rsa_own_key_accepted" not in defects:
            raise ToyError("value", "not an RSA private key")
        return {"public_key_pem": ""}
    if key.key_size < 2048 and "weak_own_key_accepted" not in defects:
        raise ToyError("value", "the private key is shorter than 2048 bits")
    if public_key_path is not None:
        check_public_file(key, Path(public_key_path), defects)
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
    "fetch_key_returns_bytes": "fetch_server_public_key() returns the PEM as bytes",
    "empty_payload_encrypted": "encrypt_payload({}) encrypts '{}' instead of raising ValueError",
    "verify_option_offered": "SecureChatCompletion(verify_ssl=False) switches verification off",
}


#: Client defects that only the seed-shaped surface can show (its checks drive the module).
SEED_CLIENT_DEFECTS = (
    "api_key_override_ignored",
    "payload_id_unvalidated",
    "mlock_required",
    "plaintext_chained",
    "crypto_error_chained",
    "unlocked_key_fetch",
    "base_url_override_ignored",
    "override_skips_https_rule",
)


def seed_module(
    defects: frozenset[str], client_defects: frozenset[str] = frozenset()
) -> types.ModuleType:
    """A module with the seed's classes and exceptions; `defects` break its surface and
    `client_defects` (names of toy_client.DEFECTS) the toy client behind it."""
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
    members: dict[str, Any] = {}

    class SecurityError(Exception):
        pass

    def translated(run: Callable[[], Any]) -> Any:
        """Run a toy client call, raising the seed's exception for a ToyError (its cause,
        if the toy chained one, carried over; otherwise `from None`)."""
        try:
            return run()
        except ToyError as exc:
            if exc.kind == "value":
                error: Exception = ValueError(exc.message)
            elif exc.kind == "security":
                error = SecurityError(exc.message)
            else:
                error = members.get(KIND_CLASSES.get(exc.kind, "APIError"), APIError)(exc.message)
            raise error from exc.__cause__

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
            self._key_dir: str | None = None

        def generate_keys(
            self, save_to_file: bool = False, key_dir: str = "client_keys", password: Any = None
        ) -> None:
            raise NotImplementedError

        def load_keys(
            self, private_key_path: str, public_key_path: Any = None, password: Any = None
        ) -> None:
            # the toy keeps keys as private_key.pem/public_key.pem in one directory
            self._key_dir = os.path.dirname(os.path.abspath(private_key_path))

        def _toy(self) -> ToyClient:
            options = ToyOptions(
                base_url=self.router_url, allow_http=self.allow_http, key_dir=self._key_dir
            )
            return translated(lambda: ToyClient(options, client_defects))

        async def encrypt_payload(self, payload: dict) -> bytes:
            toy = self._toy()
            try:
                if payload == {} and "empty_payload_encrypted" in defects:
                    return toy._encrypt(b"{}", toy._server(toy._base_url()))
                return translated(lambda: toy.encrypt_payload(payload))
            finally:
                toy.close()

        async def decrypt_response(self, encrypted_response: bytes, payload_id: str) -> dict:
            raise NotImplementedError

        async def send_secure_request(
            self, payload: dict, payload_id: str, api_key: Any = None, security_tier: Any = None
        ) -> dict:
            options = ToyOptions(
                base_url=self.router_url,
                allow_http=self.allow_http,
                key_dir=self._key_dir,
                retry_backoff=0.01,
            )
            client = translated(lambda: ToyClient(options, client_defects))
            try:
                return translated(
                    lambda: client.send_secure_request(payload, payload_id, api_key, security_tier)
                )
            finally:
                client.close()

    async def fetch_key(self: Any) -> str:
        toy = self._toy()
        try:
            key = translated(lambda: toy._fetch_server_key(translated(toy._base_url)))
        finally:
            toy.close()
        pem = key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        if "fetch_key_returns_bytes" in defects:
            return pem  # type: ignore[return-value]
        return pem.decode("ascii")

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
            _toy_defects: frozenset[str] = frozenset(),
        ) -> None:
            options = ToyOptions(base_url=base_url, allow_http=allow_http, api_key=api_key,
                                 key_dir=key_dir, max_retries=max_retries,
                                 secure_memory=secure_memory)  # fmt: skip
            broken = client_defects | _toy_defects
            self.client = translated(lambda: ToyClient(options, broken))
            self._key_lock: asyncio.Lock | None = None
            if "constructor_fetches_key" in defects:
                with contextlib.suppress(Exception):
                    self.client._fetch_server_key(self.client._base_url())

        async def _server_key(self) -> None:
            """Fetch the server key once, under a lock (API-19); the await in between lets
            concurrent calls run, so without the lock (unlocked_key_fetch) each fetches."""
            if "unlocked_key_fetch" in client_defects:
                if self.client._server_key is None:
                    await asyncio.sleep(0.01)
                    base = translated(self.client._base_url)
                    self.client._server_key = translated(
                        lambda: self.client._fetch_server_key(base)
                    )
                return
            if self._key_lock is None:
                self._key_lock = asyncio.Lock()
            async with self._key_lock:
                if self.client._server_key is None:
                    await asyncio.sleep(0.01)
                    base = translated(self.client._base_url)
                    self.client._server_key = translated(
                        lambda: self.client._fetch_server_key(base)
                    )

        async def create(self, model: str, messages: list, **kwargs: Any) -> dict:
            if "base_url" not in kwargs:
                await self._server_key()
            return translated(lambda: self.client.create(model, messages, **kwargs))

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
    if "verify_option_offered" in defects:
        plain_init = SecureChatCompletion.__init__

        def with_verify(
            self: Any,
            base_url: str = "https://api.nomyo.ai",
            allow_http: bool = False,
            api_key: Any = None,
            secure_memory: bool = True,
            *,
            key_dir: Any = None,
            max_retries: int = 2,
            verify_ssl: bool = True,
        ) -> None:
            off = frozenset() if verify_ssl else frozenset({"no_tls_verify"})
            plain_init(self, base_url, allow_http, api_key, secure_memory, key_dir=key_dir,
                       max_retries=max_retries, _toy_defects=off)  # fmt: skip

        SecureChatCompletion.__init__ = with_verify  # type: ignore[method-assign]
    if "sync_create" in defects:

        def create_sync(self: Any, model: str, messages: list, **kwargs: Any) -> dict:
            return self.client.create(model, messages, **kwargs)

        SecureChatCompletion.create = create_sync  # type: ignore[assignment,method-assign]

    members.update({
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
    })  # fmt: skip
    if "missing_export" in defects:
        del members["ForbiddenError"]
    for name, value in members.items():
        setattr(module, name, value)
    return module


KIND_CLASSES = {
    "authentication": "AuthenticationError",
    "invalid_request": "InvalidRequestError",
    "forbidden": "ForbiddenError",
    "rate_limit": "RateLimitError",
    "server": "ServerError",
    "service_unavailable": "ServiceUnavailableError",
    "connection": "APIConnectionError",
}


class ToySeedAdapter(ToyAdapter):
    """The toy client with a seed-shaped module (capability python_api)."""

    capabilities = ToyAdapter.capabilities | {A.PYTHON_API}

    def __init__(self, defects: frozenset[str] = frozenset()) -> None:
        super().__init__(frozenset(d for d in defects if d in DEFECTS))
        self.name = "toy_seed" if not defects else "toy_seed+" + "+".join(sorted(defects))
        self.module = seed_module(
            frozenset(d for d in defects if d in API_DEFECTS),
            frozenset(d for d in defects if d in DEFECTS),
        )


#: The toy client with the seed-shaped surface and no defect.
toy_seed = ToySeedAdapter()

for _name in (*API_DEFECTS, *SEED_CLIENT_DEFECTS):
    globals()[_name] = ToySeedAdapter(frozenset({_name}))
del _name
