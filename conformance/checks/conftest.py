"""Fixtures private to the check modules (the plugin's fixtures are the public ones)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from conformance.adapter import Adapter, ClientConfig, Outcome
from conformance.fixtures import DEFAULT_MESSAGES, DEFAULT_MODEL


@pytest.fixture(scope="session")
def _client_pool(impl: Adapter) -> Iterator[dict[ClientConfig, Any]]:
    """Open clients by config, shared by the checks that use `ccall` (closed at the end)."""
    handles: dict[ClientConfig, Any] = {}
    yield handles
    for handle in handles.values():
        impl.close_client(handle)


@pytest.fixture
def ccall(
    impl: Adapter,
    make_config: Callable[..., ClientConfig],
    call: Callable[..., Outcome],
    _client_pool: dict[ClientConfig, Any],
) -> Callable[..., Outcome]:
    """Like `call`, but through one pooled client per distinct config (shared by every check
    and hypothesis example using the same config), when the port allows client reuse.

    Ports that make a fresh RSA-4096 key pair per client spend about a second on each; a
    check whose subject is not key discovery has no reason to pay that per example. Checks
    that need a fresh client (key fetch, pinning, caching, rotation) use `call`. A check that
    rotates the router's key restores it, so a pooled client's cached key stays right.
    """
    handles = _client_pool

    def do(
        model: str = DEFAULT_MODEL,
        messages: Any = None,
        config: ClientConfig | None = None,
        **kwargs: Any,
    ) -> Outcome:
        chosen = config if config is not None else make_config()
        if "client_reuse" not in impl.capabilities:
            return call(model=model, messages=messages, config=chosen, **kwargs)
        if messages is None:
            messages = [dict(m) for m in DEFAULT_MESSAGES]
        if chosen not in handles:
            opened = impl.open_client(chosen)
            if not opened.ok:
                return opened
            handles[chosen] = opened.result["client"]
        return impl.create(chosen, model, messages, kwargs, client=handles[chosen])

    return do


@pytest.fixture(scope="session")
def server_key() -> Any:
    """The router's RSA-4096 key: made once per session, or loaded from the PEM file named by
    NOMYO_CONFORMANCE_SERVER_KEY (the suite's self-tests run dozens of short sessions and
    reuse one key instead of paying for a 4096-bit generation in each)."""
    import os

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    path = os.environ.get("NOMYO_CONFORMANCE_SERVER_KEY")
    if path:
        with open(path, "rb") as handle:
            return serialization.load_pem_private_key(handle.read(), password=None)
    return rsa.generate_private_key(public_exponent=65537, key_size=4096)


@pytest.fixture(scope="session")
def client_key_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The shared client key directory of make_config(): the framework's, or the directory
    named by NOMYO_CONFORMANCE_CLIENT_KEY_DIR (holding private_key.pem and public_key.pem),
    for the same reason as `server_key`."""
    import os

    given = os.environ.get("NOMYO_CONFORMANCE_CLIENT_KEY_DIR")
    if given:
        return given
    from conformance.fixtures import client_key_dir as framework_dir

    return framework_dir.__wrapped__(tmp_path_factory)  # type: ignore[attr-defined]
