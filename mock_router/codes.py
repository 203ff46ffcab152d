"""Machine-readable codes for what the router found wrong with a request, and the requirement
ids each one breaks: data, so the conformance suite can name a port's fault by its id once.

Three kinds of code share one namespace (``Fault.code``):

- refusal codes (``REFUSAL_CODES``): why the router refused a request (``SeenRequest.
  refusal_code``); each has the status the router answered.
- note codes (``NOTE_CODES``): a deviation the router noticed but accepted, as a lenient
  receiver may (``SeenRequest.notes``), e.g. base64 with non-zero padding bits.
- variant codes (``VARIANT_CODES``): what the tolerant decryption had to do to open a package
  the standard way could not (``Opened.variant``), e.g. ``oaep-sha1`` or ``tag-appended``.

``requirements`` are the *client-side* ids the sender of such a request breaks (what the suite
charges a port with); ``server`` are the ids of the rule the router applied (what server mode
judges a router by). A refusal with several client ids means the router cannot tell which one
was broken: ``SeenRequest.fault`` narrows ``decryption_failed`` with the tolerant decryption.
Ids marked 1.0.1 are new in spec 1.0.1.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CodeInfo:
    """What one code means: the status answered (None: not a refusal), the client and server
    requirement ids, and a one-line summary."""

    status: int | None
    requirements: tuple[str, ...]
    server: tuple[str, ...]
    summary: str


def _r(status: int, requirements: tuple[str, ...], server: tuple[str, ...],
       summary: str) -> CodeInfo:
    return CodeInfo(status, requirements, server, summary)


#: Every reason the router refuses a request. Keep in step with validation.py and app.py
#: (a ``Refusal`` with a code not listed here is a programming error, raised at once).
REFUSAL_CODES: dict[str, CodeInfo] = {
    # transport and routing
    "content_length_invalid": _r(400, (), (), "Content-Length is not a non-negative number"),
    "body_too_large": _r(413, ("REQ-9",), ("SRV-2",), "request body over the 16 MiB limit"),
    "body_incomplete": _r(400, (), (), "the client disconnected before the body was complete"),
    "not_found": _r(404, ("HDR-1",), (), "no such path"),
    "method_not_allowed": _r(405, ("HDR-1",), (), "wrong method for the path"),
    "http_error": _r(400, (), (), "another HTTP-level error"),
    # authentication and headers (spec 9.2 steps 2-4)
    "api_key_missing": _r(401, ("HDR-7",), ("SRV-3",), "no Authorization header"),
    "api_key_malformed": _r(401, ("HDR-7",), ("SRV-3",), "Authorization is not 'Bearer <key>'"),
    "api_key_invalid": _r(401, ("HDR-7",), ("SRV-3",), "unknown API key"),
    "api_key_repeated": _r(401, ("HDR-12",), ("SRV-26",), "Authorization sent more than once"),
    "content_type": _r(415, ("HDR-6",), ("SRV-4",),
                       "Content-Type is not application/octet-stream"),
    "content_encoding": _r(415, ("HDR-11",), ("SRV-38",),
                           "a Content-Encoding other than identity (1.0.1)"),
    "header_repeated": _r(400, ("HDR-12",), ("SRV-26",),
                          "X-Payload-ID, X-Public-Key, X-Security-Tier or Content-Type sent "
                          "more than once (1.0.1)"),
    "payload_id_missing": _r(400, ("HDR-2",), ("SRV-5",), "no X-Payload-ID header"),
    "payload_id_invalid": _r(400, ("PID-2",), ("SRV-5",),
                             "X-Payload-ID is not 1..128 visible ASCII characters"),
    "tier_invalid": _r(400, ("TIER-4",), ("TIER-6",),
                       "X-Security-Tier is not standard, high or maximum"),
    "public_key_missing": _r(400, ("HDR-3",), ("SRV-6",), "no X-Public-Key header"),
    "public_key_encoding": _r(400, ("HDR-4",), ("SRV-6",),
                              "X-Public-Key does not percent-decode to UTF-8"),
    "public_key_invalid": _r(400, ("HDR-3",), ("SRV-6",), "X-Public-Key is not a PEM public key"),
    "public_key_not_spki": _r(400, ("KEY-3",), ("SRV-24",),
                              "X-Public-Key is not a 'PUBLIC KEY' (SPKI) block: PKCS#1 "
                              "'RSA PUBLIC KEY' or a certificate (1.0.1)"),
    "public_key_not_one_block": _r(400, ("KEY-3",), ("SRV-24",),
                                   "X-Public-Key holds several PEM blocks or other text "
                                   "(1.0.1)"),
    "public_key_not_rsa": _r(400, ("KEY-2",), ("SRV-7",), "client key is not RSA"),
    "public_key_too_small": _r(400, ("KEY-2",), ("SRV-7",), "client key under 2048 bits"),
    "public_key_too_large": _r(400, ("KEY-1",), ("SRV-25",),
                               "client key over 16384 bits (1.0.1)"),
    "public_key_exponent": _r(400, ("KEY-1",), ("SRV-25",),
                              "client key with a public exponent other than 65537 (1.0.1)"),
    # the package (step 5)
    "body_empty": _r(400, ("PKG-1",), ("SRV-8",), "empty request body"),
    "body_not_utf8": _r(400, ("PKG-1",), ("SRV-8",), "request body is not UTF-8"),
    "body_not_json": _r(400, ("PKG-1",), ("SRV-8",), "request body is not JSON"),
    "body_not_object": _r(400, ("PKG-1",), ("SRV-8",), "request body is not a JSON object"),
    "package_duplicate_member": _r(400, ("PKG-1",), ("SRV-20",),
                                   "duplicate member name in the package (1.0.1)"),
    "package_member_missing": _r(400, ("PKG-1",), ("SRV-8",), "a top-level member is missing"),
    "package_member_type": _r(400, ("PKG-1",), ("SRV-8",),
                              "a top-level member has the wrong JSON type"),
    "payload_member_missing": _r(400, ("PKG-5",), ("SRV-8",),
                                 "encrypted_payload lacks ciphertext, nonce or tag"),
    "payload_member_type": _r(400, ("PKG-5",), ("SRV-8",),
                              "encrypted_payload or one of its members has the wrong type"),
    "version_unsupported": _r(400, ("PKG-2",), ("SRV-9",), "version is not \"1.0\""),
    "algorithm_unsupported": _r(400, ("PKG-3",), ("SRV-9",),
                                "algorithm is not \"hybrid-aes256-rsa4096\""),
    "key_algorithm_unsupported": _r(400, ("PKG-4",), ("SRV-9",),
                                    "key_algorithm is not \"RSA-OAEP-SHA256\""),
    "payload_algorithm_unsupported": _r(400, ("PKG-4",), ("SRV-9",),
                                        "payload_algorithm is not \"AES-256-GCM\""),
    "base64_invalid": _r(400, ("PKG-6",), ("SRV-10", "PKG-10"),
                         "a binary member is not padded standard base64"),
    "nonce_length": _r(400, ("PKG-7",), ("SRV-10",), "nonce is not 12 bytes"),
    "tag_length": _r(400, ("PKG-7",), ("SRV-10",), "tag is not 16 bytes"),
    "aes_key_empty": _r(400, ("PKG-7",), ("SRV-10",), "encrypted_aes_key is empty"),
    # decryption (step 6)
    "decryption_failed": _r(400, ("ENC-1", "ENC-2", "ENC-3", "ENC-4", "ENC-5"),
                            ("SRV-11", "SRV-22"),
                            "the AES key did not unwrap or GCM did not verify"),
    "replayed_request": _r(409, ("RTY-15",), ("SRV-21",),
                           "this package was decrypted before (replay cache, 1.0.1)"),
    # the plaintext (steps 7-9)
    "plaintext_too_large": _r(413, ("REQ-9",), ("SRV-12",), "plaintext over 10 MiB"),
    "plaintext_not_utf8": _r(400, ("REQ-1",), ("SRV-13",), "plaintext is not UTF-8"),
    "plaintext_not_json": _r(400, ("REQ-1",), ("SRV-13",), "plaintext is not JSON"),
    "plaintext_not_object": _r(400, ("REQ-1",), ("SRV-13",), "plaintext is not a JSON object"),
    "plaintext_duplicate_member": _r(400, ("REQ-1",), ("SRV-20",),
                                     "duplicate member name in the plaintext (1.0.1)"),
    "model_missing": _r(400, ("REQ-2",), ("SRV-32",), "model is missing"),
    "model_invalid": _r(400, ("REQ-12",), ("SRV-32",), "model is not a non-empty string"),
    "messages_missing": _r(400, ("REQ-2",), ("SRV-33",), "messages is missing"),
    "messages_invalid": _r(400, ("REQ-12",), ("SRV-33",), "messages is not a non-empty array"),
    "message_invalid": _r(400, (), ("SRV-34",),
                          "a messages element is not an object with a string role"),
    "stream_unsupported": _r(400, ("REQ-7",), ("SRV-15",), "stream is true"),
    "stream_invalid": _r(400, ("REQ-7",), ("SRV-35",), "stream is neither true nor false"),
    "parameter_invalid": _r(400, (), (),
                            "a chat parameter the fake model cannot use (n, max_tokens, ...)"),
    "tier_not_allowed": _r(403, (), ("TIER-7",), "model not allowed for the tier"),
}

#: Deviations the router accepts (a lenient receiver may) but records.
NOTE_CODES: dict[str, CodeInfo] = {
    "base64_noncanonical": CodeInfo(None, ("PKG-10",), (),
                                    "base64 with non-zero padding bits (accepted, 1.0.1)"),
    "package_extra_member": CodeInfo(None, ("PKG-8",), ("PKG-9", "PKG-11"),
                                     "the request package has members beyond the six"),
}

#: What the tolerant decryption can undo (``Opened.variant`` joins them with "+").
VARIANT_CODES: dict[str, CodeInfo] = {
    "oaep-sha1": CodeInfo(None, ("ENC-4",), (),
                          "AES key wrapped with RSA-OAEP SHA-1 and MGF1-SHA-1, not SHA-256"),
    "oaep-mgf1-sha1": CodeInfo(None, ("ENC-4",), (),
                               "AES key wrapped with RSA-OAEP SHA-256 but MGF1-SHA-1"),
    "oaep-sha1-mgf1-sha256": CodeInfo(None, ("ENC-4",), (),
                                      "AES key wrapped with RSA-OAEP SHA-1 and MGF1-SHA-256"),
    "pkcs1v15": CodeInfo(None, ("ENC-4",), (), "AES key wrapped with RSA PKCS#1 v1.5"),
    "aes-128": CodeInfo(None, ("ENC-1",), (), "a 16-byte AES key (AES-128), not 32 bytes"),
    "aes-192": CodeInfo(None, ("ENC-1",), (), "a 24-byte AES key (AES-192), not 32 bytes"),
    "tag-appended": CodeInfo(None, ("ENC-3",), (),
                             "GCM tag appended to the ciphertext instead of carried in 'tag'"),
    "nonce-length": CodeInfo(None, ("PKG-7",), (), "a GCM nonce that is not 12 bytes"),
    "base64-lenient": CodeInfo(None, ("PKG-6",), (),
                               "base64 that only a lenient decoder reads (URL-safe alphabet, "
                               "whitespace or missing padding)"),
    # Not a fault by itself: the key was the server's until the rotation (a client's cached
    # key); what the client does next is judged by DISC-15..DISC-19.
    "retired-server-key": CodeInfo(None, (), (),
                                   "encrypted to a server key the router has rotated out"),
}

#: Refusal code -> the client requirement ids a request refused so breaks.
REFUSAL_REQUIREMENTS: dict[str, tuple[str, ...]] = {
    code: info.requirements for code, info in REFUSAL_CODES.items()}

#: Every fault code (refusals, notes, tolerant variants) -> client requirement ids.
FAULT_REQUIREMENTS: dict[str, tuple[str, ...]] = {
    code: info.requirements
    for table in (REFUSAL_CODES, NOTE_CODES, VARIANT_CODES) for code, info in table.items()}


def code_info(code: str) -> CodeInfo:
    """The entry of any code (KeyError for an unknown one)."""
    for table in (REFUSAL_CODES, NOTE_CODES, VARIANT_CODES):
        if code in table:
            return table[code]
    raise KeyError(code)
