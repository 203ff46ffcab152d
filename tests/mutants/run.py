"""Run the conformance suite against the registry's mutants and say which ones it kills.

CI (tests/mutants/test_mutants.py) first runs the unmutated reference (`mutant_none`) against
the whole suite, then each mutant against exactly the checks that judged its requirements in
that run (the checks naming them, and the checks charging them without naming them); the
release command runs each mutant against the whole suite::

    python -m tests.mutants.run            # narrowed runs, like CI (~3 min on 2 cores)
    python -m tests.mutants.run --full     # every mutant against the FULL suite (release)
    python -m tests.mutants.run --full -k 'tls_*' --jobs 2 --out /tmp/mutants

A mutant is *killed* for a requirement when the run's report gives that requirement FAIL,
NON-STRICT (a SHOULD) or ERRORED (the client raised outside the canonical kinds: for a mutant
that makes it crash, that is the suite noticing). A requirement the unmutated reference does
not pass proves nothing, whatever a mutant does to it.
The command prints one line per mutant and writes summary.json into --out.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

ROOT = Path(__file__).resolve().parents[2]
CHECKS = ROOT / "conformance"
KILLED = frozenset({"FAIL", "NON-STRICT", "ERRORED"})
BASELINE = "none"
SURVIVORS_FILE = Path(__file__).with_name("survivors.txt")


@dataclass
class Outcome:
    """What one session against one mutant gave."""

    name: str
    verdicts: dict[str, str] = field(default_factory=dict)  # requirement -> verdict
    failing_checks: dict[str, list[str]] = field(default_factory=dict)  # req -> check ids
    stats: dict[str, Any] = field(default_factory=dict)
    checks: list[dict[str, Any]] = field(default_factory=list)
    report: bool = False
    log: str = ""

    def killed(self, req: str) -> bool:
        return self.verdicts.get(req) in KILLED

    @property
    def failed(self) -> set[str]:
        return {r for r, v in self.verdicts.items() if v in KILLED}


def write_keys(base: Path) -> tuple[Path, Path]:
    """A server key file (2048 bits: fast, enough for every check) and a client key dir."""
    pkcs8 = serialization.PrivateFormat.PKCS8
    server = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    server_path = base / "server.pem"
    server_path.write_bytes(
        server.private_bytes(serialization.Encoding.PEM, pkcs8, serialization.NoEncryption()))
    client_dir = base / "client_keys"
    client_dir.mkdir(mode=0o700)
    client = rsa.generate_private_key(public_exponent=65537, key_size=4096)
    private = client_dir / "private_key.pem"
    private.write_bytes(
        client.private_bytes(serialization.Encoding.PEM, pkcs8, serialization.NoEncryption()))
    private.chmod(0o600)
    (client_dir / "public_key.pem").write_bytes(client.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return server_path, client_dir


def checks_by_requirement(baseline: Outcome) -> dict[str, list[str]]:
    """requirement id -> node ids of the checks that judged it in the baseline's full run:
    the checks naming it and the checks charging it (a check may charge a clause it does not
    name, e.g. HDR-1 when no POST arrives). A narrowed session runs exactly these."""
    found: dict[str, list[str]] = {}
    for check in baseline.checks:
        nodeid = str(ROOT / check["nodeid"])
        for req in {*check.get("requirements", []), *(check.get("charges") or {})}:
            found.setdefault(req, []).append(nodeid)
    return found


def job(name: str, reqs: Sequence[str] | None, base: Path,
        nodeids: Sequence[str] | None = None, workers: int = 0) -> dict[str, Any]:
    """The driver job of one session: mutant `name` against the checks `nodeids` (None: the
    whole suite); `workers` > 1 spreads the session over pytest-xdist workers. Tracebacks are
    not formatted (--tb=no): the report keeps every check's message."""
    out = base / "runs" / (name or BASELINE)
    args = [*(nodeids or [str(CHECKS)]),
            f"--impl=tests.mutants.registry:mutant_{name or BASELINE}",
            "--conformance-report", str(out), "-q", "--tb=no", "-p", "no:warnings",
            "-p", "no:randomly", "-p", "no:cacheprovider", "--rootdir", str(ROOT)]
    if workers > 1 and importlib.util.find_spec("xdist") is not None:
        args += ["-n", str(workers)]
    return {"name": name or BASELINE, "args": args, "stats": str(out / "mutant-stats.json"),
            "cwd": str(base / "cwd" / (name or BASELINE)), "reqs": list(reqs or [])}


def run_jobs(jobs: list[dict[str, Any]], base: Path, processes: int = 2,
             timeout: float = 3600.0, label: str = "jobs") -> dict[str, Outcome]:
    """Run the jobs in `processes` driver processes (each takes the next unclaimed job) and
    read their results."""
    keys = base / "keys"
    if not (keys / "server.pem").is_file():
        keys.mkdir(parents=True, exist_ok=True)
        write_keys(keys)
    server_key, client_dir = keys / "server.pem", keys / "client_keys"
    env = dict(os.environ, NOMYO_CONFORMANCE_SERVER_KEY=str(server_key),
               NOMYO_CONFORMANCE_CLIENT_KEY_DIR=str(client_dir),
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    jobs_file = base / f"{label}.json"
    jobs_file.write_text(json.dumps(jobs), encoding="utf-8")
    procs = []
    for index in range(min(processes, len(jobs))):
        log = (base / f"{label}-driver{index}.log").open("w")
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "tests.mutants.driver", str(jobs_file),
             str(base / f"{label}-claims")],
            cwd=base, env=env, stdout=log, stderr=subprocess.STDOUT))
    deadline = time.monotonic() + timeout
    for proc in procs:
        try:
            proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    logs = "\n".join(p.read_text(errors="replace")
                     for p in sorted(base.glob(f"{label}-driver*.log")))
    return {j["name"]: read_outcome(j, logs) for j in jobs}


def read_outcome(one: dict[str, Any], logs: str) -> Outcome:
    outcome = Outcome(one["name"])
    stats = Path(one["stats"])
    if stats.is_file():
        outcome.stats = json.loads(stats.read_text(encoding="utf-8"))
    report = stats.with_name("report.json")
    if report.is_file():
        data = json.loads(report.read_text(encoding="utf-8"))
        outcome.report = True
        outcome.verdicts = {r["id"]: r["verdict"] for r in data.get("requirements", [])}
        outcome.checks = list(data.get("checks", []))
        for check in outcome.checks:
            if check.get("verdict") not in KILLED:
                continue
            charges = check.get("charges") or {}
            failing = [r for r, c in charges.items() if c.get("verdict") in KILLED]
            for req in failing or check.get("requirements", []):
                outcome.failing_checks.setdefault(req, []).append(check["id"])
    marker = f"== {one['name']}: "
    outcome.log = next((line for line in logs.splitlines() if line.startswith(marker)), "")
    return outcome


#: Mutants whose narrowed run takes many seconds (a stall, concurrent 4096-bit key pairs):
#: started first, so the processes do not end with one long job each.
SLOW = ("retry_after_uncapped", "timeout_ignored", "answer_unbounded", "unlocked_key_fetch")


def _slow_first(names: Iterable[str]) -> list[str]:
    chosen = list(names)
    return [n for n in SLOW if n in chosen] + [n for n in chosen if n not in SLOW]


def run_narrowed(names: Iterable[str], base: Path, processes: int = 2,
                 timeout: float = 3600.0) -> dict[str, Outcome]:
    """CI: the unmutated baseline against the whole suite first (over `processes` xdist
    workers), then each mutant against the checks that judged its requirements there. A
    mutant none of whose requirements any check judged is not run (its verdicts: no check)."""
    from tests.mutants.registry import REGISTRY

    chosen = _slow_first(names)
    started = time.monotonic()
    outcomes = run_jobs([job("", None, base, workers=processes)], base, 1, timeout, "base")
    checks = checks_by_requirement(outcomes[BASELINE])
    jobs = []
    for name in chosen:
        reqs = REGISTRY[name].reqs
        nodeids = sorted({n for r in reqs for n in checks.get(r, ())})
        if nodeids:
            jobs.append(job(name, reqs, base, nodeids))
        else:
            outcomes[name] = Outcome(name, verdicts=dict.fromkeys(reqs, "no check"),
                                     report=True, log="not run: no check judges it")
    left = max(60.0, timeout - (time.monotonic() - started))
    outcomes.update(run_jobs(jobs, base, processes, left, "mutants"))
    return outcomes


def full_jobs(names: Iterable[str], base: Path) -> list[dict[str, Any]]:
    """Release: each mutant (and the baseline) against the whole suite."""
    return [job("", None, base)] + [job(n, None, base) for n in _slow_first(names)]


# --- the expected survivors -------------------------------------------------------------------


def load_survivors(path: Path = SURVIVORS_FILE) -> dict[tuple[str, str], str]:
    """(mutant, requirement) -> why the narrowed run does not kill it yet."""
    found: dict[tuple[str, str], str] = {}
    if not path.is_file():
        return found
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(None, 2)
        if len(parts) < 3:
            raise ValueError(f"{path}:{number}: expected 'mutant REQ-ID reason', got {line!r}")
        found[(parts[0], parts[1])] = parts[2]
    return found


# --- the command --------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    from tests.mutants.registry import REGISTRY, names_matching

    parser = argparse.ArgumentParser(prog="python -m tests.mutants.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="run every check, not only the "
                        "checks of each mutant's requirements (the release run)")
    parser.add_argument("-k", dest="patterns", action="append", default=[], metavar="GLOB",
                        help="only mutants whose name matches (repeatable)")
    parser.add_argument("--jobs", type=int, default=2, help="driver processes (default 2)")
    parser.add_argument("--out", type=Path, default=None, help="keep runs and summary here")
    args = parser.parse_args(argv)
    names = names_matching(args.patterns)
    if not names:
        parser.error("no mutant matches")
    base = args.out or Path(tempfile.mkdtemp(prefix="nomyo-mutants-"))
    base.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    if args.full:
        outcomes = run_jobs(full_jobs(names, base), base, args.jobs)
    else:
        outcomes = run_narrowed(names, base, args.jobs)
    baseline = outcomes[BASELINE]
    survivors = load_survivors()
    rows, summary = [], {"full": args.full, "mutants": {}}
    live = 0
    for name in names:
        mutant, got = REGISTRY[name], outcomes[name]
        state = {r: got.verdicts.get(r, "not run") for r in mutant.reqs}
        killed_own = all(got.killed(r) for r in mutant.reqs)
        live += not killed_own
        rows.append(f"{'KILLED ' if killed_own else 'SURVIVES'} {name:42} "
                    + " ".join(f"{r}={v}" for r, v in state.items())
                    + (f"  (also fails: {', '.join(sorted(got.failed - set(mutant.reqs)))})"
                       if args.full and got.failed - set(mutant.reqs) else "")
                    + ("" if got.stats.get("fired") else "  [never fired]")
                    + (f"  [NOT APPLIED: {got.stats.get('error')}]"
                       if got.stats.get("applied") is False else ""))
        summary["mutants"][name] = {
            "reqs": list(mutant.reqs), "verdicts": got.verdicts if args.full else state,
            "killed": killed_own, "stats": got.stats,
            "expected_survivor": [r for r in mutant.reqs if (name, r) in survivors]}
    not_passing = {r: v for r, v in baseline.verdicts.items() if v in KILLED}
    took = time.monotonic() - started
    print("\n".join(rows))
    print(f"\n{len(names) - live} of {len(names)} mutants killed on their own requirements; "
          f"{live} survive; {took:.0f} s; runs in {base}")
    if not_passing:
        print(f"WARNING: the unmutated reference fails {sorted(not_passing)}: kills of these "
              "requirements prove nothing")
    summary.update(seconds=round(took), baseline_failing=sorted(not_passing))
    (base / "summary.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    return 0 if not live and not not_passing else 1


if __name__ == "__main__":
    sys.exit(main())
