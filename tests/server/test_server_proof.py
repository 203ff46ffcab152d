"""Proof that every server check can fail: each broken router fails the suite on its own
requirement ids, and every check of the server set is failed by at least one of them.

All broken routers are served by this process on one port (each under its own path); the
suite runs against them in two batch processes (tests/server/driver.py), each run narrowed
with --req to the router's own ids (tests/server/background.py starts them).
"""

from __future__ import annotations

import pytest

from tests.server.background import Background
from tests.server.defects import ALL, Defect
from tests.server.runs import Finished

FAILED = {"FAIL", "NON-STRICT"}
MUST = {"MUST", "MUST NOT"}


@pytest.mark.parametrize("defect", ALL, ids=lambda d: d.name)
def test_broken_router_fails_on_its_own_requirements(background: Background,
                                                     defect: Defect) -> None:
    run = background.proof()[defect.name]
    verdicts = run.verdicts()
    missed = {rid: verdicts.get(rid, "not judged") for rid in defect.fails
              if verdicts.get(rid) not in FAILED}
    assert not missed, f"{defect.name} should fail {missed}:\n{run.output[-3000:]}"
    assert run.report is not None
    levels = {r["id"]: r["level"] for r in run.report["requirements"]}
    if any(levels[rid] in MUST for rid in defect.fails):
        assert run.code == 1, run.output[-3000:]
    problems = run.report.get("summary", {}).get("problems", [])
    assert not [p for p in problems if "unconfirmed" in p], problems  # a BLOCKED unconfirmed


def test_every_server_check_is_failed_by_some_broken_router(
    background: Background, mock_default: Finished
) -> None:
    every = set(mock_default.check_verdicts())
    failed = {check for run in background.proof().values() if run.report is not None
              for check, verdict in run.check_verdicts().items() if verdict in FAILED}
    assert every, mock_default.output[-3000:]
    assert sorted(every - failed) == []
