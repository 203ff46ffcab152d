"""``python -m tests.bench``: measure every figure and print the table (or JSON).

Options: ``--json`` (a JSON document on stdout instead of the table), ``--rounds N`` (rounds
per figure, median taken; default 7), ``--quick`` (3 rounds, fewer calls, a shorter throughput
window), ``--only 1,3`` (some figures), ``--key-size BITS`` (default 4096, as deployed),
``--workers``/``--concurrency``/``--duration`` (figure 5's load), ``--save FILE`` (also
write the JSON document there).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

from .figures import Config, machine, run
from .harness import Figure


def _fmt(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"


def table(figures: list[Figure]) -> str:
    rows = [("#", "figure", "measured", "floor / peer", "unit", "ratio", "target", "verdict")]
    for f in figures:
        if not f.available:
            rows.append((f.id, f.title, "-", "-", "", "-", f.target, "not available"))
            continue
        verdict = "met" if f.met else "MISSED"
        if f.met is False and f.ratio is not None:
            op, _, bound = f.target.partition(" ")
            limit = float(bound)
            miss = f.ratio / limit if op == "<=" else limit / f.ratio if f.ratio else math.inf
            verdict = f"MISSED x{miss:.2f}"
            if f.extra.get("failures"):
                verdict += f" ({f.extra['failures']} failed)"
        rows.append((f.id, f.title, f"{_fmt(f.measured)} {f.measured_label}",
                     f"{_fmt(f.reference)} {f.reference_label}", f.unit,
                     _fmt(f.ratio), f.target, verdict))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("")
    lines += [f"[{f.id}] {f.notes}" for f in figures if f.notes]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__.split("\n")[0])
    p.add_argument("--json", action="store_true", help="print a JSON document, not a table")
    p.add_argument("--rounds", type=int, default=None, help="rounds per figure (default 7)")
    p.add_argument("--quick", action="store_true", help="3 rounds, fewer calls, shorter load")
    p.add_argument("--only", default="1,2,3,4,5,6", help="comma-separated figures (1-6)")
    p.add_argument("--key-size", type=int, default=4096, help="RSA key bits (4096)")
    p.add_argument("--workers", type=int, default=2, help="figure 5 client processes (2)")
    p.add_argument("--concurrency", type=int, default=4,
                   help="figure 5 concurrent clients per process (4)")
    p.add_argument("--duration", type=float, default=None,
                   help="figure 5 measured window in seconds (6; --quick: 3)")
    p.add_argument("--save", metavar="FILE", help="also write the JSON document to FILE")
    args = p.parse_args(argv)
    if args.rounds is not None and args.rounds < 1:
        p.error("--rounds must be at least 1")
    only = frozenset(x.strip() for x in args.only.split(",") if x.strip())
    if not only or not only <= set("123456"):
        p.error("--only takes figure numbers 1-6, e.g. --only 1,3")
    cfg = Config.make(args.rounds, args.quick, key_size=args.key_size, workers=args.workers,
                      concurrency=args.concurrency, only=only)
    if args.duration is not None:
        cfg.duration = args.duration
    before = machine()
    t0 = time.perf_counter()

    def progress(text: str) -> None:
        print(f"[bench {time.perf_counter() - t0:6.1f}s] {text}", file=sys.stderr, flush=True)

    figures = run(cfg, progress)
    after = machine()
    doc = {"machine": before, "loadavg_after": after["loadavg"], "rounds": cfg.rounds,
           "quick": cfg.quick, "key_size": cfg.key_size, "seconds": time.perf_counter() - t0,
           "figures": [f.to_json() for f in figures]}
    if args.save:
        with open(args.save, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=2)
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print(table(figures))
        print(f"\nmachine: {before['cores']} cores ({before['cpu']}), Python "
              f"{before['python']}, cryptography {before['cryptography']} "
              f"({before['openssl']}); load average before {' '.join(before['loadavg'])}, "
              f"after {' '.join(after['loadavg'])}; {cfg.rounds} rounds, median; "
              f"{time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
