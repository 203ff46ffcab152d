"""The deterministic fake model behind the router.

Rules (documented in the README, relied on by tests):

- Text answer: the content of the last ``user`` message (text parts of a list content are
  joined with a space), or the next reply of a configured ``script`` (a list, used in turn and
  cycled; or a callable ``f(request: dict, index: int) -> str``). Choice ``i > 0`` of ``n`` is
  prefixed with ``"[i] "`` so each choice is distinct.
- ``stop`` (a string or a list of strings): the content is cut at the earliest occurrence of
  any stop sequence, finish_reason "stop".
- ``max_tokens`` (or ``max_completion_tokens``): the content is cut after that many tokens,
  finish_reason "length" when a cut happened.
- Tools: with ``tool_choice`` "none" no tool is called. With "auto" or absent, the first tool
  (in the order offered) whose function name occurs in the last user message
  (case-insensitive) is called, otherwise the model answers text. With "required" the first
  mentioned tool, else the first tool, is called. With ``{"type": "function", "function":
  {"name": N}}`` tool N is called. A call's arguments are a minimal instance of the tool's
  JSON Schema ``parameters`` (see ``minimal_instance``); content is null and finish_reason is
  "tool_calls".
- Reasoning: ``reasoning_content`` is returned when the model name contains "think" or "r1"
  (case-insensitive), or when the FakeModel was built with ``reasoning=True``.
- Tokens: ``TOKEN_RE`` (runs of word characters, or single other non-space characters).
  prompt_tokens counts the text of every message content (string or text parts);
  completion_tokens counts every returned content, reasoning_content, tool name and
  arguments string over all choices; total_tokens is their sum.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from .validation import Refusal

TOKEN_RE = re.compile(r"\w+|[^\w\s]")
MAX_N = 128

ScriptType = Sequence[str] | Callable[[dict[str, Any], int], str]


#: The text and model of a scripted answer (Scenario.scripted, always=True): fixed, so a
#: check knows what a client must return without the router reading the request.
SCRIPTED_CONTENT = "mock_router scripted answer"
SCRIPTED_MODEL = "mock-router-scripted"


def _bad(detail: str, reason: str | None = None) -> Refusal:
    """A 400 for a chat parameter the fake model cannot use."""
    return Refusal(400, detail, reason, code="parameter_invalid")


def scripted_completion(completion_id: str, created: int) -> dict[str, Any]:
    """The completion of a scripted answer (no ``_metadata``: the router adds it)."""
    tokens = count_tokens(SCRIPTED_CONTENT)
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": SCRIPTED_MODEL,
        "choices": [{"index": 0,
                     "message": {"role": "assistant", "content": SCRIPTED_CONTENT},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 0, "completion_tokens": tokens, "total_tokens": tokens},
    }


def count_tokens(text: str | None) -> int:
    """Number of tokens in ``text`` under the router's simple tokenizer."""
    return len(TOKEN_RE.findall(text)) if text else 0


def truncate_tokens(text: str, limit: int) -> tuple[str, bool]:
    """The first ``limit`` tokens of ``text`` (original spacing kept) and whether it was cut."""
    if limit <= 0:
        return "", bool(TOKEN_RE.search(text))
    for i, match in enumerate(TOKEN_RE.finditer(text), start=1):
        if i == limit:
            end = match.end()
            return text[:end], bool(TOKEN_RE.search(text, end))
    return text, False


def message_text(content: Any) -> str:
    """The text of a message content: a string, or the text parts of a list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text") for p in content if isinstance(p, dict)]
        return " ".join(p for p in parts if isinstance(p, str))
    return ""


def minimal_instance(schema: Any, _depth: int = 0) -> Any:
    """A small value valid against ``schema`` (the JSON Schema subset tools really use).

    Required properties only, enum/const first value, numbers at their lower bound (0 when
    unbounded), strings padded to minLength, arrays of minItems minimal items.
    """
    if _depth > 32 or not isinstance(schema, dict):
        return {} if _depth == 0 else None
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    if "default" in schema:
        return schema["default"]
    for key in ("anyOf", "oneOf"):
        if isinstance(schema.get(key), list) and schema[key]:
            return minimal_instance(schema[key][0], _depth + 1)
    if isinstance(schema.get("allOf"), list):
        merged: dict[str, Any] = {}
        for sub in schema["allOf"]:
            if isinstance(sub, dict):
                for k, v in sub.items():
                    if k == "required" and isinstance(v, list):
                        merged["required"] = [*merged.get("required", []), *v]
                    elif k == "properties" and isinstance(v, dict):
                        merged["properties"] = {**merged.get("properties", {}), **v}
                    else:
                        merged.setdefault(k, v)
        rest = {k: v for k, v in schema.items() if k != "allOf"}
        return minimal_instance({**merged, **rest}, _depth + 1)
    typ = schema.get("type")
    if isinstance(typ, list):
        typ = next((t for t in typ if t != "null"), typ[0] if typ else None)
    if typ is None:
        typ = "object" if "properties" in schema or "required" in schema else None
    if typ == "object":
        props = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
        required = schema.get("required") if isinstance(schema.get("required"), list) else []
        out: dict[str, Any] = {}
        for name in required:
            if isinstance(name, str):
                out[name] = minimal_instance(props.get(name, {}), _depth + 1)
        return out
    if typ == "array":
        count = schema.get("minItems", 0)
        count = count if isinstance(count, int) and 0 <= count <= 64 else 0
        return [minimal_instance(schema.get("items", {}), _depth + 1) for _ in range(count)]
    if typ == "string":
        size = schema.get("minLength", 0)
        size = size if isinstance(size, int) and 0 <= size <= 4096 else 0
        return "a" * size
    if typ in ("integer", "number"):
        return _minimal_number(schema, typ == "integer")
    if typ == "boolean":
        return False
    if typ == "null":
        return None
    return None


def _minimal_number(schema: dict[str, Any], integer: bool) -> int | float:
    def num(key: str) -> float | None:
        v = schema.get(key)
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        return v if ok else None

    try:
        return _bounded_number(schema, integer, num)
    except (OverflowError, ValueError, ZeroDivisionError):
        return 0


def _bounded_number(schema: dict[str, Any], integer: bool,
                    num: Callable[[str], float | None]) -> int | float:
    lows = []
    if num("minimum") is not None:
        lows.append(num("minimum"))
    if num("exclusiveMinimum") is not None:
        excl = num("exclusiveMinimum")
        lows.append(math.floor(excl) + 1 if integer else excl + 1)  # type: ignore[operator]
    highs = [v for v in (num("maximum"), num("exclusiveMaximum")) if v is not None]
    if lows:
        value: float = max(lows)  # type: ignore[type-var]
    elif highs and min(highs) <= 0:  # type: ignore[type-var]
        value = min(highs) - 1  # type: ignore[operator]
    else:
        value = 0
    step = num("multipleOf")
    if step and step > 0:
        value = math.ceil(value / step) * step
    if integer:
        value = math.ceil(value)
    return int(value) if integer or float(value).is_integer() else value


class FakeModel:
    """Deterministic answers: echo, scripted replies, tool calls, n, stop, max_tokens."""

    def __init__(self, script: ScriptType | None = None, *, reasoning: bool | None = None) -> None:
        self.script = script
        self.reasoning = reasoning
        self._lock = threading.Lock()
        self._cycle = itertools.cycle(list(script)) if isinstance(script, (list, tuple)) \
            and script else None

    # -- parameters -----------------------------------------------------------------------
    @staticmethod
    def _params(req: dict[str, Any]) -> tuple[int, int | None, list[str]]:
        n = req.get("n", 1)
        if n is None:
            n = 1
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_N:
            raise _bad(f"'n' must be an integer from 1 to {MAX_N}")
        max_tokens = req.get("max_tokens")
        if max_tokens is None:
            max_tokens = req.get("max_completion_tokens")
        if max_tokens is not None and (isinstance(max_tokens, bool)
                                       or not isinstance(max_tokens, int) or max_tokens < 1):
            raise _bad("'max_tokens' must be a positive integer")
        stop = req.get("stop")
        if stop is None:
            stops: list[str] = []
        elif isinstance(stop, str):
            stops = [stop]
        elif isinstance(stop, list) and all(isinstance(s, str) for s in stop):
            stops = list(stop)
        else:
            raise _bad("'stop' must be a string or a list of strings")
        return n, max_tokens, [s for s in stops if s]

    @staticmethod
    def _tools(req: dict[str, Any]) -> list[dict[str, Any]]:
        tools = req.get("tools")
        if tools is None:
            return []
        if not isinstance(tools, list):
            raise _bad("'tools' must be a list")
        out = []
        for i, tool in enumerate(tools):
            fn = tool.get("function") if isinstance(tool, dict) else None
            if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
                raise _bad(f"tools[{i}] must be {{'type': 'function', 'function': "
                           "{'name': ...}}")
            out.append(fn)
        return out

    def _pick_tool(self, req: dict[str, Any], tools: list[dict[str, Any]],
                   last_user: str) -> dict[str, Any] | None:
        choice = req.get("tool_choice")
        if not (choice is None or choice in ("none", "auto", "required")
                or isinstance(choice, dict)):
            raise _bad("'tool_choice' must be 'none', 'auto', 'required' or "
                       "{'type': 'function', 'function': {'name': ...}}")
        if not tools:
            if isinstance(choice, dict) or choice == "required":
                raise _bad("'tool_choice' asks for a tool but no tools were given")
            return None
        mentioned = next((t for t in tools if t["name"].lower() in last_user.lower()), None)
        if choice is None or choice == "auto":
            return mentioned
        if choice == "none":
            return None
        if choice == "required":
            return mentioned or tools[0]
        if isinstance(choice, dict):
            fn = choice.get("function")
            name = fn.get("name") if isinstance(fn, dict) else None
            for tool in tools:
                if tool["name"] == name:
                    return tool
            raise _bad("'tool_choice' names a function that is not among 'tools'",
                       reason="tool_choice names an unknown function")
        raise _bad("'tool_choice' must be 'none', 'auto', 'required' or "
                   "{'type': 'function', 'function': {'name': ...}}")

    def _base_text(self, last_user: str) -> str | None:
        """The reply before per-choice prefixes (None when a callable script answers)."""
        if callable(self.script):
            return None
        if self._cycle is not None:
            with self._lock:
                return str(next(self._cycle))
        return last_user

    def _text(self, req: dict[str, Any], base: str | None, index: int) -> str:
        if base is None and callable(self.script):
            return str(self.script(req, index))
        base = base or ""
        return base if index == 0 else f"[{index}] {base}"

    # -- the completion -------------------------------------------------------------------
    def complete(self, req: dict[str, Any], *, completion_id: str,
                 created: int | None = None) -> dict[str, Any]:
        """A chat.completion for a validated request (Refusal for bad parameters)."""
        n, max_tokens, stops = self._params(req)
        tools = self._tools(req)
        messages = req["messages"]
        last_user = next((message_text(m.get("content")) for m in reversed(messages)
                          if m.get("role") == "user"), "")
        tool = self._pick_tool(req, tools, last_user)
        model = req["model"]
        think = self.reasoning if self.reasoning is not None else bool(
            re.search("think|r1", model, re.IGNORECASE))
        prompt_tokens = sum(count_tokens(message_text(m.get("content"))) for m in messages)
        completion_tokens = 0
        choices = []
        base = self._base_text(last_user) if tool is None else None
        for index in range(n):
            message: dict[str, Any] = {"role": "assistant"}
            if think:
                message["reasoning_content"] = (
                    f"The user wrote {count_tokens(last_user)} tokens; I answer deterministically.")
                completion_tokens += count_tokens(message["reasoning_content"])
            if tool is not None:
                arguments = json.dumps(minimal_instance(tool.get("parameters") or {}))
                call_id = "call_" + hashlib.sha256(
                    f"{completion_id}:{index}".encode()).hexdigest()[:24]
                message["content"] = None
                message["tool_calls"] = [{"id": call_id, "type": "function",
                                          "function": {"name": tool["name"],
                                                       "arguments": arguments}}]
                completion_tokens += count_tokens(tool["name"]) + count_tokens(arguments)
                finish = "tool_calls"
            else:
                text = self._text(req, base, index)
                finish = "stop"
                cut = min((p for p in (text.find(s) for s in stops) if p >= 0), default=-1)
                if cut >= 0:
                    text = text[:cut]
                if max_tokens is not None:
                    text, truncated = truncate_tokens(text, max_tokens)
                    if truncated:
                        finish = "length"
                message["content"] = text
                completion_tokens += count_tokens(text)
            choices.append({"index": index, "message": message, "logprobs": None,
                            "finish_reason": finish})
        return {
            "id": completion_id,
            "object": "chat.completion",
            "created": int(time.time()) if created is None else created,
            "model": model,
            "choices": choices,
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        }
