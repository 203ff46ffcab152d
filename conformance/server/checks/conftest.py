"""Fixtures of the server checks: the router under test, as one session per run."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from conformance.server.keys import Keyring
from conformance.server.mode import mode_of
from conformance.server.options import ServerOptions
from conformance.server.session import RouterSession
from conformance.server.transport import Transport


@pytest.fixture(scope="session")
def server_options(pytestconfig: pytest.Config) -> ServerOptions:
    """What --server and its options said (server checks run only with --server)."""
    options = mode_of(pytestconfig).options
    if options is None:
        raise pytest.UsageError("server checks need --server=URL")
    return options


@pytest.fixture(scope="session")
def router_under_test(pytestconfig: pytest.Config, server_options: ServerOptions
                      ) -> Iterator[RouterSession]:
    """The router, its key fetched on first use; every request counted (live budget)."""
    transport = Transport(server_options)
    mode_of(pytestconfig).transport = transport
    try:
        yield RouterSession(server_options, transport, Keyring())
    finally:
        transport.close()
