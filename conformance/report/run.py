"""End of a run: stale expected failures, the update of the list, the report files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conformance import expected as expected_mod
from conformance.files import write_atomic
from conformance.report import html, model, terminal
from conformance.state import ConformanceState
from conformance.verdicts import NON_STRICT, NOT_APPLICABLE, PASS


def finish_run(session: pytest.Session, state: ConformanceState) -> None:
    config = session.config
    if state.impl_spec is None or not (state.collected or state.results):
        return
    if config.getoption("list_checks"):
        return
    updating = config.getoption("update_expected_failures")
    state.stale = state.expected.stale(state.collected)
    if updating:
        _update_expected(state)
    elif state.stale:
        state.messages.append(
            f"stale expected-failure entries in {state.expected_path} (the check no longer "
            f"exists): {', '.join(state.stale)}"
        )
        if session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
    if not updating and (
        state.stale or any(r.listed and r.verdict == "PASS" for r in state.results.values())
    ):
        state.messages.append(
            "to rewrite the expected-failures file from this run: rerun with "
            "--update-expected-failures"
        )
    wanted = state.requirements.matching(state.req_patterns) if state.req_patterns else None
    state.document = model.build(
        requirements=state.requirements,
        results=list(state.results.values()),
        impl_text=state.impl_spec.text,
        impl_info=state.adapter_info,
        profile=state.profile,
        expected_file=str(state.expected_path) if state.expected_path else None,
        stale=state.stale,
        wanted=wanted,
        exit_status=int(session.exitstatus),
    )
    _fail_unfounded(session, state)
    out_dir = config.getoption("conformance_report")
    if out_dir:
        write_report(Path(out_dir), state.document)
        state.messages.append(f"conformance report written to {out_dir}/report.{{json,html}}")


def _fail_unfounded(session: pytest.Session, state: ConformanceState) -> None:
    """A run never passes on nothing: unconfirmed BLOCKED verdicts or no PASS at all fail it."""
    document = state.document
    assert document is not None
    problems: list[str] = []
    unconfirmed = model.unconfirmed_blocks(document["root_causes"])
    if unconfirmed:
        problems.append(
            "checks are BLOCKED by requirements that did not fail in this run "
            f"({', '.join(unconfirmed)}): their verdicts are unconfirmed (run those "
            "requirements' checks too, e.g. without --req)"
        )
    if state.results and not any(r.verdict == PASS for r in state.results.values()):
        problems.append(
            "no check passed: the implementation took part in nothing that could be judged "
            "(every check NOT APPLICABLE, BLOCKED or failing)"
        )
    if not problems:
        return
    state.messages.extend(problems)
    if session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    document["summary"]["exit_status"] = int(session.exitstatus)
    document["summary"]["problems"] = problems


def write_report(directory: Path, document: dict[str, Any]) -> None:
    write_atomic(directory / "report.json", json.dumps(document, indent=2, sort_keys=False) + "\n")
    write_atomic(directory / "report.html", html.render([document]))


def _update_expected(state: ConformanceState) -> None:
    config = state.config
    path = state.expected_path
    if path is None and state.impl_spec is not None:
        path = state.impl_spec.expected_failures_home
    if path is None:
        state.messages.append(
            "--update-expected-failures: no file to update; give --expected-failures=FILE"
        )
        return
    strict = config.getoption("conformance_strict")
    old = state.expected.entries
    # judged = ran to a verdict; a NOT APPLICABLE check keeps its entry (nothing learned)
    ran = {r.check_id for r in state.results.values() if r.verdict != NOT_APPLICABLE}
    reasons = {cid: why for cid, why in old.items() if cid not in ran and cid not in state.stale}
    for result in state.results.values():
        if result.failing and (strict or result.verdict != NON_STRICT):
            reasons[result.check_id] = old.get(result.check_id) or (
                f"TODO: explain ({result.verdict} {', '.join(result.requirements)})"
            )
    write_atomic(path, expected_mod.render(reasons, reasons, "", state.expected.preamble))
    state.messages.append(f"expected failures rewritten: {path} ({len(reasons)} entries)")


def terminal_summary(reporter: Any, state: ConformanceState) -> None:
    if state.document is None and not state.messages:
        return
    terminal.write(reporter, state.document, state.messages)
