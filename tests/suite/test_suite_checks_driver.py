"""Run many short conformance sessions in one process (the proof runs of test_suite_checks).

Starting a Python process, importing the suite and making keys costs more than most narrowed
proof runs themselves, so test_suite_checks hands a batch of runs to this driver::

    python -m tests.suite.test_suite_checks_driver JOBS.json

JOBS.json is a list of {"name": ..., "args": [...pytest arguments...]}; each run writes its
verdicts with --conformance-report into a directory named in its args. Hypothesis shrinking is
switched off in these runs: a proof only needs to know THAT a check fails, and shrinking a
failure costs dozens of extra round trips. This module holds no tests.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest


class _NoShrink:
    """After the suite loaded its hypothesis profile, load the same without shrinking."""

    @pytest.hookimpl(trylast=True)
    def pytest_configure(self, config: pytest.Config) -> None:
        from hypothesis import Phase, settings

        current = settings()
        settings.register_profile(
            "conformance-proof",
            parent=current,
            phases=[Phase.explicit, Phase.reuse, Phase.generate],
            report_multiple_bugs=False,
        )
        settings.load_profile("conformance-proof")


def run_jobs(jobs_file: str) -> int:
    """Run each job's pytest session in turn; exit status 0 unless a run could not start."""
    jobs = json.loads(Path(jobs_file).read_text(encoding="utf-8"))
    worst = 0
    for job in jobs:
        started = time.monotonic()
        code = int(pytest.main(list(job["args"]), plugins=[_NoShrink()]))
        took = time.monotonic() - started
        print(f"== {job['name']}: exit {code} in {took:.1f} s", flush=True)
        if code not in (0, 1):  # 1 = checks failed: expected for broken adapters
            worst = max(worst, code)
    return worst


if __name__ == "__main__":
    sys.exit(run_jobs(sys.argv[1]))
