"""Size limits at the router (9.2 steps 1 and 7): a body over 16 MiB refused 413 without
being read whole; a plaintext over 10 MiB refused 413, one of exactly 10 MiB accepted.

None of these runs in the live profile: oversize bodies look like an attack."""

from __future__ import annotations

import pytest

from conformance import expect
from conformance.server import judge, rawhttp
from conformance.server.drafts import MAX_BODY
from conformance.server.faults import Fault, for_requirement
from conformance.server.session import RouterSession
from conformance.server.transport import tls_context

STREAMED = MAX_BODY + 2 * 1024 * 1024


def _not_live(router_under_test: RouterSession) -> None:
    if router_under_test.options.live:
        expect.not_applicable("live profile: sends no oversize bodies")


@pytest.mark.req("SRV-2")
def test_declared_body_over_16_mib_is_refused_413_unread(
    router_under_test: RouterSession,
) -> None:
    _not_live(router_under_test)

    @judge.over(None, for_requirement(router_under_test.options, "SRV-2"))
    def _(fault: Fault) -> None:
        judge.status(router_under_test.send(fault.draft), fault)


@pytest.mark.req("SRV-2")
def test_streamed_body_over_16_mib_is_refused_413_while_it_comes(
    router_under_test: RouterSession,
) -> None:
    _not_live(router_under_test)
    prepared = router_under_test.prepare(for_requirement(router_under_test.options,
                                                         "SRV-2")[0].draft)
    router_under_test.transport.count()
    result = rawhttp.streamed_oversize(router_under_test.options.url, prepared.headers,
                                       STREAMED, tls_context(router_under_test.options))
    actual = (f"no answer within {result.waited:.0f} s after {result.sent} bytes"
              if result.answer is None else router_under_test.transport.own(result.answer)
              .describe())
    expect.true(result.answer is not None and result.answer.status == 413,
                "413 once more than 16 MiB arrived (chunked, the body never ending)", actual)


@pytest.mark.req("SRV-12")
def test_plaintext_over_10_mib_is_refused_413(router_under_test: RouterSession) -> None:
    _not_live(router_under_test)

    @judge.over(None, for_requirement(router_under_test.options, "SRV-12"))
    def _(fault: Fault) -> None:
        judge.status(router_under_test.exchange(fault.draft), fault)
