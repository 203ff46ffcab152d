"""The suite's mutation score: mutmut over nomyo_ref's protocol core (a release command).

    python -m tests.mutants.score                 # fresh run, ~1 h on 2 cores
    python -m tests.mutants.score --resume        # continue an interrupted run
    python -m tests.mutants.score --report-only   # rewrite the survivor list from a run

mutmut (configured in pyproject.toml, [tool.mutmut]) mutates protocol.py, crypto.py, urls.py,
retry.py, errors.py and keys.py and judges each mutant by the conformance suite alone:
`pytest conformance --impl=nomyo_ref --strict-should` (SHOULD failures count: nomyo_ref
follows every SHOULD), never by tests/. mutmut runs only the checks that reach the mutated
function (it records them in a first run with every check) and stops at the first failure.

It runs in a scratch copy (--workdir; mutmut writes a mutants/ tree next to the sources it
mutates, which must not appear in the checkout others work in) with pre-made keys. At the end
it writes tests/mutants/mutmut-survivors.txt: the score and every surviving mutant with its
diff, marked from tests/mutants/mutmut-annotations.txt as *equivalent* (with why) or as
needing a stronger check (which one); an unmarked survivor is UNREVIEWED.

Score = killed / (killed + surviving - equivalent), where killed counts mutmut's kills and
timeouts, and surviving counts mutants no check failed and mutants no check even reaches.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import fnmatch
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.mutants.run import write_keys

ROOT = Path(__file__).resolve().parents[2]
COPIED = ("nomyo_ref", "conformance", "mock_router", "spec", "pyproject.toml",
          "tests/__init__.py", "tests/mutants/__init__.py", "tests/mutants/mutmut_plugin.py")
HERE = Path(__file__).resolve().parent
ANNOTATIONS = HERE / "mutmut-annotations.txt"
SURVIVORS = HERE / "mutmut-survivors.txt"
KILLED = frozenset({"killed", "timeout", "segfault"})
LIVE = frozenset({"survived", "no tests", "suspicious"})


@dataclass(frozen=True)
class Annotation:
    pattern: str
    verdict: str  # "equivalent" or "check"
    reason: str


def load_annotations(path: Path = ANNOTATIONS) -> list[Annotation]:
    """`GLOB  equivalent|check  reason` lines (first matching glob wins)."""
    found = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(None, 2)
        if len(parts) < 3 or parts[1] not in ("equivalent", "check"):
            raise ValueError(f"{path}:{number}: expected 'GLOB equivalent|check reason'")
        found.append(Annotation(*parts))
    return found


def annotation_for(name: str, annotations: Sequence[Annotation]) -> Annotation | None:
    return next((a for a in annotations if fnmatch.fnmatchcase(name, a.pattern)), None)


def prepare(workdir: Path, fresh: bool) -> None:
    """Copy the sources into the scratch directory (mtimes kept: mutmut compares them)."""
    if fresh and workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in COPIED:
        source, target = ROOT / name, workdir / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True, ignore=ignore)
        else:
            shutil.copy2(source, target)
    if not (workdir / "keys" / "server.pem").is_file():
        (workdir / "keys").mkdir(exist_ok=True)
        write_keys(workdir / "keys")


def run_mutmut(workdir: Path, max_children: int, timeout: float) -> int:
    mutmut = Path(sys.executable).with_name("mutmut")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MUTANT_UNDER_TEST")}
    env.update(NOMYO_CONFORMANCE_SERVER_KEY=str(workdir / "keys" / "server.pem"),
               NOMYO_CONFORMANCE_CLIENT_KEY_DIR=str(workdir / "keys" / "client_keys"))
    with (workdir / "mutmut.log").open("w") as log:
        proc = subprocess.Popen([str(mutmut), "run", "--max-children", str(max_children)],
                                cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=30)
            if proc.poll() is None:
                proc.kill()
            return -1


def results(workdir: Path) -> dict[str, str]:
    """mutant name -> mutmut status, from the .meta files of the run."""
    from mutmut.stats import status_by_exit_code

    found: dict[str, str] = {}
    for meta in sorted((workdir / "mutants" / "nomyo_ref").glob("*.py.meta")):
        data = json.loads(meta.read_text(encoding="utf-8"))
        for name, code in data.get("exit_code_by_key", {}).items():
            found[name] = status_by_exit_code[code]
    return found


def diffs(workdir: Path, names: Sequence[str]) -> dict[str, str]:
    """The changed lines of each mutant (mutmut's own diff, run inside the work directory)."""
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    shown: dict[str, str] = {}
    home = os.getcwd()
    os.chdir(workdir)
    try:
        for name in names:
            try:
                text = get_diff_for_mutant(name)
            except Exception as exc:  # a diff is a courtesy; its absence is said
                text = f"(no diff: {type(exc).__name__})"
            lines = [line for line in text.splitlines()
                     if line[:1] in "+-" and not line.startswith(("+++", "---"))]
            shown[name] = "\n".join(lines) or text
    finally:
        os.chdir(home)
    return shown


def report(workdir: Path, seconds: float | None, out: Path = SURVIVORS) -> dict[str, object]:
    """Score the run and write the survivor list; returns the summary."""
    status = results(workdir)
    annotations = load_annotations()
    killed = sorted(n for n, s in status.items() if s in KILLED)
    live = sorted(n for n, s in status.items() if s in LIVE)
    other = sorted(n for n, s in status.items() if s not in KILLED | LIVE)
    marks = {n: annotation_for(n, annotations) for n in live}
    equivalent = [n for n in live if marks[n] and marks[n].verdict == "equivalent"]
    needs = [n for n in live if marks[n] and marks[n].verdict == "check"]
    unreviewed = [n for n in live if marks[n] is None]
    judged = len(killed) + len(live) - len(equivalent)
    score = 100.0 * len(killed) / judged if judged else 0.0
    summary: dict[str, object] = {
        "date": _dt.date.today().isoformat(), "mutants": len(status), "killed": len(killed),
        "surviving": len(live), "equivalent": len(equivalent), "needs_check": len(needs),
        "unreviewed": len(unreviewed), "not_run": len(other),
        "score": round(score, 1), "seconds": None if seconds is None else round(seconds)}
    shown = diffs(workdir, live)
    lines = [
        "# mutmut over nomyo_ref's protocol core, judged by `pytest conformance --impl=nomyo_ref",
        "# --strict-should` alone. Written by `python -m tests.mutants.score`; do not edit",
        "# (mark survivors in tests/mutants/mutmut-annotations.txt instead).",
        "#",
        f"# {summary['date']}: {len(status)} mutants, {len(killed)} killed, {len(live)} "
        f"surviving ({len(equivalent)} equivalent, {len(needs)} needing a stronger check, "
        f"{len(unreviewed)} unreviewed), {len(other)} not run",
        f"# score: {score:.1f} % of the non-equivalent mutants killed"
        + (f"; run took {seconds / 60:.0f} min" if seconds else ""),
        "",
    ]
    for name in live:
        mark = marks[name]
        verdict = ("UNREVIEWED" if mark is None else
                   "equivalent" if mark.verdict == "equivalent" else "needs a stronger check")
        lines.append(f"{name}  [{status[name]}]  {verdict}"
                     + (f": {mark.reason}" if mark else ""))
        lines.extend(f"    {diff_line}" for diff_line in shown[name].splitlines())
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.mutants.score", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path,
                        default=Path(tempfile.gettempdir()) / "nomyo-mutmut",
                        help="scratch copy where mutmut runs (default: %(default)s)")
    parser.add_argument("--max-children", type=int, default=2)
    parser.add_argument("--resume", action="store_true",
                        help="keep the previous run's results (default: start afresh)")
    parser.add_argument("--report-only", action="store_true",
                        help="only score the run in --workdir and write the survivor list")
    parser.add_argument("--timeout", type=float, default=2 * 3600.0, metavar="SECONDS")
    args = parser.parse_args(argv)
    seconds = None
    if not args.report_only:
        prepare(args.workdir, fresh=not args.resume)
        started = time.monotonic()
        code = run_mutmut(args.workdir, args.max_children, args.timeout)
        seconds = time.monotonic() - started
        if code != 0:
            print(f"mutmut exited with {code}; see {args.workdir / 'mutmut.log'}")
    summary = report(args.workdir, seconds)
    print(json.dumps(summary))
    print(f"survivors: {SURVIVORS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
