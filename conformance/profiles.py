"""Hypothesis profiles of the suite, chosen with --conformance-profile.

Both are derandomized with no example database, so a verdict never flickers between two runs
of the same implementation: the same inputs are tried every time.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings

DEFAULT = "conformance-default"
THOROUGH = "conformance-thorough"
PROFILES = {"default": DEFAULT, "thorough": THOROUGH}

_COMMON = {
    "deadline": None,  # crypto and loopback I/O make timings meaningless
    "derandomize": True,
    "database": None,
    "print_blob": False,
    "suppress_health_check": [
        HealthCheck.function_scoped_fixture,  # the router is reset per check, on purpose
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
}

settings.register_profile(DEFAULT, max_examples=6, **_COMMON)
settings.register_profile(THOROUGH, max_examples=200, **_COMMON)


def load(name: str) -> str:
    """Load a profile by short name ("default", "thorough") or full name; return the full."""
    full = PROFILES.get(name, name)
    if full not in PROFILES.values():
        choices = ", ".join(PROFILES)
        raise ValueError(f"unknown --conformance-profile {name!r} (choices: {choices})")
    settings.load_profile(full)
    return full
