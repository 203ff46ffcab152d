"""Every long run of the server-mode tests, started together so they overlap on the cores:
the suite against nomyo-mock-router (default and live profiles, plain and TLS), the broken
routers' batches, and the short command-line runs (listings, usage errors).

`Background.start` launches them all; each accessor waits for its own results only.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tests.server.defects import ALL, Defect
from tests.server.hosting import broken_apps, rsa_key, serve_all
from tests.server.runs import PLAIN, ROOT, Finished, SuiteRun, environment, read_report

API_KEY = "k1"
POLICY = ["--server-api-key=k1", "--server-policy=tier-403=maximum",
          "--server-model=mock-thinker"]  # a *think* model answers with reasoning_content
NOWHERE = "--server=http://127.0.0.1:9"
BATCHES = 2
TLS_REQ = "--req=DISC-20,SRV-18,SRV-2,PID-4"
LISTINGS = {
    "server": ("conformance", NOWHERE, "--list-checks"),
    "client": ("conformance", "--impl=nomyo_ref", "--list-checks"),
    "both": ("conformance", "--list-checks"),
    "pyargs": ("--pyargs", "conformance", NOWHERE, "--list-checks"),
}
USAGE_ERRORS = {
    "server-and-impl": ((NOWHERE, "--impl=nomyo_ref"), "give one of them"),
    "server-option-alone": (("--server-api-key=k",), "only make sense with --server=URL"),
    "bad-url": (("--server=ftp://h",), "http:// or https://"),
    "auth-without-key": ((NOWHERE, "--server-policy=auth=required"), "needs --server-api-key"),
    "unknown-policy": ((NOWHERE, "--server-policy=tier-403=gold"), "unknown key or value"),
    "live-with-xdist": ((NOWHERE, "--server-profile=live", "-n", "2"), "without -n"),
}


class MockProcess:
    """`python -m mock_router --port 0 ...`; `url` once it listens (and `ca` with --tls)."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mock_router", "--port", "0", "--log-level", "warning",
             *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.url = ""
        self.ca: str | None = None
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if "listening on " in line:
                self.url = line.split("listening on ", 1)[1].strip()
            if "CA certificate to trust: " in line:
                self.ca = line.split("CA certificate to trust: ", 1)[1].strip()
            if "press Ctrl-C" in line:
                break
        assert self.url, "nomyo-mock-router did not start"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def command(*args: str, keys: Path, cwd: Path = ROOT) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "pytest", *args, *PLAIN], cwd=cwd,
                            env=environment(keys), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def proof_job(defect: Defect, url: str, out: Path) -> dict[str, object]:
    ids = ",".join(dict.fromkeys((*defect.fails, *defect.also)))
    return {"args": [f"--server={url}/b/{defect.name}", f"--req={ids}", *defect.options],
            "out": str(out / defect.name)}


@dataclass
class Background:
    """The runs (see the module docstring); `close()` stops every server it started."""

    base: Path
    keys: Path
    mock_key: Path
    stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    mocks: dict[str, MockProcess] = field(default_factory=dict)
    suite: dict[str, SuiteRun] = field(default_factory=dict)
    drivers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    commands: dict[str, subprocess.Popen[str]] = field(default_factory=dict)
    _finished: dict[str, Finished] = field(default_factory=dict)
    _outputs: dict[str, tuple[int, str]] = field(default_factory=dict)
    _proof: dict[str, Finished] | None = None

    def start(self) -> None:
        self._start_proof()
        self._start_mock_runs()
        for name, args in LISTINGS.items():
            cwd = self.base if name == "pyargs" else ROOT
            self.commands[f"list-{name}"] = command(*args, keys=self.keys, cwd=cwd)
        for name, (args, _) in USAGE_ERRORS.items():
            self.commands[f"usage-{name}"] = command("conformance", *args, keys=self.keys)

    def _start_proof(self) -> None:
        url = self.stack.enter_context(serve_all(broken_apps(ALL, rsa_key(2048),
                                                             rsa_key(2048))))
        out = self.base / "proof"
        jobs = [proof_job(d, url, out) for d in ALL]
        for i in range(BATCHES):
            spec = self.base / f"batch-{i}.json"
            spec.write_text(json.dumps(jobs[i::BATCHES]), encoding="utf-8")
            self.drivers.append(subprocess.Popen(
                [sys.executable, "-m", "tests.server.driver", str(spec)], cwd=ROOT,
                env=environment(self.keys), stdout=subprocess.PIPE, stderr=subprocess.STDOUT))

    def _start_mock_runs(self) -> None:
        self.mocks["policy"] = MockProcess("--key-file", str(self.mock_key), "--api-key",
                                           API_KEY, "--tier-policy", "maximum=other-model")
        self.mocks["plain"] = MockProcess("--key-size", "2048")
        self.mocks["tls"] = MockProcess("--key-size", "2048", "--tls", "--cert-dir",
                                        str(self.base / "tls"))
        policy = f"--server={self.mocks['policy'].url}"
        tls = [f"--server={self.mocks['tls'].url}", TLS_REQ]
        live = "--server-profile=live"
        runs = {
            "default": [policy, *POLICY],
            "live": [policy, *POLICY, live],
            "live-plain": [f"--server={self.mocks['plain'].url}", live],
            "tls-ca": [*tls, f"--server-ca={self.mocks['tls'].ca}"],
            "tls-untrusted": tls,
        }
        for name, args in runs.items():
            self.suite[name] = SuiteRun(args, self.base / "mock" / name, self.keys)

    def mock_run(self, name: str) -> Finished:
        if name not in self._finished:
            self._finished[name] = self.suite[name].finish()
        return self._finished[name]

    def output_of(self, name: str) -> tuple[int, str]:
        if name not in self._outputs:
            proc = self.commands[name]
            output, _ = proc.communicate(timeout=300)
            self._outputs[name] = (proc.returncode, output)
        return self._outputs[name]

    def proof(self) -> dict[str, Finished]:
        if self._proof is None:
            for proc in self.drivers:
                output, _ = proc.communicate(timeout=900)
                assert proc.returncode == 0, output.decode(errors="replace")[-3000:]
            results = {}
            for defect in ALL:
                out = self.base / "proof" / defect.name
                status = out / "exit_status"
                code = int(status.read_text()) if status.is_file() else -1
                text = (out / "output.txt").read_text() if (out / "output.txt").is_file() else ""
                results[defect.name] = Finished(code, text, read_report(out))
            self._proof = results
        return self._proof

    def close(self) -> None:
        for proc in [*self.drivers, *self.commands.values(),
                     *(run.proc for run in self.suite.values())]:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for mock in self.mocks.values():
            mock.stop()
        self.stack.close()
