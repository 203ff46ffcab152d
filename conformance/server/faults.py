"""The malformed-request classes of spec 9.2, each with the answer the spec fixes for it.

A `Fault` is one request with one thing wrong, the requirement that judges it, its step in
the order of SRV-1 and the status it must get (200 for the spellings a router must accept).
`representatives(options)` is the fixed catalogue every run sends (the live profile sends
only these, minus anything oversize); `strategies.py` generates more of each class.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from typing import Any

from conformance.server.drafts import (
    MAX_BODY,
    MAX_PLAINTEXT,
    MODEL,
    VALID_PLAINTEXT,
    Draft,
)
from conformance.server.options import ServerOptions

# Message content the router must never echo in an error detail (LOG-5).
CANARY = "conformance-canary-Qx7Zp: my secret prompt"
CANARY_MARK = "canary-Qx7Zp"
CANARY_MESSAGES = [{"role": "user", "content": CANARY}]
DECRYPTION_FAILED = "decryption failed"
STREAMING = "streaming is not supported"
STEPS = {
    1: "body size",
    2: "authentication",
    3: "Content-Type and Content-Encoding",
    4: "headers",
    5: "package",
    6: "replay cache",
    7: "decryption",
    8: "plaintext size",
    9: "plaintext JSON",
    10: "tier policy",
}
# An API key the router cannot know; no refusal may echo it (LOG-7).
FAKE_API_KEY = "conformance-fake-key-Wq38"


@dataclass(frozen=True)
class Fault:
    """One request with one thing wrong (or one spelling a router must accept)."""

    draft: Draft
    req: str
    step: int
    status: int
    detail: str | None = None
    heavy: bool = False  # 10 MiB or more on the wire, or a declared oversize body
    live: bool = False  # one of the few the live profile sends (README, section server)

    @property
    def name(self) -> str:
        return self.draft.note

    def __repr__(self) -> str:
        return f"Fault({self.req} step {self.step}: {self.name} -> {self.status})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))


def fault(req: str, step: int, status: int, note: str, *, detail: str | None = None,
          heavy: bool = False, live: bool = False, **changes: Any) -> Fault:
    if "edits" in changes:
        changes["edits"] = tuple(changes["edits"])
    return Fault(Draft(note=note, **changes), req, step, status, detail, heavy, live)


ABSENT = object()  # canary_chat(model=ABSENT): no model member at all


def canary_chat(**changes: Any) -> bytes:
    """A chat plaintext whose message content is the canary, with `changes` to its members
    (ABSENT removes the member)."""
    body: dict[str, Any] = {"model": MODEL, "messages": CANARY_MESSAGES, "max_tokens": 16}
    for key, value in changes.items():
        if value is ABSENT:
            body.pop(key, None)
        else:
            body[key] = value
    return json.dumps(body).encode("utf-8")


SEALING = ("plaintext", "pad_to", "wrap", "aes_key_size", "tag_appended", "recipient",
           "tamper", "edits", "duplicate")


def _lost(one: Fault, other: Fault) -> bool:
    """Whether `other`'s fault would vanish in one request with `one`'s (a raw body, or
    a body never sent, hides everything sealed into the package)."""
    plain = Draft()
    hides = one.draft.body is not None or one.draft.oversize
    return bool(hides) and any(getattr(other.draft, n) != getattr(plain, n) for n in SEALING)


def combine(first: Fault, second: Fault) -> Draft | None:
    """One request with both faults, or None when they change the same thing (or one would
    hide the other)."""
    if _lost(first, second) or _lost(second, first):
        return None
    plain = Draft()
    changes: dict[str, Any] = {}
    for f in fields(Draft):
        if f.name == "note":
            continue
        a, b = getattr(first.draft, f.name), getattr(second.draft, f.name)
        default = getattr(plain, f.name)
        if f.name == "edits":
            changes["edits"] = a + b
        elif a != default and b != default:
            return None
        else:
            changes[f.name] = a if a != default else b
    return Draft(note=f"{first.name} + {second.name}", **changes)


# -- the catalogue, by requirement -------------------------------------------------------

def _auth(options: ServerOptions) -> list[Fault]:
    if not options.policy.auth_required:
        return []
    return [
        fault("SRV-3", 2, 401, "no Authorization header", authorization=None, live=True),
        fault("SRV-3", 2, 401, "unknown API key", authorization=f"Bearer {FAKE_API_KEY}",
              live=True),
        fault("SRV-3", 2, 401, "Basic scheme", authorization="Basic dXNlcjpwYXNz"),
        fault("SRV-26", 2, 401, "Authorization sent twice", repeat="Authorization", live=True),
    ]


def _content_type() -> list[Fault]:
    return [
        fault("SRV-4", 3, 415, "no Content-Type", content_type=None),
        fault("SRV-4", 3, 415, "Content-Type application/json",
              content_type="application/json", live=True),
        fault("SRV-4", 3, 415, "Content-Type text/plain", content_type="text/plain"),
        fault("SRV-4", 3, 415, "Content-Type application/octet-streams",
              content_type="application/octet-streams"),
        fault("SRV-4", 3, 200, "Content-Type with a parameter (accepted)",
              content_type="application/octet-stream; charset=binary", live=True),
        fault("SRV-38", 3, 415, "gzip-compressed body, Content-Encoding gzip",
              content_encoding="gzip", live=True),
        fault("SRV-38", 3, 415, "Content-Encoding br", content_encoding="br"),
    ]


def _headers() -> list[Fault]:
    return [
        fault("SRV-5", 4, 400, "no X-Payload-ID", payload_id=None, live=True),
        fault("SRV-5", 4, 400, "empty X-Payload-ID", payload_id=""),
        fault("SRV-5", 4, 400, "X-Payload-ID of 129 characters", payload_id="a" * 129),
        fault("SRV-5", 4, 400, "X-Payload-ID with a space", payload_id="abc def"),
        fault("SRV-5", 4, 400, "X-Payload-ID with non-ASCII", payload_id="abc\u00e9".encode()),
        fault("SRV-5", 4, 200, "X-Payload-ID of 128 visible characters (accepted)",
              payload_id="~!" * 64, live=True),
        fault("TIER-6", 4, 400, "X-Security-Tier 'low'", tier="low", live=True),
        fault("TIER-6", 4, 400, "empty X-Security-Tier", tier=""),
        fault("TIER-6", 4, 400, "X-Security-Tier 'standard,high'", tier="standard,high"),
        fault("TIER-1", 4, 400, "X-Security-Tier 'High'", tier="High", live=True),
        fault("TIER-1", 4, 400, "X-Security-Tier 'STANDARD'", tier="STANDARD"),
        fault("SRV-26", 4, 400, "X-Payload-ID sent twice", repeat="X-Payload-ID", live=True),
        fault("SRV-26", 4, 400, "X-Public-Key sent twice", repeat="X-Public-Key"),
        fault("SRV-26", 4, 400, "X-Security-Tier sent twice", tier="standard",
              repeat="X-Security-Tier"),
        fault("SRV-26", 4, 400, "Content-Type sent twice", repeat="Content-Type"),
    ]


def _public_key() -> list[Fault]:
    return [
        fault("SRV-6", 4, 400, "no X-Public-Key", key_header=None),
        fault("SRV-6", 4, 400, "empty X-Public-Key", key_header=""),
        fault("SRV-6", 4, 400, "X-Public-Key not a PEM", key_header="not%20a%20key", live=True),
        fault("SRV-6", 4, 400, "X-Public-Key not UTF-8", key_header="%FF%FE%FD"),
        fault("SRV-6", 4, 400, "X-Public-Key PEM with a broken body",
              key_header="-----BEGIN%20PUBLIC%20KEY-----%0AMIIBIjANBgkq!!%0A"
              "-----END%20PUBLIC%20KEY-----%0A"),
        fault("SRV-24", 4, 400, "X-Public-Key in PKCS#1 (RSA PUBLIC KEY)",
              client_key="rsa2048", key_form="pkcs1", live=True),
        fault("SRV-24", 4, 400, "X-Public-Key a certificate", client_key="rsa2048",
              key_form="certificate"),
        fault("SRV-24", 4, 400, "X-Public-Key with two PEM blocks", client_key="rsa2048",
              key_form="two-blocks"),
        fault("SRV-24", 4, 400, "X-Public-Key with text around the block", client_key="rsa2048",
              key_form="text-around"),
        fault("SRV-7", 4, 400, "RSA-1024 client key", client_key="rsa1024", live=True),
        fault("SRV-7", 4, 400, "RSA-1536 client key", client_key="rsa1536"),
        fault("SRV-7", 4, 400, "EC P-256 client key", client_key="ec-p256"),
        fault("SRV-7", 4, 400, "Ed25519 client key", client_key="ed25519"),
        fault("SRV-7", 4, 200, "RSA-2048 client key (accepted)", client_key="rsa2048", live=True),
        fault("SRV-25", 4, 400, "client key with public exponent 3", client_key="rsa2048",
              key_form="exponent-3", live=True),
        fault("SRV-25", 4, 400, "client key of 16400 bits", client_key="rsa2048",
              key_form="modulus-16400"),
    ]


def _structure() -> list[Fault]:
    out = [
        fault("SRV-8", 5, 400, "empty body", body=b""),
        fault("SRV-8", 5, 400, "body not JSON", body=b"not json", live=True),
        fault("SRV-8", 5, 400, "body not UTF-8", body=b"\xff\xfe{}"),
        fault("SRV-8", 5, 400, "body a JSON array", body=b"[]"),
        fault("SRV-8", 5, 400, "encrypted_payload a string",
              edits=[("set", "encrypted_payload", '"abc"')]),
        fault("SRV-8", 5, 400, "version a number", edits=[("set", "version", "1.0")]),
        fault("SRV-8", 5, 400, "tag null", edits=[("set", "encrypted_payload.tag", "null")]),
    ]
    for member in ("version", "encrypted_aes_key", "encrypted_payload.nonce"):
        out.append(fault("SRV-8", 5, 400, f"{member} missing", edits=[("remove", member, "")]))
    return out


def _values() -> list[Fault]:
    return [
        fault("SRV-9", 5, 400, "version '1.1'", edits=[("set", "version", '"1.1"')], live=True),
        fault("SRV-9", 5, 400, "algorithm 'hybrid-aes128-rsa2048'",
              edits=[("set", "algorithm", '"hybrid-aes128-rsa2048"')]),
        fault("SRV-9", 5, 400, "key_algorithm 'RSA-OAEP-SHA1'",
              edits=[("set", "key_algorithm", '"RSA-OAEP-SHA1"')]),
        fault("SRV-9", 5, 400, "payload_algorithm 'AES-128-GCM'",
              edits=[("set", "payload_algorithm", '"AES-128-GCM"')]),
    ]


def _base64() -> list[Fault]:
    return [
        fault("PKG-10", 5, 400, "nonce with a '!'",
              edits=[("b64", "encrypted_payload.nonce", "bad-char")]),
        fault("PKG-10", 5, 400, "encrypted_aes_key in the URL-safe alphabet",
              edits=[("b64", "encrypted_aes_key", "urlsafe")]),
        fault("PKG-10", 5, 400, "tag without padding",
              edits=[("b64", "encrypted_payload.tag", "no-padding")], live=True),
        fault("PKG-10", 5, 400, "tag with extra padding",
              edits=[("b64", "encrypted_payload.tag", "extra-padding")]),
        fault("PKG-10", 5, 400, "ciphertext with a line break",
              edits=[("b64", "encrypted_payload.ciphertext", "newline")]),
        fault("SRV-10", 5, 400, "nonce of 8 bytes",
              edits=[("resize", "encrypted_payload.nonce", "8")], live=True),
        fault("SRV-10", 5, 400, "nonce of 16 bytes",
              edits=[("resize", "encrypted_payload.nonce", "16")]),
        fault("SRV-10", 5, 400, "tag of 12 bytes",
              edits=[("resize", "encrypted_payload.tag", "12")]),
        fault("SRV-10", 5, 400, "empty tag",
              edits=[("set", "encrypted_payload.tag", '""')]),
    ]


def _duplicates() -> list[Fault]:
    return [
        fault("SRV-20", 5, 400, "package with 'version' twice", duplicate="version", live=True),
        fault("SRV-20", 5, 400, "package with 'encrypted_payload.nonce' twice",
              duplicate="encrypted_payload.nonce"),
        fault("SRV-20", 9, 400, "plaintext with 'model' twice",
              plaintext=canary_chat()[:-1] + b', "model": "@server-model@"}', live=True),
        fault("SRV-20", 9, 400, "plaintext message with 'role' twice",
              plaintext=b'{"model": "@server-model@", "messages": [{"role": "user", '
              b'"role": "user", "content": "' + CANARY.encode() + b'"}], "max_tokens": 16}'),
    ]


def _unknown_members() -> list[Fault]:
    return [
        fault("PKG-9", 5, 200, "unknown top-level members (ignored)",
              edits=[("set", "processed_at", "1764163200"),
                     ("set", "x_vendor_extension", '{"trace": [1, 2]}')], live=True),
        fault("PKG-11", 5, 200, "unknown member inside encrypted_payload (ignored)",
              edits=[("set", "encrypted_payload.aad", '"AAAA"')], live=True),
    ]


def _decryption() -> list[Fault]:
    failed = DECRYPTION_FAILED
    return [
        fault("SRV-11", 7, 400, "AES key wrapped to another key", detail=failed,
              recipient="other", live=True),
        fault("SRV-11", 7, 400, "encrypted_aes_key altered", detail=failed,
              tamper="encrypted_aes_key"),
        fault("SRV-11", 7, 400, "AES key of 16 bytes", detail=failed, aes_key_size=16),
        fault("SRV-11", 7, 400, "tag altered", detail=failed, tamper="tag", live=True),
        fault("SRV-11", 7, 400, "ciphertext altered", detail=failed, tamper="ciphertext"),
        fault("SRV-11", 7, 400, "nonce altered", detail=failed, tamper="nonce"),
        fault("SRV-11", 7, 400, "tag appended to the ciphertext", detail=failed,
              tag_appended=True),
        *(fault("ENC-6", 7, 400, f"AES key wrapped with {name}", detail=failed, wrap=name,
                live=name == "oaep-sha1")
          for name in ("oaep-sha1", "pkcs1v15", "oaep-mgf1-sha1", "oaep-label")),
    ]


def _plaintext() -> list[Fault]:
    return [
        fault("SRV-13", 9, 400, "plaintext not JSON", plaintext=CANARY.encode(), live=True),
        fault("SRV-13", 9, 400, "plaintext not UTF-8",
              plaintext=canary_chat().replace(b"secret", b"s\xe9cret")),
        fault("SRV-13", 9, 400, "plaintext with a byte order mark",
              plaintext=b"\xef\xbb\xbf" + canary_chat()),
        fault("SRV-13", 9, 400, "plaintext a JSON array", plaintext=b"[" + canary_chat() + b"]"),
        fault("SRV-13", 9, 400, "empty plaintext", plaintext=b""),
        fault("SRV-32", 9, 400, "model missing", plaintext=canary_chat(model=ABSENT), live=True),
        fault("SRV-32", 9, 400, "model empty", plaintext=canary_chat(model="")),
        fault("SRV-32", 9, 400, "model a number", plaintext=canary_chat(model=7)),
        fault("SRV-33", 9, 400, "messages missing", plaintext=canary_chat(messages=ABSENT)),
        fault("SRV-33", 9, 400, "messages empty", plaintext=canary_chat(messages=[]), live=True),
        fault("SRV-33", 9, 400, "messages a string", plaintext=canary_chat(messages=CANARY)),
        fault("SRV-34", 9, 400, "a message without role",
              plaintext=canary_chat(messages=[{"content": CANARY}])),
        fault("SRV-34", 9, 400, "a message whose role is a number",
              plaintext=canary_chat(messages=[{"role": 5, "content": CANARY}]), live=True),
        fault("SRV-34", 9, 400, "a message that is a string",
              plaintext=canary_chat(messages=[CANARY])),
        fault("SRV-15", 9, 400, "stream true", detail=STREAMING,
              plaintext=canary_chat(stream=True), live=True),
        fault("SRV-35", 9, 400, "stream null", plaintext=canary_chat(stream=None)),
        fault("SRV-35", 9, 400, "stream \"true\"", plaintext=canary_chat(stream="true"),
              live=True),
        fault("SRV-35", 9, 400, "stream 1", plaintext=canary_chat(stream=1)),
    ]


def _sizes() -> list[Fault]:
    return [
        fault("SRV-2", 1, 413, "Content-Length over 16 MiB", heavy=True, oversize=MAX_BODY + 1),
        fault("SRV-12", 8, 413, "plaintext of 10 MiB + 1 byte", heavy=True,
              plaintext=VALID_PLAINTEXT, pad_to=MAX_PLAINTEXT + 1),
        fault("SRV-12", 8, 200, "plaintext of exactly 10 MiB (accepted)", heavy=True,
              plaintext=VALID_PLAINTEXT, pad_to=MAX_PLAINTEXT),
    ]


def _policy(options: ServerOptions) -> list[Fault]:
    return [fault("TIER-7", 10, 403, f"tier {tier!r} for the model (declared 403)", tier=tier,
                  live=True)
            for tier in sorted(options.policy.tier_403)]


def representatives(options: ServerOptions) -> list[Fault]:
    """Every class of 9.2 the declared policy allows, in step order (heavy ones included)."""
    faults = [*_sizes(), *_auth(options), *_content_type(), *_headers(), *_public_key(),
              *_structure(), *_values(), *_base64(), *_duplicates(), *_unknown_members(),
              *_decryption(), *_plaintext(), *_policy(options)]
    return sorted(faults, key=lambda f: f.step)


def catalogue(options: ServerOptions) -> list[Fault]:
    """The representatives this run sends: all of them, or the live profile's few."""
    return [f for f in representatives(options) if f.live or not options.live]


def for_requirement(options: ServerOptions, *reqs: str) -> list[Fault]:
    """The representatives of this run judged by `reqs`."""
    return [f for f in catalogue(options) if f.req in reqs]


def refusals(options: ServerOptions) -> list[Fault]:
    """The representatives of this run that must be refused."""
    return [f for f in catalogue(options) if f.status != 200]
