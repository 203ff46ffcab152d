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
from conformance.verdicts import (
    BLOCKED,
    FAIL,
    FAILING,
    NO_CHECK,
    NON_STRICT,
    NOT_TESTABLE,
    PASS,
    worst,
)

FORMAT = "nomyo-conformance-report/1"
SECRETS_NOTE = (
    "Messages quote the implementation's own exception texts; the LOG checks verify that "
    "they carry no plaintext, keys or API keys."
)
ORDER = ["FAIL", "ERRORED", "NON-STRICT", BLOCKED, NO_CHECK, "PASS", "NOT APPLICABLE", NOT_TESTABLE]


def suite_version() -> str:
    try:
        return metadata.version("nomyo-conformance")
    except metadata.PackageNotFoundError:
        return "unknown"


def requirement_entry(req: Any, checks: list[CheckResult]) -> dict[str, Any]:
    """A requirement's verdict is the worst of what its checks charged to it (a check judging
    several requirements charges each its own verdict)."""
    verdicts = [c.verdict_for(req.id) for c in checks]
    verdicts = [NON_STRICT if v == FAIL and not req.strict else v for v in verdicts]
    verdict = worst(verdicts) or (NO_CHECK if req.testable else NOT_TESTABLE)
    failing = [c for c in checks if c.verdict_for(req.id) in FAILING]
    expected = bool(failing) and all(c.listed for c in failing)
    blockers = sorted(
        {
            c.charges[req.id]["blocked_by"]
            for c in checks
            if c.charges.get(req.id, {}).get("blocked_by")
        }
    )
    return {
        "id": req.id,
        "level": req.level,
        "section": req.section,
        "summary": req.summary,
        "applies_to": req.applies_to,
        "testable": req.testable,
        "verdict": verdict,
        "expected_failure": expected,
        "blocked_by": blockers,
        "checks": [c.check_id for c in checks],
    }


def root_causes(entries: list[dict[str, Any]], results: list[CheckResult]) -> list[dict[str, Any]]:
    """Failed requirements that block other checks, most blocking first: fix these first."""
    verdicts = {e["id"]: e["verdict"] for e in entries}
    blocks: dict[str, set[str]] = {}
    blocked_reqs: dict[str, set[str]] = {}
    for result in results:
        for rid, charge in result.charges.items():
            by = charge.get("blocked_by")
            if by and charge["verdict"] == BLOCKED:
                blocks.setdefault(by, set()).add(result.check_id)
                blocked_reqs.setdefault(by, set()).add(rid)
    causes = [
        {
            "requirement": rid,
            "verdict": verdicts.get(rid, "not run"),
            "blocks_checks": sorted(checks),
            "blocks_requirements": sorted(blocked_reqs[rid], key=natural),
        }
        for rid, checks in blocks.items()
    ]
    causes.sort(key=lambda c: (-len(c["blocks_checks"]), natural(c["requirement"])))
    return causes


def unconfirmed_blocks(causes: list[dict[str, Any]]) -> list[str]:
    """Blocking requirements that did not fail in this run: a BLOCKED check then hides a
    verdict nobody gave, so the run fails."""
    return [c["requirement"] for c in causes if c["verdict"] not in FAILING]


def headline(entries: list[dict[str, Any]], checks: list[dict[str, Any]]) -> str:
    """'conforming' only when no MUST fails, errs or is blocked and something passed."""
    musts = [e for e in entries if e["level"].startswith("MUST")]
    bad = [e for e in musts if e["verdict"] in (*FAILING, BLOCKED)]
    if not any(c["verdict"] == PASS for c in checks):
        return "not judged: no check passed"
    if not bad:
        unchecked = [e for e in musts if e["verdict"] == NO_CHECK and e["testable"]]
        if unchecked:
            return f"conforming as far as checked: {len(unchecked)} MUST(s) have no check"
        return "conforming"
    known = [e for e in bad if e["expected_failure"]]
    if len(known) == len(bad) and all(e["verdict"] != BLOCKED for e in bad):
        return f"not conforming: {len(known)} known failure{'s' if len(known) != 1 else ''}"
    return f"NOT conforming: {len(bad)} MUST requirement{'s' if len(bad) != 1 else ''} not met"


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
    # A client run lists client and shared requirements, a server run server and shared
    # ones; a requirement of the other side appears only when a check names it.
    other_side = "client" if (impl_info or {}).get("role") == "server" else "server"
    entries = [
        requirement_entry(req, by_req.get(req.id, []))
        for req in requirements
        if req.judged
        and (wanted is None or req.id in wanted)
        and (req.applies_to != other_side or req.id in by_req)
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
    causes = root_causes(entries, results)
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
            "headline": headline(entries, checks),
            "exit_status": exit_status,
        },
        "root_causes": causes,
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
