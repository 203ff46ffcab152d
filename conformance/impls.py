"""`--impl=...`: from a name on the command line to an Adapter.

Three forms: a built-in name (`nomyo_ref`, `nomyo`), `module:object` for any importable
adapter (an Adapter instance, class or factory), or `cmd:COMMAND` for a testee in any
language speaking spec/testee.md. Resolution happens at configure time so a bad --impl is a
usage error before anything runs; instantiation is lazy (the first check that needs it).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conformance.adapter import Adapter

BUILTINS: dict[str, str] = {
    "nomyo_ref": "the reference client nomyo_ref (in-process)",
    "nomyo": "the official client from PyPI, nomyo 0.2.9 (in-process)",
}
EXPECTED_FAILURES_DIR = ("spec", "expected-failures")


class ImplError(Exception):
    """The --impl value cannot be used: the message says why and what to do."""


@dataclass(frozen=True)
class ImplSpec:
    """A resolved --impl: how to make the adapter, and its shipped expected-failures file."""

    text: str
    factory: Callable[[], Any]
    expected_failures: Path | None = None  # the shipped list, when it exists
    expected_failures_home: Path | None = None  # where --update-expected-failures writes


def _builtins_text() -> str:
    return ", ".join(f"{name} ({what})" for name, what in BUILTINS.items())


def _spec_roots() -> list[Path]:
    package = Path(__file__).resolve().parent
    return [package / "_spec", package.parent / "spec"]


def shipped_expected_failures(name: str) -> Path | None:
    """spec/expected-failures/<name>.txt from a checkout, or conformance/_spec/... installed."""
    for root in _spec_roots():
        path = root / "expected-failures" / f"{name}.txt"
        if path.is_file():
            return path
    return None


def expected_failures_home(name: str) -> Path | None:
    """Where a built-in's list lives (may not exist yet): the checkout's spec/ first."""
    for root in reversed(_spec_roots()):
        if root.is_dir():
            return root / "expected-failures" / f"{name}.txt"
    return None


def resolve(text: str, testee_timeout: float = 20.0) -> ImplSpec:
    """Turn an --impl value into an ImplSpec, or raise ImplError with a clear message."""
    value = text.strip()
    if not value:
        raise ImplError(f"--impl is empty; built-ins: {_builtins_text()}")
    if value.startswith("cmd:"):
        command = value[4:].strip()
        if not command:
            raise ImplError('--impl="cmd:COMMAND" needs a command, e.g. "cmd:./my-testee"')
        from conformance.adapters.cmd import CommandAdapter

        return ImplSpec(value, lambda: CommandAdapter(command, timeout=testee_timeout))
    if value == "nomyo_ref":
        return _builtin_ref(value)
    if value == "nomyo":
        return _builtin_official(value)
    if ":" in value:
        return _from_object(value)
    raise ImplError(
        f"unknown implementation {value!r}. Built-ins: {_builtins_text()}; or "
        '"module:object" (an importable Adapter), or "cmd:COMMAND" (a testee, spec/testee.md)'
    )


def _builtin_ref(value: str) -> ImplSpec:
    try:
        importlib.import_module("nomyo_ref")
    except ImportError as exc:
        raise ImplError(f"--impl=nomyo_ref: cannot import nomyo_ref ({exc})") from exc
    from conformance.adapters.nomyo_ref import NomyoRefAdapter

    return ImplSpec(
        value,
        NomyoRefAdapter,
        shipped_expected_failures("nomyo_ref"),
        expected_failures_home("nomyo_ref"),
    )


def _builtin_official(value: str) -> ImplSpec:
    try:
        importlib.import_module("nomyo")
    except ImportError as exc:
        raise ImplError(
            "--impl=nomyo judges the official client, which is not installed: "
            'pip install "nomyo-conformance[official]" (or pip install nomyo)'
        ) from exc
    from conformance.adapters.nomyo_official import OfficialAdapter

    return ImplSpec(
        value, OfficialAdapter, shipped_expected_failures("nomyo"), expected_failures_home("nomyo")
    )


def _from_object(value: str) -> ImplSpec:
    module_name, _, attr = value.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImplError(f"--impl={value}: cannot import module {module_name!r} ({exc})") from exc
    target: Any = module
    for part in attr.split("."):
        if not hasattr(target, part):
            raise ImplError(f"--impl={value}: module {module_name!r} has no {attr!r}")
        target = getattr(target, part)
    return ImplSpec(value, lambda: instantiate(target, value))


def instantiate(target: Any, label: str) -> Any:
    """An Adapter instance as is; a class or factory is called with no arguments."""
    adapter = target() if callable(target) and not _looks_like_adapter(target) else target
    if isinstance(adapter, type) or not _looks_like_adapter(adapter):
        raise ImplError(
            f"--impl={label}: {target!r} did not give an adapter (needs name, capabilities "
            "and create(); see conformance/adapter.py)"
        )
    return adapter


def _looks_like_adapter(obj: Any) -> bool:
    if isinstance(obj, Adapter):
        return not isinstance(obj, type)
    if isinstance(obj, type):
        return False
    return all(hasattr(obj, name) for name in ("name", "capabilities", "create"))
