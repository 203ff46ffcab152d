"""TLS (spec TLS-7, TLS-8): nomyo_ref refuses every bad server certificate over real loopback
TLS, sending nothing to the router (no POST, not even the key fetch), and works with the
right CA bundle.

Bad certificates: self-signed (not CA-signed), issued for another host name
("example.invalid"), expired, and issued by a CA the client does not trust. The expected
outcome per TLS-7 is APIConnectionError or SecurityError.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from mock_router import MockRouter
from nomyo_ref import APIConnectionError, SecureChatCompletion, SecurityError

pytestmark = pytest.mark.usefixtures("fast_client_keys")


@contextlib.contextmanager
def serve_tls(router: MockRouter, cert: Path, key: Path) -> Iterator[str]:
    """router.app under uvicorn with this certificate, on a free loopback port."""
    config = uvicorn.Config(router.app, host="127.0.0.1", port=0, log_level="critical",
                            lifespan="off", access_log=False, timeout_graceful_shutdown=1,
                            ssl_certfile=str(cert), ssl_keyfile=str(key))
    server = uvicorn.Server(config)

    def run() -> None:
        with contextlib.suppress(SystemExit):
            server.run()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert thread.is_alive(), "uvicorn did not start"
        assert time.monotonic() < deadline, "uvicorn did not start in time"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"https://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                 x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "self-cert.pem", directory / "self-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class Pki:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.ca = trustme.CA()
        self.other_ca = trustme.CA()
        self.ca_path = directory / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_path))
        now = datetime.datetime.now(datetime.timezone.utc)
        self.files = {
            "good": self._write("good", self.ca.issue_cert("127.0.0.1", "localhost")),
            "wrong-host": self._write("wrong", self.ca.issue_cert("example.invalid")),
            "expired": self._write("expired", self.ca.issue_cert(
                "127.0.0.1", "localhost", not_before=now - datetime.timedelta(days=30),
                not_after=now - datetime.timedelta(days=1))),
            "untrusted-ca": self._write("untrusted", self.other_ca.issue_cert(
                "127.0.0.1", "localhost")),
            "self-signed": self_signed(directory),
        }

    def _write(self, name: str, leaf: trustme.LeafCert) -> tuple[Path, Path]:
        cert, key = self.dir / f"{name}-cert.pem", self.dir / f"{name}-key.pem"
        leaf.cert_chain_pems[0].write_to_path(str(cert))
        for extra in leaf.cert_chain_pems[1:]:
            extra.write_to_path(str(cert), append=True)
        leaf.private_key_pem.write_to_path(str(key))
        return cert, key


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def router(rel_server_key: rsa.RSAPrivateKey) -> MockRouter:
    return MockRouter(rel_server_key)


async def test_correct_ca_bundle_works(pki: Pki, router: MockRouter) -> None:
    router.reset()
    with serve_tls(router, *pki.files["good"]) as url:
        async with SecureChatCompletion(url, ca_bundle=pki.ca_path, max_retries=0) as chat:
            reply = await chat.create("m", [{"role": "user", "content": "over tls"}])
    assert reply["choices"][0]["message"]["content"] == "over tls"
    assert [s.status for s in router.seen] == [200, 200]


@pytest.mark.parametrize("trust", ["ca-bundle", "system-store"])
@pytest.mark.parametrize("cert", ["self-signed", "wrong-host", "expired", "untrusted-ca"])
async def test_bad_certificates_are_refused(pki: Pki, router: MockRouter, cert: str,
                                            trust: str) -> None:
    router.reset()
    bundle = pki.ca_path if trust == "ca-bundle" else None
    with serve_tls(router, *pki.files[cert]) as url:
        chat = SecureChatCompletion(url, ca_bundle=bundle, max_retries=2, retry_backoff=0.01,
                                    timeout=5.0)
        started = time.monotonic()
        with pytest.raises((APIConnectionError, SecurityError)):
            await chat.create("m", [{"role": "user", "content": "must not arrive"}])
        elapsed = time.monotonic() - started
        await chat.aclose()
        time.sleep(0.05)  # let the server thread record anything that did arrive
    assert router.seen == [], "a request reached the router over a bad certificate"
    assert elapsed < 5.0, elapsed
