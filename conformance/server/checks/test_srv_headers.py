"""The request headers at the router (9.2 steps 2 to 4, and 6.2): API key, Content-Type and
Content-Encoding, X-Payload-ID, X-Public-Key (spellings a router must decode, keys and forms
it must refuse), repeated fields."""

from __future__ import annotations

import pytest

from conformance import expect
from conformance.server import judge
from conformance.server.drafts import Draft
from conformance.server.session import RouterSession


@pytest.mark.req("SRV-3")
def test_missing_or_unknown_api_key_is_refused_401(router_under_test: RouterSession) -> None:
    if not router_under_test.options.policy.auth_required:
        expect.not_applicable("the router is declared to require no API key "
                              "(--server-policy auth=none, or no --server-api-key)")
    judge.answered_as_specified(router_under_test, "SRV-3")


@pytest.mark.req("SRV-4")
def test_content_type_other_than_octet_stream_is_refused_415(
    router_under_test: RouterSession,
) -> None:
    judge.answered_as_specified(router_under_test, "SRV-4")


@pytest.mark.req("SRV-5")
def test_invalid_payload_id_is_refused_400(router_under_test: RouterSession) -> None:
    judge.answered_as_specified(router_under_test, "SRV-5")


@pytest.mark.req("SRV-6")
def test_unusable_public_key_header_is_refused_400(router_under_test: RouterSession) -> None:
    judge.answered_as_specified(router_under_test, "SRV-6")


@pytest.mark.req("SRV-7")
def test_client_key_not_rsa_or_under_2048_bits_is_refused_400(
    router_under_test: RouterSession,
) -> None:
    judge.answered_as_specified(router_under_test, "SRV-7")


@pytest.mark.req("SRV-24")
def test_public_key_not_one_spki_block_is_refused_400(router_under_test: RouterSession) -> None:
    judge.answered_as_specified(router_under_test, "SRV-24")


@pytest.mark.req("SRV-25")
def test_client_key_too_large_or_odd_exponent_is_refused_400(
    router_under_test: RouterSession,
) -> None:
    judge.answered_as_specified(router_under_test, "SRV-25")


@pytest.mark.req("SRV-26")
def test_repeated_protocol_header_fields_are_refused(router_under_test: RouterSession) -> None:
    judge.answered_as_specified(router_under_test, "SRV-26")


@pytest.mark.req("SRV-38")
def test_content_encoding_is_refused_415(router_under_test: RouterSession) -> None:
    judge.answered_as_specified(router_under_test, "SRV-38")


SPELLINGS = (
    Draft(key_style="javascript", note="X-Public-Key spelled javascript"),
    Draft(key_style="lower-hex", note="X-Public-Key spelled lower-hex"),
    Draft(key_style="plus-literal", client_key="plus",
          note="X-Public-Key with '+' and '/' unescaped"),
)


@pytest.mark.req("HDR-5")
def test_public_key_header_is_plainly_percent_decoded(router_under_test: RouterSession) -> None:
    baseline = router_under_test.exchange(Draft(note="a conforming request"))
    if baseline.answer.status != 200:
        expect.blocked("SRV-18", f"a conforming request was answered {baseline.answer.status}")
    if baseline.analysis.get("ENC-5").state != "held":
        expect.blocked("ENC-5", "the answer to a conforming request is not wrapped to its key")

    @judge.over(None, SPELLINGS)
    def _(draft: Draft) -> None:
        exchange = router_under_test.exchange(draft)
        expect.true(exchange.answer.status == 200,
                    f"{draft.note}: 200, the key decoded as sent",
                    exchange.answer.describe())
        expect.true(exchange.analysis.get("ENC-5").state == "held",
                    f"{draft.note}: the answer wrapped to that key", "wrapped to another key")
