"""Run many conformance sessions against mutants of nomyo_ref in one process.

    python -m tests.mutants.driver JOBS.json CLAIMS_DIR

JOBS.json is a list of {"name", "args", "stats", "cwd"}: pytest arguments of one session
(`--impl=tests.mutants.registry:mutant_NAME ...`), where to write what the mutant did
(patching.Stats as JSON), and a fresh working directory the session runs in (a mutant that
writes files, like `keys_saved_without_key_dir`, writes them there, never into the checkout).
Starting Python, importing the suite and loading keys costs more than most narrowed runs, so
tests/mutants/run.py starts a few drivers on the same list: each takes the next job nobody has
claimed yet (an exclusive create in CLAIMS_DIR), so the processes stay busy until the list is
done whatever each job costs. After every session the driver
undoes any patch still applied, so one mutant can never leak into the next session. Hypothesis
shrinking is off: a proof only needs to know THAT a check fails. This module holds no tests.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest


class NoShrink:
    """After the suite loaded its hypothesis profile, load the same without shrinking."""

    @pytest.hookimpl(trylast=True)
    def pytest_configure(self, config: pytest.Config) -> None:
        from hypothesis import Phase, settings

        settings.register_profile(
            "conformance-mutant",
            parent=settings(),
            phases=[Phase.explicit, Phase.reuse, Phase.generate],
            report_multiple_bugs=False,
        )
        settings.load_profile("conformance-mutant")


def run_job(job: dict[str, Any]) -> int:
    """One session; writes the mutant's stats; returns pytest's exit code."""
    from tests.mutants import registry
    from tests.mutants.patching import undo_all

    registry.LAST_STATS.clear()
    cwd = Path(job["cwd"])
    cwd.mkdir(parents=True, exist_ok=True)
    home = os.getcwd()
    os.chdir(cwd)
    started = time.monotonic()
    try:
        code = int(pytest.main(list(job["args"]), plugins=[NoShrink()]))
    finally:
        os.chdir(home)
        leaked = undo_all()
    took = time.monotonic() - started
    stats: dict[str, Any] = (registry.LAST_STATS[-1].to_json() if registry.LAST_STATS else
                             {"mutant": job["name"], "applied": None,
                              "error": "the adapter was never built (no check ran)"})
    stats.update(exit_status=code, seconds=round(took, 2), leaked=leaked)
    Path(job["stats"]).parent.mkdir(parents=True, exist_ok=True)
    Path(job["stats"]).write_text(json.dumps(stats, indent=1), encoding="utf-8")
    print(f"== {job['name']}: exit {code} in {took:.1f} s", flush=True)
    return code


def claim(claims: Path, index: int) -> bool:
    """Take job `index` unless another driver took it first."""
    try:
        os.close(os.open(claims / str(index), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        return False
    return True


def main(jobs_file: str, claims_dir: str) -> int:
    """Run every job not claimed by another driver; exit status 0 unless a session could not
    start (usage error)."""
    jobs = json.loads(Path(jobs_file).read_text(encoding="utf-8"))
    claims = Path(claims_dir)
    claims.mkdir(parents=True, exist_ok=True)
    worst = 0
    for index, job in enumerate(jobs):
        if not claim(claims, index):
            continue
        code = run_job(job)
        if code not in (0, 1):  # 1 = checks failed: what a mutant should cause
            worst = max(worst, code)
    return worst


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
