"""Unit tests of the framework's pieces that need no pytest run."""

from __future__ import annotations

import os

import pytest

from conformance import expect, expected, impls
from conformance.adapter import ClientConfig, ErrorInfo, Kind, Outcome
from conformance.adapters._inprocess import error_info
from conformance.verdicts import failure_message, falsifying_example, stable_id, worst


def test_stable_id_ignores_where_the_suite_lives() -> None:
    a = stable_id("conformance/checks/test_pid.py::test_fresh[x-1]")
    b = stable_id("../../site-packages/conformance/checks/test_pid.py::test_fresh[x-1]")
    assert a == b == "test_pid::test_fresh[x-1]"
    assert stable_id("t/test_a.py::TestK::test_m") == "test_a::TestK::test_m"


def test_worst_follows_the_documented_order() -> None:
    assert worst(["PASS", "NOT APPLICABLE"]) == "PASS"
    assert worst(["PASS", "NON-STRICT"]) == "NON-STRICT"
    assert worst(["NON-STRICT", "ERRORED"]) == "ERRORED"
    assert worst(["ERRORED", "FAIL", "PASS"]) == "FAIL"
    assert worst([]) is None


def test_falsifying_example_from_notes_or_text() -> None:
    exc = AssertionError("x")
    exc.__notes__ = ["Falsifying example: test_a(\n    n=3,\n)"]  # add_note is 3.11+
    assert falsifying_example(exc) == "Falsifying example: test_a(\n    n=3,\n)"
    text = "E   AssertionError\nE   Failing test case: t(\nE       n=1,\nE   )\n\nmore"
    assert falsifying_example(None, text) == "Failing test case: t(\n    n=1,\n)"
    assert falsifying_example(AssertionError("plain")) is None


def test_expected_failures_file_format() -> None:
    parsed = expected.parse("# c\n\ntest_a::test_b[1 2]  # why\ntest_a::test_c\n")
    assert parsed.entries == {"test_a::test_b[1 2]": "why", "test_a::test_c": ""}
    assert parsed.stale(["test_a::test_c"]) == ["test_a::test_b[1 2]"]
    assert parsed.stale(["test_other::test_x"]) == []  # module not collected: not stale
    with pytest.raises(expected.ExpectedFailuresError, match="not a check id"):
        expected.parse("two words\n")


def test_expect_messages_read_expected_against_actual() -> None:
    with pytest.raises(AssertionError, match=r"^expected <error security>, actual <result 1>$"):
        expect.error(Outcome.success(1), kind="security")
    bad = Outcome.failure(ErrorInfo("value", "bad url"))
    wanted = r"expected <error security status=401>, actual <error value"
    with pytest.raises(AssertionError, match=wanted):
        expect.error(bad, kind="security", status=401)
    assert expect.error(bad, kind=["security", "value"]).message == "bad url"
    with pytest.raises(AssertionError, match=r"^expected <a result>, actual <error value: bad"):
        expect.ok(bad)
    with pytest.raises(expect.ImplementationCrash):
        expect.ok(Outcome.failure(ErrorInfo("internal", "KeyError")))
    with pytest.raises(pytest.skip.Exception, match="NOT APPLICABLE"):
        expect.ok(Outcome.unsupported("keys.load"))
    with pytest.raises(AssertionError, match="a warning containing 'insecure'"):
        expect.warning(Outcome.success(None, ["UserWarning: other"]), "insecure")


def test_client_config_round_trips_and_refuses_unknown_keys() -> None:
    config = ClientConfig("https://h", api_key="k", max_retries=0)
    assert ClientConfig.from_json(config.to_json()) == config
    with pytest.raises(ValueError, match="unknown ClientConfig keys: colour"):
        ClientConfig.from_json({"base_url": "x", "colour": 1})


def test_unknown_impl_message_lists_builtins() -> None:
    with pytest.raises(impls.ImplError) as info:
        impls.resolve("nomyo-ref")
    assert "nomyo_ref" in str(info.value)
    assert "cmd:COMMAND" in str(info.value)
    with pytest.raises(impls.ImplError, match="cannot import module"):
        impls.resolve("no_such_module_xyz:Adapter")


def test_official_not_installed_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real = impls.importlib.import_module

    def fake(name: str, *args: object) -> object:
        if name == "nomyo":
            raise ImportError("No module named 'nomyo'")
        return real(name, *args)

    monkeypatch.setattr(impls.importlib, "import_module", fake)
    with pytest.raises(impls.ImplError, match=r'pip install "nomyo-conformance\[official\]"'):
        impls.resolve("nomyo")


def test_official_exceptions_map_to_canonical_kinds() -> None:
    nomyo = pytest.importorskip("nomyo")
    from conformance.adapters.seed_port import BUILTIN_KINDS, SEED_KINDS

    kinds = dict(BUILTIN_KINDS)
    kinds.update({getattr(nomyo, n): k for n, k in SEED_KINDS.items()})
    assert not issubclass(nomyo.APIConnectionError, nomyo.APIError)
    assert error_info(nomyo.APIConnectionError("x"), kinds).kind == "connection"
    # only the port's own APIConnectionError is `connection`; a built-in one escaping is a crash
    assert error_info(ConnectionError("x"), kinds).kind == Kind.INTERNAL.value
    assert error_info(ValueError("x"), kinds).kind == "value"
    assert error_info(nomyo.ForbiddenError("f"), kinds).kind == "forbidden"
    assert error_info(nomyo.APIError("a", 502), kinds).status_code == 502
    assert error_info(KeyError("k"), kinds).kind == Kind.INTERNAL.value


def test_trusted_ca_restores_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from conformance.adapters.nomyo_official import trusted_ca

    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    with trusted_ca("/tmp/ca.pem"):
        assert os.environ["SSL_CERT_FILE"] == "/tmp/ca.pem"
    assert "SSL_CERT_FILE" not in os.environ
    monkeypatch.setenv("SSL_CERT_FILE", "/etc/mine.pem")
    with trusted_ca("/tmp/ca.pem"):
        pass
    assert os.environ["SSL_CERT_FILE"] == "/etc/mine.pem"


def test_failure_message_lists_every_failure_of_a_group() -> None:
    import builtins
    import importlib

    group_type = getattr(builtins, "ExceptionGroup", None) or (
        importlib.import_module("exceptiongroup").ExceptionGroup  # Python 3.10
    )
    group = group_type("2", [AssertionError("expected <a>, actual <b>"), KeyError("k")])
    assert failure_message(group, "") == "expected <a>, actual <b>\nKeyError: 'k'"
    assert failure_message(ValueError("v"), "") == "ValueError: v"
    assert failure_message(None, "fallback") == "fallback"


def test_rewriting_an_expected_failures_file_keeps_its_preamble() -> None:
    from conformance import expected

    text = "# about this client\n#  (a) a root cause\n\nmod::test_a  # why\n"
    parsed = expected.parse(text)
    assert parsed.preamble == "# about this client\n#  (a) a root cause\n\n"
    rewritten = expected.render({"mod::test_b"}, {"mod::test_b": "new"}, "", parsed.preamble)
    assert rewritten == "# about this client\n#  (a) a root cause\n\nmod::test_b  # new\n"
