"""Fixtures the checks build on: the implementation, the mock router, servers, configs, calls.

Servers and keys are per session (per xdist worker): one 4096-bit server key, one router,
one http and one https server. The router is reset before every check (not before every
hypothesis example: a check that looks at `router.seen` per example calls `router.reset()`
itself).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conformance.adapter import Adapter, ClientConfig, Outcome
from conformance.state import get_state

DEFAULT_MODEL = "mock-model"
DEFAULT_MESSAGES: tuple[dict[str, str], ...] = ({"role": "user", "content": "Hello"},)


@pytest.fixture(scope="session")
def impl(pytestconfig: pytest.Config) -> Adapter:
    """The Adapter of the implementation under test (--impl)."""
    return get_state(pytestconfig).adapter()


@pytest.fixture(scope="session")
def server_key() -> Any:
    """The mock router's RSA-4096 key, made once per session (per worker)."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65537, key_size=4096)


def write_client_keys(directory: Path) -> str:
    """Write one fresh RSA-4096 pair as private_key.pem (0600) and public_key.pem (0644)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=4096)
    private = directory / "private_key.pem"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    private.chmod(0o600)
    public = directory / "public_key.pem"
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    public.chmod(0o644)
    return str(directory)


@pytest.fixture(scope="session")
def client_key_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A directory holding one RSA-4096 client key pair (private_key.pem 0600, public_key.pem).

    make_config() points key_dir here so a fresh client loads keys instead of generating
    4096-bit keys for every hypothesis example (the cost of the whole suite otherwise).
    Checks about key generation pass key_dir=None explicitly.
    """
    return write_client_keys(tmp_path_factory.mktemp("client_keys"))


@pytest.fixture(scope="session")
def router(server_key: Any) -> Any:
    """The session's mock_router.MockRouter (reset before every check)."""
    from mock_router import MockRouter

    return MockRouter(server_key=server_key)


@pytest.fixture(scope="session")
def http_server(router: Any) -> Iterator[Any]:
    """`serve(router)` over plain http on loopback."""
    from mock_router import serve

    with serve(router) as server:
        yield server


@pytest.fixture(scope="session")
def tls_server(router: Any) -> Iterator[Any]:
    """`serve(router, tls=True)`: https with a throw-away CA (tls_server.ca_cert_path)."""
    from mock_router import serve

    with serve(router, tls=True) as server:
        yield server


@pytest.fixture(autouse=True)
def _conformance_router_reset(request: pytest.FixtureRequest) -> None:
    """Reset the router before each conformance check (inert for any other test)."""
    if request.node.get_closest_marker("req") is None:
        return
    if "router" in request.fixturenames:
        request.getfixturevalue("router").reset()


@pytest.fixture(scope="session")
def make_config(http_server: Any, client_key_dir: str) -> Callable[..., ClientConfig]:
    """`make_config(**overrides)`: a ClientConfig for the http server, fast and retry-free.

    Defaults: allow_http=True, max_retries=0, timeout=10.0, retry_backoff=0.01 and
    key_dir=client_key_dir (pass key_dir=None for a client that makes its own keys).
    """

    def factory(**overrides: Any) -> ClientConfig:
        values: dict[str, Any] = {
            "base_url": http_server.url,
            "allow_http": True,
            "max_retries": 0,
            "timeout": 10.0,
            "retry_backoff": 0.01,
            "key_dir": client_key_dir,
        }
        values.update(overrides)
        return ClientConfig(**values)

    return factory


@pytest.fixture(scope="session")
def make_tls_config(
    tls_server: Any, make_config: Callable[..., ClientConfig]
) -> Callable[..., ClientConfig]:
    """`make_tls_config(**overrides)`: like make_config, for the https server and its CA."""

    def factory(**overrides: Any) -> ClientConfig:
        tls = {"base_url": tls_server.url, "allow_http": False,
               "ca_cert": str(tls_server.ca_cert_path)}
        return make_config(**{**tls, **overrides})

    return factory


@pytest.fixture(scope="session")
def call(impl: Adapter, make_config: Callable[..., ClientConfig]) -> Callable[..., Outcome]:
    """`call(model="mock-model", messages=None, config=None, *, client=None, **kwargs)`.

    One create() through `client` if given, else through a fresh client built from `config`
    (default: make_config()). Returns the Outcome; it never raises for implementation errors.
    """

    def do(
        model: str = DEFAULT_MODEL,
        messages: Any = None,
        config: ClientConfig | None = None,
        *,
        client: Any = None,
        **kwargs: Any,
    ) -> Outcome:
        if messages is None:
            messages = [dict(m) for m in DEFAULT_MESSAGES]
        if client is None and config is None:
            config = make_config()
        return impl.create(config, model, messages, kwargs, client=client)

    return do


@pytest.fixture
def open_client(
    impl: Adapter, make_config: Callable[..., ClientConfig]
) -> Iterator[Callable[..., Outcome]]:
    """`open_client(config=None) -> Outcome` with result {"client": handle}; closed after."""
    handles: list[Any] = []

    def do(config: ClientConfig | None = None) -> Outcome:
        outcome = impl.open_client(config if config is not None else make_config())
        if outcome.ok and isinstance(outcome.result, dict) and "client" in outcome.result:
            handles.append(outcome.result["client"])
        return outcome

    yield do
    for handle in handles:
        impl.close_client(handle)
