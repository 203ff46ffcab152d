"""The decrypted plaintext at the router (9.2 step 9): a UTF-8 JSON object with a model and
messages, and `stream` true (refused: encrypted inference does not stream) or false."""

from __future__ import annotations

import pytest

from conformance.server import judge
from conformance.server.faults import STREAMING, Fault, for_requirement
from conformance.server.session import RouterSession


@pytest.mark.req("SRV-13")
def test_plaintext_not_a_json_object_is_refused_400(router_under_test: RouterSession) -> None:
    judge.answered_as_specified(router_under_test, "SRV-13")


@pytest.mark.req("SRV-32")
def test_invalid_model_is_refused_400(router_under_test: RouterSession) -> None:
    judge.answered_as_specified(router_under_test, "SRV-32")


@pytest.mark.req("SRV-33")
def test_invalid_messages_are_refused_400(router_under_test: RouterSession) -> None:
    judge.answered_as_specified(router_under_test, "SRV-33")


@pytest.mark.req("SRV-34")
def test_invalid_message_elements_are_refused_400(router_under_test: RouterSession) -> None:
    judge.answered_as_specified(router_under_test, "SRV-34")


@pytest.mark.req("SRV-35")
def test_stream_neither_true_nor_false_is_refused_400(router_under_test: RouterSession) -> None:
    judge.answered_as_specified(router_under_test, "SRV-35")


@pytest.mark.req("SRV-15")
def test_stream_true_is_refused_400_streaming_is_not_supported(
    router_under_test: RouterSession,
) -> None:
    @judge.over(None, for_requirement(router_under_test.options, "SRV-15"))
    def _(fault: Fault) -> None:
        exchange = router_under_test.exchange(fault.draft)
        judge.status(exchange, fault)
        judge.detail(exchange, fault, STREAMING)
