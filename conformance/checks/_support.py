"""Helpers shared by the check modules: what the router saw, decryption, secrets, kinds.

Nothing here imports an implementation: the checks judge ports through the adapter and the
mock router only (the independence rule).

Evidence, not chains: `sent_posts`, `plaintext_of` and `payload_of` read what a port sent
whatever the router answered (the router's decryption, else its tolerant one); `answered`
confirms that a scripted answer (``always=True``) reached the client. When the evidence is
missing they end the check BLOCKED by the requirement that keeps it away (`blocker`: the
router's root fault, named once by the check that judges it).
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
from collections.abc import Callable, Iterator
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from conformance import expect
from conformance.adapter import Adapter, ClientConfig, ErrorInfo, Kind, Outcome

KEY_PATH = "/pki/public_key"
POST_PATH = "/v1/chat/secure_completion"
MODEL = "mock-model"
MAX_PLAINTEXT = 10 * 1024 * 1024
UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")

#: Status → canonical kind (spec section 13.1).
STATUS_KINDS: dict[int, str] = {
    400: Kind.INVALID_REQUEST.value,
    401: Kind.AUTHENTICATION.value,
    403: Kind.FORBIDDEN.value,
    404: Kind.API.value,
    429: Kind.RATE_LIMIT.value,
    500: Kind.SERVER.value,
    502: Kind.API.value,
    503: Kind.SERVICE_UNAVAILABLE.value,
    504: Kind.API.value,
}

_OAEP = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


def kind_for_status(status: int) -> str:
    """The canonical kind a client must raise for a non-200 status."""
    return STATUS_KINDS.get(status, Kind.API.value)


def messages(text: str = "Hello") -> list[dict[str, str]]:
    """A one-message conversation."""
    return [{"role": "user", "content": text}]


# ---------------------------------------------------------------------------------------------
# what the router saw


def posts(router: Any) -> list[Any]:
    """The POSTs to the completion endpoint the router received, in order."""
    return [s for s in router.seen if s.method == "POST" and s.path == POST_PATH]


def key_fetches(router: Any) -> list[Any]:
    """The GETs of the server key the router received, in order."""
    return [s for s in router.seen if s.method == "GET" and s.path == KEY_PATH]


def last_post(router: Any) -> Any:
    """The last POST; fails the check when there was none."""
    seen = posts(router)
    expect.true(bool(seen), "a POST to " + POST_PATH, f"requests {describe_seen(router)}")
    return seen[-1]


def describe_seen(router: Any) -> str:
    """A short description of what the router saw (for failure messages)."""
    items = [f"{s.method} {s.path} -> {s.status}" for s in router.seen]
    return "[" + ", ".join(items) + "]"


def nothing_sent(router: Any, why: str) -> None:
    """Nothing at all may have reached the router."""
    expect.true(not router.seen, f"nothing sent ({why})", f"requests {describe_seen(router)}")


def no_post(router: Any, why: str) -> None:
    """No POST may have reached the router."""
    expect.true(not posts(router), f"no POST ({why})", f"requests {describe_seen(router)}")


def accepted(seen: Any) -> None:
    """The router accepted the request (so the port's package decrypted router-side)."""
    expect.true(
        seen.status == 200,
        "the router to accept the request (status 200)",
        f"status {seen.status}, refusal {seen.refusal!r}",
    )


# ---------------------------------------------------------------------------------------------
# evidence: what a port sent, whatever the router answered (issue 11, "evidence, not chains")

#: The requirement a check is BLOCKED by when the client sent no POST at all (judged by
#: test_headers::test_request_is_a_post_to_the_secure_completion_path).
NO_POST = "HDR-1"
#: The requirement a refused, undecryptable package is charged to when the tolerant
#: decryption cannot tell what the port did (test_package judges it: the AES key does not
#: unwrap with RSA-OAEP SHA-256 to the server key).
UNTOLD_DECRYPTION = "ENC-4"
#: Refusals of the client's own key: KEY-1 (the key a client makes) judges them.
SMALL_KEY = frozenset({"public_key_too_small", "public_key_not_rsa"})


def sent_posts(router: Any, what: str = "a POST to " + POST_PATH) -> list[Any]:
    """The recorded POSTs; BLOCKED by HDR-1 when the client sent none."""
    return expect.evidence(
        posts(router), what, blocked_by=NO_POST, why="the client sent no POST at all"
    )


def fault_of(seen: Any) -> Any:
    """The router's root fault of a refused request (mock_router.evidence.Fault) or None."""
    return getattr(seen, "fault", None)


def _untold(seen: Any) -> tuple[str, str]:
    """A package refused "decryption failed" that no known variant opens: (id, why). The AES
    key does not unwrap to the server key (ENC-4), or it does and GCM fails without
    associated data (ENC-2); test_package judges both the same way."""
    keys = getattr(seen, "server_keys", ())
    try:
        wrapped = b64(seen.package["encrypted_aes_key"])
    except (KeyError, TypeError, ValueError):
        wrapped = b""
    if keys and wrapped and unwrap_any(keys[0], wrapped)[1] == STANDARD_WRAP:
        return "ENC-2", (
            "the router refused it: decryption failed; the AES key unwraps with RSA-OAEP "
            "SHA-256, so AES-GCM failed (associated data used, or a corrupt payload) (ENC-2)"
        )
    return UNTOLD_DECRYPTION, (
        "the router refused it: decryption failed; the AES key does not unwrap to the server "
        f"key with any known padding ({UNTOLD_DECRYPTION})"
    )


def blocker(seen: Any) -> str:
    """The requirement id that the router's refusal of `seen` breaks (its root fault), the one
    a check that needed an accepted request is BLOCKED by."""
    fault = fault_of(seen)
    if fault is not None and fault.code == "decryption_failed":
        return _untold(seen)[0]
    if fault is not None and fault.code in SMALL_KEY:
        return "KEY-1"  # a client key no scripted answer can be wrapped to (test_headers)
    if fault is not None and fault.requirements:
        return str(fault.requirements[0])
    return NO_POST


def refusal_text(seen: Any) -> str:
    """The router's reason for refusing `seen`, naming the requirement it breaks."""
    fault = fault_of(seen)
    if fault is not None and fault.code == "decryption_failed":
        return _untold(seen)[1]
    if fault is not None:
        return f"the router refused the request: {fault}"
    return f"the router answered {seen.status} ({seen.refusal!r})"


def request_plaintext(seen: Any) -> bytes | None:
    """The plaintext a port encrypted: the router's decryption, or else the tolerant one
    (which also opens packages with an appended tag, other OAEP parameters, ...)."""
    if seen.plaintext is not None:
        return bytes(seen.plaintext)
    opened = getattr(seen, "tolerant", None)
    return bytes(opened.plaintext) if opened is not None else None


def plaintext_of(seen: Any) -> bytes:
    """`request_plaintext`, or BLOCKED by the router's reason when nothing opens the package."""
    plaintext = request_plaintext(seen)
    if plaintext is None:
        expect.blocked(
            by=blocker(seen), why=f"the package could not be opened ({refusal_text(seen)})"
        )
    return plaintext


def payload_of(seen: Any) -> Any:
    """The JSON of a request's plaintext (duplicate names: the last wins), or BLOCKED as in
    `plaintext_of`; None when the plaintext is not JSON (REQ-1 judges that)."""
    if seen.payload is not None:
        return seen.payload
    try:
        return json.loads(plaintext_of(seen).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None


def answered(router: Any, kind: str) -> Any:
    """The POST the router answered (200) with the scripted answer `kind`: evidence that the
    client was given it. BLOCKED by HDR-1 without a POST; by the router's reason when the
    answer could not be scripted (no usable X-Public-Key or X-Payload-ID)."""
    seen = sent_posts(router)
    got = [s for s in seen if s.scenario == kind and s.status == 200]
    if not got:
        last = seen[-1]
        expect.blocked(
            by=blocker(last),
            why=f"the scripted answer ({kind}) could not be given: {refusal_text(last)}",
        )
    doubled = [n for n in ("x-payload-id", "x-public-key") if ", " in got[0].headers.get(n, "")]
    if doubled:  # the answer is bound and encrypted to what the router read: two values
        expect.blocked(by="HDR-12", why=f"{', '.join(doubled)} sent more than once")
    return got[0]


@contextlib.contextmanager
def rotated_key(router: Any) -> Iterator[None]:
    """The router uses a new key inside the block (2048 bits: a rotation check needs no
    4096-bit key); the original key is restored after, so pooled clients stay right."""
    original = router.server_key
    try:
        router.rotate_key(rsa.generate_private_key(public_exponent=65537, key_size=2048))
        yield
    finally:
        router.rotate_key(original)


def resent(router: Any, seen: list[Any], what: str) -> None:
    """The POSTs `seen` of one call after a key rotation include the resend; else BLOCKED: by
    the rotation rules when the first POST was refused "decryption failed" as a rotation makes
    it (DISC-15 without a fresh key fetch after it, DISC-18 with one), by the router's reason
    when it was refused for something else."""
    if len(seen) >= 2:
        return
    first = seen[0]
    if first.refusal_code is None:  # no 400: the call already used the new key
        expect.blocked(by="DISC-6", why=f"no {what}: the client did not use its cached key "
                       "for the call after the rotation (it fetched the key again)")  # fmt: skip
    if first.refusal_code != "decryption_failed":
        expect.blocked(by=blocker(first), why=f"no {what}: {refusal_text(first)}")
    if not [s for s in key_fetches(router) if s.seq > first.seq]:
        expect.blocked(by="DISC-15", why=f"no {what}: the client did not fetch the server "
                       "key again after the 400")  # fmt: skip
    expect.blocked(by="DISC-18", why=f"no {what}: the client fetched the new key but did not "
                   "resend")  # fmt: skip


# ---------------------------------------------------------------------------------------------
# cryptography, router side


def b64(text: str) -> bytes:
    """Strict standard base64 decoding."""
    return base64.b64decode(text, validate=True)


def unwrap_aes_key(private_key: rsa.RSAPrivateKey, package: dict[str, Any]) -> bytes:
    """The AES key of a request package, unwrapped with the router's key (OAEP-SHA-256)."""
    return private_key.decrypt(b64(package["encrypted_aes_key"]), _OAEP)


STANDARD_WRAP = "RSA-OAEP SHA-256, MGF1 SHA-256"


def _sha1() -> hashes.HashAlgorithm:
    return hashes.SHA1()  # noqa: S303 - recognising a port's wrong choice, on purpose


#: The key wraps a port may use, the standard one first (ENC-4 names every other one).
_WRAPS: tuple[tuple[str, padding.AsymmetricPadding], ...] = (
    (STANDARD_WRAP, _OAEP),
    ("RSA-OAEP SHA-1, MGF1 SHA-1", padding.OAEP(padding.MGF1(_sha1()), _sha1(), None)),
    ("RSA-OAEP SHA-256, MGF1 SHA-1", padding.OAEP(padding.MGF1(_sha1()), hashes.SHA256(), None)),
    ("RSA-OAEP SHA-1, MGF1 SHA-256", padding.OAEP(padding.MGF1(hashes.SHA256()), _sha1(), None)),
    ("RSA PKCS#1 v1.5", padding.PKCS1v15()),
)


def unwrap_any(
    private_key: rsa.RSAPrivateKey, wrapped: bytes, opens: Callable[[bytes], bool] | None = None
) -> tuple[bytes | None, str]:
    """The AES key of a request, unwrapped the standard way or else a known wrong way:
    (key, how), or (None, "") when nothing unwraps it to this key.

    A wrong way counts only when it gives an AES key size (16, 24 or 32 bytes) that `opens`
    the payload (when given): RSA PKCS#1 v1.5 decryption in current OpenSSL does not fail on
    a wrong key (implicit rejection), it returns random bytes."""
    for how, wrap in _WRAPS:
        try:
            key = private_key.decrypt(wrapped, wrap)
        except ValueError:
            continue
        if how == STANDARD_WRAP:
            return key, how
        if len(key) in (16, 24, 32) and (opens is None or opens(key)):
            return key, how
    return None, ""


def open_package(private_key: rsa.RSAPrivateKey, package: dict[str, Any]) -> bytes:
    """Decrypt a request package independently of the router (no AAD, tag separate)."""
    key = unwrap_aes_key(private_key, package)
    inner = package["encrypted_payload"]
    sealed = b64(inner["ciphertext"]) + b64(inner["tag"])
    return AESGCM(key).decrypt(b64(inner["nonce"]), sealed, None)


# ---------------------------------------------------------------------------------------------
# outcomes


def expect_kind(outcome: Outcome, kinds: str | set[str], what: str = "") -> ErrorInfo:
    """The outcome is an error of one of `kinds`. Unlike `expect.error`, a crash (kind
    `internal`) is a plain failure here: for these checks the crash is the defect."""
    wanted = {kinds} if isinstance(kinds, str) else set(kinds)
    error = outcome.error
    if error is not None and error.kind == Kind.UNSUPPORTED.value:
        expect.not_applicable(error.message or "operation unsupported")
    label = f"{what}: " if what else ""
    if error is None:
        raise AssertionError(
            f"{label}expected <error {' or '.join(sorted(wanted))}>, actual <{outcome}>"
        )
    if error.kind not in wanted:
        raise AssertionError(
            f"{label}expected <error {' or '.join(sorted(wanted))}>, actual <error {error}>"
        )
    return error


def require(impl: Adapter, *capabilities: str) -> None:
    """NOT APPLICABLE unless the adapter has every capability (inside a check body)."""
    missing = [c for c in capabilities if c not in impl.capabilities]
    if missing:
        expect.not_applicable(f"the implementation lacks capability {', '.join(missing)}")


@contextlib.contextmanager
def client(impl: Adapter, config: ClientConfig) -> Iterator[Any]:
    """One client reused across calls (capability client_reuse), closed afterwards."""
    outcome = expect.applicable(impl.open_client(config))
    handle = expect.ok(outcome, "a client")["client"]
    try:
        yield handle
    finally:
        impl.close_client(handle)


def calls_on_one_client(
    impl: Adapter, config: ClientConfig, count: int, **kwargs: Any
) -> list[Outcome]:
    """`count` create() calls on one client."""
    with client(impl, config) as handle:
        return [impl.create(config, MODEL, messages(), kwargs, client=handle) for _ in range(count)]


# ---------------------------------------------------------------------------------------------
# secrets


def texts_of(error: ErrorInfo | None) -> str:
    """Everything an error exposes to a caller, as one text (message, details, type)."""
    if error is None:
        return ""
    details = json.dumps(error.details, ensure_ascii=False, default=repr)
    return f"{error.message}\n{details}\n{error.type_name}"


def leaked(text: str, secrets: dict[str, str]) -> list[str]:
    """Names of the secrets that appear in `text`."""
    return [name for name, value in secrets.items() if value and value in text]


def no_leak(where: str, text: str, secrets: dict[str, str]) -> None:
    """None of `secrets` appears in `text`."""
    names = leaked(text, secrets)
    expect.true(not names, f"no secret in {where}", f"{', '.join(names)} found in {text[:300]!r}")


def json_roundtrip(value: Any) -> Any:
    """The value as it looks after a JSON round trip (tuples become lists)."""
    return json.loads(json.dumps(value))


Check = Callable[..., None]
