"""Helpers shared by the check modules: what the router saw, decryption, secrets, kinds.

Nothing here imports an implementation: the checks judge ports through the adapter and the
mock router only (the independence rule).
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
# cryptography, router side


def b64(text: str) -> bytes:
    """Strict standard base64 decoding."""
    return base64.b64decode(text, validate=True)


def unwrap_aes_key(private_key: rsa.RSAPrivateKey, package: dict[str, Any]) -> bytes:
    """The AES key of a request package, unwrapped with the router's key (OAEP-SHA-256)."""
    return private_key.decrypt(b64(package["encrypted_aes_key"]), _OAEP)


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
