"""The per-run state of the plugin: the chosen implementation and what the run found.

Kept on `config.stash`, so the hooks, the fixtures and the report share one object without
module globals (pytester runs many sessions in one process).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from conformance import expected as expected_mod
from conformance import requirements as requirements_mod
from conformance.adapter import Adapter, AdapterError
from conformance.create_guard import CreateRequired
from conformance.impls import ImplSpec, instantiate
from conformance.verdicts import FAILING, worst


@dataclass
class CheckResult:
    """Everything the run learned about one check (aggregated over its phases)."""

    check_id: str
    nodeid: str
    requirements: list[str]
    verdicts: list[str] = field(default_factory=list)
    # requirement id -> {"verdict", "message", "blocked_by"?}: what this check charged to it
    charges: dict[str, dict[str, Any]] = field(default_factory=dict)
    message: str = ""
    example: str | None = None
    expected_reason: str | None = None
    listed: bool = False
    duration: float = 0.0

    @property
    def verdict(self) -> str:
        return worst(self.verdicts) or "NOT APPLICABLE"

    @property
    def failing(self) -> bool:
        return self.verdict in FAILING

    def verdict_for(self, req_id: str) -> str:
        """The verdict this check gives `req_id` (its own charge, else the check's)."""
        charge = self.charges.get(req_id)
        return charge["verdict"] if charge else self.verdict

    def message_for(self, req_id: str) -> str:
        charge = self.charges.get(req_id)
        return charge["message"] if charge else self.message

    def blockers(self) -> set[str]:
        """The requirement ids this check says it was BLOCKED by."""
        return {c["blocked_by"] for c in self.charges.values() if c.get("blocked_by")}

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.check_id,
            "nodeid": self.nodeid,
            "requirements": self.requirements,
            "verdict": self.verdict,
            "charges": self.charges,
            "message": self.message,
            "example": self.example,
            "expected_failure": self.expected_reason if self.listed and self.failing else None,
            "unexpected_pass": self.listed and self.verdict == "PASS",
            "duration": round(self.duration, 3),
        }


@dataclass
class ConformanceState:
    """Options, the implementation, and results of this pytest run."""

    config: pytest.Config
    impl_spec: ImplSpec | None = None
    profile: str | None = None
    requirements_path: str | None = None
    expected: expected_mod.ExpectedFailures = field(default_factory=expected_mod.ExpectedFailures)
    expected_path: Path | None = None
    _requirements: requirements_mod.Requirements | None = None
    _adapter: Any = None
    _adapter_error: str | None = None
    adapter_info: dict[str, Any] | None = None
    collected: set[str] = field(default_factory=set)  # stable ids before deselection
    req_patterns: list[str] = field(default_factory=list)
    results: dict[str, CheckResult] = field(default_factory=dict)
    stale: list[str] = field(default_factory=list)
    document: dict[str, Any] | None = None  # the report, once the run is finished
    messages: list[str] = field(default_factory=list)  # for the terminal summary

    @property
    def requirements(self) -> requirements_mod.Requirements:
        if self._requirements is None:
            try:
                self._requirements = requirements_mod.load(self.requirements_path)
            except requirements_mod.RequirementsError as exc:
                raise pytest.UsageError(str(exc)) from exc
        return self._requirements

    @property
    def is_worker(self) -> bool:
        return hasattr(self.config, "workerinput")

    def adapter(self) -> Adapter:  # a CreateRequired around the adapter, used like one
        """The adapter, made on first use (an adapter that cannot start makes checks ERRORED)."""
        if self._adapter is not None:
            return self._adapter
        if self.impl_spec is None:
            raise pytest.UsageError("conformance checks need --impl=NAME (see --help)")
        if self._adapter_error is not None:
            raise AdapterError(self._adapter_error)
        try:
            self._adapter = CreateRequired(
                instantiate(self.impl_spec.factory(), self.impl_spec.text)
            )
        except Exception as exc:
            self._adapter_error = f"adapter {self.impl_spec.text!r} failed to start: {exc}"
            raise AdapterError(self._adapter_error) from exc
        self.adapter_info = describe(self._adapter)
        return self._adapter

    def close(self) -> None:
        if self._adapter is not None:
            try:
                self._adapter.close()
            finally:
                self._adapter = None


def describe(adapter: Any) -> dict[str, Any]:
    """Identity of an adapter for the report (also for duck-typed adapters)."""
    return {
        "name": str(getattr(adapter, "name", "unnamed")),
        "version": str(getattr(adapter, "version", "unknown")),
        "language": str(getattr(adapter, "language", "unknown")),
        "capabilities": sorted(getattr(adapter, "capabilities", ())),
    }


STATE_KEY = pytest.StashKey[ConformanceState]()


def get_state(config: pytest.Config) -> ConformanceState:
    state = config.stash.get(STATE_KEY, None)
    if state is None:
        state = ConformanceState(config)
        config.stash[STATE_KEY] = state
    return state
