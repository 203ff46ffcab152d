"""Runs a batch of suite runs in one process: `python -m tests.server.driver JOBS.json`.

Each job is one `pytest conformance --server=... --req=...` run, made with `pytest.main` as
the command line would make it. One process per batch pays for the imports once instead of
once per broken router (there are dozens), which keeps the proof under its time budget; the
batch still runs apart from the test process that serves the routers.

JOBS.json: [{"args": [...], "out": "DIR"}, ...]; each job's exit status is written to
DIR/exit_status.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
from pathlib import Path

import pytest

# no:unraisableexception: its two gc.collect() per run cost a quarter of a second each run
COMMON = ["-p", "no:cacheprovider", "-p", "no:unraisableexception", "-q", "--assert=plain",
          "-W", "ignore"]


def run(jobs: list[dict[str, object]]) -> None:
    for job in jobs:
        out = Path(str(job["out"]))
        out.mkdir(parents=True, exist_ok=True)
        args = ["conformance", *map(str, job["args"]), *COMMON, f"--conformance-report={out}"]
        text = io.StringIO()
        with contextlib.redirect_stdout(text), contextlib.redirect_stderr(text):
            code = int(pytest.main(args))
        (out / "output.txt").write_text(text.getvalue()[-20000:], encoding="utf-8")
        (out / "exit_status").write_text(str(code), encoding="utf-8")


if __name__ == "__main__":
    run(json.loads(Path(sys.argv[1]).read_text(encoding="utf-8")))
