"""Server mode as a router's operator meets it: `pytest conformance --server=URL` against
nomyo-mock-router (default and live profiles, plain HTTP and TLS), the two check sets kept
apart, and clear usage errors. The runs themselves start in tests/server/background.py."""

from __future__ import annotations

import pytest

from conformance.server.transport import LIVE_BUDGET
from tests.server.background import USAGE_ERRORS, Background
from tests.server.runs import Finished

# What the live profile sends (README, section server): 44 to a router without API keys or
# tier policy; 4 more with an API key, 3 more with a tier declared 403.
LIVE_PLAIN = 44
LIVE_REQUESTS = LIVE_PLAIN + 4 + 3


def test_mock_router_passes_every_server_requirement(mock_default: Finished) -> None:
    assert mock_default.code == 0, mock_default.output[-4000:]
    report = mock_default.report
    assert report is not None
    assert report["implementation"]["role"] == "server"
    assert report["implementation"]["impl"].startswith("server:http://127.0.0.1:")
    verdicts = mock_default.verdicts()
    assert set(verdicts.values()) <= {"PASS", "not testable"}, {
        rid: v for rid, v in verdicts.items() if v not in ("PASS", "not testable")}
    assert set(mock_default.check_verdicts().values()) == {"PASS"}
    assert not any(r["applies_to"] == "client" for r in report["requirements"])


def test_live_profile_sends_the_documented_requests(background: Background) -> None:
    mock_live = background.mock_run("live")
    assert mock_live.code == 0, mock_live.output[-4000:]
    report = mock_live.report
    assert report is not None
    sent = report["implementation"]["requests_sent"]
    assert sent == LIVE_REQUESTS <= LIVE_BUDGET
    assert report["implementation"]["request_budget"] == LIVE_BUDGET
    assert set(mock_live.verdicts().values()) <= {"PASS", "NOT APPLICABLE", "not testable"}
    skipped = [c for c in report["checks"] if c["verdict"] == "NOT APPLICABLE"]
    assert skipped
    assert all("live profile" in c["message"] for c in skipped), skipped


def test_live_profile_without_a_policy(background: Background) -> None:
    mock_live_plain = background.mock_run("live-plain")
    assert mock_live_plain.code == 0, mock_live_plain.output[-4000:]
    assert mock_live_plain.report is not None
    assert mock_live_plain.report["implementation"]["requests_sent"] == LIVE_PLAIN
    not_applicable = {c["id"]: c["message"] for c in mock_live_plain.report["checks"]
                      if c["verdict"] == "NOT APPLICABLE"}
    assert "declared" in not_applicable["test_srv_headers::test_missing_or_unknown_api_key_"
                                        "is_refused_401"]


def test_router_behind_tls_is_judged_with_server_ca(background: Background) -> None:
    with_ca, without = background.mock_run("tls-ca"), background.mock_run("tls-untrusted")
    assert background.mocks["tls"].url.startswith("https://")
    assert with_ca.code == 0, with_ca.output[-4000:]
    assert set(with_ca.verdicts().values()) == {"PASS"}
    assert without.code != 0
    assert "ERRORED" in set(without.check_verdicts().values()), without.output[-3000:]


def _sets(output: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for line in output.splitlines():
        if "  set: " in line:
            name = line.rsplit("  set: ", 1)[1].strip()
            counts[name] = counts.get(name, 0) + 1
    return counts


def test_list_checks_keeps_the_two_sets_apart(background: Background) -> None:
    out = {name: background.output_of(f"list-{name}")[1]
           for name in ("server", "client", "both", "pyargs")}
    counts = {name: _sets(text) for name, text in out.items()}
    assert set(counts["server"]) == {"server"}, out["server"][-3000:]
    assert set(counts["client"]) == {"client"}, out["client"][-3000:]
    assert counts["both"] == {**counts["client"], **counts["server"]}, out["both"][-3000:]
    assert counts["pyargs"] == counts["server"], out["pyargs"][-3000:]
    assert "test_srv_answer::test_answer_to_a_valid_request[ENC-3]  ENC-3  set: server" in \
        out["server"]


@pytest.mark.parametrize("case", USAGE_ERRORS)
def test_unusable_options_are_usage_errors(case: str, background: Background) -> None:
    code, output = background.output_of(f"usage-{case}")
    assert code == 4, output[-3000:]
    assert USAGE_ERRORS[case][1] in output, output[-3000:]
