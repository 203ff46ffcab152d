"""From pytest's phase reports to check verdicts, across the xdist boundary.

Where a test runs (in-process, or on an xdist worker), `record_phase` judges each phase and
stores a small JSON-able record in `report.user_properties` (which xdist carries to the
controller); it also applies the run policy to pytest's own outcome: a listed expected
failure and (without --strict) a NON-STRICT failure do not fail the run, a listed check
that passes does. Where the run is reported, `ResultCollector` gathers the records.
"""

from __future__ import annotations

from typing import Any

import pytest

from conformance.charging import BLOCKED_PREFIX, Blocked, charged_ids, messages_by_id
from conformance.state import CheckResult, ConformanceState
from conformance.verdicts import (
    BLOCKED,
    FAIL,
    FAILING,
    NON_STRICT,
    NOT_APPLICABLE,
    PASS,
    PROPERTY,
    RANK,
    failure_message,
    falsifying_example,
    phase_verdict,
    skip_reason,
    stable_id,
    without_fixtures,
    worst,
)


def charge_verdicts(
    state: ConformanceState, ids: list[str], verdict: str, exc: BaseException | None, message: str
) -> dict[str, dict[str, Any]]:
    """Each requirement id of the check with its own verdict and message.

    A failure charged to some ids (expect.clause) fails only those; the others PASS when the
    check ran to its end, and are BLOCKED by the failed id when it stopped before reaching
    their assertions. Without charging, a failure counts against every id of the check.
    """
    known = state.requirements
    all_ids = tuple(ids)

    def level_verdict(rid: str) -> str:
        return FAIL if rid in known and known[rid].strict else NON_STRICT

    if verdict == BLOCKED:
        judged = getattr(exc, "judged", frozenset())
        blocker = getattr(exc, "by", None)
        return {
            rid: _charge(PASS, "") if rid in judged else _charge(BLOCKED, message, blocker)
            for rid in ids
        }
    if verdict not in (FAIL, NON_STRICT):
        return {rid: _charge(verdict, message) for rid in ids}
    failed, stopped = charged_ids(exc, all_ids)
    texts = messages_by_id(exc, all_ids)
    blocked = getattr(exc, "blocked", None)
    first = next((rid for rid in ids if rid in failed), None)
    charges: dict[str, dict[str, Any]] = {}
    for rid in ids:
        if rid in failed:
            charges[rid] = _charge(level_verdict(rid), "\n".join(texts.get(rid, [message])))
        elif isinstance(blocked, Blocked) and rid in blocked.judged:
            charges[rid] = _charge(PASS, "")
        elif isinstance(blocked, Blocked):
            charges[rid] = _charge(BLOCKED, str(blocked.msg), blocked.by)
        elif stopped and first is not None:
            why = f"{BLOCKED_PREFIX}{first}: the check stopped at {first}'s failure first"
            charges[rid] = _charge(BLOCKED, why, first)
        else:
            charges[rid] = _charge(PASS, "")
    return charges


def _charge(verdict: str, message: str, blocked_by: str | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"verdict": verdict, "message": message}
    if blocked_by:
        entry["blocked_by"] = blocked_by
    return entry


def record_phase(
    state: ConformanceState, item: pytest.Item, call: pytest.CallInfo[None], report: Any
) -> None:
    ids = [str(a) for m in item.iter_markers("req") for a in m.args]
    known = state.requirements
    strict = any(known[r].strict for r in ids if r in known)
    exc = call.excinfo.value if call.excinfo is not None else None
    verdict = phase_verdict(report.when, report.outcome, exc, strict)
    if verdict is None:
        return
    check_id = stable_id(item.nodeid)
    if verdict in (NOT_APPLICABLE, BLOCKED):
        message = skip_reason(report.longrepr)
        example = None
    elif verdict in FAILING:
        crash = getattr(getattr(report.longrepr, "reprcrash", None), "message", "")
        message = failure_message(exc, crash or str(report.longrepr)[-2000:])
        example = without_fixtures(
            falsifying_example(exc, report.longreprtext), getattr(item, "fixturenames", ())
        )
    else:
        message, example = "", None
    charges = charge_verdicts(state, ids, verdict, exc, message)
    verdict = worst(c["verdict"] for c in charges.values()) or verdict
    listed = check_id in state.expected
    reason = state.expected.reason(check_id) if listed else None
    config = item.config
    updating = config.getoption("update_expected_failures")
    if listed and verdict in FAILING:
        report.outcome = "skipped"
        report.wasxfail = f"expected failure: {reason or 'listed'}"
    elif verdict == NON_STRICT and not config.getoption("conformance_strict"):
        report.outcome = "skipped"
        report.wasxfail = "NON-STRICT: a SHOULD requirement is not met"
    elif listed and verdict == PASS and not updating:
        report.outcome = "failed"
        report.longrepr = (
            f"{check_id} is listed in {state.expected_path} as an expected failure "
            f"({reason or 'no reason'}) but passed: remove the line, or rerun with "
            "--update-expected-failures"
        )
    record: dict[str, Any] = {
        "id": check_id,
        "nodeid": item.nodeid,
        "requirements": ids,
        "when": report.when,
        "verdict": verdict,
        "charges": charges,
        "message": message,
        "example": example,
        "listed": listed,
        "reason": reason,
        "duration": float(getattr(report, "duration", 0.0)),
    }
    if state.adapter_info is not None:
        record["impl"] = state.adapter_info
    report.user_properties.append((PROPERTY, record))


class ResultCollector:
    """Gathers verdict records from every report this process sees (controller side)."""

    def __init__(self, state: ConformanceState) -> None:
        self.state = state
        self._seen: set[tuple[str, str]] = set()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        for entry in report.user_properties:
            if not (isinstance(entry, (tuple, list)) and len(entry) == 2):
                continue
            key, record = entry
            if key != PROPERTY or not isinstance(record, dict):
                continue
            marker = (record["nodeid"], record["when"])
            if marker in self._seen:
                continue
            self._seen.add(marker)
            self.add(record)

    def add(self, record: dict[str, Any]) -> None:
        state = self.state
        result = state.results.get(record["nodeid"])
        if result is None:
            result = CheckResult(record["id"], record["nodeid"], list(record["requirements"]))
            state.results[record["nodeid"]] = result
        verdict = record["verdict"]
        before = result.verdict if result.verdicts else None
        result.verdicts.append(verdict)
        if before is None or RANK[verdict] > RANK[before]:
            result.message = record.get("message") or ""
            result.example = record.get("example")
        for rid, charge in (record.get("charges") or {}).items():
            held = result.charges.get(rid)
            if held is None or RANK[charge["verdict"]] > RANK[held["verdict"]]:
                result.charges[rid] = dict(charge)
        result.listed = bool(record.get("listed"))
        result.expected_reason = record.get("reason")
        result.duration += float(record.get("duration") or 0.0)
        if record.get("impl") and state.adapter_info is None:
            state.adapter_info = record["impl"]
