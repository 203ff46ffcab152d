"""The key endpoint (9.1, 3.2): one SubjectPublicKeyInfo PEM block, text/plain, RSA of 2048
to 16384 bits with exponent 65537 (4096 recommended), served without credentials."""

from __future__ import annotations

import re

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from conformance import expect
from conformance.server import judge
from conformance.server.drafts import Draft
from conformance.server.session import RouterSession, parse_server_key
from conformance.server.transport import Answer

PEM_TYPES = ("text/plain", "application/x-pem-file")
ONE_BLOCK = re.compile(r"\A\s*-----BEGIN PUBLIC KEY-----\r?\n[A-Za-z0-9+/=\r\n]+"
                       r"-----END PUBLIC KEY-----\s*\Z")


def _der(key: rsa.RSAPublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def _served(router_under_test: RouterSession) -> tuple[Answer, rsa.RSAPublicKey]:
    """The first key answer and its key; BLOCKED by DISC-20 when there is none."""
    answer = router_under_test.key_answer()
    try:
        return answer, parse_server_key(answer)
    except ValueError as exc:
        expect.blocked("DISC-20", str(exc))


@pytest.mark.req("DISC-20")
def test_key_endpoint_serves_one_public_key_block(router_under_test: RouterSession) -> None:
    answer = router_under_test.key_answer()  # sent without Authorization, as clients do
    expect.equal(answer.status, 200, "GET /pki/public_key without credentials: status")
    text = answer.body.decode("utf-8", errors="replace")
    expect.true(ONE_BLOCK.match(text) is not None,
                "exactly one PEM block labelled PUBLIC KEY", repr(text[:80]))
    try:
        parse_server_key(answer)
    except ValueError as exc:
        raise AssertionError(f"expected <an RSA SubjectPublicKeyInfo>, actual <{exc}>") from None


@pytest.mark.req("DISC-20")
def test_key_endpoint_is_stable(router_under_test: RouterSession) -> None:
    _, first = _served(router_under_test)
    second = router_under_test.transport.get_key()
    try:
        again = parse_server_key(second)
    except ValueError as exc:
        raise AssertionError(f"expected <the same key on a second call>, actual <{exc}>") \
            from None
    expect.true(_der(first) == _der(again), "the same key on every call (a rotation "
                "between two calls a moment apart is not expected)", "another key")


@pytest.mark.req("DISC-21")
def test_key_endpoint_content_type(router_under_test: RouterSession) -> None:
    answer, _ = _served(router_under_test)
    expect.true(answer.media_type in PEM_TYPES, "Content-Type text/plain or "
                "application/x-pem-file", answer.headers.get("content-type", "none"))


@pytest.mark.req("DISC-22")
def test_server_key_size_and_exponent(router_under_test: RouterSession) -> None:
    _, key = _served(router_under_test)
    expect.true(2048 <= key.key_size <= 16384, "an RSA key of 2048 to 16384 bits",
                f"{key.key_size} bits")
    exponent = key.public_numbers().e
    expect.true(exponent == 65537, "public exponent 65537", exponent)


@pytest.mark.req("DISC-23")
def test_server_key_is_4096_bits(router_under_test: RouterSession) -> None:
    _, key = _served(router_under_test)
    expect.equal(key.key_size, 4096, "server key size in bits")


@pytest.mark.req("KEY-3")
def test_server_key_is_subject_public_key_info_pem(router_under_test: RouterSession) -> None:
    answer, _ = _served(router_under_test)
    text = answer.body.decode("utf-8", errors="replace").strip()
    expect.true(text.startswith("-----BEGIN PUBLIC KEY-----"),
                "a PEM block labelled PUBLIC KEY (SubjectPublicKeyInfo)", repr(text[:40]))


@pytest.mark.req("KEY-3")
def test_client_key_with_crlf_and_no_final_newline_is_accepted(
    router_under_test: RouterSession,
) -> None:
    baseline = router_under_test.exchange(Draft(note="a conforming request"))
    if baseline.answer.status != 200:
        expect.blocked("SRV-18", f"a conforming request was answered {baseline.answer.status}")
    crlf = router_under_test.exchange(Draft(key_crlf=True, note="X-Public-Key PEM with CRLF "
                                            "line ends and no final newline"))
    expect.equal(crlf.answer.status, 200, "X-Public-Key with CRLF and no final newline: status")
    judge.apply(crlf.analysis.get("ENC-5"))
