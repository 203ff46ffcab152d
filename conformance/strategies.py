"""Reusable hypothesis strategies for the conformance checks.

Every strategy here produces inputs a *conforming* client must carry or refuse, so that the
checks can say exactly what went wrong with the smallest example. Sizes are kept modest by
default (a handful of messages, short strings): the checks drive a real client against a real
loopback router, and each example costs a round trip.

Unicode note: a port must carry every Unicode *scalar value* (U+0000..U+10FFFF minus the
surrogates U+D800..U+DFFF). Lone surrogates are excluded on purpose: they are not valid UTF-8,
Python's ``json.dumps`` would emit them as ``\\udXXX`` escapes that other languages reject, and
no chat message can contain them. Everything else is in scope: NUL and other controls,
combining marks, right-to-left text, astral characters (emoji, CJK extension B), noncharacters
and private-use code points.
"""

from __future__ import annotations

import json
import string
from typing import Any

from hypothesis import strategies as st

__all__ = [
    "NON_RETRYABLE_STATUSES",
    "RETRYABLE_STATUSES",
    "ROLES",
    "SEED_STATUSES",
    "TRICKY",
    "VALID_TIERS",
    "api_keys",
    "bad_scheme_urls",
    "chat_params",
    "completion_for",
    "error_bodies",
    "error_statuses",
    "extra_params",
    "http_url_spellings",
    "https_url_spellings",
    "invalid_api_keys",
    "invalid_tiers",
    "json_values",
    "message",
    "messages",
    "model_names",
    "retry_after_values",
    "tricky_text",
    "unicode_text",
    "userinfo_urls",
    "valid_tiers",
]

#: Message roles of the seed API reference, plus ``tool`` (OpenAI tool results).
ROLES: tuple[str, ...] = ("system", "user", "assistant", "tool")

#: The only security tiers a client may send (TIER family).
VALID_TIERS: tuple[str, ...] = ("standard", "high", "maximum")

#: Statuses a client retries (RTY family).
RETRYABLE_STATUSES: tuple[int, ...] = (429, 500, 502, 503, 504)

#: Statuses a client must never retry.
NON_RETRYABLE_STATUSES: tuple[int, ...] = (400, 401, 403, 404)

#: Every status the seed names explicitly.
SEED_STATUSES: tuple[int, ...] = (400, 401, 403, 404, 429, 500, 502, 503, 504)

# ---------------------------------------------------------------------------------------------
# text

#: Hand-picked strings that have broken real JSON/UTF-8 code paths.
TRICKY: tuple[str, ...] = (
    "",
    "\x00",
    "a\x00b",
    "\u0000\u001f\u007f\u0080\u009f",
    "e\u0301",  # e + combining acute (NFD): must not be NFC-normalised to U+00E9
    "\u00e9",  # precomposed é
    "\u212b",  # ANGSTROM SIGN, NFC-normalises to U+00C5
    "\u05e9\u05dc\u05d5\u05dd \u0645\u0631\u062d\u0628\u0627",  # Hebrew + Arabic (RTL)
    "\u202e\u2066abc\u2069\u202c",  # bidi controls
    "\U0001f600\U0001f469\u200d\U0001f4bb",  # emoji, ZWJ sequence (astral)
    "\U00020000\U0002a6d6",  # CJK extension B (astral)
    "\U0010ffff\ufffe\uffff",  # noncharacters
    "\ue000\U000f0000",  # private use
    "\ufeff",  # BOM inside content
    '"\\/\b\f\n\r\t',  # every JSON escape
    "</script><!--",
    "\u2028\u2029",  # line/paragraph separators (break naive JS)
)

#: All Unicode scalar values: no surrogates (category Cs), everything else allowed.
_SCALAR = st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=("Cs",))


def unicode_text(min_size: int = 0, max_size: int = 24) -> st.SearchStrategy[str]:
    """Arbitrary strings of Unicode scalar values (astral, NUL, controls, combining marks)."""
    return st.text(_SCALAR, min_size=min_size, max_size=max_size)


def tricky_text() -> st.SearchStrategy[str]:
    """A mix of hand-picked hard cases and generated text, concatenated."""
    picked = st.sampled_from(TRICKY)
    return st.one_of(
        picked,
        unicode_text(),
        st.tuples(picked, unicode_text(max_size=8), picked).map("".join),
    )


# ---------------------------------------------------------------------------------------------
# chat requests


def message(roles: tuple[str, ...] = ROLES) -> st.SearchStrategy[dict[str, Any]]:
    """One chat message: ``{"role", "content"}``, sometimes with ``name``."""
    base = st.fixed_dictionaries({"role": st.sampled_from(roles), "content": tricky_text()})
    with_name = st.fixed_dictionaries(
        {
            "role": st.sampled_from(roles),
            "content": tricky_text(),
            "name": st.text(string.ascii_letters + string.digits + "_-", min_size=1, max_size=16),
        }
    )
    return st.one_of(base, base, with_name)


def messages(min_size: int = 1, max_size: int = 4) -> st.SearchStrategy[list[dict[str, Any]]]:
    """A list of chat messages (non-empty by default, at most four)."""
    return st.lists(message(), min_size=min_size, max_size=max_size)


def model_names() -> st.SearchStrategy[str]:
    """Model identifiers as deployed (``Qwen/Qwen3-0.6B``) and a few unusual but valid ones."""
    known = st.sampled_from(
        ["Qwen/Qwen3-0.6B", "gpt-4o", "llama3.1:8b", "mistral-7b-instruct-v0.3", "m"]
    )
    made = st.text(string.ascii_letters + string.digits + "-_./:", min_size=1, max_size=40)
    return st.one_of(known, made, unicode_text(min_size=1, max_size=12))


_finite = {"allow_nan": False, "allow_infinity": False}

#: A function tool definition as OpenAI specifies it.
_TOOL = st.fixed_dictionaries(
    {
        "type": st.just("function"),
        "function": st.fixed_dictionaries(
            {
                "name": st.text(string.ascii_letters + "_", min_size=1, max_size=12),
                "description": tricky_text(),
                "parameters": st.just(
                    {"type": "object", "properties": {"x": {"type": "string"}}, "required": []}
                ),
            }
        ),
    }
)


def chat_params() -> st.SearchStrategy[dict[str, Any]]:
    """A subset of the seed's OpenAI parameters, each within its documented range.

    ``stream`` is left out: servers refuse ``stream: true`` and a port may refuse it early.
    ``security_tier`` is left out: it is a header, not a parameter (see :func:`valid_tiers`).
    """
    return st.fixed_dictionaries(
        {},
        optional={
            "temperature": st.floats(0, 2, **_finite),
            "max_tokens": st.integers(1, 4096),
            "top_p": st.floats(0, 1, **_finite),
            "frequency_penalty": st.floats(-2, 2, **_finite),
            "presence_penalty": st.floats(-2, 2, **_finite),
            "stop": st.one_of(tricky_text(), st.lists(tricky_text(), min_size=1, max_size=4)),
            "n": st.integers(1, 4),
            "tools": st.lists(_TOOL, min_size=1, max_size=2),
            "tool_choice": st.sampled_from(["auto", "none"]),
            "user": tricky_text(),
            "seed": st.integers(-(2**31), 2**31 - 1),
        },
    )


def json_values(max_leaves: int = 6) -> st.SearchStrategy[Any]:
    """Arbitrary JSON values (finite floats, scalar-value strings)."""
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**53), 2**53),
        st.floats(**_finite),
        unicode_text(max_size=12),
    )
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3),
            st.dictionaries(unicode_text(max_size=8), inner, max_size=3),
        ),
        max_leaves=max_leaves,
    )


#: Names a port must never treat as ordinary parameters (they are headers/targets).
RESERVED_NAMES: frozenset[str] = frozenset(
    {"model", "messages", "security_tier", "api_key", "base_url", "stream"}
)


def extra_params() -> st.SearchStrategy[dict[str, Any]]:
    """Unknown extra parameters: a port must pass them through unchanged (OpenAI style)."""
    names = st.text(string.ascii_lowercase + "_", min_size=3, max_size=14).filter(
        lambda n: n not in RESERVED_NAMES
    )
    return st.dictionaries(names, json_values(), max_size=3)


# ---------------------------------------------------------------------------------------------
# credentials and tiers

_VISIBLE_ASCII = "".join(chr(c) for c in range(0x21, 0x7F))


def api_keys() -> st.SearchStrategy[str]:
    """Valid API keys: 1..64 visible ASCII characters."""
    return st.one_of(
        st.text(_VISIBLE_ASCII, min_size=1, max_size=64),
        st.sampled_from(["sk-test", "nomyo_live_0123456789abcdef", "a" * 64]),
    )


def invalid_api_keys() -> st.SearchStrategy[str]:
    """API keys that must be refused before sending (header injection, non-ASCII)."""
    prefix = st.text(_VISIBLE_ASCII, min_size=0, max_size=8)
    bad = st.sampled_from(
        ["\r", "\n", "\r\nX-Evil: 1", "\x00", " ", "\t", "é", "\u2028", "\U0001f511"]
    )
    return st.tuples(prefix, bad, prefix).map("".join)


def valid_tiers() -> st.SearchStrategy[str]:
    """The three tiers, spelled exactly."""
    return st.sampled_from(VALID_TIERS)


def invalid_tiers() -> st.SearchStrategy[str]:
    """Tiers a client must refuse with ValueError: case variants, spaces, unknown, injections."""
    variants = st.sampled_from(VALID_TIERS).flatmap(
        lambda t: st.sampled_from(
            [t.upper(), t.capitalize(), f" {t}", f"{t} ", f"{t}\n", f"{t}\r\nX-Evil: 1", t + "x"]
        )
    )
    others = st.sampled_from(["", "low", "medium", "max", "premium", "STANDARD", "höch"])
    made = st.text(string.ascii_letters, min_size=1, max_size=10).filter(
        lambda s: s not in VALID_TIERS
    )
    return st.one_of(variants, others, made)


# ---------------------------------------------------------------------------------------------
# base URLs


def _spell_scheme(scheme: str) -> st.SearchStrategy[str]:
    return st.sampled_from(
        [scheme, scheme.upper(), scheme.capitalize(), scheme[:-1] + scheme[-1].upper()]
    )


def _spelling(scheme: str, hostport: str) -> st.SearchStrategy[str]:
    return st.builds(
        lambda s, lead, slashes, trail: f"{lead}{s}://{hostport}{slashes}{trail}",
        _spell_scheme(scheme),
        st.sampled_from(["", " ", "\t", "\n "]),
        st.sampled_from(["", "/", "//"]),
        st.sampled_from(["", " ", "\n", "\t "]),
    )


def https_url_spellings(hostport: str) -> st.SearchStrategy[str]:
    """Spellings of ``https://hostport`` a client must normalise and accept."""
    return _spelling("https", hostport)


def http_url_spellings(hostport: str) -> st.SearchStrategy[str]:
    """Spellings of ``http://hostport``: allowed only with allow_http, else SecurityError."""
    return _spelling("http", hostport)


def bad_scheme_urls(hostport: str) -> st.SearchStrategy[str]:
    """URLs with a scheme other than http/https, or no host: ValueError, nothing sent."""
    schemes = st.sampled_from(["ftp", "ws", "wss", "file", "httpx", "htps", "gopher", "javascript"])
    return st.one_of(
        st.builds(lambda s: f"{s}://{hostport}", schemes),
        st.sampled_from([hostport, f"//{hostport}", "https://", "http://", "https:///v1", ""]),
    )


def userinfo_urls(hostport: str, scheme: str = "http") -> st.SearchStrategy[str]:
    """URLs carrying user-info (``user:pw@host``): ValueError, nothing sent.

    Includes the classic confusion ``https://trusted.example@evil`` where the real host is the
    part after ``@``.
    """
    users = st.sampled_from(["user", "user:pw", "api.nomyo.ai", ":", "a%40b:c"])
    return st.builds(lambda u: f"{scheme}://{u}@{hostport}", users)


# ---------------------------------------------------------------------------------------------
# error answers


def error_statuses(include_seed: bool = True) -> st.SearchStrategy[int]:
    """Any status 100..599 except 200 (and except 101, which switches protocols).

    The seed statuses are sampled explicitly as well, so each of them shows up often.
    """
    anything = st.integers(100, 599).filter(lambda s: s not in (101, 200))
    if include_seed:
        return st.one_of(st.sampled_from(SEED_STATUSES), anything)
    return anything


def _huge_detail() -> str:
    return "x" * 100_000


def error_bodies(include_huge: bool = False) -> st.SearchStrategy[tuple[str, Any]]:
    """Error bodies of every shape, as ``(shape, body)`` for ``Scenario.status(code, body)``.

    Shapes: ``detail_str`` (``{"detail": "<text>"}``, the FastAPI convention), ``detail_other``
    (detail present but not a string), ``object`` (a JSON object without ``detail``),
    ``json_other`` (valid JSON that is not an object, given as bytes), ``text`` (not JSON),
    ``empty`` (no body), and with ``include_huge`` ``huge`` (a 100 kB detail: off by default,
    because hypothesis prints the whole example when it fails). Bodies given as ``bytes`` are
    sent raw; any other value is JSON-encoded by the router.
    """
    detail_text = st.text(
        st.characters(min_codepoint=0x20, max_codepoint=0x10FFFF, exclude_categories=("Cs",)),
        min_size=1,
        max_size=40,
    ).filter(lambda s: s.strip() != "")
    return st.one_of(
        detail_text.map(lambda d: ("detail_str", {"detail": d})),
        st.one_of(
            st.integers(), st.lists(st.integers(), max_size=2), st.just(None), st.just({"a": 1})
        ).map(lambda d: ("detail_other", {"detail": d})),
        st.dictionaries(
            st.text(string.ascii_lowercase, min_size=1, max_size=6).filter(lambda k: k != "detail"),
            st.integers(),
            max_size=2,
        ).map(lambda o: ("object", o)),
        st.sampled_from([[1, 2], "just a string", 42, None, True]).map(
            lambda v: ("json_other", json.dumps(v).encode())
        ),
        st.sampled_from([b"<html>Bad Gateway</html>", b"oops", b"\xff\xfe not utf-8"]).map(
            lambda b: ("text", b)
        ),
        st.just(("empty", None)),
        *([st.just(("huge", {"detail": _huge_detail()}))] if include_huge else []),
    )


def retry_after_values() -> st.SearchStrategy[str]:
    """Retry-After header values a client must survive: small deltas, garbage, negatives.

    Only cheap values (0 or 1 second at most) so that a port honouring them stays fast.
    """
    return st.sampled_from(["0", "1", "0.0", "-1", "soon", "", "Wed, 21 Oct 2015 07:28:00 GMT"])


# ---------------------------------------------------------------------------------------------
# completions (for Scenario.completion)


def completion_for(
    content: st.SearchStrategy[str] | None = None,
) -> st.SearchStrategy[dict[str, Any]]:
    """An OpenAI ``chat.completion`` object with generated content, for the router to send."""
    content = content if content is not None else tricky_text()
    choice = st.fixed_dictionaries(
        {
            "index": st.just(0),
            "message": st.fixed_dictionaries(
                {"role": st.just("assistant"), "content": content},
                optional={"reasoning_content": tricky_text()},
            ),
            "finish_reason": st.sampled_from(["stop", "length", "tool_calls"]),
        }
    )
    return st.fixed_dictionaries(
        {
            "id": st.text(string.ascii_letters + string.digits + "-", min_size=1, max_size=20),
            "object": st.just("chat.completion"),
            "created": st.integers(0, 2**31),
            "model": model_names(),
            "choices": st.lists(choice, min_size=1, max_size=2),
            "usage": st.fixed_dictionaries(
                {
                    "prompt_tokens": st.integers(0, 1000),
                    "completion_tokens": st.integers(0, 1000),
                    "total_tokens": st.integers(0, 2000),
                }
            ),
        },
        optional={"extra_field": json_values(max_leaves=3)},
    )
