"""The per-requirement verdict at the end of the terminal output, failures first."""

from __future__ import annotations

import textwrap
from typing import Any

from conformance.verdicts import FAILING, NO_CHECK, NOT_APPLICABLE

WIDTH = 15  # the verdict column


def _checks_by_id(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["id"]: c for c in document["checks"]}


def _indent(text: str, limit: int = 12) -> list[str]:
    lines = text.splitlines() or [""]
    if len(lines) > limit:
        lines = [*lines[:limit], "..."]
    return [" " * WIDTH + "  " + line for line in lines]


def requirement_lines(
    entry: dict[str, Any], checks: dict[str, dict[str, Any]], shown: set[str]
) -> list[str]:
    """One requirement; a failing check's details only the first time it is shown."""
    verdict = entry["verdict"]
    label = verdict + (" (expected)" if entry["expected_failure"] else "")
    head = f"{label:<{WIDTH}} {entry['id']:<8} {entry['level']:<10} {entry['summary']}"
    lines = [head]
    if verdict in FAILING:
        for check_id in entry["checks"]:
            check = checks.get(check_id)
            if check is None or check["verdict"] not in FAILING:
                continue
            reason = check.get("expected_failure")
            tag = f" [expected failure: {reason}]" if reason else ""
            if check_id in shown:
                lines.append(" " * WIDTH + f"  {check['verdict']} {check_id} (see above)")
                continue
            shown.add(check_id)
            lines.append(" " * WIDTH + f"  {check['verdict']} {check_id}{tag}")
            lines.extend(_indent(check["message"]))
            if check.get("example"):
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


def write(reporter: Any, document: dict[str, Any] | None, messages: list[str]) -> None:
    """Failures first (MUST before SHOULD), then MUSTs without a check, then the rest."""
    if document is not None:
        impl = document["implementation"]
        name = f"{impl.get('name', impl['impl'])} {impl.get('version', '')}".strip()
        reporter.write_sep("=", f"conformance verdict: {name} (--impl={impl['impl']})")
        checks = _checks_by_id(document)
        quiet = getattr(reporter, "verbosity", 0) < 0
        shown: set[str] = set()
        failing: list[str] = []
        others: list[str] = []
        no_check: list[str] = []
        for entry in document["requirements"]:  # sorted: failures first
            verdict = entry["verdict"]
            if verdict == NO_CHECK:
                if entry["level"].startswith("MUST") and entry["testable"]:
                    no_check.append(entry["id"])
            elif verdict in FAILING:
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
