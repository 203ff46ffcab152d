"""`python -m conformance.report merge DIR_OR_JSON... -o out.html`: side-by-side page."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from conformance.report import html
from conformance.report.model import FORMAT


def _load(source: str) -> dict:
    path = Path(source)
    if path.is_dir():
        path = path / "report.json"
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SystemExit(f"cannot read report {path}: {exc}") from exc
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise SystemExit(f"{path} is not a {FORMAT} report")
    return document


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m conformance.report")
    commands = parser.add_subparsers(dest="command", required=True)
    merge = commands.add_parser("merge", help="one HTML page from several reports")
    merge.add_argument("reports", nargs="+", help="report directories or report.json files")
    merge.add_argument("-o", "--output", required=True, help="the HTML file to write")
    args = parser.parse_args(argv)
    documents = [_load(source) for source in args.reports]
    Path(args.output).write_text(html.render(documents), encoding="utf-8")
    print(f"wrote {args.output} ({len(documents)} implementations)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
