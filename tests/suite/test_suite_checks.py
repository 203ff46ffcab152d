"""The proof that the conformance checks judge: they pass a correct client and fail broken ones.

A check that cannot fail is a defect. The toy client (tests/suite/toy_client.py) with no
defects must pass every check (PASS or NOT APPLICABLE); with each single defect, the checks
listed for it in PROOFS must fail. The runs are real conformance sessions
(`--impl=tests.suite.broken:<defect>`, narrowed to the listed checks, verdicts read from
`--conformance-report`), batched into two driver processes that overlap on the two cores.
Every check of conformance/checks must appear in PROOFS, or in UNPROVEN with the reason.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.suite.broken import API_DEFECTS
from tests.suite.toy_client import DEFECTS

ROOT = Path(__file__).resolve().parents[2]
CHECKS = ROOT / "conformance" / "checks"
FAILING = {"FAIL", "ERRORED", "NON-STRICT"}

#: defect -> the checks (stable ids) it must fail.
PROOFS: dict[str, tuple[str, ...]] = {
    # package and encryption
    "oaep_sha1": ("test_package::test_package_opens_with_oaep_sha256_and_gcm_without_aad",),
    "mgf1_sha1": ("test_package::test_package_opens_with_oaep_sha256_and_gcm_without_aad",),
    "tag_appended": ("test_package::test_nonce_tag_and_key_sizes",),
    "short_nonce": (
        "test_package::test_nonce_tag_and_key_sizes",
        "test_package::test_package_matches_schema_and_has_only_defined_members",
    ),
    "reuse_nonce": ("test_package::test_fresh_aes_key_and_nonce_per_call",),
    "wrong_version": ("test_package::test_package_matches_schema_and_has_only_defined_members",),
    "extra_package_field": (
        "test_package::test_package_matches_schema_and_has_only_defined_members",
    ),
    "no_tag_check": (
        "test_package::test_gcm_tag_is_verified_on_the_answer",
        "test_response_checks::test_crypto_failure_is_security_error[tamper tag]",
    ),
    # headers and tiers
    "weak_client_key": ("test_headers::test_public_key_header_is_percent_encoded_rsa_spki",),
    "public_key_not_encoded": ("test_headers::test_public_key_header_is_percent_encoded_rsa_spki",),
    "tier_unvalidated": ("test_headers::test_invalid_tier_refused_before_sending",),
    "api_key_unvalidated": ("test_headers::test_invalid_api_key_refused_before_sending",),
    "no_bearer": ("test_headers::test_bearer_token_is_exactly_the_api_key",),
    "empty_bearer": ("test_headers::test_no_authorization_without_api_key[none]",),
    "wrong_content_type": ("test_headers::test_content_type_is_octet_stream",),
    "tier_header_always": ("test_headers::test_no_tier_header_unless_asked",),
    "tier_dropped_on_retry": ("test_headers::test_tier_kept_on_every_attempt",),
    "tier_mangled": ("test_headers::test_tier_sent_as_header",),
    # payload ids
    "reuse_payload_id": ("test_payload_id::test_payload_ids_never_repeat",),
    "payload_id_not_uuid4": ("test_payload_id::test_payload_id_is_canonical_uuid4",),
    "no_pid_check": (
        "test_payload_id::test_answer_bound_to_another_id_is_refused",
        "test_payload_id::test_answer_without_metadata_is_refused",
        "test_payload_id::test_replayed_answer_of_an_earlier_call_is_refused",
    ),
    "pid_changes_on_retry": (
        "test_payload_id::test_retry_may_reuse_the_payload_id_and_still_binds",
    ),
    # response checks and content
    "no_version_check": (
        "test_response_checks::test_other_version_refused_as_value",
        "test_response_checks::test_version_and_algorithm_checked_before_decryption",
    ),
    "no_algorithm_check": ("test_response_checks::test_other_algorithm_refused_as_value",),
    "leaky_crypto_errors": (
        "test_response_checks::test_one_opaque_message_for_every_crypto_failure",
    ),
    "non_object_plaintext_accepted": (
        "test_response_checks::test_plaintext_not_a_json_object_is_security_error",
    ),
    "bad_plaintext_value": (
        "test_response_checks::test_plaintext_not_a_json_object_is_security_error",
    ),
    "structure_crash": ("test_response_checks::test_missing_or_mistyped_fields_refused_as_value",),
    "no_key_algorithm_check": (
        "test_response_checks::test_other_key_or_payload_algorithm_refused",
    ),
    "strict_unknown_fields": ("test_response_checks::test_optional_and_unknown_members_accepted",),
    "body_not_object_as_security": (
        "test_response_checks::test_body_not_a_json_object_refused_as_value",
    ),
    "own_metadata_missing": ("test_response_content::test_result_is_what_the_server_sent",),
    "drops_server_metadata": ("test_response_content::test_result_is_what_the_server_sent",),
    # errors
    "wrong_status_map": ("test_errors::test_seed_status_maps_to_its_kind[403]",),
    "error_body_crash": ("test_errors::test_error_body_of_any_shape",),
    "no_detail": (
        "test_errors::test_error_body_of_any_shape",
        "test_errors::test_huge_error_body[2000]",
    ),
    "wrong_status_code": (
        "test_errors::test_seed_status_maps_to_its_kind[400]",
        "test_errors::test_any_other_status_is_api_error",
    ),
    "drop_internal": (
        "test_errors::test_dropped_connection_is_connection_error",
        "test_errors::test_unreachable_server_is_connection_error",
        "test_discovery::test_key_fetch_network_failure",
    ),
    "follows_redirects": ("test_errors::test_redirect_is_not_followed[307]",),
    "content_type_sensitive": ("test_errors::test_json_body_parsed_whatever_content_type",),
    # secrets
    "leaks_api_key_in_errors": (
        "test_secrets::test_no_api_key_in_authentication_error",
        "test_secrets::test_no_secret_in_any_error",
    ),
    "leaks_plaintext_in_errors": ("test_secrets::test_no_secret_in_any_error",),
    "leaks_plaintext_in_logs": ("test_secrets::test_no_secret_in_any_log_record",),
    "repr_leaks_api_key": ("test_secrets::test_client_repr_hides_the_api_key",),
    # retries
    "retry_400": ("test_retries::test_non_retryable_status_is_tried_once[400]",),
    "no_retry_503": (
        "test_retries::test_retryable_status_is_retried_max_retries_times[503]",
        "test_retries::test_retry_then_success",
    ),
    "extra_retries": (
        "test_retries::test_zero_retries_is_one_attempt",
        "test_retries::test_retryable_status_is_retried_max_retries_times[429]",
    ),
    "no_retry_on_drop": ("test_retries::test_dropped_connection_is_retried",),
    "ignore_retry_after": ("test_retries::test_retry_after_is_honoured",),
    "no_key_fetch_retry": ("test_retries::test_key_fetch_is_retried",),
    "max_retries_unvalidated": ("test_retries::test_negative_max_retries_refused[-1]",),
    "first_error_kept": ("test_retries::test_last_answer_decides_the_exception",),
    "retry_after_crash": ("test_retries::test_bad_retry_after_is_ignored[soon]",),
    "default_retries_3": ("test_retries::test_default_is_two_retries",),
    "constant_backoff": ("test_retries::test_backoff_doubles",),
    "insecure_mode_differs": ("test_package::test_secure_memory_off_changes_nothing_on_the_wire",),
    # HTTPS rule and TLS
    "http_allowed": ("test_https::test_http_without_allow_http_sends_nothing",),
    "sends_before_refusing": ("test_https::test_http_without_allow_http_sends_nothing",),
    "http_refused_as_value": ("test_https::test_http_without_allow_http_sends_nothing",),
    "no_url_normalise": (
        "test_https::test_http_spellings_work_with_allow_http",
        "test_https::test_https_spellings_are_normalised_and_work",
    ),
    "userinfo_allowed": ("test_https::test_userinfo_urls_refused",),
    "other_scheme_allowed": ("test_https::test_other_schemes_and_malformed_urls_refused",),
    "no_http_warning": ("test_https::test_allow_http_warns_insecure",),
    "no_tls_verify": (
        "test_https::test_untrusted_certificate_refused",
        "test_https::test_only_the_given_ca_is_trusted",
    ),
    # discovery
    "no_pin_check": ("test_discovery::test_wrong_pin_refused",),
    "pin_case_sensitive": ("test_discovery::test_right_pin_works[upper]",),
    "no_key_cache": ("test_discovery::test_key_is_cached",),
    "no_rotation_retry": ("test_discovery::test_rotation_is_followed",),
    "resend_on_unchanged_key": ("test_discovery::test_400_with_unchanged_key_is_invalid_request",),
    "resend_twice": ("test_discovery::test_resend_after_rotation_refused_too",),
    "weak_server_key_accepted": ("test_discovery::test_bad_server_key_refused",),
    "key_fetch_with_auth": (
        "test_discovery::test_key_fetched_before_first_post_without_credentials",
    ),
    "key_fetch_status_as_value": ("test_discovery::test_key_fetch_error_status",),
    "pin_only_first_fetch": ("test_discovery::test_pin_checked_on_refetch",),
    # request plaintext and size
    "tier_in_payload": ("test_request_plaintext::test_tier_and_api_key_never_in_plaintext",),
    "api_key_in_payload": ("test_request_plaintext::test_tier_and_api_key_never_in_plaintext",),
    "drops_params": ("test_request_plaintext::test_plaintext_is_model_messages_and_parameters",),
    "drops_unknown_params": ("test_request_plaintext::test_unknown_parameters_pass_through",),
    "unicode_mangle": ("test_request_plaintext::test_every_tricky_string_in_one_request",),
    "stream_allowed": (
        "test_request_plaintext::test_stream_true_is_never_sent",
        "test_request_plaintext::test_stream_true_is_refused_locally",
    ),
    "nan_allowed": ("test_request_plaintext::test_non_json_values_are_refused",),
    "model_unvalidated": ("test_request_plaintext::test_malformed_model_or_messages_refused",),
    "size_limit_off": (
        "test_size_limit::test_one_byte_over_is_refused_before_sending",
        "test_size_limit::test_limit_counts_utf8_bytes_not_characters",
    ),
    "size_limit_strict": ("test_size_limit::test_exactly_ten_mebibytes_is_sent",),
    # keys
    "weak_generated_key": ("test_keys::test_generated_files_are_pkcs8_and_spki_of_a_4096_bit_key",),
    "key_file_world_readable": ("test_keys::test_file_modes",),
    "key_dir_open": ("test_keys::test_created_key_directory_is_private",),
    "password_ignored": (
        "test_keys::test_password_encrypts_the_private_key",
        "test_keys::test_right_password_loads",
    ),
    "wrong_password_crash": ("test_keys::test_wrong_or_missing_password_is_value_error[wrong]",),
    "weak_own_key_accepted": ("test_keys::test_weak_own_key_refused",),
    "overwrites_bad_key": ("test_keys::test_unloadable_key_is_never_overwritten",),
    "writes_keys_without_key_dir": ("test_keys::test_no_files_without_key_dir",),
    # the seed's Python surface (tests.suite.broken.ToySeedAdapter)
    "missing_export": ("test_python_api::test_exports",),
    "api_key_before_allow_http": ("test_python_api::test_secure_chat_completion_signature",),
    "sync_create": ("test_python_api::test_create_and_acreate_are_coroutines",),
    "wrong_router_url_default": ("test_python_api::test_secure_completion_client_signatures",),
    "sync_fetch_key": ("test_python_api::test_low_level_methods_are_coroutines",),
    "error_status_default_none": ("test_python_api::test_exception_constructors_and_attributes",),
    "connection_error_outside_api_error": ("test_python_api::test_exception_hierarchy",),
    "constructor_fetches_key": ("test_python_api::test_constructors_do_no_network_io",),
    "api_key_override_ignored": ("test_python_api::test_create_consumes_api_key_override",),
    # the last rules: other key wraps, Content-Type, Retry-After cap, the Python objects
    "oaep_sha1_fallback": ("test_response_checks::test_other_key_wrap_padding_refused[oaep-sha1]",),
    "content_type_200_strict": (
        "test_response_checks::test_content_type_of_a_200_is_ignored[text-plain]",
        "test_response_checks::test_content_type_of_a_200_is_ignored[missing]",
    ),
    "retry_after_uncapped": ("test_retries::test_retry_after_never_exceeds_the_cap[3600]",),
    "payload_id_unvalidated": (
        "test_python_calls::test_send_secure_request_refuses_bad_payload_ids",
    ),
    "mlock_required": ("test_python_calls::test_call_succeeds_without_memory_locking",),
    "plaintext_chained": ("test_python_calls::test_exceptions_carry_no_plaintext",),
    "crypto_error_chained": (
        "test_python_calls::test_decryption_error_exposes_no_cause[tamper tag]",
        "test_python_calls::test_decryption_error_exposes_no_cause[wrong recipient]",
    ),
    "unlocked_key_fetch": ("test_python_calls::test_concurrent_first_calls_share_keys",),
}

#: Checks no toy defect can fail yet, and why.
UNPROVEN: dict[str, str] = {
    "test_python_api::test_create_consumes_base_url_override": "the toy refuses per-call "
    "base_url (unsupported: NOT APPLICABLE), so no toy defect can reach it",
    "test_python_api::test_base_url_override_obeys_the_https_rule": "same: per-call base_url "
    "is unsupported by the toy",
}


def _node(check_id: str) -> str:
    module, _, rest = check_id.partition("::")
    path = f"conformance/checks/{module}.py"
    return f"{path}::{rest}" if rest else path


def _write_keys(base: Path) -> tuple[Path, Path]:
    """A server key file (2048 bits: fast, and enough for every check) and a client key dir."""
    pem = serialization.PrivateFormat.PKCS8
    server = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    server_path = base / "server.pem"
    server_path.write_bytes(
        server.private_bytes(serialization.Encoding.PEM, pem, serialization.NoEncryption())
    )
    client_dir = base / "client_keys"
    client_dir.mkdir(mode=0o700)
    client = rsa.generate_private_key(public_exponent=65537, key_size=4096)
    (client_dir / "private_key.pem").write_bytes(
        client.private_bytes(serialization.Encoding.PEM, pem, serialization.NoEncryption())
    )
    (client_dir / "private_key.pem").chmod(0o600)
    (client_dir / "public_key.pem").write_bytes(
        client.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return server_path, client_dir


def _job(name: str, impl: str, targets: list[str], reports: Path) -> dict[str, object]:
    return {
        "name": name,
        "args": [*targets, f"--impl={impl}", "--conformance-report", str(reports / name),
                 "-q", "-p", "no:warnings", "-p", "no:randomly"],
    }  # fmt: skip


@pytest.fixture(scope="module")
def verdicts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, str]]:
    """Run every proof (and the full suite against the correct toy): run -> {check: verdict}."""
    base = tmp_path_factory.mktemp("proofs")
    server_key, client_dir = _write_keys(base)
    reports = base / "reports"
    jobs = [
        _job("toy", "tests.suite.broken:toy", ["conformance/checks"], reports),
        _job(
            "toy_seed",
            "tests.suite.broken:toy_seed",
            [_node("test_python_api::"), _node("test_python_calls::")],
            reports,
        ),
    ]
    jobs += [
        _job(defect, f"tests.suite.broken:{defect}", sorted({_node(c) for c in checks}), reports)
        for defect, checks in PROOFS.items()
    ]
    env = dict(os.environ, NOMYO_CONFORMANCE_SERVER_KEY=str(server_key),
               NOMYO_CONFORMANCE_CLIENT_KEY_DIR=str(client_dir))  # fmt: skip
    procs = []
    for index in range(2):
        batch = base / f"jobs{index}.json"
        batch.write_text(json.dumps(jobs[index::2]), encoding="utf-8")
        log = (base / f"driver{index}.log").open("w")
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "tests.suite.test_suite_checks_driver", str(batch)],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            )
        )  # fmt: skip
    for proc in procs:
        proc.wait(timeout=900)
    found: dict[str, dict[str, str]] = {}
    for job in jobs:
        report = reports / str(job["name"]) / "report.json"
        if report.is_file():
            data = json.loads(report.read_text(encoding="utf-8"))
            found[str(job["name"])] = {c["id"]: c["verdict"] for c in data["checks"]}
    return found


@pytest.mark.parametrize("run", ["toy", "toy_seed"])
def test_toy_client_passes_every_check(verdicts: dict[str, dict[str, str]], run: str) -> None:
    """The correct toy client (and its seed-shaped surface) is judged conforming: no check
    fails on a correct client."""
    toy = verdicts.get(run)
    assert toy, f"the {run} run produced no report"
    bad = {c: v for c, v in toy.items() if v not in ("PASS", "NOT APPLICABLE")}
    assert not bad, f"checks failing on the correct toy client: {bad}"


@pytest.mark.parametrize("defect", sorted(PROOFS))
def test_defect_is_caught(verdicts: dict[str, dict[str, str]], defect: str) -> None:
    """Each defect fails the checks that guard the rule it breaks."""
    got = verdicts.get(defect)
    assert got is not None, f"no report for {defect}"
    missed = {c: got.get(c, "not run") for c in PROOFS[defect] if got.get(c) not in FAILING}
    assert not missed, f"{defect} ({DEFECTS[defect]}) was not caught by: {missed}"


def _check_functions() -> set[str]:
    """`module::test_name` of every check function in conformance/checks."""
    names = set()
    for path in CHECKS.glob("test_*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names.update(
            f"{path.stem}::{node.name}"
            for node in tree.body
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")
        )
    return names


def test_every_check_is_proven() -> None:
    """Every check is failed by at least one defect, or is listed in UNPROVEN with a reason."""
    proven = {c.partition("[")[0] for checks in PROOFS.values() for c in checks}
    unproven = _check_functions() - proven - set(UNPROVEN)
    assert not unproven, f"checks no defect fails: {sorted(unproven)}"


def test_every_defect_has_a_proof() -> None:
    """Every defect of the toy client is used by a proof (no dead defects)."""
    defects = set(DEFECTS) | set(API_DEFECTS)
    assert defects == set(PROOFS), sorted(defects ^ set(PROOFS))


@pytest.mark.skipif(
    not os.environ.get("NOMYO_CONFORMANCE_SLOW"), reason="set NOMYO_CONFORMANCE_SLOW=1 to run"
)
def test_reference_client_passes_the_suite() -> None:
    """`pytest conformance --impl=nomyo_ref` passes (slow: a few minutes on two cores)."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "conformance", "--impl=nomyo_ref", "-q",
         "-p", "no:warnings"],
        cwd=ROOT, capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-4000:]
