"""Expected-failures files: the known failures of one implementation, one check id a line.

Format (in the spirit of protobuf's failure lists)::

    # comment lines and blank lines are ignored
    test_pid::test_payload_id_is_fresh   # why it fails (kept by --update-expected-failures)

A listed failure does not fail the run (reported as expected, with its reason); a listed
check that now passes, or that no longer exists in a module that was collected, fails the
run, so the list never goes stale.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

HEADER = (
    "# Expected failures: one stable check id per line, '# reason' after it.\n"
    "# A listed check that passes or no longer exists fails the run.\n"
    "# Rewrite from a run with: pytest conformance --impl=... --update-expected-failures\n"
)


class ExpectedFailuresError(Exception):
    """The file cannot be read or has a malformed line."""


@dataclass
class ExpectedFailures:
    """Check id -> reason ("" when none given)."""

    entries: dict[str, str] = field(default_factory=dict)
    path: Path | None = None
    preamble: str = ""  # the leading comment block, kept when the file is rewritten

    def __contains__(self, check_id: object) -> bool:
        return check_id in self.entries

    def reason(self, check_id: str) -> str:
        return self.entries.get(check_id, "")

    def stale(self, collected: Iterable[str]) -> list[str]:
        """Listed ids missing from the collection, among modules that were collected."""
        ids = set(collected)
        modules = {i.partition("::")[0] for i in ids}
        return sorted(e for e in self.entries if e.partition("::")[0] in modules and e not in ids)


def parse(text: str, source: str = "<text>") -> ExpectedFailures:
    entries: dict[str, str] = {}
    preamble: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            if not entries:
                preamble.append(raw.rstrip() + "\n")
            continue
        check_id, _, reason = line.partition(" #")
        check_id = check_id.strip()
        if not check_id or (" " in check_id and "[" not in check_id):
            raise ExpectedFailuresError(f"{source}:{number}: not a check id: {raw!r}")
        entries[check_id] = reason.strip()
    return ExpectedFailures(entries, preamble="".join(preamble))


def load(path: str | Path) -> ExpectedFailures:
    chosen = Path(path)
    try:
        text = chosen.read_text(encoding="utf-8")
    except OSError as exc:
        raise ExpectedFailuresError(f"cannot read expected failures {chosen}: {exc}") from exc
    loaded = parse(text, str(chosen))
    loaded.path = chosen
    return loaded


def render(
    failing: Iterable[str], reasons: Mapping[str, str], default_reason: str, preamble: str = ""
) -> str:
    """The file text listing `failing`, keeping known reasons and the file's own preamble."""
    lines = [preamble or HEADER]
    for check_id in sorted(set(failing)):
        reason = reasons.get(check_id) or default_reason
        lines.append(f"{check_id}  # {reason}\n" if reason else f"{check_id}\n")
    return "".join(lines)

