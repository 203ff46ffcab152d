"""report.html: one self-contained page (no external assets), one column per implementation.

A person should rather look at this than read a log: requirements as rows, colour per
verdict, failures first, the expected/actual text and the minimal failing example one click
away, and a filter to hide what passes.
"""

from __future__ import annotations

import html
import json
from typing import Any

from conformance.report.model import ORDER, natural
from conformance.verdicts import FAILING

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa;
max-width:100%;overflow-wrap:anywhere}
h1{font-size:1.4em;margin:0 0 .3em}
table{border-collapse:collapse;width:100%;background:#fff;table-layout:fixed}
table.summary{table-layout:auto}col.rid{width:9em}col.sum{width:28%}
th,td{border:1px solid #ddd;padding:.3em .5em;vertical-align:top;text-align:left}
th{background:#f0f0f0;position:sticky;top:0}
.v{display:inline-block;padding:0 .4em;border-radius:3px;font-weight:600;font-size:.85em}
.PASS{background:#d8f5d8;color:#155d15}.FAIL{background:#f9d0d0;color:#8a1010}
.ERRORED{background:#fde2c0;color:#7a4100}.NON-STRICT{background:#fff3b0;color:#6b5800}
.NA{background:#e8e8e8;color:#555}.BLOCKED{background:#dfe7f7;color:#1d3b7a}
.NOCHECK{background:#fff;color:#8a1010;border:1px dashed #8a1010}
pre{white-space:pre-wrap;overflow-wrap:anywhere;word-break:break-word;margin:.3em 0;
font-size:.85em;background:#f6f6f6;padding:.3em;max-width:100%}
.id{font-family:monospace;overflow-wrap:anywhere}.causes li{margin:.2em 0}
.lvl{font-size:.8em;color:#666}
.summary td{border:none;padding:.1em .6em}.note{color:#666;font-size:.85em}
details summary{cursor:pointer}
"""

JS = """
function f(){var only=document.getElementById('only').checked;
document.querySelectorAll('tr.req').forEach(function(r){
r.style.display=(only&&r.dataset.bad!=='1')?'none':'';});}
"""


def _cls(verdict: str) -> str:
    classes = {"NOT APPLICABLE": "NA", "no check": "NOCHECK", "not testable": "NA"}
    return classes.get(verdict, verdict)


def _badge(verdict: str, expected: bool = False) -> str:
    label = html.escape(verdict) + (" (expected)" if expected else "")
    return f'<span class="v {_cls(verdict)}">{label}</span>'


def _cell(entry: dict[str, Any] | None, checks: dict[str, dict[str, Any]]) -> str:
    if entry is None:
        return "<td>-</td>"
    parts = [_badge(entry["verdict"], entry.get("expected_failure", False))]
    details = []
    for check_id in entry["checks"]:
        check = checks.get(check_id, {})
        charge = (check.get("charges") or {}).get(entry["id"]) or {
            "verdict": check.get("verdict", "?"),
            "message": check.get("message", ""),
        }
        verdict = charge["verdict"]
        text = f"{_badge(verdict)} <span class='id'>{html.escape(check_id)}</span>"
        if check.get("expected_failure") and verdict in FAILING:
            text += f" <i>expected failure: {html.escape(check['expected_failure'])}</i>"
        if charge.get("message") and verdict != "PASS":
            text += f"<pre>{html.escape(charge['message'])}</pre>"
        if check.get("example") and verdict in FAILING:
            text += f"<pre>{html.escape(check['example'])}</pre>"
        details.append(f"<div>{text}</div>")
    if details:
        opened = " open" if entry["verdict"] in (*FAILING, "BLOCKED") else ""
        count = len(details)
        parts.append(
            f"<details{opened}><summary>{count} check{'s' if count != 1 else ''}</summary>"
            + "".join(details)
            + "</details>"
        )
    return "<td>" + "".join(parts) + "</td>"


def _summary(doc: dict[str, Any]) -> str:
    impl = doc["implementation"]
    name = html.escape(f"{impl.get('name', impl['impl'])} {impl.get('version', '')}".strip())
    counts = doc["summary"]["requirements"]
    cells = "".join(f"<td>{_badge(v)} {n}</td>" for v in ORDER if (n := counts.get(v, 0)))
    verdict = doc["summary"].get("headline") or (
        "conforming" if not doc["summary"].get("must_failed") else "NOT conforming"
    )
    extra = ""
    exp = doc.get("expected_failures", {})
    if exp.get("stale") or exp.get("unexpected_passes"):
        stale = ", ".join(exp.get("stale", []) + exp.get("unexpected_passes", []))
        extra = f"<td>expected-failures list out of date: {html.escape(stale)}</td>"
    return (
        f"<tr><th>{name}</th><td>{html.escape(_how(impl))}</td>"
        f"<td><b>{verdict}</b></td>{cells}{extra}</tr>"
    )


def _how(impl: dict[str, Any]) -> str:
    text = str(impl.get("impl", ""))
    return text if impl.get("role") == "server" else f"--impl={text}"


def _causes(documents: list[dict[str, Any]]) -> str:
    """Per implementation: the failed requirements that block other checks, fix-first order."""
    parts = []
    for doc in documents:
        causes = doc.get("root_causes") or []
        if not causes:
            continue
        impl = doc["implementation"]
        name = html.escape(str(impl.get("name", impl["impl"])))
        items = "".join(
            f"<li>fix <b class='id'>{html.escape(c['requirement'])}</b> first "
            f"({html.escape(c['verdict'])}): it blocks {len(c['blocks_checks'])} check(s) of "
            f"{html.escape(', '.join(c['blocks_requirements']))}</li>"
            for c in causes
        )
        parts.append(f"<div class='causes'><b>{name}: root causes</b><ul>{items}</ul></div>")
    return "".join(parts)


def _column_head(impl: dict[str, Any]) -> str:
    name = impl.get("name", impl["impl"])
    version = impl.get("version", "")
    via = ""
    if impl["impl"] != name:
        via = f"<div class='lvl'>--impl={html.escape(impl['impl'])}</div>"
    title = f"{name} {version}".strip() if version and version != "unknown" else name
    return f"<th>{html.escape(title)}{via}</th>"


def render(documents: list[dict[str, Any]]) -> str:
    """The page for one or several reports (one column each)."""
    rows: dict[str, dict[str, Any]] = {}
    per_doc: list[tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]] = []
    for doc in documents:
        entries = {e["id"]: e for e in doc["requirements"]}
        per_doc.append((entries, {c["id"]: c for c in doc["checks"]}))
        for entry in doc["requirements"]:
            rows.setdefault(entry["id"], entry)

    def rank(rid: str) -> tuple[int, int, tuple[str, int]]:
        verdicts = [d[0][rid]["verdict"] for d in per_doc if rid in d[0]]
        best = min((ORDER.index(v) for v in verdicts if v in ORDER), default=len(ORDER))
        level = rows[rid]["level"]
        return (best, 0 if level.startswith("MUST") else 1, natural(rid))

    head = "".join(_column_head(d["implementation"]) for d in documents)
    body = []
    for rid in sorted(rows, key=rank):
        info = rows[rid]
        bad = any(
            rid in d[0] and d[0][rid]["verdict"] in (*FAILING, "BLOCKED", "no check")
            for d in per_doc
        )
        cells = "".join(_cell(entries.get(rid), checks) for entries, checks in per_doc)
        body.append(
            f'<tr class="req" data-bad="{1 if bad else 0}"><td class="id">{html.escape(rid)}'
            f'<div class="lvl">{html.escape(info["level"])} &sect;{html.escape(info["section"])}'
            f"</div></td><td>{html.escape(info['summary'])}</td>{cells}</tr>"
        )
    summaries = "".join(_summary(d) for d in documents)
    generated = html.escape(", ".join(d.get("generated_at", "") for d in documents))
    note = html.escape(documents[0]["note"]) if documents else ""
    data = html.escape(json.dumps([d["implementation"] for d in documents]))
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<title>NOMYO conformance report</title>"
        f"<style>{CSS}</style><script>{JS}</script></head><body>"
        "<h1>NOMYO secure completion protocol: conformance</h1>"
        f"<table class='summary'>{summaries}</table>{_causes(documents)}"
        "<p><label><input type='checkbox' id='only' onchange='f()'> show only failures and "
        "MUSTs without a check</label></p>"
        f"<table><colgroup><col class='rid'><col class='sum'></colgroup>"
        f"<thead><tr><th>requirement</th><th>summary</th>{head}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table>"
        f"<p class='note'>{note} Generated {generated}.</p>"
        f"<script type='application/json' id='implementations'>{data}</script>"
        "</body></html>\n"
    )
