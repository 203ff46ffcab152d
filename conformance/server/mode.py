"""The pytest side of server mode: options, which check set runs, the report's identity.

Client checks (conformance/checks) and server checks (conformance/server/checks) are two
sets: with --server only the server set is collected, with --impl only the client set, with
neither (e.g. --list-checks) both. conformance/plugin.py calls `add_options` and
`configure`; everything else is hooks of the `ServerMode` plugin registered here.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from conformance.impls import ImplSpec
from conformance.requirements import Requirements
from conformance.server import options as options_mod
from conformance.server.options import OptionsError, ServerOptions

PACKAGE = Path(__file__).resolve().parent
SERVER_CHECKS = PACKAGE / "checks"
CLIENT_CHECKS = PACKAGE.parent / "checks"
PLUGIN_NAME = "conformance-server"
LIVE_PROFILE = "conformance-server-live"
WORKER_KEY = "conformance_server_requests"


def add_options(group: Any) -> None:
    options_mod.add_options(group)


def _within(path: Path, directory: Path) -> bool:
    try:
        path.resolve().relative_to(directory)
    except ValueError:
        return False
    return True


def check_set(item: pytest.Item) -> str:
    """'server' for a check of conformance/server/checks, else 'client'."""
    return "server" if _within(Path(str(item.path)), SERVER_CHECKS) else "client"


class ServerMode:
    """The hooks of server mode (registered in every run; inert without --server)."""

    def __init__(self, options: ServerOptions | None, impl_given: bool) -> None:
        self.options = options
        self.impl_given = impl_given
        self.transport: Any = None  # set by the router_under_test fixture
        self.worker_requests = 0

    @property
    def requests_sent(self) -> int:
        own = self.transport.sent if self.transport is not None else 0
        return own + self.worker_requests

    def pytest_ignore_collect(self, collection_path: Path, config: pytest.Config) -> bool | None:
        if self.options is not None and _within(collection_path, CLIENT_CHECKS):
            return True
        if self.options is None and self.impl_given and _within(collection_path, SERVER_CHECKS):
            return True
        return None

    def pytest_report_header(self, config: pytest.Config) -> list[str] | None:
        if self.options is None:
            return None
        from conformance.server.transport import LIVE_BUDGET

        budget = f", at most {LIVE_BUDGET} requests" if self.options.live else ""
        return [f"conformance: server mode, {self.options.url}, "
                f"profile {self.options.profile}{budget}, "
                f"policy {self.options.policy.describe()}"]

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """Put the number of requests sent into the report (before the report is built)."""
        if self.options is None:
            return
        from conformance.state import get_state

        state = get_state(session.config)
        if state.is_worker:
            session.config.workeroutput[WORKER_KEY] = self.requests_sent  # type: ignore[attr-defined]
            return
        if state.adapter_info is not None:
            state.adapter_info["requests_sent"] = self.requests_sent
        state.messages.append(f"server mode: {self.requests_sent} requests sent to "
                              f"{self.options.url} ({self.options.profile} profile)")

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        output = getattr(node, "workeroutput", None) or {}
        self.worker_requests += int(output.get(WORKER_KEY, 0))


def _no_adapter() -> Any:
    raise RuntimeError("server mode judges a router: there is no client adapter")


# Requirements of both sides that nothing a router sends can show: a fingerprint (KEY-13) is
# computed by clients and printed by operators, never exchanged in the protocol.
NOT_ON_THE_WIRE = frozenset({"KEY-13"})


def server_requirements(full: Requirements) -> Requirements:
    """The requirements a router can meet (applies_to server or both)."""
    kept = {rid: req for rid, req in full.by_id.items()
            if req.applies_to in ("server", "both") and rid not in NOT_ON_THE_WIRE}
    return dataclasses.replace(full, by_id=kept)


def identity(options: ServerOptions) -> dict[str, Any]:
    """report.json `implementation` (after "impl"): a server, how it was judged."""
    from conformance.server.transport import LIVE_BUDGET

    return {
        "name": f"router {options.netloc}",
        "version": "",
        "language": "unknown",
        "capabilities": [],
        "role": "server",
        **options.describe(),
        "request_budget": LIVE_BUDGET if options.live else None,
        "requests_sent": 0,
    }


def configure(config: pytest.Config, state: Any) -> bool:
    """Set server mode up; True when --server was given (then the run judges a router)."""
    try:
        options = options_mod.from_config(config)
    except OptionsError as exc:
        raise pytest.UsageError(str(exc)) from exc
    if not config.pluginmanager.has_plugin(PLUGIN_NAME):
        config.pluginmanager.register(
            ServerMode(options, config.getoption("impl") is not None), PLUGIN_NAME)
    if options is None:
        return False
    if options.live and getattr(config.option, "numprocesses", None):
        raise pytest.UsageError("--server-profile=live sends its requests one at a time: "
                                "run it without -n")
    from hypothesis import Phase, settings

    from conformance import profiles

    try:
        state.profile = profiles.load(config.getoption("conformance_profile"))
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from exc
    if options.live:  # only the explicit cases: the catalogue, counted in the README
        settings.register_profile(LIVE_PROFILE, parent=settings.get_profile(state.profile),
                                  phases=[Phase.explicit])
        settings.load_profile(LIVE_PROFILE)
        state.profile = LIVE_PROFILE
    state.impl_spec = ImplSpec(f"server:{options.url}", _no_adapter)
    state.adapter_info = identity(options)
    state._requirements = server_requirements(state.requirements)
    return True


def mode_of(config: pytest.Config) -> ServerMode:
    plugin = config.pluginmanager.get_plugin(PLUGIN_NAME)
    assert isinstance(plugin, ServerMode), "server mode is configured by conformance.plugin"
    return plugin
