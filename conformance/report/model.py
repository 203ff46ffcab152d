"""The run's verdict as one JSON document (schema in README, section conformance).

A requirement's verdict is the worst of its checks'; a requirement no check names is
"no check", or "not testable" when the spec says no black-box check can judge it. Check and
requirement ids are stable across releases, so two reports (two implementations, or two
versions of one) can be compared line by line.
"""

from __future__ import annotations

import datetime as _dt
from importlib import metadata
from typing import Any

from conformance.requirements import Requirements
from conformance.state import CheckResult
from conformance.verdicts import FAIL, FAILING, NO_CHECK, NON_STRICT, NOT_TESTABLE, worst

FORMAT = "nomyo-conformance-report/1"
SECRETS_NOTE = (
    "Messages quote the implementation's own exception texts; the LOG checks verify that "
    "they carry no plaintext, keys or API keys."
)
ORDER = ["FAIL", "ERRORED", "NON-STRICT", NO_CHECK, "PASS", "NOT APPLICABLE", NOT_TESTABLE]


def suite_version() -> str:
    try:
        return metadata.version("nomyo-conformance")
    except metadata.PackageNotFoundError:
        return "unknown"


def requirement_entry(req: Any, checks: list[CheckResult]) -> dict[str, Any]:
    """A SHOULD failed by a check that also covers a MUST is NON-STRICT for the SHOULD."""
    verdicts = [NON_STRICT if c.verdict == FAIL and not req.strict else c.verdict for c in checks]
    verdict = worst(verdicts) or (NO_CHECK if req.testable else NOT_TESTABLE)
    failing = [c for c in checks if c.failing]
    expected = bool(failing) and all(c.listed for c in failing)
    return {
        "id": req.id,
        "level": req.level,
        "section": req.section,
        "summary": req.summary,
        "applies_to": req.applies_to,
        "testable": req.testable,
        "verdict": verdict,
        "expected_failure": expected,
        "checks": [c.check_id for c in checks],
    }


def natural(req_id: str) -> tuple[str, int]:
    """KEY-2 before KEY-10."""
    family, _, number = req_id.rpartition("-")
    return (family, int(number)) if number.isdigit() else (req_id, 0)


def sort_key(entry: dict[str, Any]) -> tuple[int, int, tuple[str, int]]:
    """MUST failures first, then the other failures, then the rest, in id order."""
    verdict = entry["verdict"]
    rank = ORDER.index(verdict) if verdict in ORDER else len(ORDER)
    if verdict == NO_CHECK and not (entry["level"].startswith("MUST") and entry["testable"]):
        rank = len(ORDER)  # an untestable or SHOULD without check needs less attention
    return (rank, 0 if entry["level"].startswith("MUST") else 1, natural(entry["id"]))


def build(
    *,
    requirements: Requirements,
    results: list[CheckResult],
    impl_text: str,
    impl_info: dict[str, Any] | None,
    profile: str | None,
    expected_file: str | None,
    stale: list[str],
    wanted: set[str] | None,
    exit_status: int,
) -> dict[str, Any]:
    """The report document. `wanted` narrows the requirements listed (--req)."""
    by_req: dict[str, list[CheckResult]] = {}
    for result in results:
        for rid in result.requirements:
            by_req.setdefault(rid, []).append(result)
    entries = [
        requirement_entry(req, by_req.get(req.id, []))
        for req in requirements
        if not req.retired
        and (wanted is None or req.id in wanted)
        # the suite judges clients: a server-only requirement appears only if checked
        and (req.applies_to != "server" or req.id in by_req)
    ]
    entries.sort(key=sort_key)
    summary: dict[str, int] = dict.fromkeys(ORDER, 0)
    for entry in entries:
        summary[entry["verdict"]] = summary.get(entry["verdict"], 0) + 1
    checks = sorted((r.to_json() for r in results), key=lambda c: c["id"])
    must_failed = any(
        e["verdict"] in FAILING and e["level"].startswith("MUST") and not e["expected_failure"]
        for e in entries
    )
    return {
        "format": FORMAT,
        "generated_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "suite": {
            "version": suite_version(),
            "requirements_version": requirements.version,
            "profile": profile,
        },
        "implementation": {"impl": impl_text, **(impl_info or {})},
        "summary": {
            "requirements": summary,
            "checks": _count(c["verdict"] for c in checks),
            "must_failed": must_failed,
            "exit_status": exit_status,
        },
        "requirements": entries,
        "checks": checks,
        "expected_failures": {
            "file": expected_file,
            "listed_failures": [c["id"] for c in checks if c["expected_failure"]],
            "unexpected_passes": [c["id"] for c in checks if c["unexpected_pass"]],
            "stale": stale,
        },
        "note": SECRETS_NOTE,
    }


def _count(verdicts: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for verdict in verdicts:
        counts[verdict] = counts.get(verdict, 0) + 1
    return counts
