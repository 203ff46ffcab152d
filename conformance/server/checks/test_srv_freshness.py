"""Every answer is sealed anew (ENC-8): no AES key and no nonce comes back twice."""

from __future__ import annotations

import itertools

import pytest

from conformance import expect
from conformance.server import judge
from conformance.server.drafts import Draft
from conformance.server.session import RouterSession

# Requests other checks send anyway (the live profile pays nothing extra for this check).
DRAFTS = (
    Draft(note="a conforming request"),
    Draft(key_style="javascript", note="X-Public-Key spelled javascript"),
    Draft(key_style="lower-hex", note="X-Public-Key spelled lower-hex"),
)


@pytest.mark.req("ENC-8")
def test_each_answer_has_a_fresh_key_and_nonce(router_under_test: RouterSession) -> None:
    analyses = [router_under_test.exchange(d).analysis for d in DRAFTS]
    for analysis in analyses:
        for rid in ("SRV-18", "PKG-6", "ENC-5"):
            finding = analysis.get(rid)
            if finding.state != "held":
                expect.blocked(finding.by or rid, f"an answer cannot be opened: {finding.message}")
    nonces = [a.nonce for a in analyses]
    keys = [a.aes_key for a in analyses]
    for (i, a), (j, b) in itertools.combinations(enumerate(zip(nonces, keys, strict=True)), 2):
        expect.true(a[0] != b[0], "a fresh nonce in every answer",
                    f"answers {i} and {j} share a nonce")
        expect.true(a[1] != b[1], "a fresh AES key in every answer",
                    f"answers {i} and {j} share an AES key")
    judge.answers(analyses, "ENC-5")
