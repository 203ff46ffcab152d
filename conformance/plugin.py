"""The pytest plugin of the conformance suite: options, markers, fixtures, verdicts.

Names the checks use (stable API):

  markers   @pytest.mark.req("PID-3", ...)        requirement ids a check covers (unknown id:
                                                  usage error at collection)
            @pytest.mark.requires("pinning", ...) capabilities a check needs (missing: the
                                                  check is NOT APPLICABLE, never passed)
  fixtures  impl          the Adapter under test (session)
            router        the session's mock_router.MockRouter, reset before every check
            server_key    the router's RSA-4096 private key (session)
            http_server   serve(router) (session); tls_server: serve(router, tls=True)
            make_config(**overrides) -> ClientConfig   (http_server.url, allow_http=True,
                          max_retries=0, timeout=10.0, retry_backoff=0.01)
            make_tls_config(**overrides) -> ClientConfig (tls_server.url + its CA)
            call(model="mock-model", messages=None, config=None, *, client=None, **kwargs)
                          -> Outcome: one create() through a fresh (or the given) client
            open_client(config=None) -> Outcome {"client": handle}, closed after the check
            client_key_dir  a pre-made RSA-4096 client key pair; make_config uses it as
                          key_dir (pass key_dir=None for a client making its own keys)
  helpers   conformance.expect: ok(outcome), error(outcome, kind=..., status=...),
            equal(actual, expected, what), true(cond, expected, actual), warning(outcome,
            contains), not_applicable(reason)
  types     conformance.adapter: ClientConfig, Outcome, ErrorInfo, Kind, capability names

The plugin is registered in every pytest run of an environment where the package is
installed (entry point pytest11); it stays inert (no server, no key, no adapter) unless a
collected test carries a `req` marker or --impl is given.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conformance import charging, fixtures
from conformance import expected as expected_mod
from conformance.adapter import CAPABILITIES
from conformance.impls import ImplError, resolve
from conformance.outcomes import ResultCollector, record_phase
from conformance.report import finish_run, terminal_summary
from conformance.requirements import Requirements
from conformance.server import mode as server_mode
from conformance.state import get_state
from conformance.verdicts import NOT_APPLICABLE, stable_id


def pytest_addoption(parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager) -> None:
    group = parser.getgroup("conformance", "NOMYO protocol conformance suite")
    group.addoption(
        "--impl",
        default=None,
        help="implementation to judge: nomyo_ref | nomyo | module:object | cmd:COMMAND",
    )
    group.addoption(
        "--req",
        action="append",
        default=[],
        metavar="GLOB",
        help="run only checks of matching requirement ids (e.g. PID-*; repeatable, commas)",
    )
    group.addoption(
        "--list-checks",
        action="store_true",
        default=False,
        help="print each check's stable id with its requirement ids, run nothing",
    )
    group.addoption(
        "--conformance-report",
        default=None,
        metavar="DIR",
        help="write report.json and report.html into DIR",
    )
    group.addoption(
        "--expected-failures",
        default=None,
        metavar="FILE",
        help="known failures of this implementation (default for built-ins: "
        "spec/expected-failures/<name>.txt)",
    )
    group.addoption(
        "--update-expected-failures",
        action="store_true",
        default=False,
        help="rewrite the expected-failures file from this run, keeping known reasons",
    )
    group.addoption(
        "--strict-should",
        action="store_true",
        default=False,
        dest="conformance_strict",
        help="failed SHOULD checks (NON-STRICT) fail the run too",
    )
    group.addoption(
        "--conformance-profile",
        default="default",
        help="hypothesis profile: default (few examples, derandomized) | thorough",
    )
    group.addoption(
        "--conformance-requirements",
        default=None,
        metavar="FILE",
        help="requirements list to use instead of spec/requirements.json",
    )
    group.addoption(
        "--testee-timeout",
        type=float,
        default=20.0,
        metavar="SECONDS",
        help="cmd: testees that do not answer an operation within this time are killed "
        "(ERRORED); default 20",
    )
    group.addoption(
        "--testee-selftest",
        action="store_true",
        default=False,
        help="cmd: check in seconds that the testee speaks spec/testee.md, then stop",
    )
    server_mode.add_options(group)  # --server=URL and its options
    from conformance.adapters import selftest  # its pytest_cmdline_main runs the selftest

    if not pluginmanager.has_plugin("conformance-selftest"):
        pluginmanager.register(selftest, "conformance-selftest")


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "req(*ids): requirement ids (spec/requirements.json) a conformance check covers"
    )
    config.addinivalue_line(
        "markers", "requires(*capabilities): adapter capabilities a conformance check needs"
    )
    state = get_state(config)
    if not config.pluginmanager.has_plugin("conformance-results"):
        config.pluginmanager.register(ResultCollector(state), "conformance-results")
    if not config.pluginmanager.has_plugin("conformance-fixtures"):
        config.pluginmanager.register(fixtures, "conformance-fixtures")
    state.requirements_path = config.getoption("conformance_requirements")
    state.req_patterns = [
        p.strip() for opt in config.getoption("req") for p in opt.split(",") if p.strip()
    ]
    if config.getoption("list_checks") and getattr(config.option, "dist", "no") != "no":
        # listing needs no workers
        config.option.dist = "no"
        config.option.numprocesses = None
    if server_mode.configure(config, state):  # --server=URL: judge a router
        _load_expected_failures(config)
        return
    impl_text = config.getoption("impl")
    if impl_text is None:
        return
    try:
        state.impl_spec = resolve(impl_text, config.getoption("testee_timeout"))
        from conformance import profiles  # hypothesis only when judging

        state.profile = profiles.load(config.getoption("conformance_profile"))
    except (ImplError, ValueError) as exc:
        raise pytest.UsageError(str(exc)) from exc
    _load_expected_failures(config)


def _load_expected_failures(config: pytest.Config) -> None:
    state = get_state(config)
    given = config.getoption("expected_failures")
    path = given if given is not None else (state.impl_spec and state.impl_spec.expected_failures)
    if path is None:
        return
    try:
        updating = config.getoption("update_expected_failures")
        if given is not None and updating and not Path(given).exists():
            state.expected_path = Path(given)  # to be created by this run
            return
        state.expected = expected_mod.load(path)
        state.expected_path = state.expected.path
    except expected_mod.ExpectedFailuresError as exc:
        raise pytest.UsageError(str(exc)) from exc


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    state = get_state(config)
    if state.impl_spec is None:
        return None
    lines = [f"conformance: impl={state.impl_spec.text} profile={state.profile}"]
    if state.expected_path is not None:
        lines.append(f"conformance: expected failures from {state.expected_path}")
    return lines


def _marker_args(item: pytest.Item, name: str) -> list[str]:
    return [str(a) for m in item.iter_markers(name) for a in m.args]


def _problems(item: pytest.Item, known: Requirements) -> list[str]:
    """What is wrong with a check's markers (unknown requirement ids or capabilities)."""
    ids = _marker_args(item, "req")
    problems = [] if ids else ["@pytest.mark.req() names no requirement id"]
    problems.extend(
        f"unknown requirement id {rid!r} (not in {known.source})" for rid in ids if rid not in known
    )
    problems.extend(
        f"requirement {rid} is replaced by {', '.join(known[rid].replaced_by)}: name those"
        for rid in ids
        if rid in known and known[rid].replaced_by
    )
    problems.extend(
        f"unknown capability {cap!r} in @pytest.mark.requires"
        for cap in _marker_args(item, "requires")
        if cap not in CAPABILITIES
    )
    return problems


@pytest.hookimpl(wrapper=True)
def pytest_pycollect_makeitem(collector: pytest.Collector, name: str, obj: object):  # type: ignore[no-untyped-def]
    """A check naming an unknown requirement id is a collection error of its module."""
    made = yield
    items = made if isinstance(made, list) else [made]
    for item in items:
        if isinstance(item, pytest.Item) and item.get_closest_marker("req") is not None:
            problems = _problems(item, get_state(collector.config).requirements)
            if problems:
                raise collector.CollectError(f"{item.name}: " + "; ".join(problems))
    return made


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    checks = [item for item in items if item.get_closest_marker("req") is not None]
    if not checks:
        return
    state = get_state(config)
    problems: list[str] = []
    seen: dict[str, str] = {}
    for item in checks:
        problems.extend(f"{item.nodeid}: {p}" for p in _problems(item, state.requirements))
        check_id = stable_id(item.nodeid)
        if check_id in seen and seen[check_id] != item.nodeid:
            problems.append(f"{item.nodeid}: same stable id as {seen[check_id]} ({check_id})")
        seen[check_id] = item.nodeid
    if problems:
        raise pytest.UsageError("invalid conformance checks:\n  " + "\n  ".join(problems))
    state.collected.update(seen)
    if state.impl_spec is None and not config.getoption("list_checks"):
        raise pytest.UsageError(
            "conformance checks need --impl (a client: --impl=nomyo_ref, --impl=nomyo, "
            '--impl=module:object or --impl="cmd:COMMAND") or --server=URL (a router)'
        )
    if state.req_patterns:
        wanted = state.requirements.matching(state.req_patterns)
        unmatched = [p for p in state.req_patterns if not state.requirements.matching([p])]
        if unmatched:
            raise pytest.UsageError(f"--req {', '.join(unmatched)}: matches no requirement id")
        _narrow(config, items, wanted)


def _narrow(config: pytest.Config, items: list[pytest.Item], wanted: set[str]) -> None:
    keep, drop = [], []
    for item in items:
        ids = set(_marker_args(item, "req"))
        (keep if ids & wanted else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def pytest_collection_finish(session: pytest.Session) -> None:
    config = session.config
    if not config.getoption("list_checks") or get_state(config).is_worker:
        return
    writer = config.get_terminal_writer()
    writer.line("")
    for item in session.items:
        ids = _marker_args(item, "req")
        if not ids:
            continue
        needs = _marker_args(item, "requires")
        extra = f"  requires: {','.join(needs)}" if needs else ""
        extra += f"  set: {server_mode.check_set(item)}"
        writer.line(f"{stable_id(item.nodeid)}  {','.join(ids)}{extra}")


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> bool | None:
    if session.config.getoption("list_checks"):
        return True
    return None


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    needs = _marker_args(item, "requires")
    if not needs or item.get_closest_marker("req") is None:
        return
    adapter = get_state(item.config).adapter()
    missing = [cap for cap in needs if cap not in adapter.capabilities]
    if missing:
        pytest.skip(f"{NOT_APPLICABLE}: {adapter.name} lacks capability {', '.join(missing)}")


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function):  # type: ignore[no-untyped-def]
    """Run a check with a ledger for its soft, per-requirement assertions (expect.clause)."""
    if pyfuncitem.get_closest_marker("req") is None:
        return (yield)
    ids = tuple(_marker_args(pyfuncitem, "req"))
    with charging.running(ids) as ledger:
        try:
            result = yield
        except BaseException as exc:
            final = charging.finish(ledger, exc)
            if final is exc:
                raise
            raise final from exc
        final = charging.finish(ledger, None)
        if final is not None:
            raise final
        return result


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    if item.get_closest_marker("req") is None:
        return
    report = outcome.get_result()
    record_phase(get_state(item.config), item, call, report)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:  # type: ignore[no-untyped-def]
    """xdist controller: merge the checks each worker collected (for stale detection)."""
    output = getattr(node, "workeroutput", None) or {}
    get_state(node.config).collected.update(output.get("conformance_collected", ()))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    state = get_state(session.config)
    try:
        if state.is_worker:
            session.config.workeroutput["conformance_collected"] = sorted(state.collected)  # type: ignore[attr-defined]
            return
        finish_run(session, state)
    finally:
        state.close()


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config
) -> None:
    terminal_summary(terminalreporter, get_state(config))
