"""The answer to a valid request, property by property (sections 7, 9.4, 10, 12.2, 15.3).

One check per requirement, each reading the same answers: a conforming request (the live
profile sends only that one) and, outside the live profile, generated ones varying the
messages, parameters, payload id, tier, X-Public-Key spelling and key size.
"""

from __future__ import annotations

import pytest

from conformance.server import judge
from conformance.server.analysis import Analysis
from conformance.server.drafts import Draft, chat
from conformance.server.session import RouterSession
from conformance.server.strategies import WEATHER_TOOL, valid_drafts

ANSWER_REQUIREMENTS = (
    "SRV-18", "SRV-19", "RSP-1", "RSP-2", "PKG-1", "PKG-2", "PKG-3", "PKG-4", "PKG-5",
    "PKG-6", "PKG-7", "PKG-10", "ENC-1", "ENC-2", "ENC-3", "ENC-4", "ENC-5", "ENC-9",
    "RSP-3", "RSP-4", "RSP-5", "RSP-6", "PID-4", "RSP-8", "RSP-9", "SRV-23",
)
CONFORMING = Draft(note="a conforming request")
WITH_TOOLS = Draft(
    plaintext=chat([{"role": "user", "content": "get_weather for Paris"}], tools=[WEATHER_TOOL],
                   max_tokens=16),
    note="a request offering a tool",
)


@pytest.mark.parametrize(
    "rid", [pytest.param(r, marks=pytest.mark.req(r), id=r) for r in ANSWER_REQUIREMENTS])
def test_answer_to_a_valid_request(router_under_test: RouterSession, rid: str) -> None:
    options = router_under_test.options
    explicit = [CONFORMING] if options.live else [CONFORMING, WITH_TOOLS]
    seen: list[Analysis] = []

    @judge.over(valid_drafts(options), explicit)
    def _(draft: Draft) -> None:
        analysis = router_under_test.exchange(draft).analysis
        judge.apply(analysis.get(rid))
        seen.append(analysis)

    judge.answers(seen, rid)
