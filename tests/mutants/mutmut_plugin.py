"""pytest plugin of the mutmut runs (tests/mutants/score.py): credit shared fixtures' calls.

mutmut judges each mutant by the checks that reached the mutated function in its first run
(the "stats" run), where every call is credited to the check running at the time. A fixture
of a wider scope than one check (test_keys' module-scoped `generated` saves the key files
once for the whole module) runs inside whichever check needs it first, so mutmut credits that
check alone: a mutant of key saving would then be judged without the checks that read the
saved files, and survive although they fail on it.

In the stats run this plugin records which mutated functions each module-, package- or
session-scoped fixture reached while it was set up, and credits them to every check that
uses the fixture. It reads and extends mutmut's own record (mutmut.state), so it follows
mutmut 3's internals; when they are not there it does nothing, and the score is then only
pessimistic. Outside the stats run it does nothing.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import Any

import pytest

#: fixture name -> mutated functions reached while it was set up
_FIXTURE_HITS: dict[str, set[str]] = {}


def _stats_state() -> Any:
    """mutmut's state while it records which check reaches which function, else None."""
    if os.environ.get("MUTANT_UNDER_TEST") != "stats":
        return None
    try:
        from mutmut.state import state
    except ImportError:
        return None
    current = state()
    wanted = ("_stats", "tests_by_mangled_function_name")
    return current if all(hasattr(current, name) for name in wanted) else None


@pytest.hookimpl(hookwrapper=True)
def pytest_fixture_setup(fixturedef: Any, request: Any) -> Generator[None, None, None]:
    current = _stats_state()
    if current is None or fixturedef.scope == "function":
        yield
        return
    saved, current._stats = current._stats, set()
    try:
        yield
    finally:
        hits = current._stats
        current._stats = saved | hits
        if hits:
            _FIXTURE_HITS.setdefault(fixturedef.argname, set()).update(hits)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    current = _stats_state()
    if current is None or not _FIXTURE_HITS:
        return
    credited = current.tests_by_mangled_function_name
    for item in session.items:
        nodeid = item.nodeid.removeprefix("mutants/")
        for name in getattr(item, "fixturenames", ()):
            for function in _FIXTURE_HITS.get(name, ()):
                credited[function].add(nodeid)
