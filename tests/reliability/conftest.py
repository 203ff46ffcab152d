"""Shared fixtures of the reliability tests: keys made once, sizes scaled by NOMYO_THOROUGH.

CI runs the small numbers; ``NOMYO_THOROUGH=1 python -m pytest tests/reliability`` runs the
big ones (more requests, a 4096-bit router key, many thousands of fuzz examples).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

import nomyo_ref.keys

THOROUGH = os.environ.get("NOMYO_THOROUGH", "") not in ("", "0")


def scaled(ci: int, thorough: int) -> int:
    """The CI number, or the thorough one under NOMYO_THOROUGH=1."""
    return thorough if THOROUGH else ci


def open_sockets() -> int:
    """How many socket file descriptors this process holds (Linux /proc)."""
    count = 0
    fd_dir = Path("/proc/self/fd")
    for entry in fd_dir.iterdir():
        try:
            if os.readlink(entry).startswith("socket:"):
                count += 1
        except OSError:
            continue
    return count


def rss_kib() -> int:
    """Resident set size of this process in KiB (VmRSS)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


@pytest.fixture(scope="session")
def rel_server_key() -> rsa.RSAPrivateKey:
    """The routers' key: 2048 bits in CI, 4096 in the thorough run."""
    return rsa.generate_private_key(public_exponent=65537, key_size=scaled(2048, 4096))


@pytest.fixture(scope="session")
def rel_client_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def rel_other_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def shared_key_dir(tmp_path_factory: pytest.TempPathFactory,
                   rel_client_key: rsa.RSAPrivateKey) -> Path:
    """A key directory holding the session client key, for many clients to load."""
    directory = tmp_path_factory.mktemp("shared-keys") / "keys"
    nomyo_ref.keys.save_key_pair(rel_client_key, directory)
    return directory


@pytest.fixture
def fast_client_keys(monkeypatch: pytest.MonkeyPatch,
                     rel_client_key: rsa.RSAPrivateKey) -> list[int]:
    """nomyo_ref's key generation hands out the session key (sizes asked are recorded)."""
    calls: list[int] = []

    def generate(key_size: int = 4096) -> rsa.RSAPrivateKey:
        calls.append(key_size)
        return rel_client_key

    monkeypatch.setattr(nomyo_ref.keys, "generate_private_key", generate)
    return calls
