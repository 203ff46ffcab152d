"""Refusals as a whole (9.2, 9.3, 18): JSON {"detail": ...} bodies, never a 5xx, no echo of
the plaintext or an API key, and the earlier step of 9.2's order deciding the answer."""

from __future__ import annotations

import pytest
from hypothesis import strategies as st

from conformance import expect
from conformance.server import judge
from conformance.server.drafts import DEFAULT, Draft
from conformance.server.faults import (
    CANARY_MARK,
    FAKE_API_KEY,
    Fault,
    canary_chat,
    for_requirement,
    refusals,
)
from conformance.server.session import RouterSession
from conformance.server.strategies import Pair, any_refusal, ordered_pairs

PLAINTEXT_CLASSES = ("SRV-13", "SRV-32", "SRV-33", "SRV-34", "SRV-15", "SRV-35", "SRV-20",
                     "TIER-7")


@pytest.mark.req("SRV-16")
def test_every_refusal_is_a_json_detail(router_under_test: RouterSession) -> None:
    options = router_under_test.options
    judged: list[Fault] = []

    @judge.over(any_refusal(options), [f for f in refusals(options) if not f.heavy])
    def _(fault: Fault) -> None:
        answer = router_under_test.exchange(fault.draft).answer
        if answer.status < 400:
            return  # not a refusal: the fault's own check judges that
        value = answer.json()
        expect.true(isinstance(value, dict) and isinstance(value.get("detail"), str),
                    f"{fault.name}: a JSON body {{\"detail\": \"...\"}}", answer.describe())
        expect.true(answer.media_type == "application/json",
                    f"{fault.name}: Content-Type application/json",
                    answer.headers.get("content-type", "none"))
        judged.append(fault)

    if not judged:
        expect.not_applicable("the router refused none of the malformed requests (their own "
                              "checks fail)")


@pytest.mark.req("SRV-17")
def test_no_client_input_gets_a_5xx(router_under_test: RouterSession) -> None:
    options = router_under_test.options

    @judge.over(any_refusal(options), refusals(options))
    def _(fault: Fault) -> None:
        exchange = (router_under_test.send(fault.draft) if fault.draft.oversize
                    else router_under_test.exchange(fault.draft))
        status = exchange.answer.status
        expect.true(status < 500, f"{fault.name}: a 4xx (never 5xx)", exchange.answer.describe())


@pytest.mark.req("LOG-5")
def test_refusals_never_echo_the_plaintext(router_under_test: RouterSession) -> None:
    options = router_under_test.options
    model = options.model if len(options.model) >= 6 else None
    cases = [f.draft.plus(plaintext=canary_chat()) if f.req == "TIER-7" else f.draft
             for f in for_requirement(options, *PLAINTEXT_CLASSES)]

    @judge.over(None, cases)
    def _(draft: Draft) -> None:
        answer = router_under_test.exchange(draft).answer
        if answer.status == 200:
            return
        text = answer.detail if answer.detail is not None else answer.raw_text()
        expect.true(CANARY_MARK not in text, f"{draft.note}: a detail naming the field and "
                    "the rule, no message content", answer.redact(repr(text[:200])))
        if model is not None and answer.status == 403:
            expect.true(model not in text, f"{draft.note}: a detail without the decrypted "
                        "model name", answer.redact(repr(text[:200])))


@pytest.mark.req("LOG-7")
def test_refusals_never_echo_an_api_key(router_under_test: RouterSession) -> None:
    options = router_under_test.options
    fake = f"Bearer {FAKE_API_KEY}"
    cases = [f.draft for f in for_requirement(options, "SRV-3", "SRV-26")
             if f.draft.authorization != DEFAULT or f.draft.repeat == "Authorization"]
    others = [for_requirement(options, rid)[0] for rid in ("SRV-5", "SRV-9", "SRV-32")]
    cases += [f.draft.plus(authorization=fake, note=f"{f.name}, with an unknown API key")
              for f in others]
    secrets = [FAKE_API_KEY, "dXNlcjpwYXNz"] + ([options.api_key] if options.api_key else [])
    every = [f.draft for f in refusals(options) if not f.heavy] if options.api_key else []

    @judge.over(None, cases + every)
    def _(draft: Draft) -> None:
        answer = router_under_test.exchange(draft).answer
        if answer.status == 200:
            return
        text = answer.detail if answer.detail is not None else answer.raw_text()
        leaked = [s for s in secrets if s in text]
        expect.true(not leaked, f"{draft.note}: a detail without the Authorization value",
                    "the API key echoed" if leaked else "")


def _distinct(pairs: list[Pair]) -> list[Pair]:
    """One pair for each pair of steps (the explicit cases)."""
    chosen: dict[tuple[int, int], Pair] = {}
    for pair in pairs:
        chosen.setdefault((pair[0].step, pair[1].step), pair)
    return list(chosen.values())


ORDER = {
    "SRV-27": "the body size (413) before everything else",
    "SRV-28": "authentication (401) before every header, package and plaintext check",
    "SRV-29": "Content-Type and the protocol headers before the package",
    "SRV-30": "the package before any decryption",
    "SRV-31": "the tier policy (403) after every plaintext check",
}


@pytest.mark.parametrize(
    "rid", [pytest.param(r, marks=pytest.mark.req(r), id=r) for r in ORDER])
def test_the_earlier_step_decides(router_under_test: RouterSession, rid: str) -> None:
    if rid == "SRV-27" and router_under_test.options.live:
        expect.not_applicable("live profile: sends no oversize bodies")
    pairs = ordered_pairs(router_under_test.options, rid)
    if not pairs:
        expect.not_applicable(f"no two faults to order for {ORDER[rid]} under the declared "
                              "policy and profile")
    light = [p for p in pairs if not (p[0].heavy or p[1].heavy)]
    explicit = _distinct(pairs)[:1] if router_under_test.options.live else _distinct(pairs)

    @judge.over(st.sampled_from(light) if light else None, explicit)
    def _(pair: Pair) -> None:
        first, second, both = pair
        exchange = (router_under_test.send(both) if both.oversize
                    else router_under_test.exchange(both))
        answer = exchange.answer
        expect.true(answer.status == first.status,
                    f"{first.status} for {first.name} (step {first.step}) before "
                    f"{second.status} for {second.name} (step {second.step})",
                    answer.describe() if answer.status else "no answer")
