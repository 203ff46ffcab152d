"""spec/requirements.json and spec/protocol.md describe the same requirements, and agree.

The list is what the conformance suite and its report read; the text is what people read.
These tests fail as soon as the two drift apart: an id without its tagged statement, a tag
without an id, a level that is not the keyword of the statement, a section that does not exist.
Since 1.0.1 a requirement may be replaced (a bundle split into several ids): the replaced id stays
listed, loses its tag and points at ids that are tagged; every id added after 1.0 says since when.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "spec"
REQUIREMENTS = SPEC / "requirements.json"
SCHEMA = SPEC / "requirements.schema.json"
PROTOCOL = SPEC / "protocol.md"
CHANGELOG = SPEC / "CHANGELOG.md"

FAMILIES = frozenset({
    "KEY", "DISC", "TLS", "HDR", "PKG", "ENC", "REQ", "SRV", "RSP",
    "CHK", "PID", "ERR", "RTY", "TIER", "MEM", "API", "LOG",
})
LEVELS = ("MUST", "MUST NOT", "SHOULD", "SHOULD NOT", "MAY")
LIST_VERSION = "1.0.1"
# The last number of each family in the 1.0 list: every higher number was added later and must
# carry "since"; no id of 1.0 may claim one.
IDS_OF_1_0 = {
    "KEY": 14, "DISC": 11, "TLS": 11, "HDR": 10, "PKG": 9, "ENC": 10, "REQ": 12, "SRV": 19,
    "RSP": 10, "CHK": 16, "PID": 9, "ERR": 19, "RTY": 14, "TIER": 8, "MEM": 6, "API": 20,
    "LOG": 6,
}

TAG = re.compile(r"\*\*\[([A-Z]+-[0-9]+)\]\*\*")
# The first RFC 2119 key word of a statement; the two-word forms are tried first.
KEYWORD = re.compile(r"\b(MUST NOT|SHOULD NOT|SHALL NOT|MUST|SHOULD|SHALL|MAY|REQUIRED|"
                     r"RECOMMENDED|OPTIONAL)\b")
# "## 7 The package", "### 7.3 Algorithms", "## Appendix A: Example", "### A.1 The step"
HEADING = re.compile(r"^#{1,6}[ \t]+(?:Appendix[ \t]+)?([0-9]+(?:\.[0-9]+)*|[A-Z](?:\.[0-9]+)*)"
                     r"[.:]?[ \t]+\S", re.MULTILINE)
# Where a tagged statement ends: a blank line, a new list item, a heading or a table row.
STATEMENT_END = re.compile(r"\n[ \t]*\n|\n[ \t]*(?:[-*+]|[0-9]+\.)[ \t]|\n#|\n\|")


@cache
def requirements_doc() -> dict[str, Any]:
    return json.loads(REQUIREMENTS.read_text(encoding="utf-8"))


def requirements() -> list[dict[str, Any]]:
    return requirements_doc()["requirements"]


@cache
def protocol_text() -> str:
    return PROTOCOL.read_text(encoding="utf-8")


def tagged_statements(text: str) -> list[tuple[str, str]]:
    """(id, statement text) for every tag, the statement running to its natural end."""
    matches = list(TAG.finditer(text))
    out = []
    for i, match in enumerate(matches):
        start = match.end()
        limit = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        end = STATEMENT_END.search(text, start, limit)
        out.append((match.group(1), text[start:end.start() if end else limit]))
    return out


def first_keyword(statement: str) -> str | None:
    match = KEYWORD.search(" ".join(statement.split()))
    return match.group(1) if match else None


def numbered_sections(text: str) -> set[str]:
    return {m.group(1) for m in HEADING.finditer(text)}


def active_ids() -> set[str]:
    """Ids that are judged and tagged: neither retired nor replaced."""
    return {r["id"] for r in requirements()
            if not r.get("retired", False) and "replaced_by" not in r}


def replaced() -> dict[str, list[str]]:
    return {r["id"]: r["replaced_by"] for r in requirements() if "replaced_by" in r}


def is_new(rid: str) -> bool:
    family, number = rid.split("-")
    return int(number) > IDS_OF_1_0[family]


# --- the list itself ------------------------------------------------------------------------

def test_requirements_validate_against_schema() -> None:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema).validate(requirements_doc())


@pytest.mark.parametrize(
    "broken",
    [
        {"id": "PID-0"},
        {"id": "pid-1"},
        {"id": "NOPE-1"},
        {"level": "MUST_NOT"},
        {"applies_to": "proxy"},
        {"summary": ""},
        {"testable": "yes"},
        {"retired": 1},
        {"extra": True},
        {"replaced_by": []},
        {"replaced_by": "PID-2"},
        {"replaced_by": ["pid-2"]},
        {"replaced_by": ["PID-2", "PID-2"]},
        {"replaced_by": ["PID-2"], "retired": True},
        {"since": 1.1},
        {"since": "soon"},
    ],
)
def test_schema_rejects_broken_entries(broken: dict[str, Any]) -> None:
    """The schema is a real gate: each single defect below must be refused."""
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    good = {"id": "PID-1", "level": "MUST", "section": "12.1", "summary": "x",
            "applies_to": "client", "testable": True}
    validator = jsonschema.Draft202012Validator(schema)
    assert validator.is_valid({"version": LIST_VERSION, "requirements": [good]})
    assert validator.is_valid({"version": LIST_VERSION, "requirements": [
        {**good, "replaced_by": ["PID-2"], "since": "1.0.1"}]})
    assert not validator.is_valid({"version": LIST_VERSION,
                                   "requirements": [{**good, **broken}]})


def test_list_version_is_the_documents() -> None:
    """The list and the text name the same revision (1.0.1 is wire-compatible with 1.0)."""
    assert requirements_doc()["version"] == LIST_VERSION
    assert f"revision {LIST_VERSION}" in protocol_text().split("\n## ", 1)[0]


def test_ids_are_unique() -> None:
    counts = Counter(r["id"] for r in requirements())
    assert [i for i, n in counts.items() if n > 1] == []


def test_families_are_known() -> None:
    assert {r["id"].split("-")[0] for r in requirements()} <= FAMILIES


def test_numbers_within_a_family_have_no_gaps() -> None:
    """Ids are handed out in order; a gap means an id was deleted instead of retired."""
    numbers: dict[str, set[int]] = {}
    for r in requirements():
        family, number = r["id"].split("-")
        numbers.setdefault(family, set()).add(int(number))
    gaps = {f: sorted(set(range(1, max(ns) + 1)) - ns) for f, ns in numbers.items()}
    assert {f: g for f, g in gaps.items() if g} == {}


def test_every_family_is_used() -> None:
    assert {rid.split("-")[0] for rid in active_ids()} == FAMILIES


# --- list and text agree -------------------------------------------------------------------

def test_every_active_id_is_tagged_in_protocol() -> None:
    tagged = {i for i, _ in tagged_statements(protocol_text())}
    assert sorted(active_ids() - tagged) == []


def test_every_tag_is_a_listed_active_id() -> None:
    tagged = {i for i, _ in tagged_statements(protocol_text())}
    assert sorted(tagged - active_ids()) == []


def test_each_id_is_tagged_once() -> None:
    counts = Counter(i for i, _ in tagged_statements(protocol_text()))
    assert {i: n for i, n in counts.items() if n > 1} == {}


def test_retired_ids_are_not_tagged() -> None:
    retired = {r["id"] for r in requirements() if r.get("retired", False)}
    tagged = {i for i, _ in tagged_statements(protocol_text())}
    assert sorted(retired & tagged) == []


def test_replaced_ids_are_not_tagged() -> None:
    tagged = {i for i, _ in tagged_statements(protocol_text())}
    assert sorted(set(replaced()) & tagged) == []


def test_replacements_are_active_ids() -> None:
    """A replaced id points only at listed ids that are themselves judged (no chains, no
    retired targets, never itself), so a check can always be re-charged in one step."""
    active = active_ids()
    bad = {rid: [t for t in targets if t not in active or t == rid]
           for rid, targets in replaced().items()}
    assert {rid: ts for rid, ts in bad.items() if ts} == {}


def test_a_replacement_keeps_the_family_side() -> None:
    """A split never moves a client duty to the server or back (both may cover either)."""
    side = {r["id"]: r["applies_to"] for r in requirements()}
    odd = {rid: [t for t in targets if "both" not in (side[rid], side[t])
                 and side[t] != side[rid]]
           for rid, targets in replaced().items()}
    assert {rid: ts for rid, ts in odd.items() if ts} == {}


def test_new_ids_carry_since_and_old_ids_do_not() -> None:
    wrong = {r["id"]: r.get("since") for r in requirements()
             if is_new(r["id"]) != ("since" in r)}
    assert wrong == {}
    assert {r.get("since") for r in requirements() if "since" in r} == {LIST_VERSION}


def test_changelog_names_every_new_and_replaced_id() -> None:
    """The lead routes checks from the changelog's "New ids": it must be complete."""
    text = CHANGELOG.read_text(encoding="utf-8")
    assert "## New ids" in text
    new_ids_part = text.split("## New ids", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"\b([A-Z]+-[0-9]+)\b", new_ids_part))
    missing = sorted(r["id"] for r in requirements()
                     if ("since" in r or "replaced_by" in r) and r["id"] not in listed)
    assert missing == []


def test_protocol_names_each_replaced_id_beside_its_replacements() -> None:
    """A reader who meets an old id (in a report, an older check) finds where it went: appendix
    B's table lists every replaced id with its level and exactly its replacements."""
    text = protocol_text()
    appendix = text.split("## Appendix B", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| ([A-Z]+-[0-9]+) \| ([A-Z ]+) \| ([^|]+) \|", appendix, re.MULTILINE)
    table = {rid: (level, re.findall(r"[A-Z]+-[0-9]+", targets)) for rid, level, targets in rows}
    levels = {r["id"]: r["level"] for r in requirements()}
    assert table == {rid: (levels[rid], targets) for rid, targets in replaced().items()}


def test_sections_exist_as_numbered_headings() -> None:
    sections = numbered_sections(protocol_text())
    missing = {r["id"]: r["section"] for r in requirements() if r["section"] not in sections}
    assert missing == {}


def test_tag_sits_in_its_listed_section() -> None:
    """The statement tagged X appears under the heading that requirements.json names."""
    text = protocol_text()
    headings = [(m.start(), m.group(1)) for m in HEADING.finditer(text)]
    listed = {r["id"]: r["section"] for r in requirements()}
    wrong = {}
    for match in TAG.finditer(text):
        before = [number for pos, number in headings if pos < match.start()]
        where = before[-1] if before else None
        if listed.get(match.group(1)) not in (None, where):
            wrong[match.group(1)] = (listed[match.group(1)], where)
    assert wrong == {}


def test_level_matches_first_keyword_of_statement() -> None:
    levels = {r["id"]: r["level"] for r in requirements()}
    mismatched = {}
    for rid, statement in tagged_statements(protocol_text()):
        found = first_keyword(statement)
        if rid in levels and found != levels[rid]:
            mismatched[rid] = (levels[rid], found)
    assert mismatched == {}


def test_statements_use_only_the_five_levels() -> None:
    """SHALL, REQUIRED, RECOMMENDED and OPTIONAL are not used, so levels map one to one."""
    odd = {rid: kw for rid, s in tagged_statements(protocol_text())
           if (kw := first_keyword(s)) is not None and kw not in LEVELS}
    assert odd == {}


# --- the helpers can fail ------------------------------------------------------------------

def test_helpers_detect_drift() -> None:
    """The extraction helpers see a wrong level, a stray tag and a missing section."""
    text = (
        "## 1 Intro\n\n### 1.1 Rules\n\n**[ABC-1]** A client MUST NOT do x. It MAY do y.\n\n"
        "- **[ABC-2]** A server SHOULD do z.\n- **[ABC-3]** A server MAY\n  do w.\n"
    )
    statements = dict(tagged_statements(text))
    assert first_keyword(statements["ABC-1"]) == "MUST NOT"
    assert first_keyword(statements["ABC-2"]) == "SHOULD"
    assert first_keyword(statements["ABC-3"]) == "MAY"
    assert numbered_sections(text) == {"1", "1.1"}
    assert first_keyword("no key word here") is None


# --- content that other parts rely on --------------------------------------------------------

def test_summaries_are_single_crisp_lines() -> None:
    long_or_multiline = [r["id"] for r in requirements()
                         if len(r["summary"]) > 120 or "\n" in r["summary"]]
    assert long_or_multiline == []


def test_protocol_cites_rfc2119_and_rfc8174() -> None:
    text = protocol_text()
    assert "RFC 2119" in text
    assert "RFC 8174" in text
    assert "BCP 14" in text


def test_no_placeholders_in_the_spec() -> None:
    text = protocol_text() + REQUIREMENTS.read_text(encoding="utf-8")
    assert re.findall(r"\b(?:TODO|TBD|FIXME|XXX)\b", text) == []


@pytest.mark.parametrize(
    "fact",
    [
        '"1.0"', '"hybrid-aes256-rsa4096"', '"RSA-OAEP-SHA256"', '"AES-256-GCM"',
        "/pki/public_key", "/v1/chat/secure_completion", "application/octet-stream",
        "X-Payload-ID", "X-Public-Key", "X-Security-Tier", "Authorization: Bearer",
        "10,485,760", "65537", "private_key.pem", "public_key.pem", "0600", "0644", "0700",
        "client_keys", "processed_at", "reasoning_content", "tool_calls", "memory_protection",
        "cuda_device", "device_hash", "response_status", "Retry-After",
        '"decryption failed"', '"streaming is not supported"',
        "https://api.nomyo.ai", "https://api.nomyo.ai:12434",
    ],
)
def test_protocol_states_the_wire_facts(fact: str) -> None:
    assert fact in protocol_text()
