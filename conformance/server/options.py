"""The options of server mode and the policy the router's operator declares.

The spec leaves some behaviour to the server (whether API keys are required, which tiers
its policy refuses with 403); the operator declares it with --server-policy, and the checks
judge the router against that declaration: a check about a behaviour the router declares it
does not have is NOT APPLICABLE, with the declaration as the reason.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

TIERS = ("standard", "high", "maximum")
PROFILES = ("default", "live")
DEFAULT_MODEL = "mock-model"
POLICY_HELP = (
    "what the spec leaves to the router, KEY=VALUE (repeatable, or comma-separated): "
    "auth=required|none (API keys required: 401 checks; default: required when "
    "--server-api-key is given), tier-403=TIER (the router answers 403 for --server-model "
    "at TIER; repeatable)"
)


class OptionsError(ValueError):
    """A server-mode option cannot be used: the message says which and why."""


@dataclass(frozen=True)
class Policy:
    """What the operator declares about the router (see POLICY_HELP)."""

    auth_required: bool = False
    tier_403: frozenset[str] = frozenset()

    def allowed_tiers(self) -> tuple[str, ...]:
        """Tiers a valid request may ask for and expect 200."""
        return tuple(t for t in TIERS if t not in self.tier_403)

    def describe(self) -> dict[str, Any]:
        return {"auth": "required" if self.auth_required else "none",
                "tier_403": sorted(self.tier_403)}


@dataclass(frozen=True)
class ServerOptions:
    """Everything server mode was told. `api_key` never appears in reports or messages."""

    url: str
    api_key: str | None = field(default=None, repr=False)
    ca: str | None = None
    model: str = DEFAULT_MODEL
    policy: Policy = Policy()
    profile: str = "default"

    @property
    def live(self) -> bool:
        return self.profile == "live"

    @property
    def netloc(self) -> str:
        return urllib.parse.urlsplit(self.url).netloc

    def describe(self) -> dict[str, Any]:
        """For report.json `implementation` (no API key, only whether one was given)."""
        return {
            "url": self.url,
            "profile": self.profile,
            "model": self.model,
            "policy": self.policy.describe(),
            "api_key_given": self.api_key is not None,
            "ca": self.ca,
        }


def add_options(group: Any) -> None:
    group.addoption("--server", default=None, metavar="URL",
                    help="judge the NOMYO router at URL (server mode: server checks only)")
    group.addoption("--server-api-key", default=None, metavar="KEY",
                    help="bearer API key for the router's POSTs (never shown in reports)")
    group.addoption("--server-ca", default=None, metavar="PEM",
                    help="CA certificate(s) to trust for an https router (default: system)")
    group.addoption("--server-model", default=DEFAULT_MODEL, metavar="NAME",
                    help=f"model named in the requests (default {DEFAULT_MODEL})")
    group.addoption("--server-policy", action="append", default=[], metavar="KEY=VALUE",
                    help=POLICY_HELP)
    group.addoption("--server-profile", default="default", choices=PROFILES,
                    help="default: every check (local and staging routers); live: a bounded, "
                    "documented number of requests, nothing oversize, no bursts")


SERVER_ONLY = ("server_api_key", "server_ca", "server_policy")


def normalise_url(text: str) -> str:
    """http(s)://host[:port][/prefix] without trailing '/', or OptionsError."""
    value = text.strip()
    parts = urllib.parse.urlsplit(value)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise OptionsError(f"--server={text!r}: give an http:// or https:// URL with a host")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise OptionsError(f"--server={text!r}: no query, fragment or user-info")
    try:
        parts.port  # noqa: B018 - raises ValueError for an invalid port
    except ValueError:
        raise OptionsError(f"--server={text!r}: invalid port") from None
    return urllib.parse.urlunsplit(
        (parts.scheme.lower(), parts.netloc, parts.path.rstrip("/"), "", "")
    )


def parse_policy(items: list[str], api_key_given: bool) -> Policy:
    auth: bool | None = None
    forbidden: set[str] = set()
    pairs = [p.strip() for item in items for p in item.split(",") if p.strip()]
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key, value = key.strip(), value.strip()
        if not sep:
            raise OptionsError(f"--server-policy {pair!r}: expected KEY=VALUE ({POLICY_HELP})")
        if key == "auth" and value in ("required", "none"):
            auth = value == "required"
        elif key == "tier-403" and value in TIERS:
            forbidden.add(value)
        else:
            raise OptionsError(f"--server-policy {pair!r}: unknown key or value ({POLICY_HELP})")
    if auth is None:
        auth = api_key_given
    if auth and not api_key_given:
        raise OptionsError("--server-policy auth=required needs --server-api-key (valid "
                           "requests need a key the router accepts)")
    return Policy(auth_required=auth, tier_403=frozenset(forbidden))


def from_config(config: pytest.Config) -> ServerOptions | None:
    """The run's ServerOptions, None without --server; OptionsError for unusable values."""
    url = config.getoption("server")
    if url is None:
        given = [f"--{name.replace('_', '-')}" for name in SERVER_ONLY if config.getoption(name)]
        if given:
            raise OptionsError(f"{', '.join(given)} only make sense with --server=URL")
        return None
    if config.getoption("impl") is not None:
        raise OptionsError("--server judges a router and --impl a client: give one of them")
    api_key = config.getoption("server_api_key")
    if api_key is not None and (not api_key or any(c in api_key for c in "\r\n\0")):
        raise OptionsError("--server-api-key must be a non-empty single-line value")
    ca = config.getoption("server_ca")
    if ca is not None and not Path(ca).is_file():
        raise OptionsError(f"--server-ca {ca}: no such file")
    model = config.getoption("server_model")
    if not model:
        raise OptionsError("--server-model must not be empty")
    return ServerOptions(
        url=normalise_url(url),
        api_key=api_key,
        ca=str(Path(ca).resolve()) if ca else None,
        model=model,
        policy=parse_policy(config.getoption("server_policy"), api_key is not None),
        profile=config.getoption("server_profile"),
    )
