"""The one list of requirements (spec/requirements.json), as the suite and the report read it.

Found in the repository's spec/ for a source checkout, or in conformance/_spec/ in an
installed wheel (pyproject force-includes spec/ there).
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
CANDIDATES = (
    PACKAGE_DIR / "_spec" / "requirements.json",
    PACKAGE_DIR.parent / "spec" / "requirements.json",
)
STRICT_LEVELS = frozenset({"MUST", "MUST NOT"})


@dataclass(frozen=True)
class Requirement:
    id: str
    level: str
    summary: str
    section: str = ""
    applies_to: str = "client"
    testable: bool = True
    retired: bool = False
    replaced_by: tuple[str, ...] = ()

    @property
    def judged(self) -> bool:
        """Still in force: neither retired nor replaced (1.0.1 splits keep the old id)."""
        return not (self.retired or self.replaced_by)

    @property
    def strict(self) -> bool:
        """A MUST / MUST NOT: its failure fails the run."""
        return self.level in STRICT_LEVELS


class RequirementsError(Exception):
    """The requirements list is missing or malformed."""


def default_path() -> Path | None:
    for candidate in CANDIDATES:
        if candidate.is_file():
            return candidate
    return None


@dataclass(frozen=True)
class Requirements:
    """The list, by id, in file order."""

    version: str
    by_id: dict[str, Requirement]
    source: str

    def __contains__(self, req_id: object) -> bool:
        return req_id in self.by_id

    def __getitem__(self, req_id: str) -> Requirement:
        return self.by_id[req_id]

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.by_id.values())

    def matching(self, patterns: Iterable[str]) -> set[str]:
        """Ids matching any glob pattern (e.g. "PID-*")."""
        pats = list(patterns)
        return {rid for rid in self.by_id if any(fnmatch.fnmatchcase(rid, p) for p in pats)}


def load(path: str | Path | None = None) -> Requirements:
    """Load and validate the list; a clear RequirementsError says what is wrong."""
    chosen = Path(path) if path is not None else default_path()
    if chosen is None:
        where = " or ".join(str(c) for c in CANDIDATES)
        raise RequirementsError(f"requirements list not found (looked for {where})")
    try:
        data = json.loads(chosen.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RequirementsError(f"cannot read requirements list {chosen}: {exc}") from exc
    items = data.get("requirements") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise RequirementsError(f"{chosen}: expected an object with a 'requirements' list")
    by_id: dict[str, Requirement] = {}
    for index, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            raise RequirementsError(f"{chosen}: requirement #{index} has no string 'id'")
        rid = item["id"]
        if rid in by_id:
            raise RequirementsError(f"{chosen}: duplicate requirement id {rid}")
        by_id[rid] = Requirement(
            id=rid,
            level=str(item.get("level", "MUST")),
            summary=str(item.get("summary", "")),
            section=str(item.get("section", "")),
            applies_to=str(item.get("applies_to", "client")),
            testable=bool(item.get("testable", True)),
            retired=bool(item.get("retired", False)),
            replaced_by=tuple(str(r) for r in item.get("replaced_by") or ()),
        )
    return Requirements(version=str(data.get("version", "")), by_id=by_id, source=str(chosen))
