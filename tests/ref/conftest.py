"""Shared fixtures of the nomyo_ref tests: RSA keys made once per session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import respx
from cryptography.hazmat.primitives.asymmetric import ec, rsa

import nomyo_ref.keys
from tests.ref.wire import FakeRouter

BASE = "https://router.test"


@pytest.fixture(scope="session")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


class KeyCounter:
    """Stands in for keys.generate_private_key: hands out the session key, counts calls."""

    def __init__(self, key: rsa.RSAPrivateKey) -> None:
        self.key = key
        self.calls: list[int] = []

    def __call__(self, key_size: int = 4096) -> rsa.RSAPrivateKey:
        self.calls.append(key_size)
        return self.key


@pytest.fixture
def fast_keys(monkeypatch: pytest.MonkeyPatch, client_key: rsa.RSAPrivateKey) -> KeyCounter:
    """Client key generation returns the session's 2048-bit key (and is counted)."""
    counter = KeyCounter(client_key)
    monkeypatch.setattr(nomyo_ref.keys, "generate_private_key", counter)
    return counter


@pytest.fixture
def router(server_key: rsa.RSAPrivateKey, fast_keys: KeyCounter) -> Iterator[
        tuple[FakeRouter, respx.MockRouter]]:
    """A FakeRouter at BASE behind respx; any request to another URL fails the test."""
    fake = FakeRouter(server_key)
    with respx.mock(assert_all_called=False, assert_all_mocked=True) as mock:
        mock.get(f"{BASE}/pki/public_key", name="key").mock(side_effect=fake.key)
        mock.post(f"{BASE}/v1/chat/secure_completion", name="post").mock(side_effect=fake.post)
        yield fake, mock
