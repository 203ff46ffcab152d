"""``nomyo-mock-router`` / ``python -m mock_router``: run the mock router by hand.

Prints the URL, the server key fingerprint (for pinning) and, with --tls, the CA certificate
to trust; Ctrl-C (SIGINT) or SIGTERM stops it cleanly with exit status 0.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .router import MockRouter
from .server import serve
from .validation import TIERS


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


def _fraction(text: str) -> float:
    value = _non_negative(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text!r}")
    return value


def _status(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 400 <= value <= 599:
        raise argparse.ArgumentTypeError(f"must be an HTTP error status 400..599, got {value}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be 0..65535, got {value}")
    return value


def _key_size(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 2048 or value % 8:
        raise argparse.ArgumentTypeError(f"must be a multiple of 8, at least 2048, got {value}")
    return value


def _tier_rule(text: str) -> tuple[str, list[str]]:
    tier, sep, models = text.partition("=")
    if not sep or tier not in TIERS:
        raise argparse.ArgumentTypeError(
            f"expected TIER=MODEL[,MODEL...] with TIER one of {', '.join(TIERS)}, got {text!r}")
    return tier, [m.strip() for m in models.split(",") if m.strip()]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="nomyo-mock-router",
        description="A mock NOMYO router (secure completion protocol v1.0) with a "
                    "deterministic fake model, for offline development.")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    p.add_argument("--port", type=_port, default=12434, help="port (12434; 0 = any free port)")
    p.add_argument("--key-file", type=Path,
                   help="server private key PEM: loaded if it exists, else created there")
    p.add_argument("--key-size", type=_key_size, default=4096,
                   help="bits of a generated server key (4096)")
    p.add_argument("--api-key", action="append", default=[], metavar="KEY",
                   help="accepted bearer token (repeatable; none: no authentication)")
    p.add_argument("--tier-policy", action="append", default=[], type=_tier_rule,
                   metavar="TIER=MODEL,...",
                   help="models allowed for a tier, e.g. maximum=model-a,model-b (repeatable)")
    p.add_argument("--tls", action="store_true", help="serve HTTPS with a throw-away local CA")
    p.add_argument("--cert-dir", type=Path,
                   help="where --tls writes ca.pem and the server certificate (default: temp)")
    p.add_argument("--latency", type=_non_negative, default=0.0, metavar="SECONDS",
                   help="delay added to every request")
    p.add_argument("--failure-rate", type=_fraction, default=0.0, metavar="FRACTION",
                   help="fraction of requests answered with --failure-status (0..1)")
    p.add_argument("--failure-status", type=_status, default=503, metavar="CODE",
                   help="status of injected failures (503)")
    p.add_argument("--seed", type=int, default=None, help="seed of the failure draw")
    p.add_argument("--replay-window", type=_non_negative, default=600.0, metavar="SECONDS",
                   help="how long a decrypted package is remembered: sent again, it gets 409 "
                        "'replayed request' (600; 0 = no replay cache)")
    p.add_argument("--admin", action="store_true",
                   help="enable /_mock/* (scenarios, seen requests WITH PLAINTEXT, reset, "
                        "rotate-key)")
    p.add_argument("--log-level", default="info",
                   choices=["critical", "error", "warning", "info", "debug"],
                   help="log level (info: one line per request)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.cert_dir is not None and not args.tls:
        parser.error("argument --cert-dir: only meaningful with --tls")
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    policy: dict[str, list[str]] = {}
    for tier, models in args.tier_policy:
        policy.setdefault(tier, []).extend(models)
    options: dict[str, Any] = {
        "key_size": args.key_size, "api_keys": args.api_key, "tier_policy": policy,
        "admin": args.admin, "latency": args.latency, "failure_rate": args.failure_rate,
        "failure_status": args.failure_status, "seed": args.seed,
        "replay_window": args.replay_window,
    }
    try:
        if args.key_file is not None:
            router = MockRouter.from_key_file(args.key_file, create=True, **options)
        else:
            router = MockRouter(**options)
    except (OSError, ValueError, TypeError) as exc:
        parser.error(f"argument --key-file: cannot use {args.key_file}: {exc}")

    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        with serve(router, host=args.host, port=args.port, tls=args.tls,
                   cert_dir=args.cert_dir, log_level=args.log_level) as server:
            print(f"nomyo-mock-router listening on {server.url}", flush=True)
            print(f"server key fingerprint (SHA-256): {router.fingerprint}", flush=True)
            if server.ca_cert_path is not None:
                print(f"CA certificate to trust: {server.ca_cert_path}", flush=True)
            if args.admin:
                print(f"admin endpoints enabled: {server.url}/_mock/ (shows plaintext)",
                      flush=True)
            print("press Ctrl-C to stop", flush=True)
            while not stop.wait(0.5):
                pass
    except RuntimeError as exc:
        print(f"nomyo-mock-router: {exc}", file=sys.stderr)
        return 1
    print("nomyo-mock-router stopped", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
