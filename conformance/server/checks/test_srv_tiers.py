"""Security tiers at the router (section 15.3): exact values only, the asked tier served or
403, and the declared 403 policy honoured."""

from __future__ import annotations

import pytest

from conformance import expect
from conformance.server import judge
from conformance.server.drafts import Draft
from conformance.server.faults import for_requirement
from conformance.server.options import TIERS
from conformance.server.session import RouterSession


@pytest.mark.req("TIER-10")
def test_a_request_is_served_at_the_tier_it_asked_for(router_under_test: RouterSession) -> None:
    served = []
    for tier in TIERS:
        exchange = router_under_test.exchange(Draft(tier=tier, note=f"tier {tier!r}"))
        if exchange.answer.status == 403:
            continue  # refusing is what TIER-10 allows instead of serving at another tier
        judge.apply(exchange.analysis.get("TIER-10"))
        served.append(tier)
    if not served:
        expect.not_applicable("the router answered 403 for every tier: nothing was served")


@pytest.mark.req("TIER-7")
def test_declared_tier_policy_answers_403(router_under_test: RouterSession) -> None:
    options = router_under_test.options
    declared = for_requirement(options, "TIER-7")
    if not declared:
        expect.not_applicable("no tier is declared refused (--server-policy tier-403=TIER)")
    for fault in declared:
        judge.status(router_under_test.exchange(fault.draft), fault)


@pytest.mark.req("TIER-6")
def test_unknown_tier_is_refused_400(router_under_test: RouterSession) -> None:
    judge.answered_as_specified(router_under_test, "TIER-6")


@pytest.mark.req("TIER-1")
def test_tier_values_are_case_sensitive(router_under_test: RouterSession) -> None:
    judge.answered_as_specified(router_under_test, "TIER-1")

