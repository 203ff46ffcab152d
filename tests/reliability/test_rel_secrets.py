"""Secrets (spec LOG-1..LOG-6): a representative workload of nomyo_ref calls against the router
over loopback HTTP, with every logger at DEBUG (nomyo_ref, mock_router, httpx, httpcore,
uvicorn, asyncio, root) captured, and every exception it provokes collected (str, repr,
args, attributes, the whole __cause__/__context__ chain, formatted tracebacks), plus every
warning: zero occurrences of the message contents (distinctive canaries), the API keys, the
key-file password, the client private key (PEM body lines, private numbers) and the server
private key.

The workload: successful calls; every error status (scripted and real: 401 wrong key, 403
tier policy, 400 stream/bad messages); every tamper scenario; dropped connections;
truncated/garbage 200 bodies; a rotated key; a pin mismatch; HTTPS refusals; bad tiers;
header-unsafe API keys; unserialisable and oversized payloads; corrupt key files, wrong and
missing passwords; direct decrypt_response of hostile packages.

A second test runs the conformance suite (`pytest conformance --impl=nomyo_ref`) in a
subprocess at DEBUG with its report written, and scans its output, log file and report for
the secrets the suite plants (its random `sk-secret-…`/`CONTENT-SECRET-…`/`TOOLARG-SECRET-…`
tokens and private-key PEM markers).
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import traceback
import uuid
import warnings
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mock_router import KEY_PATH, MockRouter, Scenario, serve
from nomyo_ref import SecureChatCompletion, SecureCompletionClient
from nomyo_ref import crypto as ref_crypto
from nomyo_ref import keys as ref_keys
from tests.reliability.conftest import THOROUGH

REPO = Path(__file__).resolve().parents[2]
LOGGERS = ["", "nomyo_ref", "mock_router", "httpx", "httpcore", "uvicorn", "uvicorn.error",
           "uvicorn.access", "asyncio", "hpack", "h11"]


class Capture(logging.Handler):
    """Keeps the full formatted text (message, exception, stack) of every record."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.texts: list[str] = []
        self.formatter_ = logging.Formatter("%(name)s %(levelname)s %(message)s")

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.formatter_.format(record)
        except Exception as exc:  # a record that cannot be formatted is still scanned raw
            text = f"unformattable {exc!r}"
        self.texts.append(text + "\n" + repr(record.msg) + repr(record.args))


@pytest.fixture
def capture() -> Iterator[Capture]:
    handler = Capture()
    saved: list[tuple[logging.Logger, int, bool]] = []
    for name in LOGGERS:
        logger = logging.getLogger(name)
        saved.append((logger, logger.level, logger.disabled))
        logger.setLevel(logging.DEBUG)
        logger.disabled = False
        logger.addHandler(handler)
    try:
        yield handler
    finally:
        for logger, level, disabled in saved:
            logger.removeHandler(handler)
            logger.setLevel(level)
            logger.disabled = disabled


def exception_texts(exc: BaseException) -> list[str]:
    """Everything an exception shows or carries, through its whole chain."""
    out: list[str] = ["".join(traceback.format_exception(exc))]
    seen: set[int] = set()
    current: BaseException | None = exc
    stack = [exc]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        out.append(str(current))
        out.append(repr(current))
        out.append(repr(current.args))
        with_attrs = getattr(current, "__dict__", {})
        out.append(repr(with_attrs))
        for value in with_attrs.values():
            if isinstance(value, dict | list):
                out.append(json.dumps(value, default=repr))
        stack.extend([current.__cause__, current.__context__])  # type: ignore[list-item]
    return out


class Secrets:
    def __init__(self, client_key: rsa.RSAPrivateKey, server_key: rsa.RSAPrivateKey) -> None:
        token = uuid.uuid4().hex
        self.contents = [f"Canary{i}-{token}" for i in range(8)]
        self.api_key = f"sk-good-{uuid.uuid4().hex}"
        self.wrong_key = f"sk-wrong-{uuid.uuid4().hex}"
        self.unsafe_key_core = f"sk-unsafe-{uuid.uuid4().hex}"
        self.password = f"pw-{uuid.uuid4().hex}"
        self.named: dict[str, str] = {}
        for i, c in enumerate(self.contents):
            self.named[f"message content {i}"] = c
        self.named.update({"api key": self.api_key, "wrong api key": self.wrong_key,
                           "unsafe api key": self.unsafe_key_core, "password": self.password})
        for who, key in (("client", client_key), ("server", server_key)):
            pem = key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode()
            for n, line in enumerate(pem.splitlines()[1:-1]):
                self.named[f"{who} private key PEM line {n}"] = line
            trad = key.private_bytes(serialization.Encoding.PEM,
                                     serialization.PrivateFormat.TraditionalOpenSSL,
                                     serialization.NoEncryption()).decode()
            for n, line in enumerate(trad.splitlines()[1:-1]):
                self.named[f"{who} PKCS#1 PEM line {n}"] = line
            numbers = key.private_numbers()
            for name in ("p", "q", "d"):
                value = getattr(numbers, name)
                self.named[f"{who} private {name} (decimal)"] = str(value)[:40]
                self.named[f"{who} private {name} (hex)"] = f"{value:x}"[:40]

    def scan(self, texts: list[str]) -> list[str]:
        hits = []
        for text in texts:
            for name, secret in self.named.items():
                if secret in text:
                    at = text.index(secret)
                    hits.append(f"{name}: ...{text[max(0, at - 80):at + 40]!r}...")
        return hits


async def test_no_secret_in_logs_or_exceptions(
        capture: Capture, tmp_path: Path, rel_client_key: rsa.RSAPrivateKey,
        rel_server_key: rsa.RSAPrivateKey, rel_other_key: rsa.RSAPrivateKey,
        fast_client_keys: list[int]) -> None:
    s = Secrets(rel_client_key, rel_server_key)
    router = MockRouter(rel_server_key, api_keys=[s.api_key],
                        tier_policy={"maximum": ["model-a"]})
    exceptions: list[BaseException] = []
    warned: list[str] = []
    outcomes: dict[str, str] = {}

    async def attempt(label: str, call: Callable[[], Awaitable[Any]] | Callable[[], Any]
                      ) -> None:
        try:
            result = call()
            if hasattr(result, "__await__"):
                await result
        except Exception as exc:
            exceptions.append(exc)
            outcomes[label] = type(exc).__name__
        else:
            outcomes[label] = "ok"

    def msgs(i: int) -> list[dict[str, Any]]:
        return [{"role": "system", "content": f"Keep private: {s.contents[(i + 1) % 8]}"},
                {"role": "user", "content": s.contents[i % 8]}]

    key_dir = tmp_path / "keys"
    ref_keys.save_key_pair(rel_client_key, key_dir)
    enc_dir = tmp_path / "enc"
    ref_keys.save_key_pair(rel_client_key, enc_dir, s.password)
    corrupt_dir = tmp_path / "corrupt"
    corrupt_dir.mkdir()
    good_pem = (key_dir / "private_key.pem").read_bytes()
    (corrupt_dir / "private_key.pem").write_bytes(good_pem[: len(good_pem) * 2 // 3])

    with warnings.catch_warnings(record=True) as caught, \
            serve(router, log_level="debug") as server:
        warnings.simplefilter("always")
        for name in LOGGERS:  # serve() reconfigured uvicorn's loggers: capture them again
            logging.getLogger(name).setLevel(logging.DEBUG)
            logging.getLogger(name).disabled = False
        url = server.url

        def chat(**options: Any) -> SecureChatCompletion:
            options.setdefault("api_key", s.api_key)
            options.setdefault("key_dir", key_dir)
            options.setdefault("retry_backoff", 0.001)
            options.setdefault("max_retries", 1)
            return SecureChatCompletion(url, allow_http=True, **options)

        c = chat()
        for i in range(3):
            await attempt(f"success {i}", lambda i=i: c.create("model-a", msgs(i),
                                                               user=s.contents[7]))
        scripted = [
            Scenario.status(400, {"detail": "bad"}), Scenario.status(401, {"detail": "no"}),
            Scenario.status(403, {"detail": "tier"}), Scenario.status(404, None),
            Scenario.status(429, {"detail": "slow"}, times=2),
            Scenario.status(500, b"<html>boom</html>", times=2),
            Scenario.status(502, "bad gateway", times=2), Scenario.status(503, None, times=2),
            Scenario.status(504, [1, 2], times=2), Scenario.status(418, {"x": 1}),
            Scenario.status(302, None, headers={"Location": "http://127.0.0.1:9/x"}),
            Scenario.status(200, b"not json"), Scenario.status(200, b'{"version": "1.0", '),
            Scenario.status(200, {"version": "0.9"}),
            Scenario.tamper("ciphertext"), Scenario.tamper("tag"), Scenario.tamper("nonce"),
            Scenario.tamper("encrypted_aes_key"), Scenario.wrong_recipient(),
            Scenario.payload_id("someone-else"), Scenario.payload_id(None),
            Scenario.no_metadata(),
            Scenario.plaintext(f"not json {s.contents[0]}".encode()),
            Scenario.plaintext(json.dumps([s.contents[1]]).encode()),
            Scenario.plaintext(b"\xff\xfe" + s.contents[2].encode()),
            Scenario.package(version="0.9"), Scenario.package(algorithm="rsa-only"),
            Scenario.package(encrypted_aes_key=None), Scenario.package(key_algorithm="X"),
            Scenario.drop(times=2),
            Scenario.status(500, {"detail": "key down"}, path=KEY_PATH, times=2),
        ]
        for n, scenario in enumerate(scripted):
            router.push(scenario)
            fresh = chat() if scenario.path == KEY_PATH else c
            await attempt(f"scenario {n} {scenario.kind}",
                          lambda f=fresh, n=n: f.create("model-a", msgs(n)))
            await fresh.aclose() if fresh is not c else None
        router.reset()
        # real refusals by the router
        await attempt("wrong key", lambda: chat(api_key=s.wrong_key).create("model-a",
                                                                             msgs(1)))
        await attempt("no key", lambda: chat(api_key=None).create("model-a", msgs(2)))
        await attempt("tier forbidden", lambda: c.create("model-b", msgs(3),
                                                         security_tier="maximum"))
        await attempt("stream", lambda: c.create("model-a", msgs(4), stream=True))
        await attempt("bad messages", lambda: c.create("model-a", f"text {s.contents[5]}"))
        # malformed chat requests the router itself refuses (400 with a detail, LOG-5)
        for n, payload in enumerate([
                {"model": 5, "messages": msgs(5)},
                {"model": "model-a", "messages": f"text {s.contents[5]}"},
                {"model": "model-a", "messages": [s.contents[6]]},
                {"model": "model-a", "messages": [{"content": s.contents[6]}]},
                {"model": s.contents[7], "messages": msgs(6), "n": s.contents[0]}]):
            await attempt(f"router 400 {n}", lambda p=payload: c.client.send_secure_request(
                p, str(uuid.uuid4()), s.api_key))
        await attempt("bad tier", lambda: c.create("model-a", msgs(5), security_tier="ultra"))
        # local refusals
        await attempt("unsafe key", lambda: SecureChatCompletion(
            url, allow_http=True, api_key=s.unsafe_key_core + "\r\nX-Evil: 1"))
        await attempt("unsafe key per request", lambda: c.client.send_secure_request(
            {"model": "m", "messages": msgs(6)}, str(uuid.uuid4()),
            s.unsafe_key_core + "\n"))
        await attempt("http refused", lambda: SecureChatCompletion(url, api_key=s.api_key))
        await attempt("nan", lambda: c.create("model-a", msgs(0), temperature=float("nan")))
        await attempt("set", lambda: c.create("model-a", msgs(0), extra={s.contents[3]}))
        await attempt("oversized", lambda: c.create(
            "model-a", [{"role": "user", "content": s.contents[4] * (11 * 2**20 // 40)}]))
        await attempt("per-call api key", lambda: c.create("model-a", msgs(0),
                                                           api_key=s.api_key))
        # server key: pin mismatch, rotation
        await attempt("pin mismatch", lambda: chat(server_key_sha256="0" * 64).create(
            "model-a", msgs(1)))
        router.rotate_key(rel_other_key)
        await attempt("after rotation", lambda: c.create("model-a", msgs(2)))
        # keys on disk
        loader = SecureCompletionClient(url, allow_http=True)
        await attempt("wrong password", lambda: loader.load_keys(
            enc_dir / "private_key.pem", password="pw-" + "0" * 32))
        await attempt("missing password", lambda: loader.load_keys(enc_dir / "private_key.pem"))
        await attempt("password for plain", lambda: loader.load_keys(
            key_dir / "private_key.pem", password=s.password))
        await attempt("right password", lambda: loader.load_keys(
            enc_dir / "private_key.pem", password=s.password))
        await attempt("corrupt file", lambda: loader.load_keys(corrupt_dir / "private_key.pem"))
        await attempt("corrupt key_dir", lambda: chat(key_dir=corrupt_dir).create(
            "model-a", msgs(3)))
        # direct decryption of hostile packages
        pid = str(uuid.uuid4())
        for n, plaintext in enumerate([b"{" + s.contents[0].encode(),
                                       json.dumps({"content": s.contents[1]}).encode(),
                                       json.dumps({"_metadata": {"payload_id": s.contents[2]},
                                                   "c": s.contents[3]}).encode()]):
            package = ref_crypto.encrypt_package(plaintext, rel_client_key.public_key())
            await attempt(f"decrypt {n}", lambda p=package: loader.decrypt_response(p, pid))
        await c.aclose()
        await loader.aclose()
        warned = [f"{w.category.__name__}: {w.message}" for w in caught]

    texts = list(capture.texts) + warned
    for exc in exceptions:
        texts.extend(exception_texts(exc))
    print(f"\nsecrets: {len(outcomes)} provocations, {len(exceptions)} exceptions, "
          f"{len(capture.texts)} log records, {len(warned)} warnings, "
          f"{len(s.named)} secrets scanned")
    # the workload did what it should: successes succeeded, failures failed
    assert outcomes["success 0"] == outcomes["after rotation"] == "ok", outcomes
    assert outcomes["right password"] == "ok"
    assert all(outcomes[f"router 400 {n}"] == "InvalidRequestError" for n in range(5)), \
        [outcomes[f"router 400 {n}"] for n in range(5)]
    assert sum(v != "ok" for v in outcomes.values()) >= 50, outcomes
    assert len(capture.texts) > 100  # DEBUG really was captured (httpcore, uvicorn, ...)
    assert any(t.startswith("mock_router") for t in capture.texts)
    assert any(t.startswith("httpcore") for t in capture.texts)
    # the scanner itself can fail: a planted secret is found in a chained exception
    planted = RuntimeError("wrapper")
    planted.__context__ = json.JSONDecodeError("bad", s.contents[0], 0)
    assert s.scan(exception_texts(planted)) != []
    hits = s.scan(texts)
    assert hits == [], "\n".join(hits[:20])


# --- the conformance suite in a subprocess -------------------------------------------------

SUITE_PATTERNS = {
    "suite API key": re.compile(r"sk-secret-[0-9a-f]{16}"),
    "suite message content": re.compile(r"CONTENT-SECRET-[0-9a-f]{16}"),
    "suite tool argument": re.compile(r"TOOLARG-SECRET-[0-9a-f]{16}"),
    "private key PEM": re.compile(r"-----BEGIN (?:ENCRYPTED |RSA )?PRIVATE KEY-----"),
}


def _suite_ready() -> bool:
    return (REPO / "conformance" / "checks" / "test_secrets.py").exists()


@pytest.mark.skipif(not _suite_ready(), reason="the conformance suite is not there yet")
def test_conformance_run_at_debug_leaks_nothing(tmp_path: Path) -> None:
    report = tmp_path / "report"
    log_file = tmp_path / "debug.log"
    command = [sys.executable, "-m", "pytest", "conformance", "--impl=nomyo_ref",
               "-p", "no:cacheprovider", "--log-level=DEBUG", "-o", "log_cli=false",
               # mode "a": uvicorn's dictConfig (run by every mock_router.serve) closes all
               # handlers of the process; a "w" file handler then drops every later record
               f"--log-file={log_file}", "--log-file-level=DEBUG", "--log-file-mode=a",
               f"--conformance-report={report}", "-q", "-rA"]
    if THOROUGH:
        command.append("--conformance-profile=thorough")
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True,
                          errors="replace", timeout=1800, check=False)
    output = done.stdout + done.stderr
    assert "--impl" not in done.stderr or "error" not in done.stderr.lower(), output[-3000:]
    texts = {"output": output}
    if log_file.exists():
        texts["debug log"] = log_file.read_text(errors="replace")
    for path in sorted(report.rglob("*")) if report.exists() else []:
        if path.is_file():
            texts[f"report {path.name}"] = path.read_text(errors="replace")
    print(f"\nconformance subprocess: exit {done.returncode}, output "
          f"{len(output)} chars, debug log {len(texts.get('debug log', ''))} chars, "
          f"report files {[k for k in texts if k.startswith('report')]}")
    assert report.exists(), "the suite wrote no report"
    assert any(report.iterdir()), "the suite wrote no report"
    debug_log = texts.get("debug log", "")
    assert len(debug_log) > 1000, "DEBUG logging was not captured"
    assert "httpcore" in debug_log, "httpcore's DEBUG records are missing"
    assert "mock_router" in debug_log, "mock_router's records are missing"
    hits = []
    for where, text in texts.items():
        for name, pattern in SUITE_PATTERNS.items():
            for match in pattern.finditer(text):
                at = match.start()
                hits.append(f"{name} in {where}: ...{text[max(0, at - 100):at + 60]!r}")
    assert hits == [], "\n".join(hits[:20])


def test_serve_leaves_the_host_process_logging_alone(
        tmp_path: Path, rel_server_key: rsa.RSAPrivateKey) -> None:
    path = tmp_path / "host.log"
    handler = logging.FileHandler(path, mode="w")
    probe = logging.getLogger("nomyo-rel-probe")
    probe.addHandler(handler)
    probe.setLevel(logging.INFO)
    try:
        probe.info("before serve")
        with serve(MockRouter(rel_server_key)):
            probe.info("inside serve")
        probe.info("after serve")
        handler.flush()
    finally:
        probe.removeHandler(handler)
        handler.close()
    assert path.read_text().splitlines() == ["before serve", "inside serve", "after serve"]
