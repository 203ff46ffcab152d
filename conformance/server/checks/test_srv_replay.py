"""Replay (SRV-21, 1.0.1): a package the router decrypted once, sent again under another
client key, is answered 409 {"detail": "replayed request"}."""

from __future__ import annotations

import pytest

from conformance import expect
from conformance.server.drafts import Draft
from conformance.server.session import RouterSession
from conformance.server.wire import encode_public_key

REPLAYED = "replayed request"


@pytest.mark.req("SRV-21")
def test_replayed_package_is_refused_409(router_under_test: RouterSession) -> None:
    if router_under_test.options.live:
        expect.not_applicable("live profile: a replayed package is what an attack looks like")
    original = router_under_test.send(Draft(note="a conforming request"))
    if original.answer.status != 200:
        expect.blocked("SRV-18", f"a conforming request was answered {original.answer.status}")
    thief_key = encode_public_key(router_under_test.keyring.pem("other"))
    headers = [(name, value) for name, value in original.prepared.headers
               if name not in ("X-Public-Key", "X-Payload-ID")]
    headers += [("X-Payload-ID", b"replay-of-a-recorded-package"),
                ("X-Public-Key", thief_key.encode())]
    answer = router_under_test.transport.post(headers, original.prepared.body)
    expect.true(answer.status == 409, "409 for the same package sent again", answer.describe())
    if answer.detail is None:
        expect.blocked("SRV-16", f"the 409 has no JSON detail ({answer.describe()})")
    expect.true(answer.detail == REPLAYED, f"detail {REPLAYED!r}",
                answer.redact(repr(answer.detail)))
