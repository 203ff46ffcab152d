"""How a mutant changes nomyo_ref without editing a file: named, reversible monkeypatches.

A mutant is a function taking a `Patcher`. It names what it changes by module and qualified
name (``"nomyo_ref.protocol:open_response"``, ``"nomyo_ref.client:SecureCompletionClient._call"``)
and gives the replacement, usually a wrapper around the original that changes one behaviour.
Wrapping by name (not editing source text) keeps a mutant alive through refactors that keep
the names; when a name or a parameter it relies on disappears, applying it raises
`MutantNoLongerApplies` with the name, so the registry test says so instead of passing.

Every replacement counts its calls, and a mutant calls `Patcher.fired()` where its behaviour
actually departs from the original: a surviving mutant that never fired tells the reader the
suite never drove the input that triggers it, not that a check looked and missed it.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

PACKAGE = "nomyo_ref"


class MutantNoLongerApplies(Exception):
    """The code a mutant patches is gone (renamed, moved, or its parameters changed)."""


@dataclass
class Stats:
    """What one applied mutant did during a run (written next to the run's report)."""

    mutant: str
    applied: bool = False
    error: str | None = None
    calls: dict[str, int] = field(default_factory=dict)
    fired: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"mutant": self.mutant, "applied": self.applied, "error": self.error,
                "calls": dict(self.calls), "fired": self.fired}


_MISSING = object()
#: Patchers currently applied in this process (undone by `undo_all`, the drivers' safety net).
ACTIVE: list[Patcher] = []


def _split(target: str) -> tuple[str, list[str]]:
    module, sep, qualname = target.partition(":")
    if not sep or not qualname:
        raise ValueError(f"target {target!r} must read 'module:qualname'")
    return module, qualname.split(".")


def _package_modules() -> list[Any]:
    return [m for n, m in list(sys.modules.items())
            if m is not None and (n == PACKAGE or n.startswith(PACKAGE + "."))]


class Patcher:
    """Applies one mutant's replacements, counts their use, and undoes them in reverse."""

    def __init__(self, mutant: str) -> None:
        self.stats = Stats(mutant)
        self._undo: list[tuple[Any, str, Any]] = []
        self.flags: dict[str, Any] = {}

    # -- looking things up ----------------------------------------------------------------

    def resolve(self, target: str) -> tuple[Any, str, Any]:
        """(owner, attribute name, current value) of a target; MutantNoLongerApplies if absent."""
        module_name, parts = _split(target)
        try:
            owner: Any = importlib.import_module(module_name)
        except ImportError as exc:
            raise MutantNoLongerApplies(f"{self.stats.mutant}: module {module_name} is gone "
                                        f"({exc})") from exc
        for part in parts[:-1]:
            owner = getattr(owner, part, _MISSING)
            if owner is _MISSING:
                raise MutantNoLongerApplies(f"{self.stats.mutant}: {target} is gone ({part})")
        name = parts[-1]
        value = owner.__dict__.get(name, _MISSING) if inspect.isclass(owner) else _MISSING
        if value is _MISSING:
            value = getattr(owner, name, _MISSING)
        if value is _MISSING:
            raise MutantNoLongerApplies(f"{self.stats.mutant}: {target} is gone")
        return owner, name, value

    def get(self, target: str) -> Any:
        """The current value of a target (for reading constants and classes)."""
        return self.resolve(target)[2]

    # -- changing things ------------------------------------------------------------------

    def _replace(self, owner: Any, name: str, value: Any) -> None:
        previous = owner.__dict__.get(name, _MISSING) if hasattr(owner, "__dict__") else _MISSING
        self._undo.append((owner, name, previous))
        setattr(owner, name, value)

    def set(self, target: str, value: Any, *, aliases: bool = True) -> None:
        """Replace a constant, class attribute or function by `value` (and its aliases: the
        same object bound under the same name in other nomyo_ref modules)."""
        owner, name, current = self.resolve(target)
        self._activate()
        self._replace(owner, name, value)
        if aliases and not inspect.isclass(owner):
            for module in _package_modules():
                if module is not owner and module.__dict__.get(name, _MISSING) is current:
                    self._replace(module, name, value)

    def delete(self, target: str) -> None:
        """Remove an attribute (restored on undo)."""
        owner, name, _ = self.resolve(target)
        self._activate()
        self._undo.append((owner, name, owner.__dict__.get(name, _MISSING)))
        delattr(owner, name)

    def wrap(
        self,
        target: str,
        make: Callable[[Any], Callable[..., Any]],
        *,
        needs: Sequence[str] = (),
        signature: inspect.Signature | None = None,
    ) -> Any:
        """Replace the function `target` by `make(original)`.

        `needs` lists parameter names the replacement relies on (MutantNoLongerApplies when
        the original lost one). The replacement shows the original's signature (checks of
        the Python API read signatures) unless `signature` is given; it stays a coroutine
        function exactly when the replacement is one. Returns the original.
        """
        original = self.resolve(target)[2]
        if isinstance(original, (staticmethod, classmethod)):
            raise MutantNoLongerApplies(f"{self.stats.mutant}: {target} is no plain function")
        if not callable(original):
            raise MutantNoLongerApplies(f"{self.stats.mutant}: {target} is not callable")
        try:
            shown = inspect.signature(original)
        except (TypeError, ValueError):
            shown = None
        missing = [n for n in needs if shown is None or n not in shown.parameters]
        if missing:
            raise MutantNoLongerApplies(
                f"{self.stats.mutant}: {target} has no parameter {', '.join(missing)}"
            )
        replacement = make(original)
        counted = self._counted(target, replacement, original, signature or shown)
        self.set(target, counted)
        return original

    def on_undo(self, restore: Callable[[], None]) -> None:
        """Register `restore` to run on undo (for changes that are not attribute bindings:
        a function's defaults, a class's bases, a logger's level)."""
        self._activate()
        self._undo.append((_Restore(restore), "run", None))

    def fired(self) -> None:
        """Record that the mutated behaviour took effect (it departed from the original)."""
        self.stats.fired += 1

    def _counted(self, target: str, new: Callable[..., Any], original: Any,
                 shown: inspect.Signature | None) -> Callable[..., Any]:
        calls = self.stats.calls
        calls.setdefault(target, 0)
        if inspect.iscoroutinefunction(new):

            async def wrapper(*args: Any, **kwargs: Any) -> Any:
                calls[target] += 1
                return await new(*args, **kwargs)
        else:

            def wrapper(*args: Any, **kwargs: Any) -> Any:  # type: ignore[misc]
                calls[target] += 1
                return new(*args, **kwargs)

        functools.update_wrapper(wrapper, original, updated=())
        if shown is not None:
            wrapper.__signature__ = shown  # type: ignore[attr-defined]
        return wrapper

    # -- lifecycle ------------------------------------------------------------------------

    def _activate(self) -> None:
        if self not in ACTIVE:
            ACTIVE.append(self)

    def undo(self) -> None:
        """Put back every replaced attribute, newest first (idempotent)."""
        while self._undo:
            owner, name, previous = self._undo.pop()
            if previous is _MISSING:
                if name in getattr(owner, "__dict__", {}):
                    delattr(owner, name)
            else:
                setattr(owner, name, previous)
        if self in ACTIVE:
            ACTIVE.remove(self)


class _Restore:
    """An undo record whose "setting" runs a restore callback."""

    def __init__(self, restore: Callable[[], None]) -> None:
        self.__dict__["_restore"] = restore

    def __setattr__(self, name: str, value: Any) -> None:
        self.__dict__["_restore"]()


def undo_all() -> list[str]:
    """Undo every patcher still applied; returns the mutants that had leaked."""
    leaked = [p.stats.mutant for p in ACTIVE]
    for patcher in list(reversed(ACTIVE)):
        patcher.undo()
    return leaked


def bind(original: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
         ) -> inspect.BoundArguments:
    """The call's arguments by parameter name, defaults filled in."""
    bound = inspect.signature(original).bind(*args, **kwargs)
    bound.apply_defaults()
    return bound
