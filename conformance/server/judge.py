"""From evidence to verdicts: run a check's cases, and assert what each requirement says.

Cases run through hypothesis at check time: the explicit ones first (the catalogue: all the
live profile runs), then generated ones (as many as the --conformance-profile says). An
assertion states the expected against the actual; a property that cannot be observed
because another requirement is broken ends the check BLOCKED by that requirement.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from conformance import expect
from conformance.server.analysis import BLOCKED, VIOLATED, Analysis, Finding
from conformance.server.faults import DECRYPTION_FAILED, Fault
from conformance.server.session import Exchange


def over(strategy: st.SearchStrategy[Any] | None, explicit: Sequence[Any]
         ) -> Callable[[Callable[[Any], None]], None]:
    """Decorator running `body(case)` now: every explicit case, then generated ones."""

    def run(body: Callable[[Any], None]) -> None:
        if strategy is None and not explicit:
            expect.not_applicable("no case to send under the declared policy and profile")

        def case_of_check(case: Any) -> None:
            body(case)

        source = strategy if strategy is not None else st.sampled_from(list(explicit))
        # the first failure ends the check: one minimal example, no more requests
        test = settings(report_multiple_bugs=False)(given(case=source)(case_of_check))
        for case in reversed(list(explicit)):
            test = example(case=case)(test)
        test()

    return run


def apply(finding: Finding) -> bool:
    """Assert one finding: True when it held, False when this answer could not judge it."""
    if finding.state == VIOLATED:
        raise AssertionError(finding.message)
    if finding.state == BLOCKED:
        expect.blocked(finding.by, finding.message)
    return finding.state != "not applicable"


def answers(analyses: Sequence[Analysis], rid: str) -> None:
    """`rid` over several answers; NOT APPLICABLE when none of them could judge it."""
    judged = [a for a in analyses if apply(a.get(rid))]
    if not judged:
        reasons = {a.get(rid).message for a in analyses}
        expect.not_applicable("; ".join(sorted(reasons)) or "no answer to judge")


def no_answer(exchange: Exchange) -> str:
    return "no answer within the timeout" if exchange.answer.status == 0 else ""


def status(exchange: Exchange, fault: Fault) -> None:
    """The router answered `fault` with the status the spec fixes for its class."""
    answer = exchange.answer
    if answer.status != fault.status:
        actual = no_answer(exchange) or answer.describe()
        raise AssertionError(f"{fault.name}: expected <{fault.status}>, actual <{actual}>")


def detail(exchange: Exchange, fault: Fault, wanted: str) -> None:
    """The refusal's detail is exactly `wanted`; BLOCKED by SRV-16 when there is no detail."""
    answer = exchange.answer
    if answer.status != fault.status:
        return  # judged by the status assertion of the same check
    got = answer.detail
    if got is None:
        expect.blocked("SRV-16", f"{fault.name}: the refusal has no JSON detail to read "
                       f"({answer.describe()})")
    if got != wanted:
        raise AssertionError(f"{fault.name}: expected <detail {wanted!r}>, actual "
                             f"<{answer.redact(repr(got))}>")


def decryption_detail(exchange: Exchange, fault: Fault) -> None:
    detail(exchange, fault, DECRYPTION_FAILED)


def answered_as_specified(session: Any, *rids: str) -> None:
    """Every case of `rids` (catalogue, then generated) gets the status the spec fixes: the
    refusal's, or 200 for a spelling the router must accept."""
    from conformance.server.faults import for_requirement
    from conformance.server.strategies import GENERATED, faults_of

    options = session.options
    catalogue = for_requirement(options, *rids)
    if not catalogue and not any(r in GENERATED for r in rids):
        expect.not_applicable(f"no case of {', '.join(rids)} under the declared policy and "
                              "profile")

    @over(faults_of(options, *rids), catalogue)
    def _(fault: Fault) -> None:
        status(session.exchange(fault.draft), fault)
