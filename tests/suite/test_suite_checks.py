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
from typing import Any

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
    # -- the wire (checks helper B): defects of the wire checks, each failing its EXACT set
    # package and encryption (test_package)
    "oaep_sha1": ("test_package::test_package_opens_with_oaep_sha256_and_gcm_without_aad",),
    "mgf1_sha1": ("test_package::test_package_opens_with_oaep_sha256_and_gcm_without_aad",),
    "aad_used": ("test_package::test_package_opens_with_oaep_sha256_and_gcm_without_aad",),
    "tag_appended": ("test_package::test_tag_is_not_appended_to_the_ciphertext",),
    "short_nonce": ("test_package::test_nonce_tag_and_key_sizes",),
    "reuse_nonce": ("test_package::test_fresh_aes_key_and_nonce_per_call",),
    "wrong_version": ("test_package::test_package_matches_schema_and_has_only_defined_members",),
    "extra_package_field": (
        "test_package::test_package_matches_schema_and_has_only_defined_members",
    ),
    "noncanonical_base64": (
        "test_package::test_package_matches_schema_and_has_only_defined_members",
    ),
    "no_tag_check": (
        "test_package::test_gcm_tag_is_verified_on_the_answer",
        "test_response_checks::test_crypto_failure_is_security_error[tamper ciphertext]",
        "test_response_checks::test_crypto_failure_is_security_error[tamper tag]",
        "test_response_checks::test_crypto_failure_is_security_error[tamper nonce]",
        "test_response_checks::test_one_opaque_message_for_every_crypto_failure",
        "test_low_level::test_decrypt_response_checks_the_answer[tampered tag]",
    ),
    "insecure_mode_differs": ("test_package::test_secure_memory_off_changes_nothing_on_the_wire",),
    # headers and tiers (test_headers)
    "wrong_post_path": ("test_headers::test_request_is_a_post_to_the_secure_completion_path",),
    "weak_client_key": ("test_headers::test_public_key_header_is_percent_encoded_rsa_spki",),
    "public_key_not_encoded": ("test_headers::test_public_key_header_is_percent_encoded_rsa_spki",),
    "tier_unvalidated": ("test_headers::test_invalid_tier_refused_before_sending",),
    "api_key_unvalidated": ("test_headers::test_invalid_api_key_refused_before_sending",),
    "no_bearer": ("test_headers::test_bearer_token_is_exactly_the_api_key",),
    "empty_bearer": ("test_headers::test_no_authorization_without_api_key",),
    "wrong_content_type": ("test_headers::test_content_type_is_octet_stream",),
    "content_encoding_identity": ("test_headers::test_no_content_encoding",),
    "duplicate_payload_id_header": ("test_headers::test_protocol_headers_sent_once",),
    "tier_header_always": ("test_headers::test_no_tier_header_unless_asked",),
    "tier_dropped_on_retry": ("test_headers::test_tier_kept_on_every_attempt",),
    "tier_dropped_on_resend": ("test_headers::test_tier_kept_on_the_rotation_resend",),
    "tier_mangled": ("test_headers::test_tier_sent_as_header",),
    "no_tier_check": ("test_headers::test_answer_of_another_tier_is_refused",),
    "tier_required": ("test_headers::test_answer_of_the_asked_tier_is_accepted",),
    # payload ids (test_payload_id)
    "reuse_payload_id": ("test_payload_id::test_payload_ids_never_repeat",),
    "payload_id_not_uuid4": ("test_payload_id::test_payload_id_is_canonical_uuid4",),
    "no_pid_check": (
        "test_payload_id::test_answer_bound_to_another_id_is_refused",
        "test_payload_id::test_answer_without_metadata_is_refused",
        "test_payload_id::test_replayed_answer_of_an_earlier_call_is_refused",
    ),
    "metadata_not_object_bound": (
        "test_payload_id::test_answer_without_metadata_is_refused[list]",
        "test_payload_id::test_answer_without_metadata_is_refused[string]",
        "test_payload_id::test_answer_without_metadata_is_refused[zero]",
        "test_payload_id::test_answer_without_metadata_is_refused[true]",
    ),
    "pid_changes_on_retry": ("test_payload_id::test_every_attempt_carries_the_payload_id",),
    "pid_changes_on_resend": ("test_payload_id::test_rotation_resend_carries_the_payload_id",),
    # answers (test_response_checks, test_duplicates, test_limits, test_low_level)
    "no_version_check": (
        "test_response_checks::test_other_version_refused_as_value",
        "test_response_checks::test_version_and_algorithm_checked_before_decryption[version]",
        "test_low_level::test_decrypt_response_checks_the_answer[version 0.9]",
    ),
    "no_algorithm_check": (
        "test_response_checks::test_other_algorithm_refused_as_value",
        "test_response_checks::test_version_and_algorithm_checked_before_decryption[algorithm]",
    ),
    "leaky_crypto_errors": (
        "test_response_checks::test_one_opaque_message_for_every_crypto_failure",
    ),
    "crypto_errors_as_value": (
        "test_response_checks::test_crypto_failure_is_security_error",
        "test_response_checks::test_one_opaque_message_for_every_crypto_failure",
        "test_response_checks::test_other_key_wrap_padding_refused",
    ),
    "non_object_plaintext_accepted": (
        "test_response_checks::test_plaintext_not_a_json_object_is_security_error",
    ),
    "bad_plaintext_value": (
        "test_response_checks::test_plaintext_not_a_json_object_is_security_error",
    ),
    "structure_crash": (
        "test_response_checks::test_top_level_member_missing_or_not_a_string",
        "test_response_checks::test_encrypted_payload_missing_or_not_an_object",
        "test_response_checks::test_payload_member_missing_or_not_a_string",
    ),
    "no_key_algorithm_check": (
        "test_response_checks::test_other_key_or_payload_algorithm_refused",
    ),
    "strict_unknown_fields": (
        "test_response_checks::test_package_without_key_and_payload_algorithm_accepted",
        "test_response_checks::test_unknown_package_members_ignored",
    ),
    "body_not_object_as_security": (
        "test_response_checks::test_body_not_a_json_object_refused_as_value",
    ),
    "oaep_sha1_fallback": ("test_response_checks::test_other_key_wrap_padding_refused[oaep-sha1]",),
    "content_type_200_strict": ("test_response_checks::test_content_type_of_a_200_is_ignored",),
    "duplicates_accepted": ("test_duplicates::test_duplicate_member_names_refused",),
    "deep_json_crash": (
        "test_limits::test_larger_or_deeper_answers_never_crash[package-depth-100000]",
        "test_limits::test_larger_or_deeper_answers_never_crash[plaintext-depth-100000]",
    ),
    "limits_too_low": ("test_limits::test_answers_up_to_the_floor_accepted",),
    "limit_refusal_wrong_kind": ("test_limits::test_larger_or_deeper_answers_never_crash",),
    "low_level_unchecked": (
        "test_low_level::test_decrypt_response_checks_the_answer[bound to another id]",
        "test_low_level::test_decrypt_response_checks_the_answer[no _metadata]",
        "test_low_level::test_decrypt_response_checks_the_answer[_metadata not an object]",
        "test_low_level::test_decrypt_response_checks_the_answer[plaintext not an object]",
    ),
    "strict_payload_members": (
        "test_low_level::test_unknown_member_inside_encrypted_payload_ignored",
        "test_response_checks::test_unknown_encrypted_payload_member_ignored",
    ),
    "lenient_base64": (
        "test_low_level::test_non_alphabet_or_unpadded_base64_refused",
        "test_response_checks::test_answer_base64_is_decoded_strictly",
    ),
    "binds_top_level_payload_id": (
        "test_low_level::test_top_level_payload_id_never_binds",
        "test_payload_id::test_top_level_payload_id_never_binds_the_answer",
    ),
    "pid_case_insensitive": ("test_payload_id::test_near_miss_of_the_own_id_is_refused[upper]",),
    "pid_stripped": ("test_payload_id::test_near_miss_of_the_own_id_is_refused[pad-space]",),
    "pid_hyphens_ignored": (
        "test_payload_id::test_near_miss_of_the_own_id_is_refused[strip-hyphens]",
    ),
    "pid_prefix": ("test_payload_id::test_near_miss_of_the_own_id_is_refused[truncate]",),
    # what the caller gets (test_response_content)
    "own_metadata_missing": ("test_response_content::test_client_sets_its_own_metadata_keys",),
    "drops_server_metadata": (
        "test_response_content::test_result_is_what_the_server_sent",
        "test_response_content::test_client_sets_its_own_metadata_keys",
    ),
    "own_flags_not_set": ("test_response_content::test_client_sets_its_own_metadata_keys",),
    "own_payload_id_wrong": (
        "test_response_content::test_client_sets_its_own_metadata_keys",
        "test_low_level::test_decrypt_response_checks_the_answer[correct]",
    ),
    "processed_at_top_level": (
        "test_response_content::test_client_sets_its_own_metadata_keys",
        "test_response_content::test_top_level_processed_at_never_copied",
    ),
    "processed_at_local_clock": (
        "test_response_content::test_client_sets_its_own_metadata_keys",
        "test_response_content::test_top_level_processed_at_never_copied",
    ),
    # request plaintext and size (test_request_plaintext, test_size_limit)
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
    # -- end of the wire (checks helper B)
    # errors
    "wrong_status_map": ("test_errors::test_seed_status_maps_to_its_kind[403]",),
    "error_body_crash": (
        "test_errors::test_error_body_of_any_shape",
        "test_errors::test_error_body[404-html]",
        "test_errors::test_error_body[404-json-array]",
    ),
    "no_detail": (
        "test_errors::test_error_body[400-detail-text]",
        "test_errors::test_huge_error_body",
    ),
    "wrong_status_code": (
        "test_errors::test_seed_status_maps_to_its_kind",
        "test_errors::test_any_other_status_is_api_error",
        "test_errors::test_error_body",
    ),
    "drop_internal": (
        "test_errors::test_dropped_connection_is_connection_error",
        "test_errors::test_unreachable_server_is_connection_error",
        "test_discovery::test_key_fetch_network_failure",
    ),
    "follows_redirects": ("test_errors::test_redirect_is_not_followed",),
    "content_type_sensitive": ("test_errors::test_json_body_parsed_whatever_content_type",),
    "text_detail_uncut": (
        "test_errors::test_error_body[500-text-over-1024]",
        "test_errors::test_error_body[418-utf8-over-1024-code-points]",
    ),
    "object_detail_str": (
        "test_errors::test_error_body[401-detail-object]",
        "test_errors::test_error_body[422-detail-list]",
        "test_errors::test_error_body[429-detail-null]",
    ),
    "other_5xx_as_server": ("test_errors::test_any_other_status_is_api_error",),
    "empty_detail_string": ("test_errors::test_error_body[503-empty]",),
    "details_missing": (
        "test_errors::test_error_body[418-detail-text]",
        "test_errors::test_error_body[404-html]",
        "test_errors::test_error_body[403-object-without-detail]",
        "test_errors::test_error_body[400-json-string]",
        "test_errors::test_error_body[401-json-null]",
        "test_errors::test_error_body[403-json-number]",
        "test_errors::test_error_body[502-html]",
        "test_errors::test_error_body[500-invalid-utf8]",
    ),
    "error_body_parse_limit": (
        "test_errors::test_huge_error_body[100k]",
        "test_errors::test_huge_error_body[1MiB]",
    ),
    "no_timeout": (
        "test_errors::test_stalled_post_times_out",
        "test_discovery::test_stalled_key_fetch_times_out",
    ),
    "timeout_per_read": ("test_errors::test_timeout_covers_the_whole_answer",),
    # secrets
    "leaks_api_key_in_errors": (
        "test_secrets::test_no_api_key_in_authentication_error",
        "test_secrets::test_no_secret_in_any_error",
    ),
    "leaks_plaintext_in_errors": ("test_secrets::test_no_secret_in_any_error",),
    "leaks_plaintext_in_logs": ("test_secrets::test_no_secret_in_any_log_record",),
    "repr_leaks_api_key": ("test_secrets::test_client_repr_hides_the_api_key",),
    "leaks_plaintext_logger_pinned": ("test_secrets::test_no_secret_in_any_log_record",),
    "no_redaction": ("test_secrets::test_api_key_in_error_body_is_redacted",),
    # retries
    "retry_400": ("test_retries::test_non_retryable_status_is_tried_once[400]",),
    "no_retry_503": (
        "test_retries::test_retryable_status_is_retried_max_retries_times[503]",
        "test_retries::test_retry_then_success",
    ),
    "extra_retries": (
        "test_retries::test_zero_retries_is_one_attempt",
        "test_retries::test_retryable_status_is_retried_max_retries_times",
    ),
    "retry_all_statuses": ("test_retries::test_non_retryable_status_is_tried_once",),
    "no_retry_on_drop": ("test_retries::test_dropped_connection_is_retried",),
    "ignore_retry_after": ("test_retries::test_retry_after_is_honoured",),
    "no_key_fetch_retry": ("test_retries::test_key_fetch_is_retried",),
    "max_retries_unvalidated": ("test_retries::test_bad_max_retries_refused",),
    "first_error_kept": ("test_retries::test_last_answer_decides_the_exception",),
    "retry_after_crash": ("test_retries::test_bad_retry_after_is_ignored",),
    "default_retries_3": ("test_retries::test_default_is_two_retries",),
    "constant_backoff": ("test_retries::test_backoff_doubles_with_jitter",),
    "no_jitter": ("test_retries::test_backoff_doubles_with_jitter",),
    "retries_refused_answer": ("test_retries::test_refused_answer_is_not_retried",),
    "same_package_on_retry": ("test_retries::test_every_attempt_is_encrypted_anew",),
    "retries_tls_failure": ("test_https::test_failed_verification_is_not_retried",),
    # HTTPS rule and TLS
    "http_allowed": ("test_https::test_http_without_allow_http_sends_nothing",),
    "sends_before_refusing": ("test_https::test_http_without_allow_http_sends_nothing",),
    "http_refused_as_value": ("test_https::test_http_without_allow_http_sends_nothing",),
    "no_url_normalise": (
        "test_https::test_http_spellings_work_with_allow_http",
        "test_https::test_https_spellings_are_normalised_and_work",
    ),
    "userinfo_allowed": ("test_https::test_userinfo_urls_refused",),
    "other_scheme_allowed": ("test_https::test_other_scheme_refused",),
    "no_http_warning": ("test_https::test_allow_http_warns_insecure",),
    "no_tls_verify": (
        "test_https::test_untrusted_certificate_refused",
        "test_https::test_only_the_given_ca_is_trusted",
        "test_https::test_allow_http_does_not_weaken_https",
    ),
    "hostless_url_allowed": ("test_https::test_url_without_host_refused",),
    "bad_port_allowed": ("test_https::test_bad_port_refused",),
    "query_allowed": ("test_https::test_query_or_fragment_refused",),
    "fetches_before_url_check": (
        "test_https::test_query_or_fragment_refused",
        "test_https::test_userinfo_urls_refused",
    ),
    "no_hostname_check": ("test_https::test_certificate_for_another_name_refused",),
    "old_tls_accepted": ("test_https::test_tls_older_than_1_2_refused",),
    "ipv6_refused": ("test_https::test_ipv6_literal_host_accepted",),
    "insecure_with_allow_http": ("test_https::test_allow_http_does_not_weaken_https",),
    "env_disables_verify": ("test_https::test_no_environment_variable_disables_verification",),
    "ca_cert_ignored": ("test_https::test_https_url_is_accepted",),
    # discovery
    "no_pin_check": (
        "test_discovery::test_wrong_pin_refused",
        "test_discovery::test_pinning_is_offered",
        "test_discovery::test_pin_checked_on_refetch",
        "test_discovery::test_pin_set_accepted[none]",
    ),
    "no_pinning": (
        "test_discovery::test_pinning_is_offered",
        "test_discovery::test_wrong_pin_refused",
        "test_discovery::test_pin_checked_on_refetch",
        "test_discovery::test_pin_set_accepted",
    ),
    "pin_case_sensitive": (
        "test_discovery::test_right_pin_works[upper]",
        "test_discovery::test_right_pin_works[colons-upper]",
    ),
    "pin_colons_kept": ("test_discovery::test_right_pin_works[colons]",),
    "fingerprint_of_pem": ("test_discovery::test_right_pin_works[lower]",),
    "malformed_pin_ignored": ("test_discovery::test_malformed_pin_refused",),
    "pin_set_refused": ("test_discovery::test_pin_set_accepted",),
    "key_kept_after_failures": ("test_discovery::test_key_dropped_after_exhausted_retries",),
    "lenient_server_key_pem": ("test_discovery::test_server_key_must_be_one_spki_block",),
    "server_key_bounds_unchecked": ("test_discovery::test_server_key_size_and_exponent_bounded",),
    "server_key_type_unchecked": ("test_discovery::test_bad_server_key_refused[ec-p256]",),
    "server_key_errors_as_value": (
        "test_discovery::test_bad_server_key_refused[not-pem]",
        "test_discovery::test_bad_server_key_refused[empty]",
    ),
    "rotation_key_not_cached": ("test_discovery::test_rotation_is_followed",),
    "resend_same_package": ("test_discovery::test_rotation_is_followed",),
    "no_key_cache": ("test_discovery::test_key_is_cached",),
    "no_rotation_retry": ("test_discovery::test_rotation_is_followed",),
    "resend_on_unchanged_key": ("test_discovery::test_400_with_unchanged_key_is_invalid_request",),
    "resend_twice": ("test_discovery::test_resend_after_rotation_refused_too",),
    "weak_server_key_accepted": ("test_discovery::test_bad_server_key_refused[rsa-1024]",),
    "key_fetch_with_auth": (
        "test_discovery::test_key_fetched_before_first_post_without_credentials",
    ),
    "key_fetch_status_as_value": ("test_discovery::test_key_fetch_error_status",),
    "pin_only_first_fetch": ("test_discovery::test_pin_checked_on_refetch",),
    # keys
    "weak_generated_key": ("test_keys::test_generated_files_are_pkcs8_and_spki_of_a_4096_bit_key",),
    "key_file_world_readable": ("test_keys::test_file_modes",),
    "key_dir_open": ("test_keys::test_created_key_directory_is_private",),
    "password_ignored": (
        "test_keys::test_password_encrypts_the_private_key",
        "test_keys::test_right_password_loads",
    ),
    "wrong_password_crash": ("test_keys::test_wrong_or_missing_password_is_value_error",),
    "weak_own_key_accepted": ("test_keys::test_weak_own_key_refused[rsa-1024]",),
    "non_rsa_own_key_accepted": ("test_keys::test_weak_own_key_refused[ec-p256]",),
    "overwrites_bad_key": ("test_keys::test_unloadable_key_is_never_overwritten",),
    "unloadable_key_unnamed": ("test_keys::test_unloadable_key_is_never_overwritten",),
    "rewrites_existing_keys": ("test_keys::test_existing_key_pair_is_used_as_it_is",),
    "key_written_then_chmod": ("test_keys::test_private_key_never_wider_than_0600",),
    "key_written_in_place": ("test_keys::test_key_files_written_via_rename",),
    "key_temp_left_behind": ("test_keys::test_no_leftover_files",),
    "public_key_unchecked": (
        "test_keys::test_mismatched_public_key_file_refused_by_load_keys",
        "test_keys::test_mismatched_public_key_in_key_dir_refused",
    ),
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
    "retry_after_uncapped": ("test_retries::test_retry_after_never_exceeds_the_cap",),
    "payload_id_unvalidated": (
        "test_python_calls::test_send_secure_request_refuses_bad_payload_ids",
    ),
    "mlock_required": ("test_python_calls::test_call_succeeds_without_memory_locking",),
    "plaintext_chained": ("test_python_calls::test_exceptions_carry_no_plaintext",),
    "crypto_error_chained": ("test_python_calls::test_decryption_error_exposes_no_cause",),
    "unlocked_key_fetch": ("test_python_calls::test_concurrent_first_calls_share_keys",),
    "base_url_override_ignored": ("test_python_api::test_create_consumes_base_url_override",),
    "override_skips_https_rule": (
        "test_python_api::test_base_url_override_obeys_the_https_rule",
    ),
    "fetch_key_returns_bytes": ("test_python_calls::test_low_level_key_fetch_and_encryption",),
    "empty_payload_encrypted": ("test_python_calls::test_low_level_key_fetch_and_encryption",),
    "verify_option_offered": (
        "test_python_calls::test_no_constructor_option_disables_verification",
    ),
}

#: Checks no toy defect can fail yet, and why.
UNPROVEN: dict[str, str] = {}

#: defect -> the EXACT set of requirement ids whose verdict is FAIL, NON-STRICT or ERRORED in
#: its proof run (the run narrowed to the checks PROOFS lists for it): one defect flags the
#: requirements it breaks and nothing else (multi-id checks charge each clause to its id;
#: what a failed clause keeps from being observed is BLOCKED, not failed).
EXACT: dict[str, frozenset[str]] = {
    # -- the wire (checks helper B)
    # package and encryption (test_package)
    "oaep_sha1": frozenset({"ENC-4"}),
    "mgf1_sha1": frozenset({"ENC-4"}),
    "aad_used": frozenset({"ENC-2"}),
    "tag_appended": frozenset({"ENC-3"}),
    "short_nonce": frozenset({"ENC-1", "PKG-7"}),
    "reuse_nonce": frozenset({"ENC-8"}),
    "wrong_version": frozenset({"PKG-2"}),
    "extra_package_field": frozenset({"PKG-8"}),
    "noncanonical_base64": frozenset({"PKG-10"}),
    "no_tag_check": frozenset({"API-11", "CHK-10", "CHK-11", "ENC-7"}),
    "insecure_mode_differs": frozenset({"MEM-4"}),
    # headers and tiers (test_headers)
    "wrong_post_path": frozenset({"HDR-1"}),
    "weak_client_key": frozenset({"KEY-1"}),
    "public_key_not_encoded": frozenset({"HDR-3", "HDR-4", "KEY-3"}),
    "tier_unvalidated": frozenset({"ERR-19", "TIER-4"}),
    "api_key_unvalidated": frozenset({"ERR-19", "HDR-9"}),
    "no_bearer": frozenset({"HDR-7"}),
    "empty_bearer": frozenset({"HDR-8"}),
    "wrong_content_type": frozenset({"HDR-6"}),
    "content_encoding_identity": frozenset({"HDR-11"}),
    "duplicate_payload_id_header": frozenset({"HDR-12"}),
    "tier_header_always": frozenset({"TIER-3"}),
    "tier_dropped_on_retry": frozenset({"TIER-5"}),
    "tier_dropped_on_resend": frozenset({"TIER-5"}),
    "tier_mangled": frozenset({"TIER-1", "TIER-2"}),
    "no_tier_check": frozenset({"TIER-9"}),
    "tier_required": frozenset({"TIER-9"}),
    # payload ids (test_payload_id)
    "reuse_payload_id": frozenset({"PID-1", "PID-3"}),
    "payload_id_not_uuid4": frozenset({"PID-2"}),
    "no_pid_check": frozenset({"PID-5", "PID-6", "PID-7"}),
    "metadata_not_object_bound": frozenset({"PID-5", "PID-7"}),
    "pid_changes_on_retry": frozenset({"PID-6", "PID-10"}),
    "pid_changes_on_resend": frozenset({"PID-6", "PID-10"}),
    # answers (test_response_checks, test_duplicates, test_limits, test_low_level)
    "no_version_check": frozenset({"API-11", "CHK-3"}),
    "no_algorithm_check": frozenset({"CHK-4"}),
    "leaky_crypto_errors": frozenset({"CHK-11"}),
    "crypto_errors_as_value": frozenset({"CHK-7", "CHK-8", "CHK-9", "CHK-10", "CHK-11"}),
    "non_object_plaintext_accepted": frozenset({"CHK-13"}),
    "bad_plaintext_value": frozenset({"CHK-13"}),
    "structure_crash": frozenset({"CHK-21", "CHK-22", "CHK-23"}),
    "no_key_algorithm_check": frozenset({"CHK-20"}),
    "strict_unknown_fields": frozenset({"CHK-6", "PKG-9"}),
    "body_not_object_as_security": frozenset({"CHK-1"}),
    "oaep_sha1_fallback": frozenset({"CHK-9", "ENC-6"}),
    "content_type_200_strict": frozenset({"CHK-14"}),
    "duplicates_accepted": frozenset({"CHK-18"}),
    "deep_json_crash": frozenset({"CHK-19"}),
    "limits_too_low": frozenset({"CHK-19"}),
    "limit_refusal_wrong_kind": frozenset({"CHK-19"}),
    "low_level_unchecked": frozenset({"API-11"}),
    "strict_payload_members": frozenset({"PKG-11"}),
    "lenient_base64": frozenset({"CHK-7", "PKG-10"}),
    "binds_top_level_payload_id": frozenset({"PID-7"}),
    "pid_case_insensitive": frozenset({"PID-6"}),
    "pid_stripped": frozenset({"PID-6"}),
    "pid_hyphens_ignored": frozenset({"PID-6"}),
    "pid_prefix": frozenset({"PID-6"}),
    # what the caller gets (test_response_content)
    "own_metadata_missing": frozenset({"CHK-16"}),
    "drops_server_metadata": frozenset({"CHK-16", "CHK-17"}),
    "own_flags_not_set": frozenset({"CHK-16"}),
    "own_payload_id_wrong": frozenset({"API-11", "CHK-16"}),
    "processed_at_top_level": frozenset({"CHK-17"}),
    "processed_at_local_clock": frozenset({"CHK-17"}),
    # request plaintext and size (test_request_plaintext, test_size_limit)
    "tier_in_payload": frozenset({"REQ-6"}),
    "api_key_in_payload": frozenset({"REQ-6"}),
    "drops_params": frozenset({"REQ-3", "REQ-13"}),
    "drops_unknown_params": frozenset({"REQ-13"}),
    "unicode_mangle": frozenset({"REQ-2"}),
    "stream_allowed": frozenset({"REQ-7", "REQ-8"}),
    "nan_allowed": frozenset({"ERR-19", "REQ-11"}),
    "model_unvalidated": frozenset({"REQ-12"}),
    "size_limit_off": frozenset({"ERR-19", "REQ-9"}),
    "size_limit_strict": frozenset({"REQ-10"}),
    # -- end of the wire (checks helper B)
    # errors
    "wrong_status_map": frozenset({"ERR-3"}),
    "error_body_crash": frozenset({"ERR-17"}),
    "no_detail": frozenset({"ERR-15"}),
    "wrong_status_code": frozenset({"ERR-11"}),
    "drop_internal": frozenset({"ERR-10", "DISC-5"}),
    "follows_redirects": frozenset({"TLS-11", "ERR-9"}),
    "content_type_sensitive": frozenset({"ERR-18"}),
    "text_detail_uncut": frozenset({"ERR-13"}),
    "object_detail_str": frozenset({"ERR-12"}),
    "other_5xx_as_server": frozenset({"ERR-9"}),
    "empty_detail_string": frozenset({"ERR-14"}),
    "details_missing": frozenset({"ERR-16"}),
    "error_body_parse_limit": frozenset({"ERR-12"}),
    "no_timeout": frozenset({"ERR-10", "DISC-5"}),
    "timeout_per_read": frozenset({"API-21"}),
    # secrets
    "leaks_api_key_in_errors": frozenset({"LOG-1"}),
    "leaks_plaintext_in_errors": frozenset({"LOG-1"}),
    "leaks_plaintext_in_logs": frozenset({"LOG-2"}),
    "leaks_plaintext_logger_pinned": frozenset({"LOG-2"}),
    "repr_leaks_api_key": frozenset({"LOG-4"}),
    "no_redaction": frozenset({"ERR-20", "LOG-1"}),
    # retries
    "retry_400": frozenset({"RTY-4"}),
    "retry_all_statuses": frozenset({"RTY-4"}),
    "no_retry_503": frozenset({"RTY-1"}),
    "extra_retries": frozenset({"RTY-1", "RTY-3"}),
    "no_retry_on_drop": frozenset({"RTY-1"}),
    "ignore_retry_after": frozenset({"RTY-9"}),
    "no_key_fetch_retry": frozenset({"RTY-13"}),
    "max_retries_unvalidated": frozenset({"RTY-14"}),
    "first_error_kept": frozenset({"RTY-6"}),
    "retry_after_crash": frozenset({"RTY-11"}),
    "default_retries_3": frozenset({"RTY-2"}),
    "constant_backoff": frozenset({"RTY-7"}),
    "no_jitter": frozenset({"RTY-8"}),
    "retry_after_uncapped": frozenset({"RTY-10"}),
    "retries_refused_answer": frozenset({"RTY-5"}),
    "same_package_on_retry": frozenset({"RTY-15"}),
    "retries_tls_failure": frozenset({"RTY-16"}),
    # HTTPS rule and TLS
    "http_allowed": frozenset({"TLS-3"}),
    "sends_before_refusing": frozenset({"TLS-3"}),
    "http_refused_as_value": frozenset({"TLS-3"}),
    "no_url_normalise": frozenset({"TLS-1"}),
    "userinfo_allowed": frozenset({"TLS-14"}),
    "other_scheme_allowed": frozenset({"TLS-12"}),
    "no_http_warning": frozenset({"TLS-4"}),
    "no_tls_verify": frozenset({"TLS-8", "TLS-18", "TLS-20"}),
    "hostless_url_allowed": frozenset({"TLS-13"}),
    "bad_port_allowed": frozenset({"TLS-15"}),
    "query_allowed": frozenset({"TLS-16"}),
    "fetches_before_url_check": frozenset({"TLS-17"}),
    "no_hostname_check": frozenset({"TLS-19"}),
    "old_tls_accepted": frozenset({"TLS-10"}),
    "ipv6_refused": frozenset({"TLS-21"}),
    "insecure_with_allow_http": frozenset({"TLS-9", "TLS-18"}),
    "env_disables_verify": frozenset({"TLS-9"}),
    "ca_cert_ignored": frozenset({"TLS-8"}),
    # discovery and pinning
    "no_pin_check": frozenset({"DISC-9", "DISC-10", "DISC-11", "DISC-25"}),
    "no_pinning": frozenset({"DISC-9", "DISC-10", "DISC-11", "DISC-25"}),
    "pin_case_sensitive": frozenset({"KEY-14"}),
    "pin_colons_kept": frozenset({"KEY-14"}),
    "fingerprint_of_pem": frozenset({"KEY-13"}),
    "malformed_pin_ignored": frozenset({"KEY-14"}),
    "pin_set_refused": frozenset({"DISC-25"}),
    "pin_only_first_fetch": frozenset({"DISC-11"}),
    "no_key_cache": frozenset({"DISC-6"}),
    "key_kept_after_failures": frozenset({"DISC-12"}),
    "no_rotation_retry": frozenset({"DISC-15"}),
    "rotation_key_not_cached": frozenset({"DISC-16"}),
    "resend_same_package": frozenset({"DISC-17"}),
    "resend_on_unchanged_key": frozenset({"DISC-18"}),
    "resend_twice": frozenset({"DISC-18"}),
    "weak_server_key_accepted": frozenset({"DISC-3"}),
    "server_key_type_unchecked": frozenset({"DISC-3"}),
    "server_key_errors_as_value": frozenset({"DISC-3"}),
    "lenient_server_key_pem": frozenset({"DISC-14"}),
    "server_key_bounds_unchecked": frozenset({"DISC-24"}),
    "key_fetch_with_auth": frozenset({"HDR-10"}),
    "key_fetch_status_as_value": frozenset({"DISC-4"}),
    # keys
    "weak_generated_key": frozenset({"KEY-1"}),
    "key_file_world_readable": frozenset({"KEY-6"}),
    "key_dir_open": frozenset({"KEY-7"}),
    "password_ignored": frozenset({"KEY-19", "KEY-20", "KEY-22"}),
    "wrong_password_crash": frozenset({"KEY-19", "KEY-20"}),
    "weak_own_key_accepted": frozenset({"KEY-2"}),
    "non_rsa_own_key_accepted": frozenset({"KEY-2"}),
    "overwrites_bad_key": frozenset({"KEY-17", "KEY-18"}),
    "unloadable_key_unnamed": frozenset({"KEY-17"}),
    "rewrites_existing_keys": frozenset({"KEY-18"}),
    "writes_keys_without_key_dir": frozenset({"KEY-12"}),
    "key_written_then_chmod": frozenset({"KEY-15"}),
    "key_written_in_place": frozenset({"KEY-16"}),
    "key_temp_left_behind": frozenset({"KEY-16"}),
    "public_key_unchecked": frozenset({"KEY-21"}),
    # the seed's Python surface
    "missing_export": frozenset({"API-1"}),
    "api_key_before_allow_http": frozenset({"API-2"}),
    "sync_create": frozenset({"API-3"}),
    "wrong_router_url_default": frozenset({"API-6"}),
    "sync_fetch_key": frozenset({"API-9"}),
    "error_status_default_none": frozenset({"API-13"}),
    "connection_error_outside_api_error": frozenset({"API-14"}),
    "constructor_fetches_key": frozenset({"API-18"}),
    "api_key_override_ignored": frozenset({"API-5"}),
    "base_url_override_ignored": frozenset({"API-5"}),
    "override_skips_https_rule": frozenset({"TLS-6"}),
    "fetch_key_returns_bytes": frozenset({"API-9"}),
    "empty_payload_encrypted": frozenset({"API-10"}),
    "verify_option_offered": frozenset({"TLS-9"}),
    "payload_id_unvalidated": frozenset({"PID-9"}),
    "mlock_required": frozenset({"MEM-3"}),
    "plaintext_chained": frozenset({"LOG-3"}),
    "crypto_error_chained": frozenset({"CHK-12"}),
    "unlocked_key_fetch": frozenset({"API-19"}),
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
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Run every proof (and the full suite against the correct toy): run -> report.json."""
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
    found: dict[str, dict[str, Any]] = {}
    for job in jobs:
        report = reports / str(job["name"]) / "report.json"
        if report.is_file():
            found[str(job["name"])] = json.loads(report.read_text(encoding="utf-8"))
    return found


@pytest.fixture(scope="module")
def verdicts(reports: dict[str, dict[str, Any]]) -> dict[str, dict[str, str]]:
    """run -> {check id: verdict}."""
    return {name: {c["id"]: c["verdict"] for c in doc["checks"]} for name, doc in reports.items()}


def _expand(wanted: str, got: dict[str, str]) -> list[str]:
    """A PROOFS entry: one check id, or (without "[...]") every parametrisation of it."""
    if wanted in got or "[" in wanted:
        return [wanted]
    found = [c for c in got if c.startswith(wanted + "[")]
    return found or [wanted]


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
    wanted = [c for entry in PROOFS[defect] for c in _expand(entry, got)]
    missed = {c: got.get(c, "not run") for c in wanted if got.get(c) not in FAILING}
    what = DEFECTS.get(defect) or API_DEFECTS.get(defect)
    assert not missed, f"{defect} ({what}) was not caught by: {missed}"


@pytest.mark.parametrize("defect", sorted(EXACT))
def test_defect_fails_exactly(reports: dict[str, dict[str, Any]], defect: str) -> None:
    """Each defect fails exactly the requirements it breaks: nothing more (a clause charged
    to the wrong id), nothing less (a broken clause BLOCKED instead of judged)."""
    doc = reports.get(defect)
    assert doc is not None, f"no report for {defect}"
    failing = {e["id"] for e in doc["requirements"] if e["verdict"] in FAILING}
    assert failing == EXACT[defect], (
        f"{defect}: also failing {sorted(failing - EXACT[defect])}, "
        f"not failing {sorted(EXACT[defect] - failing)}"
    )


def test_every_proof_has_an_exact_set() -> None:
    """Every defect of PROOFS states the exact set of requirements it fails."""
    assert set(PROOFS) == set(EXACT), sorted(set(PROOFS) ^ set(EXACT))


def test_every_check_id_is_seen_failing(verdicts: dict[str, dict[str, str]]) -> None:
    """Every check id the correct toy runs (each parametrisation on its own) fails in some
    defect's proof run, or is in UNPROVEN (by id, or by function) with a reason: a check, or
    one parametrisation of it, that no broken client fails proves nothing."""
    every = set(verdicts.get("toy", {})) | set(verdicts.get("toy_seed", {}))
    assert every, "the toy runs produced no report"
    seen = {
        check
        for run, got in verdicts.items()
        if run not in ("toy", "toy_seed")
        for check, verdict in got.items()
        if verdict in FAILING
    }
    listed = set(UNPROVEN)
    unproven = {c for c in every - seen if c not in listed and c.partition("[")[0] not in listed}
    assert not unproven, f"check ids no defect fails: {sorted(unproven)}"


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
