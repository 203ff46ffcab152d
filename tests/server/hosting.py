"""Serving routers for the server-mode tests: every broken router behind one port, each under
its own path prefix (`http://127.0.0.1:PORT/b/<name>` is a base URL like any other), and keys
made once per test session so the suite runs do not each generate RSA keys.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from conformance.server.wire import public_pem
from mock_router import MockRouter, serve
from tests.server.broken import BrokenApp, Keys
from tests.server.defects import Defect

PREFIX = "/b/"


def rsa_key(bits: int) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def write_key(path: Path, key: Any) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)


def client_key_dir(directory: Path) -> Path:
    """The suite's client keys, pre-made (NOMYO_CONFORMANCE_CLIENT_KEY_DIR): RSA-2048 for speed
    (the proof is about the router, not the key size), 'plus' holding a '+' in its PEM."""
    directory.mkdir(parents=True, exist_ok=True)
    write_key(directory / "private_key.pem", rsa_key(2048))
    for name, bits in (("rsa2048", 2048), ("other", 2048), ("rsa1024", 1024),
                       ("rsa1536", 1536)):
        write_key(directory / f"{name}.pem", rsa_key(bits))
    plus = rsa_key(2048)
    while "+" not in public_pem(plus):
        plus = rsa_key(2048)
    write_key(directory / "plus.pem", plus)
    return directory


class Dispatcher:
    """ASGI: `/b/<name>/...` goes to app `<name>` with the prefix removed."""

    def __init__(self, apps: dict[str, Any]) -> None:
        self.apps = apps
        self.app = self  # what mock_router.serve serves

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        name, _, rest = path[len(PREFIX):].partition("/")
        app = self.apps.get(name) if path.startswith(PREFIX) else None
        if app is None:
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        inner = {**scope, "path": "/" + rest,
                 "raw_path": ("/" + rest).encode("latin-1"), "root_path": ""}
        await app(inner, receive, send)


def broken_apps(defects: tuple[Defect, ...], server_key: rsa.RSAPrivateKey,
                own_key: rsa.RSAPrivateKey) -> dict[str, Any]:
    """One BrokenApp per defect; a defect with its own router options gets its own router."""
    shared = MockRouter(server_key=server_key)
    apps: dict[str, Any] = {}
    for defect in defects:
        options = dict(defect.router)
        key = server_key
        if "key_bits" in options:
            key = rsa_key(options.pop("key_bits"))
        router = MockRouter(server_key=key, **options) if defect.router else shared
        apps[defect.name] = BrokenApp(router.app, defect, Keys(key, own_key))
    return apps


@contextlib.contextmanager
def serve_all(apps: dict[str, Any]) -> Iterator[str]:
    """Serve the apps on one loopback port; yields the URL the prefixes go after."""
    with serve(Dispatcher(apps)) as server:  # type: ignore[arg-type]
        yield server.url
