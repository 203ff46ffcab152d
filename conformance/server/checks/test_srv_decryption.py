"""Decryption at the router (9.2 step 6, 7.3): the two failures answered alike, no other key
wrap accepted, nothing used whose tag did not verify."""

from __future__ import annotations

import statistics

import pytest

from conformance import expect
from conformance.server import judge
from conformance.server.drafts import Draft
from conformance.server.faults import Fault, for_requirement
from conformance.server.session import RouterSession

GCM_FAULTS = ("tag altered", "ciphertext altered", "nonce altered",
              "tag appended to the ciphertext")
# Timing: a failure is reported only when one kind takes more than FACTOR times as long as
# the other AND the medians differ by more than SLACK seconds. Generous on purpose: a loaded
# machine must never make this flake; only a gross difference is reported.
ROUNDS = 7
FACTOR = 3.0
SLACK = 0.05


@pytest.mark.req("SRV-11")
def test_both_decryption_failures_get_400_decryption_failed(
    router_under_test: RouterSession,
) -> None:
    catalogue = for_requirement(router_under_test.options, "SRV-11", "ENC-6")

    @judge.over(None, catalogue)
    def _(fault: Fault) -> None:
        exchange = router_under_test.exchange(fault.draft)
        judge.status(exchange, fault)
        judge.decryption_detail(exchange, fault)


@pytest.mark.req("SRV-11")
def test_both_decryption_failures_take_alike_time(router_under_test: RouterSession) -> None:
    if router_under_test.options.live:
        expect.not_applicable("live profile: timing needs repeated requests")
    unwrap = Draft(recipient="other", note="AES key wrapped to another key")
    gcm = Draft(tamper="tag", note="tag altered")
    times: dict[str, list[float]] = {"unwrap": [], "gcm": []}
    for _ in range(ROUNDS):
        for name, draft in (("unwrap", unwrap), ("gcm", gcm)):
            answer = router_under_test.send(draft).answer
            if answer.status != 400:
                expect.blocked("SRV-11", f"{draft.note} was answered {answer.status}, not 400")
            times[name].append(answer.elapsed)
    a, b = statistics.median(times["unwrap"]), statistics.median(times["gcm"])
    slow, fast = max(a, b), min(a, b)
    expect.true(slow <= FACTOR * fast or slow - fast <= SLACK,
                f"the two failures alike in time (median ratio at most {FACTOR}, or at most "
                f"{SLACK * 1000:.0f} ms apart)",
                f"median {a * 1000:.1f} ms when the key does not unwrap, {b * 1000:.1f} ms "
                "when the tag does not verify")


@pytest.mark.req("ENC-6")
def test_other_key_wraps_are_not_accepted(router_under_test: RouterSession) -> None:
    @judge.over(None, for_requirement(router_under_test.options, "ENC-6"))
    def _(fault: Fault) -> None:
        answer = router_under_test.exchange(fault.draft).answer
        expect.true(answer.status != 200, f"{fault.name}: refused", answer.describe())


@pytest.mark.req("ENC-7")
def test_nothing_whose_tag_fails_is_used(router_under_test: RouterSession) -> None:
    faults = [f for f in for_requirement(router_under_test.options, "SRV-11")
              if f.name in GCM_FAULTS]

    @judge.over(None, faults)
    def _(fault: Fault) -> None:
        answer = router_under_test.exchange(fault.draft).answer
        expect.true(answer.status != 200, f"{fault.name}: refused", answer.describe())
