"""Hypothesis strategies of server mode: valid requests, and more of each fault class.

Valid requests vary what a conforming client may vary (messages, parameters, the payload
id, the tier, the X-Public-Key spelling, the key size); faults vary the broken part within
its class of spec 9.2, so a router that refuses only the catalogue's spellings is still
caught. Every strategy yields a `Draft` or a `Fault`: hypothesis prints them readably.
"""

from __future__ import annotations

import json
import string
from typing import Any

from hypothesis import strategies as st

from conformance.server.drafts import FRESH, Draft, chat
from conformance.server.faults import (
    ABSENT,
    CANARY,
    Fault,
    canary_chat,
    combine,
    fault,
    for_requirement,
    refusals,
)
from conformance.server.options import TIERS, ServerOptions
from conformance.server.wire import EXPECTED_VALUES, KEY_STYLES

VISIBLE = "".join(chr(c) for c in range(0x21, 0x7F))
SAFE_TEXT = st.text(alphabet=string.ascii_letters + string.digits + " .,!?-", max_size=40)


# -- valid requests -------------------------------------------------------------------------

def _messages() -> st.SearchStrategy[list[dict[str, Any]]]:
    user = st.builds(lambda c: {"role": "user", "content": c}, SAFE_TEXT)
    other = st.builds(lambda r, c: {"role": r, "content": c},
                      st.sampled_from(["system", "assistant", "developer"]), SAFE_TEXT)
    return st.tuples(st.lists(other, max_size=2), user).map(lambda t: [*t[0], t[1]])


WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}


def _params() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional={
        "temperature": st.floats(0, 2, allow_nan=False).map(lambda x: round(x, 2)),
        "max_tokens": st.integers(1, 32),
        "top_p": st.floats(0.01, 1, allow_nan=False).map(lambda x: round(x, 2)),
        "n": st.integers(1, 2),
        "stop": st.sampled_from(["\n", ["END", "."]]),
        "user": st.text(alphabet=string.ascii_lowercase, min_size=1, max_size=12),
        "seed": st.integers(0, 2**31),
        "stream": st.just(False),
        "tools": st.just([WEATHER_TOOL]),
    })


def valid_payload_ids() -> st.SearchStrategy[str]:
    """A fresh UUID (what clients send) or any 1..128 visible ASCII characters (SRV-5)."""
    return st.one_of(st.just(FRESH), st.text(alphabet=VISIBLE, min_size=1, max_size=128))


def valid_drafts(options: ServerOptions) -> st.SearchStrategy[Draft]:
    """Requests a conforming client may send and the declared policy lets through."""
    plaintexts = st.builds(lambda m, p: chat(m, **p), _messages(), _params())
    return st.builds(
        Draft,
        plaintext=plaintexts,
        payload_id=valid_payload_ids(),
        tier=st.sampled_from((None, *options.policy.allowed_tiers())),
        key_style=st.sampled_from(KEY_STYLES),
        client_key=st.sampled_from(("main", "rsa2048")),
    )


# -- more of each fault class ---------------------------------------------------------------

def _content_types() -> st.SearchStrategy[Fault]:
    media = st.from_regex(r"\A[a-z]{1,12}/[a-z0-9.+-]{1,24}\Z").filter(
        lambda m: m != "application/octet-stream")
    return media.map(lambda m: fault("SRV-4", 3, 415, f"Content-Type {m}", content_type=m))


def _payload_ids() -> st.SearchStrategy[Fault]:
    too_long = st.text(alphabet=VISIBLE, min_size=129, max_size=300)
    blank = st.tuples(st.text(alphabet=VISIBLE, max_size=20), st.sampled_from(" \t"),
                      st.text(alphabet=VISIBLE, min_size=1, max_size=20)).map("".join)
    foreign = st.tuples(st.text(alphabet=VISIBLE, max_size=20),
                        st.characters(min_codepoint=0x80, max_codepoint=0x7FF)).map(
        lambda t: (t[0] + t[1]).encode("utf-8"))
    return st.one_of(too_long, blank, foreign).map(
        lambda v: fault("SRV-5", 4, 400, f"X-Payload-ID {v!r:.60}", payload_id=v))


def _tiers() -> st.SearchStrategy[Fault]:
    wrong = st.text(alphabet=string.ascii_letters + string.digits + "-_,", max_size=12).filter(
        lambda t: t not in TIERS)
    cased = st.sampled_from(TIERS).flatmap(
        lambda t: st.lists(st.booleans(), min_size=len(t), max_size=len(t)).map(
            lambda flips: "".join(c.upper() if f else c for c, f in zip(t, flips, strict=True)))
    ).filter(lambda t: t not in TIERS)
    return st.one_of(
        wrong.map(lambda t: fault("TIER-6", 4, 400, f"X-Security-Tier {t!r}", tier=t)),
        cased.map(lambda t: fault("TIER-1", 4, 400, f"X-Security-Tier {t!r}", tier=t)),
    )


def _public_keys() -> st.SearchStrategy[Fault]:
    garbage = st.text(alphabet=string.ascii_letters + string.digits + "%-=/", min_size=1,
                      max_size=60).filter(lambda v: "BEGIN" not in v)
    return garbage.map(lambda v: fault("SRV-6", 4, 400, f"X-Public-Key {v!r}", key_header=v))


_JSON_OTHER = st.one_of(st.none(), st.booleans(), st.integers(), st.lists(st.integers(),
                                                                          max_size=2),
                        st.dictionaries(st.sampled_from("ab"), st.integers(), max_size=2))
_MEMBERS = ("version", "algorithm", "encrypted_payload", "encrypted_aes_key", "key_algorithm",
            "payload_algorithm", "encrypted_payload.ciphertext", "encrypted_payload.nonce",
            "encrypted_payload.tag")


def _structures() -> st.SearchStrategy[Fault]:
    removed = st.sampled_from(_MEMBERS).map(
        lambda m: fault("SRV-8", 5, 400, f"{m} missing", edits=[("remove", m, "")]))
    retyped = st.tuples(st.sampled_from(_MEMBERS), _JSON_OTHER).filter(
        lambda t: not (t[0] == "encrypted_payload" and isinstance(t[1], dict))).map(
        lambda t: fault("SRV-8", 5, 400, f"{t[0]} = {json.dumps(t[1])}",
                        edits=[("set", t[0], json.dumps(t[1]))]))
    bodies = st.one_of(_JSON_OTHER.filter(lambda v: not isinstance(v, dict)).map(
        lambda v: json.dumps(v).encode()), st.binary(max_size=40).filter(_not_json_object))
    return st.one_of(removed, retyped, bodies.map(
        lambda b: fault("SRV-8", 5, 400, f"body {b!r:.40}", body=b)))


def _not_json_object(data: bytes) -> bool:
    try:
        return not isinstance(json.loads(data), dict)
    except ValueError:
        return True


def _values() -> st.SearchStrategy[Fault]:
    return st.tuples(st.sampled_from(sorted(EXPECTED_VALUES)), st.text(max_size=30)).filter(
        lambda t: t[1] != EXPECTED_VALUES[t[0]]).map(
        lambda t: fault("SRV-9", 5, 400, f"{t[0]} {t[1]!r}",
                        edits=[("set", t[0], json.dumps(t[1]))]))


_BINARY = ("encrypted_aes_key", "encrypted_payload.ciphertext", "encrypted_payload.nonce",
           "encrypted_payload.tag")


def _base64() -> st.SearchStrategy[Fault]:
    broken = st.tuples(st.sampled_from(_BINARY),
                       st.sampled_from(("bad-char", "urlsafe", "newline", "space")),
                       st.integers(0, 700)).map(
        lambda t: fault("PKG-10", 5, 400, f"{t[0]} {t[1]} at {t[2]}",
                        edits=[("b64", t[0], f"{t[1]}:{t[2]}")]))
    nonce = st.integers(0, 40).filter(lambda n: n != 12).map(
        lambda n: fault("SRV-10", 5, 400, f"nonce of {n} bytes",
                        edits=[("resize", "encrypted_payload.nonce", str(n))]))
    tag = st.integers(0, 40).filter(lambda n: n != 16).map(
        lambda n: fault("SRV-10", 5, 400, f"tag of {n} bytes",
                        edits=[("resize", "encrypted_payload.tag", str(n))]))
    return st.one_of(broken, nonce, tag)


def _plaintexts() -> st.SearchStrategy[Fault]:
    not_object = st.one_of(
        _JSON_OTHER.filter(lambda v: not isinstance(v, dict)).map(
            lambda v: json.dumps([v, CANARY]).encode()),
        st.binary(max_size=40).filter(_not_json_object).map(lambda b: CANARY.encode() + b),
    ).map(lambda p: fault("SRV-13", 9, 400, f"plaintext {p!r:.50}", plaintext=p))
    return not_object


def _models() -> st.SearchStrategy[Fault]:
    bad = st.one_of(st.just(ABSENT), st.none(), st.just(""), st.integers(), st.booleans(),
                    st.lists(st.text(max_size=5), max_size=2), st.dictionaries(
                        st.just("name"), st.text(max_size=5), max_size=1))
    return bad.map(lambda m: fault("SRV-32", 9, 400, "model missing" if m is ABSENT
                                   else f"model {m!r}", plaintext=canary_chat(model=m)))


def _message_lists() -> st.SearchStrategy[Fault]:
    bad = st.one_of(st.just(ABSENT), st.none(), st.just([]), st.text(max_size=10),
                    st.integers(), st.dictionaries(st.just("role"), st.just("user")))
    return bad.map(lambda m: fault("SRV-33", 9, 400, "messages missing" if m is ABSENT
                                   else f"messages {m!r:.50}",
                                   plaintext=canary_chat(messages=m)))


def _message_elements() -> st.SearchStrategy[Fault]:
    not_object = _JSON_OTHER.filter(lambda v: not isinstance(v, dict))
    no_role = st.fixed_dictionaries({"content": st.just(CANARY)}, optional={
        "role": _JSON_OTHER.filter(lambda v: not isinstance(v, str))})
    element = st.one_of(not_object, no_role)
    valid = st.just({"role": "user", "content": "hi"})
    lists = st.tuples(st.lists(valid, max_size=2), element, st.lists(valid, max_size=1)).map(
        lambda t: [*t[0], t[1], *t[2]])
    return lists.map(lambda m: fault("SRV-34", 9, 400, f"messages {m!r:.60}",
                                     plaintext=canary_chat(messages=m)))


def _streams() -> st.SearchStrategy[Fault]:
    bad = st.one_of(st.none(), st.text(max_size=6), st.integers(),
                    st.floats(allow_nan=False, allow_infinity=False),
                    st.lists(st.booleans(), max_size=2))
    return bad.map(lambda v: fault("SRV-35", 9, 400, f"stream {v!r}",
                                   plaintext=canary_chat(stream=v)))


GENERATED = {
    "SRV-4": _content_types,
    "SRV-5": _payload_ids,
    "TIER-1": _tiers,
    "TIER-6": _tiers,
    "SRV-6": _public_keys,
    "SRV-8": _structures,
    "SRV-9": _values,
    "SRV-10": _base64,
    "PKG-10": _base64,
    "SRV-13": _plaintexts,
    "SRV-32": _models,
    "SRV-33": _message_lists,
    "SRV-34": _message_elements,
    "SRV-35": _streams,
}


def faults_of(options: ServerOptions, *reqs: str) -> st.SearchStrategy[Fault]:
    """The catalogue of `reqs`, and generated ones judged by one of `reqs`."""
    parts: list[st.SearchStrategy[Fault]] = []
    catalogue = for_requirement(options, *reqs)
    if catalogue:
        parts.append(st.sampled_from(catalogue))
    for maker in dict.fromkeys(GENERATED[r] for r in reqs if r in GENERATED):
        parts.append(maker().filter(lambda f: f.req in reqs))
    return st.one_of(*parts)


def any_refusal(options: ServerOptions) -> st.SearchStrategy[Fault]:
    """A request of any refused class (catalogue or generated): SRV-16, SRV-17, LOG-5."""
    generated = [maker() for maker in dict.fromkeys(GENERATED.values())]
    catalogue = [f for f in refusals(options) if not f.heavy]
    return st.one_of(st.sampled_from(catalogue), *generated)


def order_requirement(first: Fault, second: Fault) -> str | None:
    """The requirement of 9.2 saying `first`'s step is checked before `second`'s, if any."""
    if first.step == 1:
        return "SRV-27"
    if first.step == 2:
        return "SRV-28"
    if first.step in (3, 4) and second.step >= 5:
        return "SRV-29"
    if first.step == 5 and second.step >= 7:
        return "SRV-30"
    if second.step == 10 and first.step in (7, 8, 9):
        return "SRV-31"
    return None


Pair = tuple[Fault, Fault, Draft]


def ordered_pairs(options: ServerOptions, rid: str) -> list[Pair]:
    """Requests with two faults whose steps `rid` orders and whose statuses differ: the
    earlier step must decide the answer. Oversize ones only outside the live profile."""
    faults = refusals(options)
    pairs = []
    for first in faults:
        for second in faults:
            if (first.step < second.step and first.status != second.status
                    and order_requirement(first, second) == rid
                    and (both := combine(first, second)) is not None):
                pairs.append((first, second, both))
    return pairs
