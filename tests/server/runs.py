"""Suite runs in subprocesses, as a router's operator makes them, and what they left behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PLAIN = ("-p", "no:cacheprovider", "--assert=plain")


def environment(client_keys: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["NOMYO_CONFORMANCE_CLIENT_KEY_DIR"] = str(client_keys)
    env.pop("PYTEST_ADDOPTS", None)
    return env


@dataclass
class Finished:
    """One suite run: exit status, output, report.json (None when none was written)."""

    code: int
    output: str
    report: dict[str, Any] | None

    def verdicts(self) -> dict[str, str]:
        assert self.report is not None, self.output[-3000:]
        return {r["id"]: r["verdict"] for r in self.report["requirements"]}

    def check_verdicts(self) -> dict[str, str]:
        assert self.report is not None, self.output[-3000:]
        return {c["id"]: c["verdict"] for c in self.report["checks"]}


class SuiteRun:
    """`python -m pytest conformance ARGS` started now; `finish()` waits for it."""

    def __init__(self, args: list[str], out: Path | None, client_keys: Path,
                 timeout: float = 300.0) -> None:
        self.out = out
        self.timeout = timeout
        report = [f"--conformance-report={out}"] if out is not None else []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pytest", "conformance", *args, *PLAIN, *report],
            cwd=ROOT, env=environment(client_keys), stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True)

    def finish(self) -> Finished:
        try:
            output, _ = self.proc.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            output, _ = self.proc.communicate()
            raise AssertionError(f"suite run timed out:\n{output[-3000:]}") from None
        return Finished(self.proc.returncode, output, read_report(self.out))


def read_report(out: Path | None) -> dict[str, Any] | None:
    if out is None or not (out / "report.json").is_file():
        return None
    return json.loads((out / "report.json").read_text(encoding="utf-8"))
