"""Fixtures of the server-mode tests: keys made once, and `background`, every long run
started together on first use (tests/server/background.py) so they overlap."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server.background import Background
from tests.server.hosting import client_key_dir, rsa_key, write_key
from tests.server.runs import Finished


@pytest.fixture(scope="session")
def client_keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return client_key_dir(tmp_path_factory.mktemp("server-client-keys"))


@pytest.fixture(scope="session")
def mock_key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An RSA-4096 key for the mock (DISC-23): NOMYO_CONFORMANCE_SERVER_KEY, or made once."""
    given = os.environ.get("NOMYO_CONFORMANCE_SERVER_KEY")
    if given:
        return Path(given)
    path = tmp_path_factory.mktemp("mock-key") / "server.pem"
    write_key(path, rsa_key(4096))
    return path


@pytest.fixture(scope="session")
def background(tmp_path_factory: pytest.TempPathFactory, client_keys: Path,
               mock_key_file: Path) -> Iterator[Background]:
    runs = Background(tmp_path_factory.mktemp("server-runs"), client_keys, mock_key_file)
    try:
        runs.start()
        yield runs
    finally:
        runs.close()


@pytest.fixture(scope="session")
def mock_default(background: Background) -> Finished:
    return background.mock_run("default")
