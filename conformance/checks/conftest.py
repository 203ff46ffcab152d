"""Fixtures private to the check modules (the plugin's fixtures are the public ones)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from conformance.adapter import Adapter, ClientConfig, Outcome, generation_of
from conformance.fixtures import DEFAULT_MESSAGES, DEFAULT_MODEL
from conformance.state import get_state


class ClientPool:
    """Open clients by config, shared by the checks that use `ccall`.

    A handle is only as good as the process that made it: a subprocess testee that was
    killed (a hang, a crash) and restarted has lost its clients, and its adapter says so by
    changing `generation`. The pool then opens a fresh client for the next check instead of
    reusing a dead handle, so one hang costs one check, not every later one.
    """

    def __init__(self, impl: Adapter) -> None:
        self.impl = impl
        self._handles: dict[ClientConfig, tuple[int, Any]] = {}

    def client(self, config: ClientConfig) -> Outcome:
        """{"client": handle} for `config`: the pooled one while still valid, else a new one."""
        current = generation_of(self.impl)
        kept = self._handles.get(config)
        if kept is not None and kept[0] == current:
            return Outcome.success({"client": kept[1]})
        self._handles.pop(config, None)  # stale: its process is gone, nothing to close
        opened = self.impl.open_client(config)
        if opened.ok:
            self._handles[config] = (generation_of(self.impl), opened.result["client"])
        return opened

    def close(self) -> None:
        current = generation_of(self.impl)
        for generation, handle in self._handles.values():
            if generation == current:
                self.impl.close_client(handle)
        self._handles.clear()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Tell a subprocess adapter that a new check starts (before any fixture of it runs, a
    module-scoped one included): a testee killed during the previous check restarts now,
    while within one check a kill is not retried (a hang costs one timeout, not one per
    hypothesis example)."""
    if item.get_closest_marker("req") is None:
        return
    state = get_state(item.config)
    if state.impl_spec is None:
        return
    try:
        adapter = state.adapter()
    except Exception:  # the check itself reports an adapter that cannot start
        return
    begin = getattr(adapter, "begin_check", None)
    if callable(begin):
        begin()


@pytest.fixture(scope="session")
def _client_pool(impl: Adapter) -> Iterator[ClientPool]:
    """The session's ClientPool (its clients are closed at the end)."""
    pool = ClientPool(impl)
    yield pool
    pool.close()


@pytest.fixture
def ccall(
    impl: Adapter,
    make_config: Callable[..., ClientConfig],
    call: Callable[..., Outcome],
    _client_pool: ClientPool,
) -> Callable[..., Outcome]:
    """Like `call`, but through one pooled client per distinct config (shared by every check
    and hypothesis example using the same config), when the port allows client reuse.

    Ports that make a fresh RSA-4096 key pair per client spend about a second on each; a
    check whose subject is not key discovery has no reason to pay that per example. Checks
    that need a fresh client (key fetch, pinning, caching, rotation) use `call`. A check that
    rotates the router's key restores it, so a pooled client's cached key stays right.
    """

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
        opened = _client_pool.client(chosen)
        if not opened.ok:
            return opened
        return impl.create(chosen, model, messages, kwargs, client=opened.result["client"])

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
