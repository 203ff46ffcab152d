"""The per-requirement verdict at the end of the terminal output, failures first."""

from __future__ import annotations

import textwrap
from typing import Any

from conformance.verdicts import BLOCKED, FAILING, NO_CHECK, NOT_APPLICABLE

WIDTH = 15  # the verdict column


def _checks_by_id(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["id"]: c for c in document["checks"]}


def _indent(text: str, limit: int = 12) -> list[str]:
    lines = text.splitlines() or [""]
    if len(lines) > limit:
        lines = [*lines[:limit], "..."]
    return [" " * WIDTH + "  " + line for line in lines]


def charge_of(check: dict[str, Any], req_id: str) -> dict[str, Any]:
    """What `check` charged to `req_id` (older reports: the check's own verdict)."""
    charge = (check.get("charges") or {}).get(req_id)
    return charge or {"verdict": check["verdict"], "message": check.get("message", "")}


def requirement_lines(
    entry: dict[str, Any], checks: dict[str, dict[str, Any]], shown: set[tuple[str, str]]
) -> list[str]:
    """One requirement with what each failing check charged to it; a text already shown
    under another requirement is referred to, not repeated."""
    verdict = entry["verdict"]
    label = verdict + (" (expected)" if entry["expected_failure"] else "")
    head = f"{label:<{WIDTH}} {entry['id']:<8} {entry['level']:<10} {entry['summary']}"
    lines = [head]
    if verdict in FAILING or verdict == BLOCKED:
        for check_id in entry["checks"]:
            check = checks.get(check_id)
            if check is None:
                continue
            charge = charge_of(check, entry["id"])
            if charge["verdict"] not in (*FAILING, BLOCKED):
                continue
            reason = check.get("expected_failure")
            tag = f" [expected failure: {reason}]" if reason else ""
            key = (check_id, charge.get("message", ""))
            if key in shown:
                lines.append(" " * WIDTH + f"  {charge['verdict']} {check_id} (see above)")
                continue
            shown.add(key)
            lines.append(" " * WIDTH + f"  {charge['verdict']} {check_id}{tag}")
            lines.extend(_indent(charge.get("message", ""), limit=2 if verdict == BLOCKED else 12))
            if check.get("example") and charge["verdict"] in FAILING:
                lines.extend(_indent(check["example"]))
    elif verdict == NOT_APPLICABLE:
        reasons = {checks[c]["message"] for c in entry["checks"] if c in checks}
        lines.extend(_indent("; ".join(sorted(r for r in reasons if r))[:300], limit=2))
    return lines


def _no_check_lines(ids: list[str]) -> list[str]:
    """MUSTs without a check, as one wrapped list (visible without drowning the failures)."""
    if not ids:
        return []
    head = f"{NO_CHECK:<{WIDTH}} {len(ids)} MUST requirement(s) no collected check names:"
    body = textwrap.wrap(", ".join(ids), 100 - WIDTH - 2)
    return [head, *(" " * WIDTH + "  " + line for line in body)]


def _how(impl: dict[str, Any]) -> str:
    """How the subject was named on the command line (a client's --impl, a server's URL)."""
    text = str(impl.get("impl", ""))
    return text if impl.get("role") == "server" else f"--impl={text}"


def root_cause_lines(document: dict[str, Any], limit: int = 5) -> list[str]:
    """'fix ENC-3 first: it blocks 40 checks', most blocking first."""
    causes = document.get("root_causes") or []
    lines = []
    for cause in causes[:limit]:
        count = len(cause["blocks_checks"])
        reqs = ", ".join(cause["blocks_requirements"][:8])
        more = " ..." if len(cause["blocks_requirements"]) > 8 else ""
        lines.append(
            f"fix {cause['requirement']} first ({cause['verdict']}): it blocks {count} "
            f"check{'s' if count != 1 else ''} of {reqs}{more}"
        )
    if len(causes) > limit:
        lines.append(f"... and {len(causes) - limit} more blocking requirements (report.json)")
    return lines


def write(reporter: Any, document: dict[str, Any] | None, messages: list[str]) -> None:
    """Failures first (MUST before SHOULD), then MUSTs without a check, then the rest."""
    if document is not None:
        impl = document["implementation"]
        name = f"{impl.get('name', impl['impl'])} {impl.get('version', '')}".strip()
        reporter.write_sep("=", f"conformance verdict: {name} ({_how(impl)})")
        summary = document["summary"]
        if summary.get("headline"):
            reporter.write_line(f"verdict: {summary['headline']}")
        for line in root_cause_lines(document):
            reporter.write_line(line)
        checks = _checks_by_id(document)
        quiet = getattr(reporter, "verbosity", 0) < 0
        shown: set[tuple[str, str]] = set()
        failing: list[str] = []
        others: list[str] = []
        no_check: list[str] = []
        for entry in document["requirements"]:  # sorted: failures first
            verdict = entry["verdict"]
            if verdict == NO_CHECK:
                if entry["level"].startswith("MUST") and entry["testable"]:
                    no_check.append(entry["id"])
            elif verdict in FAILING or verdict == BLOCKED:
                failing.extend(requirement_lines(entry, checks, shown))
            elif not quiet:
                others.extend(requirement_lines(entry, checks, shown))
        for line in failing + _no_check_lines(no_check) + others:
            reporter.write_line(line if len(line) <= 400 else line[:400] + " ...")
        counts = document["summary"]["requirements"]
        text = ", ".join(f"{n} {v}" for v, n in counts.items() if n)
        reporter.write_line(f"requirements: {text}")
        reporter.write_line(document["note"])
    for message in messages:
        reporter.write_line(message)
