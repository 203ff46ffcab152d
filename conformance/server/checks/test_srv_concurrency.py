"""Many requests at once, each answered for its own request: its own payload id, wrapped to
its own client key (PID-4, ENC-5 under load)."""

from __future__ import annotations

import pytest

from conformance import expect
from conformance.server import judge
from conformance.server.drafts import Draft, chat
from conformance.server.session import RouterSession

AT_ONCE = 12
KEYS = ("main", "rsa2048", "other", "plus")


@pytest.mark.req("PID-4", "ENC-5")
def test_simultaneous_requests_are_each_bound_to_their_own(
    router_under_test: RouterSession,
) -> None:
    if router_under_test.options.live:
        expect.not_applicable("live profile: sends no bursts")
    drafts = [Draft(plaintext=chat([{"role": "user", "content": f"request {i}"}], max_tokens=8),
                    client_key=KEYS[i % len(KEYS)], note=f"request {i} of {AT_ONCE}")
              for i in range(AT_ONCE)]
    exchanges = router_under_test.send_many(drafts)
    for exchange in exchanges:
        if exchange.answer.status != 200:
            expect.blocked("SRV-18", f"{exchange.draft.note} was answered "
                           f"{exchange.answer.describe()}")
    for exchange in exchanges:
        analysis = exchange.analysis
        with expect.clause("ENC-5"):
            judge.apply(analysis.get("ENC-5"))
        with expect.clause("PID-4"):
            judge.apply(analysis.get("PID-4"))
