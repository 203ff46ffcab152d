"""``python -m mock_router`` / ``nomyo-mock-router``: banner, round trip, clean Ctrl-C."""

from __future__ import annotations

import os
import queue
import signal
import socket
import ssl
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from mock_router import MockRouter
from mock_router.__main__ import main

pytestmark = pytest.mark.asyncio(loop_scope="session")

CHAT = {"model": "m", "messages": [{"role": "user", "content": "from the cli test"}]}
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Running:
    """A router subprocess whose stdout lines are read in a thread (no blocking reads)."""

    def __init__(self, *args: str) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen([sys.executable, "-m", "mock_router", *args], cwd=ROOT,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=env)
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def banner(self) -> dict[str, str]:
        out: dict[str, str] = {}
        while True:
            line = self.lines.get(timeout=30)
            if line.startswith("nomyo-mock-router listening on "):
                out["url"] = line.rsplit(" ", 1)[1]
            elif line.startswith("server key fingerprint"):
                out["fingerprint"] = line.rsplit(" ", 1)[1]
            elif line.startswith("CA certificate"):
                out["ca"] = line.rsplit(" ", 1)[1]
            elif line.startswith("press Ctrl-C"):
                return out

    def interrupt(self) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(timeout=20)
        assert self.proc.stderr is not None
        return code, self.proc.stderr.read()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


async def test_cli_round_trip_and_clean_sigint(tmp_path, server_key, wire):
    key_file = tmp_path / "server.pem"
    expected = MockRouter(server_key).save_key(key_file)
    port = free_port()
    run = Running("--port", str(port), "--key-file", str(expected), "--api-key", "k1",
                  "--tier-policy", "maximum=model-a")
    try:
        banner = run.banner()
        assert banner["url"] == f"http://127.0.0.1:{port}"
        assert banner["fingerprint"] == MockRouter(server_key).fingerprint
        async with httpx.AsyncClient(base_url=banner["url"]) as http:
            res = await wire.create(http, CHAT, api_key="k1")
            assert res.response.status_code == 200, res.response.text
            assert res.completion["choices"][0]["message"]["content"] == "from the cli test"
            assert (await wire.create(http, CHAT)).response.status_code == 401
            denied = await wire.create(http, CHAT, api_key="k1", tier="maximum")
            assert denied.response.status_code == 403
            assert (await http.get("/_mock/seen")).status_code == 404
        code, err = run.interrupt()
        assert code == 0, err
        assert "from the cli test" not in err  # the log never shows plaintext
        assert "Bearer k1" not in err
        assert "refused" in err
    finally:
        run.kill()


async def test_cli_creates_key_file_tls_and_admin(tmp_path, wire):
    key_file = tmp_path / "made" / "server.pem"
    run = Running("--port", "0", "--key-file", str(key_file), "--key-size", "2048", "--tls",
                  "--cert-dir", str(tmp_path / "certs"), "--admin", "--log-level", "warning")
    try:
        banner = run.banner()
        assert banner["url"].startswith("https://127.0.0.1:")
        assert Path(banner["ca"]) == tmp_path / "certs" / "ca.pem"
        assert key_file.stat().st_mode & 0o777 == 0o600
        assert MockRouter.from_key_file(key_file).fingerprint == banner["fingerprint"]
        ctx = ssl.create_default_context(cafile=banner["ca"])
        async with httpx.AsyncClient(base_url=banner["url"], verify=ctx) as http:
            assert (await wire.create(http, CHAT)).response.status_code == 200
            seen = (await http.get("/_mock/seen")).json()["seen"]
            assert seen[-1]["payload"] == CHAT
        code, err = run.interrupt()
        assert code == 0, err
    finally:
        run.kill()


@pytest.mark.parametrize(("args", "option"), [
    (["--latency", "-1"], "--latency"),
    (["--latency", "soon"], "--latency"),
    (["--failure-rate", "2"], "--failure-rate"),
    (["--failure-status", "200"], "--failure-status"),
    (["--tier-policy", "ultra=x"], "--tier-policy"),
    (["--tier-policy", "maximum"], "--tier-policy"),
    (["--port", "70000"], "--port"),
    (["--key-size", "1024"], "--key-size"),
    (["--cert-dir", "/tmp/x"], "--cert-dir"),
    (["--log-level", "loud"], "--log-level"),
    (["--seed", "x"], "--seed"),
])
async def test_bad_options_name_the_option(capsys, args, option):
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 2
    assert f"argument {option}" in capsys.readouterr().err


async def test_unreadable_key_file_is_an_option_error(tmp_path, capsys):
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key")
    with pytest.raises(SystemExit):
        main(["--key-file", str(bad)])
    assert "--key-file" in capsys.readouterr().err


async def test_console_script_is_installed():
    script = Path(sys.executable).with_name("nomyo-mock-router")
    if not script.exists():
        pytest.skip("console script not installed in this environment")
    out = subprocess.run([str(script), "--help"], capture_output=True, text=True, check=True)
    assert "--failure-rate" in out.stdout
