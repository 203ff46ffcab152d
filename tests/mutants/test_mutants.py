"""Requirement-level proof on the real reference client: every mutant fails the suite.

Each mutant of tests/mutants/registry.py breaks one clause of nomyo_ref. Here the unmutated
reference runs the whole suite first (it must pass every requirement a mutant breaks, or the
kill proves nothing); then the suite runs against each mutant, narrowed to the checks that
judged the mutant's requirements in that run, in two driver processes overlapping on two cores
(tests/mutants/run.py), and each requirement the mutant breaks must come out FAIL, NON-STRICT
or ERRORED.

A mutant the checks do not kill yet is listed, with why, in tests/mutants/survivors.txt; a
listed survivor that gets killed fails here too, so the list only shrinks. A line whose reason
starts with "flaky:" names a kill that depends on the machine's load (a check's timing bar):
it is reported, not asserted, until the check is fixed. The release command
`python -m tests.mutants.run --full` runs every mutant against the whole suite.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import pytest

from tests.mutants import run
from tests.mutants.patching import MutantNoLongerApplies, Patcher, _package_modules
from tests.mutants.registry import REGISTRY, UNMUTATED

ROOT = Path(__file__).resolve().parents[2]
JUDGED_LEVELS = frozenset({"MUST", "MUST NOT", "SHOULD", "SHOULD NOT"})


def _requirements() -> dict[str, dict[str, Any]]:
    data = json.loads((ROOT / "spec" / "requirements.json").read_text(encoding="utf-8"))
    return {r["id"]: r for r in data["requirements"]}


def _judged_client_requirements() -> set[str]:
    """Testable client (or both-sides) MUST/SHOULD requirements still in force."""
    return {rid for rid, r in _requirements().items()
            if r.get("applies_to", "client") in ("client", "both") and r.get("testable", True)
            and r.get("level") in JUDGED_LEVELS and not r.get("replaced_by")}


# --- fast checks of the registry itself ------------------------------------------------------


def test_every_judged_requirement_has_a_mutant() -> None:
    """Every testable client MUST/SHOULD is broken by some mutant, or UNMUTATED says why."""
    covered = {rid for m in REGISTRY.values() for rid in m.reqs}
    missing = sorted(_judged_client_requirements() - covered - set(UNMUTATED))
    assert not missing, f"requirements no mutant breaks (add one, or a reason to UNMUTATED): " \
        f"{missing}"


def test_mutants_name_requirements_in_force() -> None:
    """A mutant names existing client requirements that are not replaced (a replaced id is no
    longer judged: the mutant must name what replaced it)."""
    known = _requirements()
    bad = {}
    for m in REGISTRY.values():
        for rid in m.reqs:
            entry = known.get(rid)
            if entry is None:
                bad[f"{m.name}:{rid}"] = "unknown id"
            elif entry.get("replaced_by"):
                bad[f"{m.name}:{rid}"] = f"replaced by {', '.join(entry['replaced_by'])}"
            elif entry.get("applies_to", "client") not in ("client", "both"):
                bad[f"{m.name}:{rid}"] = "a server requirement"
    assert not bad, bad


def test_unmutated_lists_only_uncovered_requirements() -> None:
    covered = {rid for m in REGISTRY.values() for rid in m.reqs}
    known = _requirements()
    stale = {rid for rid in UNMUTATED if rid in covered or rid not in known}
    assert not stale, f"UNMUTATED entries that have a mutant or do not exist: {sorted(stale)}"


def test_survivor_list_names_real_mutants() -> None:
    """Every line of survivors.txt names a mutant and one of its requirements."""
    bad = [f"{name} {rid}" for name, rid in run.load_survivors()
           if name not in REGISTRY or rid not in REGISTRY[name].reqs]
    assert not bad, f"survivors.txt lines naming no mutant/requirement pair: {bad}"


def _bindings() -> dict[tuple[str, ...], Any]:
    """Every attribute of nomyo_ref's modules and of their classes (and functions' defaults
    and classes' bases): what a mutant may change and must put back."""
    found: dict[tuple[str, ...], Any] = {}
    for module in _package_modules():
        for name, value in vars(module).items():
            found[(module.__name__, name)] = value
            if inspect.isclass(value) and value.__module__.startswith("nomyo_ref"):
                found[(module.__name__, name, "__bases__")] = value.__bases__
                for attr, member in vars(value).items():
                    found[(module.__name__, name, attr)] = member
                    if inspect.isfunction(member):
                        found[(module.__name__, name, attr, "defaults")] = (
                            member.__defaults__, dict(member.__kwdefaults__ or {}))
    return found


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_mutant_applies_and_undoes(name: str) -> None:
    """The mutant still finds what it patches (else: 'mutant X no longer applies'), and undoing
    it restores nomyo_ref exactly (one mutant must never leak into the next run)."""
    import importlib

    for module in ("nomyo_ref.chat", "nomyo_ref.client"):  # what the mutants patch is loaded
        importlib.import_module(module)

    before = _bindings()
    patcher = Patcher(name)
    try:
        REGISTRY[name].patch(patcher)
    except MutantNoLongerApplies as exc:
        pytest.fail(f"mutant {name} no longer applies: {exc}")
    finally:
        patcher.undo()
    after = _bindings()
    changed = sorted(".".join(k) for k in set(before) | set(after)
                     if before.get(k) is not after.get(k) and before.get(k) != after.get(k))
    assert not changed, f"mutant {name} left nomyo_ref changed after undo: {changed[:10]}"


# --- the suite against every mutant ------------------------------------------------------------


@pytest.fixture(scope="module")
def outcomes(request: pytest.FixtureRequest,
             tmp_path_factory: pytest.TempPathFactory) -> dict[str, run.Outcome]:
    """Run every selected mutant (and the unmutated baseline) against its requirements'
    checks (`-k NAME` runs only that mutant's session)."""
    chosen = sorted({item.callspec.params["name"] for item in request.session.items
                     if getattr(item, "originalname", "") == "test_mutant_is_killed"
                     and hasattr(item, "callspec")}) or sorted(REGISTRY)
    base = tmp_path_factory.mktemp("mutants")
    return run.run_narrowed(chosen, base, processes=2, timeout=1500)


def _explain(name: str, got: run.Outcome, rid: str) -> str:
    stats = got.stats
    fired = stats.get("fired", 0)
    never = " (never: no check drove the input that triggers it)" if not fired else ""
    return (f"{rid}={got.verdicts.get(rid, 'not in report')}; checks failing: "
            f"{got.failing_checks.get(rid, [])}; the mutated behaviour took effect "
            f"{fired} time(s){never}; calls {stats.get('calls', {})}; {got.log}")


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_mutant_is_killed(outcomes: dict[str, run.Outcome], name: str) -> None:
    """The checks of the requirements this mutant breaks fail on it (or it is a listed
    survivor, which must then still survive)."""
    baseline = outcomes[run.BASELINE]
    assert baseline.report, f"the unmutated baseline run produced no report: {baseline.log}"
    got = outcomes[name]
    mutant = REGISTRY[name]
    assert got.stats.get("applied") is not False, \
        f"mutant {name} no longer applies: {got.stats.get('error')}"
    assert got.report, f"no report for mutant {name}: {got.log or 'the driver died'}"
    survivors = run.load_survivors()
    problems = []
    for rid in mutant.reqs:
        listed = survivors.get((name, rid))
        if listed is not None and listed.startswith("flaky:"):
            continue  # killed or not depending on the machine's load: the check is at fault
        if listed is not None:
            if got.killed(rid):
                problems.append(f"{rid}: listed as a survivor in survivors.txt but now killed "
                                f"({got.verdicts[rid]}): remove the line '{name} {rid} ...'")
            continue
        if not got.killed(rid):
            problems.append(f"{rid}: survives ({mutant.description}): {_explain(name, got, rid)}")
        elif baseline.verdicts.get(rid) != "PASS":
            problems.append(f"{rid}: killed, but the unmutated reference does not pass it "
                            f"either ({baseline.verdicts.get(rid)}): the kill proves nothing")
    assert not problems, f"mutant {name}:\n  " + "\n  ".join(problems)
