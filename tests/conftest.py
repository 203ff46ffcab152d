"""Keys shared by every area's tests: made once per session (RSA generation is slow).

2048-bit keys keep the tests quick; the few tests where the size matters make their own.
"""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa


def _rsa(bits: int) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


@pytest.fixture(scope="session")
def server_key() -> rsa.RSAPrivateKey:
    return _rsa(2048)


@pytest.fixture(scope="session")
def other_server_key() -> rsa.RSAPrivateKey:
    return _rsa(2048)


@pytest.fixture(scope="session")
def client_key() -> rsa.RSAPrivateKey:
    return _rsa(2048)


@pytest.fixture(scope="session")
def small_key() -> rsa.RSAPrivateKey:
    """A 1024-bit key, which every part must refuse."""
    return _rsa(1024)
