"""What the seed's Python classes do when called directly (capability python_api).

Some rules are about Python objects the adapter interface never shows: the exception object a
caller catches (its chain and attributes), the low-level `send_secure_request`, one
`SecureChatCompletion` shared by concurrent tasks, and a call made while the process cannot
lock memory. These checks build the port's classes from `impl.module` and call them on their
own event loop (`asyncio.run` in the check's thread), against the session's mock router.

The risks: a plaintext that rides along in `__cause__`/`__context__` or a `JSONDecodeError.doc`
ends up in every crash reporter that renders exception chains; a chained crypto exception
names the failed step (an oracle); a payload id with a line break or a non-ASCII character
breaks the header (or smuggles another one); concurrent first calls that each make a key pair
and fetch the server key waste seconds of CPU and hammer the key endpoint; a client that fails
where `mlock` is not allowed (containers, a low RLIMIT_MEMLOCK) is unusable there.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import inspect
import json
import os
import re
import secrets
import warnings
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conformance import expect
from conformance.checks._support import (
    MODEL,
    describe_seen,
    key_fetches,
    messages,
    posts,
)
from mock_router import Scenario

#: payload ids send_secure_request must refuse (PID-9: 1 to 128 characters 0x21-0x7E).
BAD_PAYLOAD_IDS: dict[str, str] = {
    "empty": "",
    "129 characters": "a" * 129,
    "line feed": "a\nb",
    "carriage return": "a\rb",
    "space only": " ",
    "inner space": "a b",
    "non-ASCII": "caf\u00e9",
    "DEL": "a\x7f",
    "NUL": "a\x00b",
}
OTHER_ID = "00000000-0000-4000-8000-000000000000"
DEPTH = 8


def _attr(impl: Any, name: str) -> Any:
    """A class of the port's package (a same-named submodule is looked into)."""
    value = getattr(impl.module, name, None)
    if inspect.ismodule(value):
        value = getattr(value, name, None)
    expect.true(inspect.isclass(value), f"class {impl.module.__name__}.{name}", value)
    return value


async def _close(obj: Any) -> None:
    for name in ("aclose", "close"):
        method = getattr(obj, name, None)
        if callable(method):
            with contextlib.suppress(Exception):
                done = method()
                if inspect.isawaitable(done):
                    await done
            return


def _run(factory: Callable[[], Awaitable[Any]]) -> Any:
    """Run a coroutine on a fresh event loop in this thread (warnings silenced: the
    allow_http one is expected)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return asyncio.run(asyncio.wait_for(factory(), 120))


def _one_create(impl: Any, url: str, **options: Any) -> tuple[Any, BaseException | None]:
    """One create() on a fresh SecureChatCompletion: (result, None) or (None, exception)."""
    chat_class = _attr(impl, "SecureChatCompletion")

    async def go() -> tuple[Any, BaseException | None]:
        chat = chat_class(base_url=url, allow_http=True, **options)
        try:
            return await chat.create(MODEL, messages()), None
        except Exception as exc:
            return None, exc
        finally:
            await _close(chat)

    return _run(go)


# -- exception chains ------------------------------------------------------------------------


def _carried(exc: BaseException) -> list[tuple[str, str]]:
    """(path, text) of everything an exception carries: repr/str, args, attributes, the
    cause, and the context unless suppressed (`raise ... from None`), recursively."""
    out: list[tuple[str, str]] = []
    seen: set[int] = set()

    def text(value: Any) -> str:
        try:
            shown = repr(value)
        except Exception:  # a broken __repr__ carries nothing we can see
            shown = f"<{type(value).__name__}>"
        if isinstance(value, (bytes, bytearray)):
            shown += bytes(value).decode("latin-1")
        return shown

    def walk(value: Any, path: str, depth: int) -> None:
        if depth > DEPTH or id(value) in seen:
            return
        seen.add(id(value))
        if isinstance(value, BaseException):
            out.append((path, text(value)))
            with contextlib.suppress(Exception):
                out.append((path, str(value)))
            walk(value.args, f"{path}.args", depth + 1)
            attrs = {k: v for k, v in getattr(value, "__dict__", {}).items()}
            walk(attrs, f"{path}.__dict__", depth + 1)
            walk(getattr(value, "__notes__", None), f"{path}.__notes__", depth + 1)
            if value.__cause__ is not None:
                walk(value.__cause__, f"{path}.__cause__", depth + 1)
            if value.__context__ is not None and not value.__suppress_context__:
                walk(value.__context__, f"{path}.__context__", depth + 1)
        elif value is None or isinstance(value, (str, bytes, bytearray, int, float, bool)):
            out.append((path, text(value)))
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(key, f"{path}[key]", depth + 1)
                walk(item, f"{path}[{key!r}]", depth + 1)
        elif isinstance(value, (list, tuple, set, frozenset)):
            for index, item in enumerate(value):
                walk(item, f"{path}[{index}]", depth + 1)
        elif inspect.ismodule(value) or inspect.isclass(value) or callable(value):
            return
        else:
            out.append((path, text(value)))
            if hasattr(value, "__dict__"):
                walk(dict(vars(value)), f"{path}.__dict__", depth + 1)

    walk(exc, "exception", 0)
    return out


def _chain(exc: BaseException) -> str:
    """The exception and its visible chain, for failure messages."""
    parts, current, hops = [], exc, 0
    while current is not None and hops < DEPTH:
        parts.append(type(current).__name__)
        current = current.__cause__ or (
            None if current.__suppress_context__ else current.__context__
        )
        hops += 1
    return " <- ".join(parts)


def _canary_answers(canary: str) -> dict[str, Scenario]:
    """Answers that make a client fail after decryption, on content holding the canary."""
    return {
        "plaintext not JSON": Scenario.plaintext(
            b'{"canary": "' + canary.encode() + b'", not json'
        ),
        "plaintext not an object": Scenario.plaintext(b'["' + canary.encode() + b'"]'),
        "answer bound to another id": Scenario.completion(
            {
                "id": "chatcmpl-canary",
                "object": "chat.completion",
                "created": 0,
                "model": MODEL,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": canary},
                        "finish_reason": "stop",
                    }
                ],
                "_metadata": {"payload_id": OTHER_ID},
            }
        ),
    }


@pytest.mark.req("LOG-3")
@pytest.mark.requires("python_api")
def test_exceptions_carry_no_plaintext(
    impl: Any, http_server: Any, router: Any, client_key_dir: str
) -> None:
    """Evidence: client behaviour. When a decrypted answer is refused (not JSON, not an
    object, bound to another id), the
    exception, its args and attributes, its cause and its unsuppressed context, followed
    recursively, never hold the answer's content (e.g. a JSONDecodeError whose .doc is the
    plaintext, chained with `raise ... from exc`)."""
    canary = "CANARY-" + secrets.token_hex(8)
    raised = 0
    for name, scenario in _canary_answers(canary).items():
        router.reset()
        router.push(scenario)
        _, exc = _one_create(impl, http_server.url, key_dir=client_key_dir)
        if exc is None:
            continue  # accepting the answer is another rule's failure (CHK-13, PID-5)
        raised += 1
        found = [path for path, text in _carried(exc) if canary in text]
        expect.true(
            not found,
            f"no plaintext carried by the exception for {name}",
            f"{type(exc).__name__} ({_chain(exc)}) carries it at {', '.join(found[:5])}",
        )
    expect.true(raised > 0, "at least one refused answer", "every answer was accepted")


@pytest.mark.req("CHK-12")
@pytest.mark.requires("python_api")
@pytest.mark.parametrize("fault", ["tamper tag", "tamper encrypted_aes_key", "wrong recipient"])
def test_decryption_error_exposes_no_cause(
    impl: Any, http_server: Any, router: Any, client_key_dir: str, fault: str
) -> None:
    """Evidence: client behaviour. The exception for an answer that fails to decrypt has no
    cause and no visible context
    (`raise SecurityError("decryption failed") from None`): a chained crypto exception names
    the step that failed (SHOULD)."""
    scenario = {
        "tamper tag": Scenario.tamper("tag"),
        "tamper encrypted_aes_key": Scenario.tamper("encrypted_aes_key"),
        "wrong recipient": Scenario.wrong_recipient(),
    }[fault]
    router.push(scenario)
    result, exc = _one_create(impl, http_server.url, key_dir=client_key_dir)
    expect.true(exc is not None, f"an exception for {fault}", f"result {result!r:.200}")
    assert exc is not None
    visible_context = exc.__context__ is not None and not exc.__suppress_context__
    expect.true(
        exc.__cause__ is None and not visible_context,
        "no __cause__ and a suppressed (or no) __context__",
        f"{type(exc).__name__}: {exc} chained as {_chain(exc)}",
    )


# -- send_secure_request ---------------------------------------------------------------------


@pytest.mark.req("PID-9")
@pytest.mark.requires("python_api")
def test_send_secure_request_refuses_bad_payload_ids(
    impl: Any, http_server: Any, router: Any, client_key_dir: str
) -> None:
    """Evidence: client behaviour, request. send_secure_request with a payload_id that is
    not 1 to 128 visible ASCII characters
    (empty, 129 characters, CR/LF, spaces, non-ASCII, control characters) raises ValueError
    and sends no request."""
    low_class = _attr(impl, "SecureCompletionClient")
    keys = Path(client_key_dir)
    payload = {"model": MODEL, "messages": messages()}

    async def go() -> dict[str, str]:
        low = low_class(http_server.url, allow_http=True)
        found: dict[str, str] = {}
        try:
            low.load_keys(str(keys / "private_key.pem"), str(keys / "public_key.pem"))
            for name, bad in BAD_PAYLOAD_IDS.items():
                before = len(posts(router))
                try:
                    await low.send_secure_request(dict(payload), bad)
                    outcome = "returned a result"
                except ValueError:
                    outcome = "ValueError"
                except Exception as exc:
                    outcome = f"{type(exc).__name__}: {str(exc)[:120]}"
                sent = len(posts(router)) - before
                found[name] = outcome + (f", {sent} POST(s) sent" if sent else "")
        finally:
            await _close(low)
        return found

    found = _run(go)
    wrong = {name: got for name, got in found.items() if got != "ValueError"}
    expect.true(not wrong, "ValueError and nothing sent for every bad payload id", f"{wrong}")
    expect.true(not posts(router), "no POST at all", describe_seen(router))


# -- the low-level calls ---------------------------------------------------------------------


@pytest.mark.req("API-9", "API-10")
@pytest.mark.requires("python_api")
def test_low_level_key_fetch_and_encryption(
    impl: Any, http_server: Any, router: Any, client_key_dir: str
) -> None:
    """Evidence: client behaviour. fetch_server_public_key() returns the server key's PEM as
    a str (API-9); encrypt_payload(payload) returns the package bytes, and refuses an empty
    dict or a non-dict with ValueError (API-10)."""
    low_class = _attr(impl, "SecureCompletionClient")
    keys = Path(client_key_dir)
    refused = {"empty dict": {}, "list": [{"role": "user"}], "string": "hello"}

    async def go() -> dict[str, Any]:
        low = low_class(http_server.url, allow_http=True)
        found: dict[str, Any] = {}
        try:
            low.load_keys(str(keys / "private_key.pem"), str(keys / "public_key.pem"))
            found["pem"] = await low.fetch_server_public_key()
            for name, payload in refused.items():
                try:
                    await low.encrypt_payload(payload)
                    found[name] = "no error"
                except ValueError:
                    found[name] = "ValueError"
                except Exception as exc:
                    found[name] = f"{type(exc).__name__}: {str(exc)[:80]}"
            found["body"] = await low.encrypt_payload({"model": MODEL, "messages": messages()})
        finally:
            await _close(low)
        return found

    found = _run(go)
    with expect.clause("API-9"):
        pem = found["pem"]
        expect.true(isinstance(pem, str), "the PEM as a str", type(pem).__name__)
        expect.equal(str(pem).strip(), router.public_key_pem.strip(), "the fetched key")
    with expect.clause("API-10"):
        wrong = {name: found[name] for name in refused if found[name] != "ValueError"}
        expect.true(not wrong, "ValueError for an empty dict and non-dict payloads", wrong)
        body = found["body"]
        expect.true(isinstance(body, (bytes, bytearray)), "the package bytes", type(body).__name__)
        package = json.loads(bytes(body)) if isinstance(body, (bytes, bytearray)) else None
        expect.true(
            isinstance(package, dict) and "encrypted_aes_key" in package,
            "a package (a JSON object with encrypted_aes_key)",
            str(package)[:120],
        )


#: Keyword names that smell of switching TLS verification (TLS-9 forbids such an option).
VERIFY_WORDS = re.compile(r"verif|insecure|ssl|tls|cert|hostname|trust|bundle", re.IGNORECASE)


@pytest.mark.req("TLS-9")
@pytest.mark.requires("python_api")
def test_no_constructor_option_disables_verification(
    impl: Any, tls_server: Any, router: Any, client_key_dir: str
) -> None:
    """Evidence: request. Every keyword of SecureChatCompletion whose name speaks of
    verification, certificates, TLS or trust (ca_bundle included) is tried with the values
    that switch verification off elsewhere (False, None, 0, "", True) against a server whose
    certificate the client does not trust: nothing may get through the handshake."""
    chat_class = _attr(impl, "SecureChatCompletion")
    params = inspect.signature(chat_class.__init__).parameters
    names = [n for n in params if n != "self" and VERIFY_WORDS.search(n)]
    if not names:
        expect.not_applicable("SecureChatCompletion has no keyword about verification")
    through: list[str] = []
    for name in names:
        for value in (False, None, 0, "", True):

            async def go(name: str = name, value: Any = value) -> None:
                try:
                    chat = chat_class(
                        base_url=tls_server.url, key_dir=client_key_dir, **{name: value}
                    )
                except Exception:  # refusing the value is fine
                    return
                try:
                    await chat.create(MODEL, messages())
                except Exception:  # noqa: S110 - the request must fail; what matters is below
                    pass
                finally:
                    await _close(chat)

            router.reset()
            _run(go)
            if router.seen:
                through.append(f"{name}={value!r}: {describe_seen(router)}")
    expect.true(not through, "no keyword that lets an untrusted certificate through", through)


# -- one instance, many tasks ----------------------------------------------------------------


@pytest.mark.req("API-19")
@pytest.mark.requires("python_api")
def test_concurrent_first_calls_share_keys(impl: Any, http_server: Any, router: Any) -> None:
    """Evidence: request. 16 concurrent create() calls on one new SecureChatCompletion (no
    key directory) all
    succeed with one client key pair and one fetch of the server key (SHOULD)."""
    chat_class = _attr(impl, "SecureChatCompletion")

    async def go() -> list[Any]:
        chat = chat_class(base_url=http_server.url, allow_http=True)
        try:
            calls = [chat.create(MODEL, messages(f"call {n}")) for n in range(16)]
            return await asyncio.gather(*calls, return_exceptions=True)
        finally:
            await _close(chat)

    results = _run(go)
    failed = [f"{type(r).__name__}: {r}" for r in results if isinstance(r, BaseException)]
    expect.true(not failed, "16 completions", failed[:3])
    fetches = len(key_fetches(router))
    expect.equal(fetches, 1, "fetches of the server key by 16 concurrent first calls")
    client_keys = {s.headers.get("x-public-key") for s in posts(router)}
    expect.equal(len(client_keys), 1, "distinct client public keys sent by the 16 calls")


# -- memory locking unavailable --------------------------------------------------------------

CAP_IPC_LOCK = 14
_CAP_VERSION_3 = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def _libc() -> Any:
    name = ctypes.util.find_library("c")
    return ctypes.CDLL(name, use_errno=True) if name else None


@contextlib.contextmanager
def _without_ipc_lock(libc: Any) -> Iterator[None]:
    """Linux: drop CAP_IPC_LOCK from this thread's effective set (it lets root lock memory
    whatever RLIMIT_MEMLOCK says); threads started meanwhile inherit that. Restored after."""
    capget = getattr(libc, "capget", None)
    capset = getattr(libc, "capset", None)
    header = _CapHeader(_CAP_VERSION_3, 0)
    data = (_CapData * 2)()
    bit = 1 << CAP_IPC_LOCK
    if capget is None or capset is None or capget(ctypes.byref(header), data) != 0:
        yield
        return
    if not data[0].effective & bit:
        yield
        return
    data[0].effective &= ~bit
    dropped = capset(ctypes.byref(header), data) == 0
    try:
        yield
    finally:
        if dropped:
            data[0].effective |= bit
            capset(ctypes.byref(header), data)


def _mlock_works(libc: Any) -> bool:
    """Whether this thread can lock one page right now."""
    size = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
    buf = ctypes.create_string_buffer(size)
    address, length = ctypes.c_void_p(ctypes.addressof(buf)), ctypes.c_size_t(size)
    if libc.mlock(address, length) == 0:
        libc.munlock(address, length)
        return True
    return False


@contextlib.contextmanager
def _memory_locking_unavailable() -> Iterator[None]:
    """RLIMIT_MEMLOCK soft limit 0 (and no CAP_IPC_LOCK) for the duration; NOT APPLICABLE
    where that cannot be arranged (no `resource` module, no mlock, mlock still works)."""
    try:
        import resource
    except ImportError:
        expect.not_applicable("no resource module: RLIMIT_MEMLOCK cannot be lowered here")
    libc = _libc()
    if libc is None or not hasattr(libc, "mlock"):
        expect.not_applicable("no mlock on this platform")
    soft, hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    resource.setrlimit(resource.RLIMIT_MEMLOCK, (0, hard))
    try:
        with _without_ipc_lock(libc):
            if _mlock_works(libc):
                expect.not_applicable("mlock still succeeds with RLIMIT_MEMLOCK 0 here")
            yield
    finally:
        resource.setrlimit(resource.RLIMIT_MEMLOCK, (soft, hard))


@pytest.mark.req("MEM-3")
@pytest.mark.requires("python_api")
def test_call_succeeds_without_memory_locking(
    impl: Any, http_server: Any, router: Any, client_key_dir: str
) -> None:
    """Evidence: client behaviour. With RLIMIT_MEMLOCK at 0 (mlock fails), a
    secure_memory=True call still completes:
    secure memory is best effort, never a reason to fail (a warning is allowed)."""
    with _memory_locking_unavailable():
        result, exc = _one_create(impl, http_server.url, key_dir=client_key_dir, secure_memory=True)
    expect.true(
        exc is None,
        "a completion although memory cannot be locked",
        f"{type(exc).__name__}: {exc}" if exc is not None else "",
    )
    expect.true(isinstance(result, dict), "a completion dict", type(result).__name__)
