"""The adapter interface: how the suite drives an implementation it knows nothing about.

An adapter turns one implementation (a Python port in-process, or a testee in any language
over spec/testee.md) into the same small set of synchronous operations. Each operation
returns an `Outcome`: the result, or the error the implementation raised mapped to a
canonical `Kind`, plus the warnings it emitted. Implementation errors are data, never
exceptions: an adapter raises `AdapterError` only when the adapter itself is broken (the
testee died, timed out, spoke nonsense), which the suite reports as ERRORED.

The interface in a page::

    class Adapter:
        name: str; version: str; language: str
        capabilities: frozenset[str]           # see CAPABILITIES below
        module: ModuleType | None              # python_api: the port's module
        loggers: tuple[str, ...]               # log_capture: logger names the port uses

        open_client(config) -> Outcome         # result {"client": handle}
        create(config, model, messages, kwargs=None, *, client=None) -> Outcome
        close_client(handle) -> None
        generate_keys(directory, password=None) -> Outcome   # key_files
        load_keys(private_key_path, public_key_path=None, password=None) -> Outcome
        encrypt_payload(config, payload, *, client=None) -> Outcome  # low_level
        decrypt_response(body, payload_id, *, client) -> Outcome     # low_level
        describe_client(handle) -> Outcome     # result [str, ...]: the port's printed forms
        operation_timeout(seconds)             # context: wait longer (or shorter) per operation
        generation: int                        # changes when earlier client handles go stale
        workdir: str | None                    # the testee's working directory (cmd: only)
        close() -> None

Construction errors (SecurityError for an http URL, ValueError for a bad URL) come back from
`open_client` (or from `create` without a client) as an Outcome error, like any other.

`generation` lets a holder of client handles (the checks' client pool) notice that they went
stale: a subprocess testee that was killed and restarted has lost every client it made, so
its adapter bumps `generation` and the pool opens fresh clients instead of reusing dead ones.
In-process adapters never restart: their generation stays 0.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any


class Kind(str, enum.Enum):
    """Canonical error kinds: every port maps its own exception types onto these once."""

    AUTHENTICATION = "authentication"  # 401
    INVALID_REQUEST = "invalid_request"  # 400
    FORBIDDEN = "forbidden"  # 403
    RATE_LIMIT = "rate_limit"  # 429
    SERVER = "server"  # 500
    SERVICE_UNAVAILABLE = "service_unavailable"  # 503
    API = "api"  # 404, 502, 504, any other status
    CONNECTION = "connection"  # network failure, timeout
    SECURITY = "security"  # SecurityError
    VALUE = "value"  # ValueError (caller error, malformed response structure)
    UNSUPPORTED = "unsupported"  # the port does not implement this operation
    INTERNAL = "internal"  # any other exception: always a defect

    def __str__(self) -> str:
        return self.value


KINDS: frozenset[str] = frozenset(k.value for k in Kind)

# Capability vocabulary: what an adapter can do. A check that needs a capability the adapter
# lacks is reported NOT APPLICABLE, never passed.
CREATE = "create"
API_KEY = "api_key"
SECURITY_TIER = "security_tier"
ALLOW_HTTP = "allow_http"
CA_CERT = "ca_cert"
PINNING = "pinning"
MAX_RETRIES = "max_retries"
RETRY_BACKOFF = "retry_backoff"
TIMEOUT = "timeout"
CLIENT_REUSE = "client_reuse"
PYTHON_API = "python_api"
KEY_FILES = "key_files"
LOW_LEVEL = "low_level"
LOG_CAPTURE = "log_capture"
WARNINGS = "warnings"
RETRY_AFTER_CAP = "retry_after_cap"
KEY_DIR = "key_dir"
SECURE_MEMORY = "secure_memory"
KEY_PASSWORD = "key_password"
CALL_OVERRIDES = "call_overrides"
CLIENT_DESCRIBE = "client_describe"

CAPABILITIES: dict[str, str] = {
    CREATE: "one chat completion through create() (the baseline every adapter has)",
    API_KEY: "ClientConfig.api_key is sent as a bearer token",
    SECURITY_TIER: "the security_tier keyword of create() is honoured",
    ALLOW_HTTP: "ClientConfig.allow_http enables plain-http base URLs",
    CA_CERT: "ClientConfig.ca_cert (a PEM CA file) is trusted for TLS",
    PINNING: "ClientConfig.server_key_sha256 pins the server key fingerprint",
    MAX_RETRIES: "ClientConfig.max_retries is honoured (0 = no retry)",
    RETRY_BACKOFF: "ClientConfig.retry_backoff sets the base backoff in seconds",
    TIMEOUT: "ClientConfig.timeout bounds each request (seconds); else the port's default",
    CLIENT_REUSE: "open_client() gives a handle reused across create() calls",
    PYTHON_API: "an in-process Python port: adapter.module holds the seed's classes",
    KEY_FILES: "generate_keys() / load_keys() on disk",
    LOW_LEVEL: "encrypt_payload() / decrypt_response() operations",
    LOG_CAPTURE: "in-process: the suite can capture the port's logging records",
    WARNINGS: "the port reports warnings (e.g. the allow_http one) in Outcome.warnings",
    RETRY_AFTER_CAP: "ClientConfig.retry_after_cap sets the port's Retry-After cap (seconds)",
    KEY_DIR: "ClientConfig.key_dir: the client loads its key pair from / saves it to a directory",
    SECURE_MEMORY: "ClientConfig.secure_memory switches the port's best-effort secure memory",
    KEY_PASSWORD: "generate_keys() / load_keys() take a password (encrypted PKCS#8 on disk)",
    CALL_OVERRIDES: "create() takes per-call api_key and base_url overriding the client's",
    CLIENT_DESCRIBE: "describe_client() gives the port's printed forms of a client (LOG-4)",
}

#: Capabilities that only an in-process Python adapter can have (meaningless over a pipe).
IN_PROCESS_ONLY: frozenset[str] = frozenset({PYTHON_API, LOG_CAPTURE})


@dataclass(frozen=True)
class ClientConfig:
    """How to build one client. None means: the implementation's default."""

    base_url: str
    allow_http: bool = False
    api_key: str | None = None
    ca_cert: str | None = None  # path of a PEM CA to trust (instead of the system store)
    server_key_sha256: str | None = None  # pinned fingerprint (hex SHA-256 of the SPKI DER)
    max_retries: int | None = None
    timeout: float | None = None  # seconds per request
    retry_backoff: float | None = None  # base backoff seconds; ignored when unsupported
    key_dir: str | None = None  # directory to load/save the client's key pair
    secure_memory: bool | None = None
    retry_after_cap: float | None = None  # longest wait a Retry-After may ask for (seconds)

    def to_json(self) -> dict[str, Any]:
        """The config as the testee protocol sends it (every field, None as null)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ClientConfig:
        """Build from a JSON object, refusing unknown keys (a typo must not pass silently)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown ClientConfig keys: {', '.join(unknown)}")
        return cls(**dict(data))


@dataclass(frozen=True)
class ErrorInfo:
    """The error an implementation raised, in canonical terms."""

    kind: str
    message: str = ""
    status_code: int | None = None
    details: Any = None
    type_name: str = ""

    def __str__(self) -> str:
        status = f" status={self.status_code}" if self.status_code is not None else ""
        name = f" ({self.type_name})" if self.type_name else ""
        return f"{self.kind}{status}{name}: {self.message}"


@dataclass(frozen=True)
class Outcome:
    """What one operation gave: a result or an error, and the warnings emitted."""

    result: Any = None
    error: ErrorInfo | None = None
    warnings: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return self.error is None

    @classmethod
    def success(cls, result: Any = None, warnings: Sequence[str] = ()) -> Outcome:
        return cls(result=result, warnings=tuple(warnings))

    @classmethod
    def failure(cls, error: ErrorInfo, warnings: Sequence[str] = ()) -> Outcome:
        return cls(error=error, warnings=tuple(warnings))

    @classmethod
    def unsupported(cls, operation: str) -> Outcome:
        return cls(error=ErrorInfo(Kind.UNSUPPORTED.value, f"{operation} is not supported"))

    def __str__(self) -> str:
        if self.error is not None:
            return f"error {self.error}"
        return f"result {_short(self.result)}"


def _short(value: Any, limit: int = 300) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


class AdapterError(Exception):
    """The adapter itself failed (not the implementation): reported ERRORED."""


class Adapter:
    """Base class of adapters. Subclasses override what their capabilities promise.

    Every operation is synchronous (an adapter of an async port runs its own event loop) and
    returns an Outcome. Unimplemented optional operations answer `unsupported`.
    """

    name: str = "unnamed"
    version: str = "unknown"
    language: str = "unknown"
    capabilities: frozenset[str] = frozenset({CREATE})
    module: ModuleType | None = None
    loggers: tuple[str, ...] = ()
    workdir: str | None = None  # cmd: the testee's own working directory (fresh, temporary)

    @property
    def generation(self) -> int:
        """Changes whenever client handles given out earlier stop being valid."""
        return 0

    @contextlib.contextmanager
    def operation_timeout(self, seconds: float) -> Iterator[None]:
        """Within the block, wait up to `seconds` for each operation (a check expecting a
        stall asks for more than the default). In-process adapters keep their own bound."""
        yield

    def open_client(self, config: ClientConfig) -> Outcome:
        """Build a client; result {"client": handle}. Construction errors are Outcomes."""
        return Outcome.unsupported("open_client")

    def create(
        self,
        config: ClientConfig | None,
        model: str,
        messages: Any,
        kwargs: Mapping[str, Any] | None = None,
        *,
        client: Any = None,
    ) -> Outcome:
        """One chat completion: through `client` if given, else a fresh client from config."""
        raise NotImplementedError

    def close_client(self, handle: Any) -> None:
        """Release a client handle (idempotent)."""

    def generate_keys(self, directory: str, password: str | None = None) -> Outcome:
        """key_files: write a key pair; result {"private_key_path", "public_key_path"}."""
        return Outcome.unsupported("keys.generate")

    def load_keys(
        self,
        private_key_path: str,
        public_key_path: str | None = None,
        password: str | None = None,
    ) -> Outcome:
        """key_files: load a key pair; result {"public_key_pem": str}."""
        return Outcome.unsupported("keys.load")

    def encrypt_payload(
        self, config: ClientConfig | None, payload: Any, *, client: Any = None
    ) -> Outcome:
        """low_level: encrypt to the server's key.

        Result {"body": bytes, "public_key_pem": str, "client": handle}: the handle is the
        low-level client whose private key `decrypt_response` then uses (close it after).
        """
        return Outcome.unsupported("encrypt_payload")

    def decrypt_response(self, body: bytes, payload_id: str, *, client: Any) -> Outcome:
        """low_level: decrypt a response package for `client`; result the response dict."""
        return Outcome.unsupported("decrypt_response")

    def describe_client(self, handle: Any) -> Outcome:
        """The port's printed forms of a client object (repr/str, toString, Debug, inspect):
        result a list of strings, which LOG-4 searches for secrets.

        In-process Python adapters hand out the port's own client object as the handle, so
        repr() and str() of it are those forms; other adapters answer `unsupported`.
        """
        if PYTHON_API in self.capabilities and handle is not None:
            return Outcome.success([repr(handle), str(handle)])
        return Outcome.unsupported("client.describe")

    def describe(self) -> dict[str, Any]:
        """Identity for reports."""
        return {
            "name": self.name,
            "version": self.version,
            "language": self.language,
            "capabilities": sorted(self.capabilities),
        }

    def close(self) -> None:
        """Release everything (event loops, subprocesses)."""


@contextlib.contextmanager
def operation_timeout(adapter: Any, seconds: float) -> Iterator[None]:
    """`adapter.operation_timeout(seconds)` for any adapter, duck-typed ones included."""
    method = getattr(adapter, "operation_timeout", None)
    if method is None:
        yield
        return
    with method(seconds):
        yield


def generation_of(adapter: Any) -> int:
    """`adapter.generation`, 0 for duck-typed adapters that never restart."""
    return int(getattr(adapter, "generation", 0))


__all__ = [
    "CAPABILITIES",
    "IN_PROCESS_ONLY",
    "KINDS",
    "Adapter",
    "AdapterError",
    "ClientConfig",
    "ErrorInfo",
    "Kind",
    "Outcome",
    "generation_of",
    "operation_timeout",
]
