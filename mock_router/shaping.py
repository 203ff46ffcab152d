"""JSON text no ``json.dumps`` of a dict can produce: repeated member names, exact sizes,
deep nesting (the answers of Scenario.duplicate, .large and .nested).

Each function takes the object the router would have sent and returns its JSON text, changed
in one way only, so a client check that refuses the answer can only have noticed that.
"""

from __future__ import annotations

import json
from typing import Any

from .scenarios import SAME

PADDING_MEMBER = "x_mock_padding"
NESTED_MEMBER = "x_mock_nested"
_PLACEHOLDER = "\u0000mock-router-placeholder\u0000"


def _member(name: str, value: Any) -> str:
    return f"{json.dumps(name)}: {json.dumps(value)}"


def _object_with_duplicate(obj: dict[str, Any], member: str, value: Any) -> str:
    """``obj`` as JSON text with ``member`` written twice (the extra copy first)."""
    extra = obj.get(member) if value == SAME else value
    parts = [_member(member, extra)]
    parts += [_member(k, v) for k, v in obj.items()]
    if member not in obj:
        parts.append(_member(member, extra))
    return "{" + ", ".join(parts) + "}"


def with_duplicate(obj: dict[str, Any], path: tuple[str, ...], member: str,
                   value: Any) -> str:
    """JSON text of ``obj`` where the object found at ``path`` (() = ``obj`` itself) names
    ``member`` twice. A missing or non-object target falls back to the top level."""
    target: Any = obj
    for name in path:
        target = target.get(name) if isinstance(target, dict) else None
    if not path or not isinstance(target, dict):
        return _object_with_duplicate(obj, member, value)
    outer = dict(obj)
    cursor = outer
    for name in path[:-1]:
        cursor[name] = dict(cursor[name])
        cursor = cursor[name]
    cursor[path[-1]] = _PLACEHOLDER
    text = json.dumps(outer)
    return text.replace(json.dumps(_PLACEHOLDER), _object_with_duplicate(target, member, value),
                        1)


def _with_member_text(obj: dict[str, Any], name: str, value_text: str) -> str:
    text = json.dumps(obj)
    sep = ", " if len(obj) else ""
    return f"{text[:-1]}{sep}{json.dumps(name)}: {value_text}}}"


def padded_package(package: dict[str, Any], size: int) -> str:
    """The package with a padding member making the text exactly ``size`` bytes (ASCII), or
    unchanged when it is already that large."""
    bare = _with_member_text(package, PADDING_MEMBER, '""')
    pad = size - len(bare)
    if pad < 0:
        return json.dumps(package)
    return _with_member_text(package, PADDING_MEMBER, '"' + "a" * pad + '"')


def padded_completion(completion: dict[str, Any], size: int) -> str:
    """The completion grown to exactly ``size`` bytes of JSON: the first choice's text
    content gets the padding; without one, a top-level padding member does."""
    base = json.dumps(completion)
    pad = size - len(base.encode("utf-8"))
    if pad <= 0:
        return base
    choices = completion.get("choices")
    message = choices[0].get("message") if isinstance(choices, list) and choices \
        and isinstance(choices[0], dict) else None
    if isinstance(message, dict) and isinstance(message.get("content"), str):
        grown = json.loads(base)
        grown["choices"][0]["message"]["content"] += "a" * pad
        return json.dumps(grown)
    bare = _with_member_text(completion, PADDING_MEMBER, '""')
    pad = size - len(bare.encode("utf-8"))
    return _with_member_text(completion, PADDING_MEMBER, '"' + "a" * max(pad, 0) + '"')


def nested(obj: dict[str, Any], depth: int) -> str:
    """``obj`` with a member nesting arrays so the document is ``depth`` levels deep (the
    top-level object is level 1)."""
    levels = depth - 1
    return _with_member_text(obj, NESTED_MEMBER, "[" * levels + "]" * levels)
