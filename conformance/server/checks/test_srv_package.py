"""The request package at the router (9.2 step 5, 7.1, 7.2, 7.5): structure, values, base64,
lengths and duplicate members refused; unknown members ignored."""

from __future__ import annotations

import pytest

from conformance.server import judge
from conformance.server.session import RouterSession


@pytest.mark.req("SRV-8")
def test_malformed_package_is_refused_400(router_under_test: RouterSession) -> None:
    judge.answered_as_specified(router_under_test, "SRV-8")


@pytest.mark.req("SRV-9")
def test_other_version_or_algorithms_are_refused_400(router_under_test: RouterSession) -> None:
    judge.answered_as_specified(router_under_test, "SRV-9")


@pytest.mark.req("SRV-10")
def test_invalid_base64_or_lengths_are_refused_400(router_under_test: RouterSession) -> None:
    judge.answered_as_specified(router_under_test, "SRV-10", "PKG-10")


@pytest.mark.req("PKG-10")
def test_base64_outside_the_alphabet_or_badly_padded_is_refused(
    router_under_test: RouterSession,
) -> None:
    judge.answered_as_specified(router_under_test, "PKG-10")


@pytest.mark.req("SRV-20")
def test_duplicate_member_names_are_refused_400(router_under_test: RouterSession) -> None:
    judge.answered_as_specified(router_under_test, "SRV-20")


@pytest.mark.req("PKG-9")
def test_unknown_top_level_members_are_ignored(router_under_test: RouterSession) -> None:
    judge.answered_as_specified(router_under_test, "PKG-9")


@pytest.mark.req("PKG-11")
def test_unknown_members_in_encrypted_payload_are_ignored(
    router_under_test: RouterSession,
) -> None:
    judge.answered_as_specified(router_under_test, "PKG-11")
