"""``serve``: run a router on loopback with uvicorn in a background thread, HTTP or HTTPS.

HTTPS uses a throw-away CA made by ``trustme``: a server certificate for 127.0.0.1 and
localhost, and the CA certificate written to ``ca.pem`` so a client can be told to trust it.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from .app import DroppedConnection
from .router import MockRouter

STARTUP_TIMEOUT = 15.0


@dataclass(frozen=True)
class RunningServer:
    """What ``serve`` yields: where the router listens, and the CA to trust for HTTPS."""

    url: str
    host: str
    port: int
    router: MockRouter
    ca_cert_path: Path | None = None


class _QuietDrops(logging.Filter):
    """Keep uvicorn from printing a traceback for each deliberate Scenario.drop."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, DroppedConnection)


# Installed once for the process: it only hides the router's own deliberate drops.
logging.getLogger("uvicorn.error").addFilter(_QuietDrops())


def make_tls_files(cert_dir: str | Path) -> tuple[Path, Path, Path]:
    """Write a fresh CA (ca.pem) and a server certificate/key for 127.0.0.1 and localhost.

    Returns (ca_cert_path, server_cert_path, server_key_path). The server key file is 0600.
    """
    try:
        import trustme  # only HTTPS needs it
    except ImportError:
        raise RuntimeError("TLS needs the 'trustme' package (pip install trustme)") from None

    directory = Path(cert_dir)
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost", "::1")
    ca_path = directory / "ca.pem"
    cert_path = directory / "server-cert.pem"
    key_path = directory / "server-key.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    cert.cert_chain_pems[0].write_to_path(str(cert_path))
    for extra in cert.cert_chain_pems[1:]:
        extra.write_to_path(str(cert_path), append=True)
    key_path.touch(mode=0o600, exist_ok=True)
    cert.private_key_pem.write_to_path(str(key_path))
    return ca_path, cert_path, key_path


@contextlib.contextmanager
def serve(router: MockRouter, host: str = "127.0.0.1", port: int = 0, tls: bool = False,
          cert_dir: str | Path | None = None,
          log_level: str = "warning") -> Iterator[RunningServer]:
    """Serve ``router.app`` until the block ends (port 0: a free port is picked).

    Waits until uvicorn listens before yielding; on exit asks it to stop and joins the thread.
    With ``tls=True`` and no ``cert_dir`` the certificates live in a temporary directory that
    is removed afterwards.
    """
    tmp: str | None = None
    ssl_kwargs: dict[str, str] = {}
    ca_path: Path | None = None
    if tls:
        if cert_dir is None:
            tmp = tempfile.mkdtemp(prefix="mock-router-tls-")
            cert_dir = tmp
        ca_path, cert_path, key_path = make_tls_files(cert_dir)
        ssl_kwargs = {"ssl_certfile": str(cert_path), "ssl_keyfile": str(key_path)}
    config = uvicorn.Config(router.app, host=host, port=port, log_level=log_level,
                            lifespan="off", access_log=False, timeout_graceful_shutdown=2,
                            # leave the host process's logging alone (uvicorn's dictConfig
                            # would close every handler already installed)
                            log_config=None,
                            **ssl_kwargs)  # type: ignore[arg-type]
    server = uvicorn.Server(config)

    def run() -> None:
        # uvicorn exits when it cannot bind; the waiter below reports it
        with contextlib.suppress(SystemExit):
            server.run()

    thread = threading.Thread(target=run, name=f"mock-router-{port}", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError(f"mock router could not start on {host}:{port}")
            if time.monotonic() > deadline:
                raise RuntimeError("mock router did not start in time")
            time.sleep(0.01)
        sock = server.servers[0].sockets[0]
        bound_port = sock.getsockname()[1]
        scheme = "https" if tls else "http"
        url_host = f"[{host}]" if ":" in host else host
        yield RunningServer(url=f"{scheme}://{url_host}:{bound_port}", host=host,
                            port=bound_port, router=router, ca_cert_path=ca_path)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
