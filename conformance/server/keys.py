"""The client key pairs server mode sends in X-Public-Key, made once per session.

`main` is what real clients use (RSA-4096). Generating one costs about a second, so a run
that is repeated (the suite's own tests) may name a pre-made pair with
NOMYO_CONFORMANCE_CLIENT_KEY_DIR (private_key.pem inside), as in client mode. The others
exist for single checks: the smallest accepted size, and keys a server must refuse (SRV-7);
`<name>.pem` files in that directory replace them too.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from conformance.server.wire import public_pem

ENV_KEY_DIR = "NOMYO_CONFORMANCE_CLIENT_KEY_DIR"


def _rsa(bits: int) -> Callable[[], Any]:
    return lambda: rsa.generate_private_key(public_exponent=65537, key_size=bits)


def _main_key() -> Any:
    directory = os.environ.get(ENV_KEY_DIR)
    if directory:
        data = (Path(directory) / "private_key.pem").read_bytes()
        key = serialization.load_pem_private_key(data, password=None)
        if isinstance(key, rsa.RSAPrivateKey) and key.key_size >= 2048:
            return key
        raise ValueError(f"{ENV_KEY_DIR}: private_key.pem is not an RSA key of 2048 bits or more")
    return _rsa(4096)()


def _key_with_plus() -> Any:
    """An RSA-2048 pair whose PEM holds a '+' (most do), for the X-Public-Key '+' check."""
    while True:
        key = _rsa(2048)()
        if "+" in public_pem(key):
            return key


MAKERS: dict[str, Callable[[], Any]] = {
    "main": _main_key,
    "rsa2048": _rsa(2048),  # the smallest key a server must accept (SRV-7)
    "other": _rsa(2048),  # a second client (replay, concurrency)
    "plus": _key_with_plus,  # X-Public-Key with a literal '+' (HDR-5)
    "rsa1024": _rsa(1024),  # too small: 400
    "rsa1536": _rsa(1536),
    "ec-p256": lambda: ec.generate_private_key(ec.SECP256R1()),  # not RSA: 400
    "ed25519": ed25519.Ed25519PrivateKey.generate,
}


def _premade(name: str) -> Any | None:
    """`<name>.pem` from NOMYO_CONFORMANCE_CLIENT_KEY_DIR, when a repeated run made it."""
    directory = os.environ.get(ENV_KEY_DIR)
    path = Path(directory) / f"{name}.pem" if directory else None
    if path is None or not path.is_file():
        return None
    # the run's own key files: the (slow) consistency check of RSA keys is not needed
    return serialization.load_pem_private_key(path.read_bytes(), password=None,
                                              unsafe_skip_rsa_key_validation=True)


class Keyring:
    """Key pairs by name, each made on first use (thread-safe: concurrency checks share it)."""

    def __init__(self) -> None:
        self._keys: dict[str, Any] = {}
        self._lock = threading.Lock()

    def private(self, name: str) -> Any:
        with self._lock:
            if name not in self._keys:
                self._keys[name] = _premade(name) or MAKERS[name]()
            return self._keys[name]

    def pem(self, name: str) -> str:
        return public_pem(self.private(name))
