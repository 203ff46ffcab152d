"""Entry point of ``nomyo-mock-router`` (reserved; the router lands with its own issue)."""

import sys


def main() -> int:
    print("nomyo-mock-router: not implemented yet", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
