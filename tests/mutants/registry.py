"""Named mutants of nomyo_ref: each breaks exactly one clause of the spec, the suite must see it.

The proof that a conformance check judges its requirement is a client that breaks that
requirement and nothing else, and a run of the suite that fails it. The toy client of
tests/suite proves the checks on a small client; these mutants prove them on the real
reference client. Each entry names the requirement id(s) it breaks, says in one line how, and
patches nomyo_ref in-process (tests/mutants/patching.py: no file is edited, everything is
undone when the adapter closes)::

    pytest conformance --impl=tests.mutants.registry:mutant_NAME --req=ID

runs the suite against one mutant (``mutant_NAME`` is an adapter factory for every entry of
REGISTRY). tests/mutants/test_mutants.py runs them all; ``python -m tests.mutants.run --full``
runs each against the whole suite. A mutant is written against behaviour (a wrapper around a
named function that changes one decision), so small refactors of nomyo_ref keep it valid; when
a name it needs is gone, applying it fails with MutantNoLongerApplies.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import contextvars
import dataclasses
import functools
import inspect
import json
import logging
import os
import re
import ssl
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tests.mutants.patching import MutantNoLongerApplies, Patcher, Stats, bind

P = "nomyo_ref.protocol:"
C = "nomyo_ref.crypto:"
K = "nomyo_ref.keys:"
U = "nomyo_ref.urls:"
R = "nomyo_ref.retry:"
E = "nomyo_ref.errors:"
CLIENT = "nomyo_ref.client:SecureCompletionClient."
CHAT = "nomyo_ref.chat:SecureChatCompletion."
MEM = "nomyo_ref.secure_memory:"


@dataclass(frozen=True)
class Mutant:
    """One named mutant: the requirement ids it breaks, how, and the patch that does it."""

    name: str
    reqs: tuple[str, ...]
    description: str
    patch: Callable[[Patcher], None]


REGISTRY: dict[str, Mutant] = {}
#: The stats of the mutant applied last in this process (the drivers write them out).
LAST_STATS: list[Stats] = []


def mutant(name: str, reqs: Iterable[str], description: str
           ) -> Callable[[Callable[[Patcher], None]], Callable[[Patcher], None]]:
    """Register the decorated patch function as mutant `name`."""

    def register(patch: Callable[[Patcher], None]) -> Callable[[Patcher], None]:
        if name in REGISTRY:
            raise ValueError(f"duplicate mutant {name}")
        REGISTRY[name] = Mutant(name, tuple(reqs), description, patch)
        return patch

    return register


# =============================================================================================
# The adapter: nomyo_ref's own adapter, with one mutant applied while it lives
# =============================================================================================


def make_adapter(name: str) -> Any:
    """nomyo_ref's conformance adapter with mutant `name` applied (undone on close)."""
    from conformance.adapters.nomyo_ref import NomyoRefAdapter

    chosen = REGISTRY[name] if name else None

    class MutantAdapter(NomyoRefAdapter):
        """The reference client with one clause broken."""

        def __init__(self) -> None:
            self._patcher = Patcher(name or "none")
            LAST_STATS.append(self._patcher.stats)
            if chosen is not None:
                try:
                    chosen.patch(self._patcher)
                except BaseException as exc:
                    self._patcher.undo()
                    self._patcher.stats.error = f"{type(exc).__name__}: {exc}"
                    raise
            self._patcher.stats.applied = True
            super().__init__()
            self.name = f"nomyo_ref+{name}" if name else "nomyo_ref"

        def close(self) -> None:
            try:
                super().close()
            finally:
                self._patcher.undo()

    return MutantAdapter()


def __getattr__(attr: str) -> Any:
    """`mutant_NAME`: the adapter factory of mutant NAME (what --impl=module:object names);
    `mutant_none` is the unmutated reference through the same machinery (the baseline)."""
    if attr.startswith("mutant_"):
        name = attr[len("mutant_"):]
        if name == "none":
            return functools.partial(make_adapter, "")
        if name in REGISTRY:
            return functools.partial(make_adapter, name)
    raise AttributeError(attr)


# =============================================================================================
# Helpers shared by mutants
# =============================================================================================

#: Per call of send_secure_request: a dict the call's wrappers share (see track_calls).
CALL: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "nomyo_mutant_call", default=None
)
#: The last plaintext decrypted in this context (see capture_plaintext).
PLAINTEXT: contextvars.ContextVar[bytes | None] = contextvars.ContextVar(
    "nomyo_mutant_plaintext", default=None
)
_KEYS: dict[int, rsa.RSAPrivateKey] = {}


def other_key(bits: int) -> rsa.RSAPrivateKey:
    """A second RSA key of `bits` bits, made once per process (not the client's or server's)."""
    if bits not in _KEYS:
        _KEYS[bits] = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return _KEYS[bits]


def oaep(hash_cls: type[hashes.HashAlgorithm] = hashes.SHA256,
         mgf_cls: type[hashes.HashAlgorithm] | None = None) -> padding.OAEP:
    mgf = (mgf_cls or hash_cls)()
    return padding.OAEP(mgf=padding.MGF1(algorithm=mgf), algorithm=hash_cls(), label=None)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def need(p: Patcher, *targets: str) -> None:
    """Resolve, at apply time, names a mutant only looks up when called: a name gone must
    fail the mutant's application (MutantNoLongerApplies), never crash it mid-run (which the
    suite would report as a crash of the client, a false kill)."""
    for target in targets:
        p.resolve(target)


def track_calls(p: Patcher) -> None:
    """Give every send_secure_request call its own CALL dict (idempotent per mutant)."""
    if p.flags.get("track_calls"):
        return
    p.flags["track_calls"] = True

    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        async def send(self: Any, *args: Any, **kwargs: Any) -> Any:
            token = CALL.set({"client": self, "builds": 0, "encryptions": 0})
            try:
                return await orig(self, *args, **kwargs)
            finally:
                CALL.reset(token)

        return send

    p.wrap(CLIENT + "send_secure_request", make)


def capture_plaintext(p: Patcher) -> None:
    """Keep a copy of each decrypted plaintext in PLAINTEXT (the original zeroes its own)."""
    if p.flags.get("capture_plaintext"):
        return
    p.flags["capture_plaintext"] = True

    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        def decrypt(*args: Any, **kwargs: Any) -> Any:
            PLAINTEXT.set(None)
            out = orig(*args, **kwargs)
            PLAINTEXT.set(bytes(out))
            return out

        return decrypt

    p.wrap(C + "decrypt_fields", make)


def captured_object() -> dict[str, Any] | None:
    """The last captured plaintext as a JSON object, or None."""
    data = PLAINTEXT.get()
    if data is None:
        return None
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def finish_result(result: dict[str, Any], payload_id: str, algorithm: str) -> dict[str, Any]:
    """What a client adds to an accepted answer (11.4), for mutants that accept on their own."""
    metadata = result.get("_metadata")
    if not isinstance(metadata, dict):
        metadata = {}
        result["_metadata"] = metadata
    metadata["payload_id"] = payload_id
    metadata.setdefault("processed_at", None)
    metadata["is_encrypted"] = True
    metadata["encryption_algorithm"] = algorithm
    return result


def rewrite_package(p: Patcher, edit: Callable[[dict[str, Any]], None],
                    when: Callable[[inspect.BoundArguments], bool] | None = None) -> None:
    """Make every package the client sends pass through `edit` (a JSON object in place)."""

    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        def encrypt(*args: Any, **kwargs: Any) -> bytes:
            out = orig(*args, **kwargs)
            if when is not None and not when(bind(orig, args, kwargs)):
                return out
            package = json.loads(bytes(out))
            edit(package)
            p.fired()
            return json.dumps(package, separators=(",", ":")).encode("utf-8")

        return encrypt

    p.wrap(C + "encrypt_package", make)


def seal(
    template: dict[str, Any],
    plaintext: bytes,
    recipient: rsa.RSAPublicKey,
    *,
    key: bytes | None = None,
    nonce: bytes | None = None,
    aad: bytes | None = None,
    wrap: padding.AsymmetricPadding | None = None,
    tag_appended: bool = False,
) -> dict[str, Any]:
    """A package like `template` (the original's), encrypted our own way (for the ENC mutants)."""
    key = key if key is not None else os.urandom(32)
    nonce = nonce if nonce is not None else os.urandom(12)
    sealed = AESGCM(key).encrypt(nonce, plaintext, aad)
    ciphertext, tag = sealed[:-16], sealed[-16:]
    package = json.loads(json.dumps(template))
    payload = package["encrypted_payload"]
    payload["ciphertext"] = b64(sealed if tag_appended else ciphertext)
    payload["nonce"] = b64(nonce)
    payload["tag"] = b64(tag)
    package["encrypted_aes_key"] = b64(recipient.encrypt(key, wrap or oaep()))
    return package


def reseal(p: Patcher, change: Callable[[inspect.BoundArguments, dict[str, Any]], dict[str, Any]]
           ) -> None:
    """Replace each package the client builds by `change(arguments, original package)`."""

    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        def encrypt(*args: Any, **kwargs: Any) -> bytes:
            out = orig(*args, **kwargs)
            package = change(bind(orig, args, kwargs), json.loads(bytes(out)))
            p.fired()
            return json.dumps(package, separators=(",", ":")).encode("utf-8")

        return encrypt

    p.wrap(C + "encrypt_package", make, needs=("plaintext", "recipient"))


def package_of(body: Any) -> dict[str, Any] | None:
    """A response body as a JSON object, or None."""
    try:
        value = json.loads(bytes(body).decode("utf-8"))
    except (TypeError, UnicodeDecodeError, ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def rewrite_response(p: Patcher, edit: Callable[[dict[str, Any]], bool]) -> None:
    """Let the client see each response package after `edit` (True: it changed something)."""

    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        def parse(body: Any, *args: Any, **kwargs: Any) -> Any:
            package = package_of(body)
            if package is not None and edit(package):
                p.fired()
                body = json.dumps(package).encode("utf-8")
            return orig(body, *args, **kwargs)

        return parse

    p.wrap(P + "parse_package", make)


def refuse_response(p: Patcher, refuse: Callable[[Any], Exception | None]) -> None:
    """Raise `refuse(body)` (when not None) before the original package checks run."""

    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        def parse(body: Any, *args: Any, **kwargs: Any) -> Any:
            error = refuse(body)
            if error is not None:
                p.fired()
                raise error
            return orig(body, *args, **kwargs)

        return parse

    p.wrap(P + "parse_package", make)


SEALED = ("encrypted_aes_key", "ciphertext", "nonce", "tag")


def sealed_fields(p: Patcher) -> None:
    """Mutants reading crypto.SealedFields need its four members."""
    cls = p.get(C + "SealedFields")
    names = {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else set()
    if not set(SEALED) <= names:
        raise MutantNoLongerApplies(f"{p.stats.mutant}: crypto.SealedFields lost a member")


def failing_step(fields: Any, private_key: rsa.RSAPrivateKey) -> tuple[str, Exception] | None:
    """Which step of decryption fails for these fields (our own decryption, per the spec)."""
    try:
        raw = {n: base64.b64decode(getattr(fields, n).encode("ascii"), validate=True)
               for n in SEALED}
    except (binascii.Error, ValueError, UnicodeEncodeError) as exc:
        return "base64", exc
    if len(raw["nonce"]) != 12 or len(raw["tag"]) != 16:
        return "length", ValueError("nonce or tag length")
    try:
        key = private_key.decrypt(raw["encrypted_aes_key"], oaep())
    except ValueError as exc:
        return "rsa", exc
    try:
        AESGCM(key).decrypt(raw["nonce"], raw["ciphertext"] + raw["tag"], None)
    except (InvalidTag, ValueError) as exc:
        return "gcm", exc
    return None


Act = Callable[[str, Exception, Any, Any, Callable[[Any], Any]], Any]


def on_decrypt_failure(p: Patcher, act: Act) -> None:
    """When decryption fails, call `act(step, exception, fields, private_key, retry)`: it
    raises instead of the original's opaque SecurityError, or returns plaintext to accept
    (`retry(other_fields)` runs the original decryption on other fields)."""
    sealed_fields(p)
    security = p.get(E + "SecurityError")

    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        def decrypt(*args: Any, **kwargs: Any) -> Any:
            try:
                return orig(*args, **kwargs)
            except security:
                bound = bind(orig, args, kwargs)
                fields, key = bound.arguments["fields"], bound.arguments["private_key"]
                found = failing_step(fields, key)
                if found is None:
                    raise
                p.fired()

                def retry(other: Any) -> Any:
                    bound.arguments["fields"] = other
                    return orig(*bound.args, **bound.kwargs)

                return act(found[0], found[1], fields, key, retry)

        return decrypt

    p.wrap(C + "decrypt_fields", make, needs=("fields", "private_key"))


def remap_status(p: Patcher, statuses: Callable[[int], bool], class_name: str) -> None:
    """error_for_status gives `class_name` (of nomyo_ref.errors) for the matching statuses."""
    cls = p.get(E + class_name)

    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        def error_for_status(status: int, *args: Any, **kwargs: Any) -> Any:
            exc = orig(status, *args, **kwargs)
            if statuses(status):
                p.fired()
                return cls(exc.message, status_code=status, error_details=exc.error_details)
            return exc

        return error_for_status

    p.wrap(P + "error_for_status", make)


def tweak_error(p: Patcher, change: Callable[[Any, int, bytes, Any], bool]) -> None:
    """Let `change(exception, status, body, original)` alter each error_for_status result
    in place (`original` is the unpatched error_for_status)."""

    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        def error_for_status(status: int, body: Any = b"", *args: Any, **kwargs: Any) -> Any:
            exc = orig(status, body, *args, **kwargs)
            if change(exc, status, bytes(body), orig):
                p.fired()
            return exc

        return error_for_status

    p.wrap(P + "error_for_status", make)


def wrap_url(p: Patcher, change: Callable[[Callable[..., str], str, bool], str | None]) -> None:
    """normalise_base_url: `change(original, url, allow_http)` gives a result (the mutated
    behaviour) or None (the original's)."""

    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        def normalise(url: Any, *args: Any, **kwargs: Any) -> Any:
            allow = bool(bind(orig, (url, *args), kwargs).arguments.get("allow_http"))
            if isinstance(url, str):
                try:
                    got = change(orig, url, allow)
                except Exception:
                    p.fired()  # the mutant refuses what the original accepts
                    raise
                if got is not None:
                    p.fired()
                    return got
            return orig(url, *args, **kwargs)

        return normalise

    p.wrap(U + "normalise_base_url", make, needs=("allow_http",))


def wrap_tls(p: Patcher, change: Callable[[ssl.SSLContext], None]) -> None:
    """Every TLS context the client uses is a fresh one changed by `change` (the original's
    cached contexts are left untouched, so undoing the mutant restores verification)."""

    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        def tls_context(ca_bundle: Any = None, *args: Any, **kwargs: Any) -> ssl.SSLContext:
            orig(ca_bundle, *args, **kwargs)  # the original's validation of the bundle
            context = ssl.create_default_context(
                cafile=None if ca_bundle is None else str(ca_bundle))
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            change(context)
            p.fired()
            return context

        return tls_context

    p.wrap("nomyo_ref.client:_tls_context", make)


def per_call_build(p: Patcher, change: Callable[[int, inspect.BoundArguments], bool]) -> None:
    """build_chat_request: `change(n, arguments)` may alter the n-th request of a call
    (1-based) in place; True when it did."""
    track_calls(p)

    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        def build(*args: Any, **kwargs: Any) -> Any:
            call = CALL.get()
            bound = bind(orig, args, kwargs)
            if call is not None:
                call["builds"] += 1
                if change(call["builds"], bound):
                    p.fired()
            return orig(*bound.args, **bound.kwargs)

        return build

    p.wrap(P + "build_chat_request", make,
           needs=("payload_id", "client_public_pem", "api_key", "security_tier"))


def edit_headers(p: Patcher, change: Callable[[dict[str, str]], None],
                 method: str = "POST") -> None:
    """Change the headers of every request with `method` just before it is sent."""

    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        async def exchange(self: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
            if getattr(request, "method", None) == method:
                headers = dict(request.headers)
                change(headers)
                request = dataclasses.replace(request, headers=headers)
                p.fired()
            return await orig(self, request, *args, **kwargs)

        return exchange

    p.wrap(CLIENT + "_exchange", make)


def add_signature_option(p: Patcher, target: str, option: str, default: Any,
                         use: Callable[[Any, Any], None]) -> None:
    """Give the constructor `target` a keyword-only `option`; `use(self, value)` applies it."""
    original = p.get(target)
    sig = inspect.signature(original)
    params = list(sig.parameters.values())
    extra = inspect.Parameter(option, inspect.Parameter.KEYWORD_ONLY, default=default)
    at = next((i for i, q in enumerate(params) if q.kind is q.VAR_KEYWORD), len(params))
    shown = sig.replace(parameters=[*params[:at], extra, *params[at:]])

    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        def init(self: Any, *args: Any, **kwargs: Any) -> None:
            value = kwargs.pop(option, default)
            orig(self, *args, **kwargs)
            if value != default:
                p.fired()
                use(self, value)

        return init

    p.wrap(target, make, signature=shown)


def drop_signature_option(p: Patcher, target: str, option: str) -> None:
    """The constructor `target` no longer accepts keyword `option` (TypeError, like Python)."""
    original = p.get(target)
    sig = inspect.signature(original)
    if option not in sig.parameters:
        raise MutantNoLongerApplies(f"{p.stats.mutant}: {target} has no option {option}")
    shown = sig.replace(parameters=[q for n, q in sig.parameters.items() if n != option])

    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        def init(self: Any, *args: Any, **kwargs: Any) -> None:
            if option in kwargs:
                p.fired()
                raise TypeError(f"__init__() got an unexpected keyword argument {option!r}")
            orig(self, *args, **kwargs)

        return init

    p.wrap(target, make, signature=shown)


def rename_parameter(p: Patcher, target: str, old: str, new: str) -> None:
    """The method `target` shows parameter `old` as `new` (callers by position still work)."""
    original = p.get(target)
    sig = inspect.signature(original)
    if old not in sig.parameters:
        raise MutantNoLongerApplies(f"{p.stats.mutant}: {target} has no parameter {old}")
    shown = sig.replace(parameters=[q.replace(name=new) if n == old else q
                                    for n, q in sig.parameters.items()])

    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        run = orig

        if inspect.iscoroutinefunction(orig):

            async def method(*args: Any, **kwargs: Any) -> Any:
                if new in kwargs:
                    kwargs[old] = kwargs.pop(new)
                p.fired()
                return await run(*args, **kwargs)

            return method

        def method_sync(*args: Any, **kwargs: Any) -> Any:
            if new in kwargs:
                kwargs[old] = kwargs.pop(new)
            p.fired()
            return run(*args, **kwargs)

        return method_sync

    p.wrap(target, make, signature=shown)


def set_default(p: Patcher, target: str, option: str, value: Any) -> None:
    """Change the default of parameter `option` of function `target` (signature and use)."""
    function = p.get(target)
    code = getattr(function, "__code__", None)
    if code is None:
        raise MutantNoLongerApplies(f"{p.stats.mutant}: {target} is not a plain function")
    kwdefaults = dict(function.__kwdefaults__ or {})
    if option in kwdefaults:
        kwdefaults[option] = value
        _swap_defaults(p, function, "__kwdefaults__", kwdefaults)
        return
    positional = code.co_varnames[:code.co_argcount]
    defaults = list(function.__defaults__ or ())
    if option not in positional or positional.index(option) < len(positional) - len(defaults):
        raise MutantNoLongerApplies(f"{p.stats.mutant}: {target} has no default for {option}")
    defaults[positional.index(option) - (len(positional) - len(defaults))] = value
    _swap_defaults(p, function, "__defaults__", tuple(defaults))


def _swap_defaults(p: Patcher, function: Any, attr: str, value: Any) -> None:
    previous = getattr(function, attr)
    setattr(function, attr, value)
    p.on_undo(lambda: setattr(function, attr, previous))


# =============================================================================================
# Keys (section 3)
# =============================================================================================


@mutant("weak_generated_key", ["KEY-1"], "generates 2048-bit client keys instead of 4096")
def _weak_generated_key(p: Patcher) -> None:
    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        def generate(*args: Any, **kwargs: Any) -> Any:
            p.fired()
            return rsa.generate_private_key(public_exponent=65537, key_size=2048)

        return generate

    p.wrap(K + "generate_private_key", make)


@mutant("own_key_size_unchecked", ["KEY-2"], "loads its own RSA key of any size (1024 bits too)")
def _own_key_size_unchecked(p: Patcher) -> None:
    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        def check(key: Any, *args: Any, **kwargs: Any) -> Any:
            if isinstance(key, rsa.RSAPrivateKey) and key.key_size < 2048:
                p.fired()
                return key
            return orig(key, *args, **kwargs)

        return check

    p.wrap(K + "check_private_key", make)


def _pkcs1_public(key: Any) -> str:
    public = key.public_key() if isinstance(key, rsa.RSAPrivateKey) else key
    return public.public_bytes(serialization.Encoding.PEM,
                               serialization.PublicFormat.PKCS1).decode("ascii")


@mutant("pkcs1_public_key_sent", ["KEY-3"],
        "sends and saves its public key as PKCS#1 'BEGIN RSA PUBLIC KEY', not SPKI")
def _pkcs1_public_key_sent(p: Patcher) -> None:
    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        def public_pem(key: Any, *args: Any, **kwargs: Any) -> str:
            if isinstance(key, rsa.RSAPrivateKey):  # the client's own key, not the server's
                p.fired()
                return _pkcs1_public(key)
            return orig(key, *args, **kwargs)

        return public_pem

    p.wrap(K + "public_pem", make)


@mutant("private_key_traditional", ["KEY-4"],
        "saves private_key.pem as traditional 'BEGIN RSA PRIVATE KEY', not PKCS#8")
def _private_key_traditional(p: Patcher) -> None:
    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        def private_pem(key: Any, password: Any = None, *args: Any, **kwargs: Any) -> bytes:
            p.fired()
            secret = password.encode() if isinstance(password, str) else password
            encryption = (serialization.BestAvailableEncryption(secret) if secret
                          else serialization.NoEncryption())
            return key.private_bytes(serialization.Encoding.PEM,
                                     serialization.PrivateFormat.TraditionalOpenSSL, encryption)

        return private_pem

    p.wrap(K + "private_pem", make)


def after_save(p: Patcher, act: Callable[[Path, bool], None]) -> None:
    """Run `act(key_dir, created)` after every successful save_key_pair."""

    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        def save(key: Any, key_dir: Any, *args: Any, **kwargs: Any) -> Any:
            created = not Path(key_dir).exists()
            out = orig(key, key_dir, *args, **kwargs)
            act(Path(key_dir), created)
            p.fired()
            return out

        return save

    p.wrap(K + "save_key_pair", make, needs=("key_dir",))


@mutant("public_file_pkcs1", ["KEY-5"], "writes public_key.pem as PKCS#1, not SPKI")
def _public_file_pkcs1(p: Patcher) -> None:
    def act(directory: Path, created: bool) -> None:
        path = directory / "public_key.pem"
        key = serialization.load_pem_public_key(path.read_bytes())
        path.write_text(_pkcs1_public(key), encoding="ascii")

    after_save(p, act)


@mutant("key_file_modes_from_umask", ["KEY-6"],
        "leaves the key files' modes to the umask (0644 for private_key.pem under umask 022)")
def _key_file_modes_from_umask(p: Patcher) -> None:
    def act(directory: Path, created: bool) -> None:
        umask = os.umask(0)
        os.umask(umask)
        for name in ("private_key.pem", "public_key.pem"):
            os.chmod(directory / name, 0o666 & ~umask)

    after_save(p, act)


@mutant("key_dir_world_readable", ["KEY-7"], "creates the key directory with mode 0755")
def _key_dir_world_readable(p: Patcher) -> None:
    def act(directory: Path, created: bool) -> None:
        if created:
            os.chmod(directory, 0o755)  # noqa: S103 - the defect this mutant is

    after_save(p, act)


@mutant("keys_saved_without_key_dir", ["KEY-12"],
        "without a key directory, saves its keys to ./client_keys anyway")
def _keys_saved_without_key_dir(p: Patcher) -> None:
    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        async def ensure(self: Any, *args: Any, **kwargs: Any) -> Any:
            if getattr(self, "_key_dir", None) is None and self.private_key is None:
                p.fired()
                self._key_dir = "client_keys"
            return await orig(self, *args, **kwargs)

        return ensure

    p.wrap(CLIENT + "_ensure_keys", make)


@mutant("fingerprint_of_pem_text", ["KEY-13"],
        "computes the fingerprint over the PEM text instead of the DER SPKI")
def _fingerprint_of_pem_text(p: Patcher) -> None:
    import hashlib

    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        def fingerprint(key: Any, *args: Any, **kwargs: Any) -> str:
            public = key.public_key() if isinstance(key, rsa.RSAPrivateKey) else key
            pem = public.public_bytes(serialization.Encoding.PEM,
                                      serialization.PublicFormat.SubjectPublicKeyInfo)
            p.fired()
            return hashlib.sha256(pem).hexdigest()

        return fingerprint

    p.wrap(K + "fingerprint", make)


@mutant("pin_malformed_ignored", ["KEY-14"],
        "a malformed server_key_sha256 pin is silently ignored (no pinning, no ValueError)")
def _pin_malformed_ignored(p: Patcher) -> None:
    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        def normalise(value: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return orig(value, *args, **kwargs)
            except ValueError:
                p.fired()
                return None

        return normalise

    # The pin (or pin set) as the client reads it; single-pin versions had no normalise_pins.
    target = K + "normalise_pins" if _exists(p, K + "normalise_pins") else \
        K + "normalise_fingerprint"
    p.wrap(target, make)


@mutant("pin_set_first_only", ["DISC-25"],
        "of a set of pinned fingerprints only the first is honoured")
def _pin_set_first_only(p: Patcher) -> None:
    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        def normalise(value: Any, *args: Any, **kwargs: Any) -> Any:
            pins = orig(value, *args, **kwargs)
            if isinstance(pins, tuple) and len(pins) > 1:
                p.fired()
                return pins[:1]
            return pins

        return normalise

    p.wrap(K + "normalise_pins", make)


def _exists(p: Patcher, target: str) -> bool:
    try:
        p.resolve(target)
    except MutantNoLongerApplies:
        return False
    return True


@mutant("private_key_briefly_world_readable", ["KEY-15"],
        "creates the private key's temporary file 0644 and narrows it to 0600 only afterwards")
def _private_key_briefly_world_readable(p: Patcher) -> None:
    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        def write_temp(directory: Any, data: Any, mode: int, *args: Any, **kwargs: Any) -> Any:
            if mode != 0o600:
                return orig(directory, data, mode, *args, **kwargs)
            p.fired()
            name = os.path.join(directory, f".tmp-{os.urandom(6).hex()}.pem")
            fd = os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.chmod(name, 0o600)  # the window: readable by others until here
            return Path(name)

        return write_temp

    p.wrap(K + "_write_temp", make, needs=("mode",))


@mutant("key_save_leaves_temp_file", ["KEY-16"],
        "leaves a copy of each temporary key file behind in the key directory")
def _key_save_leaves_temp_file(p: Patcher) -> None:
    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        def write_temp(*args: Any, **kwargs: Any) -> Any:
            path = orig(*args, **kwargs)
            os.link(path, f"{path}.partial")
            p.fired()
            return path

        return write_temp

    p.wrap(K + "_write_temp", make)


@mutant("unloadable_key_error_unnamed", ["KEY-17"],
        "an unloadable private_key.pem in the key directory raises a ValueError naming no file")
def _unloadable_key_error_unnamed(p: Patcher) -> None:
    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        def load(self: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return orig(self, *args, **kwargs)
            except ValueError:
                p.fired()
                raise ValueError("the client key cannot be loaded") from None

        return load

    p.wrap(CLIENT + "_load_or_create_in_dir", make)


@mutant("unloadable_key_overwritten", ["KEY-18"],
        "an unloadable private_key.pem in the key directory is replaced by a new key")
def _unloadable_key_overwritten(p: Patcher) -> None:
    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        def load(self: Any, key_dir: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return orig(self, key_dir, *args, **kwargs)
            except ValueError:
                p.fired()
                for name in ("private_key.pem", "public_key.pem"):
                    with contextlib.suppress(OSError):
                        os.unlink(Path(key_dir) / name)
                return orig(self, key_dir, *args, **kwargs)

        return load

    p.wrap(CLIENT + "_load_or_create_in_dir", make)


@mutant("wrong_password_not_value_error", ["KEY-19"],
        "load_keys with a wrong password raises TypeError, not ValueError")
def _wrong_password_not_value_error(p: Patcher) -> None:
    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        def load(path: Any, password: Any = None, *args: Any, **kwargs: Any) -> Any:
            try:
                return orig(path, password, *args, **kwargs)
            except ValueError as exc:
                if password and "ENCRYPTED" in Path(path).read_text(errors="replace"):
                    p.fired()
                    raise TypeError("bad decrypt") from None
                raise exc from None

        return load

    p.wrap(K + "load_private_key", make, needs=("password",))


@mutant("missing_password_not_value_error", ["KEY-20"],
        "load_keys of an encrypted key without a password raises TypeError, not ValueError")
def _missing_password_not_value_error(p: Patcher) -> None:
    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        def load(path: Any, password: Any = None, *args: Any, **kwargs: Any) -> Any:
            try:
                return orig(path, password, *args, **kwargs)
            except ValueError as exc:
                if not password and "ENCRYPTED" in Path(path).read_text(errors="replace"):
                    p.fired()
                    raise TypeError("Password was not given but private key is encrypted"
                                    ) from None
                raise exc from None

        return load

    p.wrap(K + "load_private_key", make, needs=("password",))


@mutant("load_keys_mismatch_accepted", ["KEY-21"],
        "load_keys accepts a public_key.pem of another key (no pair check)")
def _load_keys_mismatch_accepted(p: Patcher) -> None:
    need(p, K + "load_public_key")
    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        def load_keys(self: Any, private_key_path: Any, public_key_path: Any = None,
                      *args: Any, **kwargs: Any) -> Any:
            if public_key_path is not None:
                p.fired()
                p.get(K + "load_public_key")(public_key_path)  # still parsed, never compared
            return orig(self, private_key_path, None, *args, **kwargs)

        return load_keys

    p.wrap(CLIENT + "load_keys", make, needs=("public_key_path",))


@mutant("password_ignored", ["KEY-22"], "saves private_key.pem unencrypted whatever the password")
def _password_ignored(p: Patcher) -> None:
    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        def private_pem(key: Any, password: Any = None, *args: Any, **kwargs: Any) -> bytes:
            if password:
                p.fired()
            return orig(key, None, *args, **kwargs)

        return private_pem

    p.wrap(K + "private_pem", make, needs=("password",))


# =============================================================================================
# Server key discovery (section 5)
# =============================================================================================


@mutant("key_fetch_wrong_path", ["DISC-1"], "fetches the server key from {base}/pki/publickey")
def _key_fetch_wrong_path(p: Patcher) -> None:
    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        def build(*args: Any, **kwargs: Any) -> Any:
            request = orig(*args, **kwargs)
            p.fired()
            url = request.url.replace("/pki/public_key", "/pki/publickey")
            return dataclasses.replace(request, url=url)

        return build

    p.wrap(P + "build_key_request", make)


def accept_server_key(p: Patcher, accept: Callable[[Any], bool]) -> None:
    """parse_server_key: a 200 key the original refuses is used anyway when `accept(key)`
    (the key as `cryptography` loads the PEM, any format it reads)."""
    need(p, K + "public_pem")

    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        security = p.get(E + "SecurityError")

        def parse(status: int, body: bytes, *args: Any, **kwargs: Any) -> Any:
            try:
                return orig(status, body, *args, **kwargs)
            except security:
                if status != 200:
                    raise
                try:
                    key = serialization.load_pem_public_key(bytes(body).strip())
                except (ValueError, TypeError):
                    raise
                if not isinstance(key, rsa.RSAPublicKey) or not accept(key):
                    raise
                p.fired()
                return key, p.get(K + "public_pem")(key)

        return parse

    p.wrap(P + "parse_server_key", make)


@mutant("weak_server_key_accepted", ["DISC-3"], "encrypts to a server key under 2048 bits")
def _weak_server_key_accepted(p: Patcher) -> None:
    accept_server_key(p, lambda key: key.key_size < 2048 and key.public_numbers().e == 65537)


@mutant("key_fetch_status_as_security", ["DISC-4"],
        "a non-200 answer to the key fetch raises SecurityError, not the status's APIError")
def _key_fetch_status_as_security(p: Patcher) -> None:
    security = p.get(E + "SecurityError")

    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        def parse(status: int, *args: Any, **kwargs: Any) -> Any:
            if status != 200:
                p.fired()
                raise security(f"cannot fetch the server key (HTTP {status})")
            return orig(status, *args, **kwargs)

        return parse

    p.wrap(P + "parse_server_key", make)


@mutant("connection_error_builtin", ["ERR-10", "DISC-5"],
        "network failures raise the built-in ConnectionError, not APIConnectionError")
def _connection_error_builtin(p: Patcher) -> None:
    connection = p.get(E + "APIConnectionError")

    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        async def call(self: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return await orig(self, *args, **kwargs)
            except connection as exc:
                p.fired()
                raise ConnectionError(str(exc)) from None

        return call

    p.wrap(CLIENT + "_call", make)


@mutant("timeout_ignored", ["ERR-10", "DISC-5", "API-21"],
        "the timeout option is never applied: every exchange may take an hour")
def _timeout_ignored(p: Patcher) -> None:
    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        def check(timeout: Any, *args: Any, **kwargs: Any) -> float:
            orig(timeout, *args, **kwargs)  # still validated
            p.fired()
            return 3600.0

        return check

    p.wrap("nomyo_ref.client:_check_timeout", make)


@mutant("key_not_cached", ["DISC-6"], "fetches the server key again before every call")
def _key_not_cached(p: Patcher) -> None:
    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        async def get(self: Any, *args: Any, **kwargs: Any) -> Any:
            if getattr(self, "_server_key", None) is not None:
                p.fired()
                await self.fetch_server_public_key()
            return await orig(self, *args, **kwargs)

        return get

    p.wrap(CLIENT + "_get_server_key", make)


@mutant("first_400_error_kept", ["DISC-8"],
        "after a refused rotation resend, raises the error of the first 400, not the last")
def _first_400_error_kept(p: Patcher) -> None:
    track_calls(p)

    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        def error_for_status(status: int, *args: Any, **kwargs: Any) -> Any:
            exc = orig(status, *args, **kwargs)
            call = CALL.get()
            if call is not None and status == 400:
                if "first_400" in call:
                    p.fired()
                    return call["first_400"]
                call["first_400"] = exc
            return exc

        return error_for_status

    p.wrap(P + "error_for_status", make)


@mutant("pin_not_offered", ["DISC-9"], "the clients have no server_key_sha256 option")
def _pin_not_offered(p: Patcher) -> None:
    drop_signature_option(p, CHAT + "__init__", "server_key_sha256")
    drop_signature_option(p, CLIENT + "__init__", "server_key_sha256")


@mutant("pin_ignored", ["DISC-10"], "a pinned fingerprint is never compared with the key")
def _pin_ignored(p: Patcher) -> None:
    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        def parse(status: int, body: bytes, pinned: Any = None, *args: Any, **kwargs: Any
                  ) -> Any:
            if pinned is not None:
                p.fired()
            return orig(status, body, None, *args, **kwargs)

        return parse

    p.wrap(P + "parse_server_key", make)


@mutant("pin_only_first_fetch", ["DISC-11"], "the pin is checked on the first key fetch only")
def _pin_only_first_fetch(p: Patcher) -> None:
    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        async def fetch(self: Any, *args: Any, **kwargs: Any) -> Any:
            if getattr(self, "_server_key_pem", None) is None or self._pin is None:
                return await orig(self, *args, **kwargs)
            pin, self._pin = self._pin, None
            p.fired()
            try:
                return await orig(self, *args, **kwargs)
            finally:
                self._pin = pin

        return fetch

    if "_pin" not in inspect.getsource(p.get(CLIENT + "__init__")):
        raise MutantNoLongerApplies("pin_only_first_fetch: the client keeps no _pin")
    p.wrap(CLIENT + "fetch_server_public_key", make)


@mutant("key_kept_after_exhausted_retries", ["DISC-12"],
        "keeps the cached server key after a call exhausted its retries on 5xx")
def _key_kept_after_exhausted_retries(p: Patcher) -> None:
    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        def drop(*args: Any, **kwargs: Any) -> None:
            p.fired()

        return drop

    p.wrap(CLIENT + "_drop_server_key", make)


@mutant("pkcs1_server_key_accepted", ["DISC-14"],
        "accepts a PKCS#1 'BEGIN RSA PUBLIC KEY' server key")
def _pkcs1_server_key_accepted(p: Patcher) -> None:
    accept_server_key(p, lambda key: key.key_size >= 2048 and key.public_numbers().e == 65537)


@mutant("no_refetch_after_400", ["DISC-15"],
        "a POST answered 400 does not make the client fetch the server key again")
def _no_refetch_after_400(p: Patcher) -> None:
    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        async def rotated(self: Any, *args: Any, **kwargs: Any) -> bool:
            p.fired()
            return False

        return rotated

    p.wrap(CLIENT + "_server_key_rotated", make)


@mutant("rotated_key_not_cached", ["DISC-16"],
        "after a rotation resend, the next call uses the old server key again")
def _rotated_key_not_cached(p: Patcher) -> None:
    names = ("_server_key", "_server_key_pem")

    def make_rotated(orig: Callable[..., Any]) -> Callable[..., Any]:
        async def rotated(self: Any, *args: Any, **kwargs: Any) -> bool:
            before = {n: getattr(self, n) for n in names}
            changed = await orig(self, *args, **kwargs)
            call = CALL.get()
            if changed and call is not None:
                call["old_key"] = before
            return changed

        return rotated

    def make_send(orig: Callable[..., Any]) -> Callable[..., Any]:
        async def send(self: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return await orig(self, *args, **kwargs)
            finally:
                call = CALL.get()
                if call is not None and "old_key" in call:
                    p.fired()
                    for n, value in call["old_key"].items():
                        setattr(self, n, value)

        return send

    for n in names:
        if n not in inspect.getsource(p.get(CLIENT + "__init__")):
            raise MutantNoLongerApplies(f"rotated_key_not_cached: the client keeps no {n}")
    p.wrap(CLIENT + "_server_key_rotated", make_rotated)
    p.wrap(CLIENT + "send_secure_request", make_send)
    track_calls(p)  # wraps outside make_send, so the CALL it sets is seen there


@mutant("rotation_resend_reuses_aes_key", ["DISC-17"],
        "the rotation resend reuses the first attempt's AES key and nonce under the new key")
def _rotation_resend_reuses_aes_key(p: Patcher) -> None:
    track_calls(p)

    def change(args: inspect.BoundArguments, package: dict[str, Any]) -> dict[str, Any]:
        call = CALL.get()
        plaintext = bytes(args.arguments["plaintext"])
        if call is None:
            return seal(package, plaintext, args.arguments["recipient"])
        first = call.setdefault("aes", (os.urandom(32), os.urandom(12)))
        return seal(package, plaintext, args.arguments["recipient"], key=first[0],
                    nonce=first[1])

    reseal(p, change)


@mutant("resend_on_unchanged_key", ["DISC-18"],
        "resends after a 400 even when the re-fetched server key is unchanged")
def _resend_on_unchanged_key(p: Patcher) -> None:
    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        async def rotated(self: Any, *args: Any, **kwargs: Any) -> bool:
            changed = await orig(self, *args, **kwargs)
            if not changed:
                p.fired()
            return True

        return rotated

    p.wrap(CLIENT + "_server_key_rotated", make)


@mutant("rotation_resend_drops_auth", ["DISC-19"],
        "the rotation resend carries no Authorization header")
def _rotation_resend_drops_auth(p: Patcher) -> None:
    def change(n: int, args: inspect.BoundArguments) -> bool:
        call = CALL.get() or {}
        if args.arguments["api_key"] is not None and call.get("rotated"):
            args.arguments["api_key"] = None
            return True
        return False

    _mark_rotation(p)
    per_call_build(p, change)


def _mark_rotation(p: Patcher) -> None:
    """CALL["rotated"] is True once the call's key re-fetch found a new key."""
    track_calls(p)

    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        async def rotated(self: Any, *args: Any, **kwargs: Any) -> bool:
            changed = await orig(self, *args, **kwargs)
            call = CALL.get()
            if changed and call is not None:
                call["rotated"] = True
            return changed

        return rotated

    p.wrap(CLIENT + "_server_key_rotated", make)


@mutant("server_key_exponent_unchecked", ["DISC-24"],
        "encrypts to a server key with public exponent 3, or over 16384 bits")
def _server_key_exponent_unchecked(p: Patcher) -> None:
    accept_server_key(p, lambda key: key.key_size >= 2048
                      and (key.public_numbers().e != 65537 or key.key_size > 16384))


# =============================================================================================
# HTTPS and TLS (section 4)
# =============================================================================================


@mutant("trailing_slash_kept", ["TLS-1"], "keeps a trailing '/' of the base URL ('//pki/...')")
def _trailing_slash_kept(p: Patcher) -> None:
    def change(orig: Callable[..., str], url: str, allow: bool) -> str | None:
        text = url.strip()
        if text.endswith("/") and "://" in text and text.split("://", 1)[1].strip("/"):
            return orig(text.rstrip("/"), allow_http=allow) + "/"
        return None

    wrap_url(p, change)


@mutant("https_refused_with_allow_http", ["TLS-2"],
        "refuses an https URL when allow_http=True (ValueError)")
def _https_refused_with_allow_http(p: Patcher) -> None:
    def change(orig: Callable[..., str], url: str, allow: bool) -> str | None:
        if allow and url.strip().lower().startswith("https://"):
            raise ValueError("allow_http=True expects an http:// URL")
        return None

    wrap_url(p, change)


@mutant("http_allowed_without_flag", ["TLS-3"], "uses an http:// URL without allow_http=True")
def _http_allowed_without_flag(p: Patcher) -> None:
    def change(orig: Callable[..., str], url: str, allow: bool) -> str | None:
        if not allow and url.strip().lower().startswith("http://"):
            return orig(url, allow_http=True)
        return None

    wrap_url(p, change)


@mutant("no_insecure_warning", ["TLS-4"], "allow_http=True with http:// warns nothing")
def _no_insecure_warning(p: Patcher) -> None:
    import warnings

    def change(orig: Callable[..., str], url: str, allow: bool) -> str | None:
        if allow and url.strip().lower().startswith("http://"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return orig(url, allow_http=True)
        return None

    wrap_url(p, change)


@mutant("base_url_override_unchecked", ["TLS-6"],
        "a per-call base_url override may be http:// without allow_http")
def _base_url_override_unchecked(p: Patcher) -> None:
    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        async def router_for(self: Any, base_url: Any, *args: Any, **kwargs: Any) -> Any:
            if (isinstance(base_url, str) and not self.allow_http
                    and base_url.strip().lower().startswith("http://")):
                p.fired()
                self.allow_http = True
                try:
                    return await orig(self, base_url, *args, **kwargs)
                finally:
                    self.allow_http = False
            return await orig(self, base_url, *args, **kwargs)

        return router_for

    p.wrap(CHAT + "_router_for", make)


@mutant("ca_bundle_ignored", ["TLS-8"], "a caller-given CA bundle is ignored (system store only)")
def _ca_bundle_ignored(p: Patcher) -> None:
    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        def tls_context(ca_bundle: Any = None, *args: Any, **kwargs: Any) -> Any:
            if ca_bundle is not None:
                p.fired()
                orig(ca_bundle, *args, **kwargs)
            return orig(None, *args, **kwargs)

        return tls_context

    p.wrap("nomyo_ref.client:_tls_context", make)


@mutant("verify_option_offered", ["TLS-9"],
        "SecureChatCompletion offers verify_ssl=False, which turns verification off")
def _verify_option_offered(p: Patcher) -> None:
    def use(chat: Any, value: Any) -> None:
        if not value:
            for client in getattr(chat, "_routers", {}).values():
                context = ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
                client._verify = context

    add_signature_option(p, CHAT + "__init__", "verify_ssl", True, use)


@mutant("insecure_environment_honoured", ["TLS-9"],
        "PYTHONHTTPSVERIFY=0 in the environment turns certificate verification off")
def _insecure_environment_honoured(p: Patcher) -> None:
    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        def tls_context(*args: Any, **kwargs: Any) -> Any:
            context = orig(*args, **kwargs)
            if os.environ.get("PYTHONHTTPSVERIFY") == "0":
                p.fired()
                context = ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            return context

        return tls_context

    p.wrap("nomyo_ref.client:_tls_context", make)


@mutant("tls_1_0_allowed", ["TLS-10"], "accepts TLS 1.0 and 1.1 (and the ciphers they need)")
def _tls_1_0_allowed(p: Patcher) -> None:
    def change(context: ssl.SSLContext) -> None:
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.set_ciphers("DEFAULT:@SECLEVEL=0")  # else OpenSSL's policy refuses them anyway

    wrap_tls(p, change)


@mutant("redirects_followed", ["TLS-11"], "follows 3xx redirects")
def _redirects_followed(p: Patcher) -> None:
    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        def client(self: Any, *args: Any, **kwargs: Any) -> Any:
            http = orig(self, *args, **kwargs)
            if not http.follow_redirects:
                p.fired()
                http.follow_redirects = True
            return http

        return client

    p.wrap(CLIENT + "_client", make)


@mutant("schemeless_url_as_https", ["TLS-12"], "a base URL without a scheme is taken as https")
def _schemeless_url_as_https(p: Patcher) -> None:
    def change(orig: Callable[..., str], url: str, allow: bool) -> str | None:
        text = url.strip()
        if text and "://" not in text:
            return orig("https://" + text, allow_http=allow)
        return None

    wrap_url(p, change)


@mutant("hostless_url_accepted", ["TLS-13"], "a base URL without a host is accepted as given")
def _hostless_url_accepted(p: Patcher) -> None:
    from urllib.parse import urlsplit

    def change(orig: Callable[..., str], url: str, allow: bool) -> str | None:
        text = url.strip()
        scheme = text.split("://", 1)[0].lower() if "://" in text else ""
        if scheme in ("http", "https") and not urlsplit(text).hostname:
            if scheme == "http" and not allow:
                return None
            return text.rstrip("/")
        return None

    wrap_url(p, change)


@mutant("userinfo_stripped", ["TLS-14"], "a base URL with user-info is used without it")
def _userinfo_stripped(p: Patcher) -> None:
    def change(orig: Callable[..., str], url: str, allow: bool) -> str | None:
        text = url.strip()
        if "://" in text:
            scheme, rest = text.split("://", 1)
            netloc, sep, path = rest.partition("/")
            if "@" in netloc:
                return orig(f"{scheme}://{netloc.rsplit('@', 1)[1]}{sep}{path}", allow_http=allow)
        return None

    wrap_url(p, change)


@mutant("bad_port_dropped", ["TLS-15"], "an invalid or empty port is dropped (default port)")
def _bad_port_dropped(p: Patcher) -> None:
    def change(orig: Callable[..., str], url: str, allow: bool) -> str | None:
        match = re.fullmatch(r"(?i)(https?://)([^/:\[\]@]+|\[[^\]]*\]):([^/]*)(/.*)?", url.strip())
        if match and not (match.group(3).isdigit() and 0 < int(match.group(3)) < 65536):
            return orig(match.group(1) + match.group(2) + (match.group(4) or ""),
                        allow_http=allow)
        return None

    wrap_url(p, change)


@mutant("query_stripped", ["TLS-16"], "a query or fragment of the base URL is silently removed")
def _query_stripped(p: Patcher) -> None:
    def change(orig: Callable[..., str], url: str, allow: bool) -> str | None:
        text = url.strip()
        cut = min((i for i in (text.find("?"), text.find("#")) if i >= 0), default=-1)
        if cut >= 0:
            return orig(text[:cut], allow_http=allow)
        return None

    wrap_url(p, change)


@mutant("refused_url_contacted", ["TLS-17"],
        "fetches {url}/pki/public_key of a malformed base URL before refusing it")
def _refused_url_contacted(p: Patcher) -> None:
    import httpx

    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        def normalise(url: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return orig(url, *args, **kwargs)
            except ValueError:
                if isinstance(url, str) and url.strip().lower().startswith("http"):
                    p.fired()
                    with contextlib.suppress(Exception):
                        httpx.get(url.strip().rstrip("/") + "/pki/public_key", timeout=2.0)
                raise

        return normalise

    p.wrap(U + "normalise_base_url", make)


@mutant("tls_chain_unverified", ["TLS-18"], "accepts any certificate chain (CERT_NONE)")
def _tls_chain_unverified(p: Patcher) -> None:
    def change(context: ssl.SSLContext) -> None:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE

    wrap_tls(p, change)


@mutant("tls_hostname_unchecked", ["TLS-19"],
        "verifies the chain but not the host name (check_hostname=False)")
def _tls_hostname_unchecked(p: Patcher) -> None:
    def change(context: ssl.SSLContext) -> None:
        context.check_hostname = False

    wrap_tls(p, change)


@mutant("tls_failure_insecure_fallback", ["TLS-20"],
        "after a failed certificate verification, retries the exchange unverified")
def _tls_failure_insecure_fallback(p: Patcher) -> None:
    import httpx

    connection = p.get(E + "APIConnectionError")

    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        async def exchange(self: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return await orig(self, request, *args, **kwargs)
            except connection as exc:
                if "certificate" not in str(exc).lower():
                    raise
                p.fired()
                async with httpx.AsyncClient(verify=False, timeout=10.0) as http:  # noqa: S501 - the mutant
                    response = await http.request(request.method, request.url,
                                                  headers=request.headers, content=request.body)
                return response.status_code, response.headers, response.content

        return exchange

    p.wrap(CLIENT + "_exchange", make)


@mutant("ipv6_literal_refused", ["TLS-21"], "refuses a bracketed IPv6 literal host (ValueError)")
def _ipv6_literal_refused(p: Patcher) -> None:
    def change(orig: Callable[..., str], url: str, allow: bool) -> str | None:
        if "://[" in url:
            raise ValueError("base URL has no host")
        return None

    wrap_url(p, change)


# =============================================================================================
# The request: headers (section 6)
# =============================================================================================


@mutant("wrong_post_path", ["HDR-1"], "POSTs to {base}/v1/chat/secure_completions")
def _wrong_post_path(p: Patcher) -> None:
    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        def build(*args: Any, **kwargs: Any) -> Any:
            request = orig(*args, **kwargs)
            p.fired()
            return dataclasses.replace(request, url=request.url + "s")

        return build

    p.wrap(P + "build_chat_request", make)


def _drop_header(name: str) -> Callable[[dict[str, str]], None]:
    def change(headers: dict[str, str]) -> None:
        for key in [k for k in headers if k.lower() == name.lower()]:
            del headers[key]

    return change


@mutant("payload_id_header_missing", ["HDR-2"], "sends no X-Payload-ID header")
def _payload_id_header_missing(p: Patcher) -> None:
    edit_headers(p, _drop_header("X-Payload-ID"))


@mutant("public_key_header_other_key", ["HDR-3"],
        "X-Public-Key carries another key than the one the client decrypts with")
def _public_key_header_other_key(p: Patcher) -> None:
    def change(n: int, args: inspect.BoundArguments) -> bool:
        pem = args.arguments["client_public_pem"]
        other = other_key(4096).public_key()
        args.arguments["client_public_pem"] = other.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode("ascii")
        return bool(pem)

    per_call_build(p, change)


@mutant("public_key_header_plus_unencoded", ["HDR-4"],
        "X-Public-Key leaves '+' and '=' unencoded")
def _public_key_header_plus_unencoded(p: Patcher) -> None:
    from urllib.parse import quote

    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        def encode(pem: str, *args: Any, **kwargs: Any) -> str:
            p.fired()
            return quote(pem, safe="/+=")

        return encode

    p.wrap(P + "encode_public_key_header", make)


@mutant("json_content_type", ["HDR-6"], "the POST's Content-Type is application/json")
def _json_content_type(p: Patcher) -> None:
    def change(headers: dict[str, str]) -> None:
        _drop_header("Content-Type")(headers)
        headers["Content-Type"] = "application/json"

    edit_headers(p, change)


@mutant("bearer_prefix_missing", ["HDR-7"], "sends 'Authorization: <api_key>' without 'Bearer '")
def _bearer_prefix_missing(p: Patcher) -> None:
    def change(headers: dict[str, str]) -> None:
        for key, value in list(headers.items()):
            if key.lower() == "authorization" and value.startswith("Bearer "):
                headers[key] = value[len("Bearer "):]

    edit_headers(p, change)


@mutant("authorization_without_key", ["HDR-8"],
        "sends 'Authorization: Bearer null' when no API key is set")
def _authorization_without_key(p: Patcher) -> None:
    def change(headers: dict[str, str]) -> None:
        if not any(k.lower() == "authorization" for k in headers):
            headers["Authorization"] = "Bearer null"

    edit_headers(p, change)


@mutant("api_key_unvalidated", ["HDR-9"], "an API key with CR/LF or spaces is not refused")
def _api_key_unvalidated(p: Patcher) -> None:
    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        def check(api_key: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return orig(api_key, *args, **kwargs)
            except ValueError:
                if isinstance(api_key, str):
                    p.fired()
                    return api_key
                raise

        return check

    p.wrap(P + "check_api_key", make)


@mutant("key_fetch_with_auth", ["HDR-10"], "sends the API key on GET /pki/public_key too")
def _key_fetch_with_auth(p: Patcher) -> None:
    def make_send(orig: Callable[..., Any]) -> Callable[..., Any]:
        async def send(self: Any, payload: Any, payload_id: Any, api_key: Any = None,
                       *args: Any, **kwargs: Any) -> Any:
            if isinstance(api_key, str) and api_key:
                self._mutant_api_key = api_key
            return await orig(self, payload, payload_id, api_key, *args, **kwargs)

        return send

    def make_exchange(orig: Callable[..., Any]) -> Callable[..., Any]:
        async def exchange(self: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
            token = getattr(self, "_mutant_api_key", None)
            if request.method == "GET" and token:
                p.fired()
                request = dataclasses.replace(
                    request, headers={**request.headers, "Authorization": f"Bearer {token}"})
            return await orig(self, request, *args, **kwargs)

        return exchange

    p.wrap(CLIENT + "send_secure_request", make_send, needs=("api_key",))
    p.wrap(CLIENT + "_exchange", make_exchange)


@mutant("content_encoding_identity", ["HDR-11"], "the POST carries Content-Encoding: identity")
def _content_encoding_identity(p: Patcher) -> None:
    edit_headers(p, lambda headers: headers.__setitem__("Content-Encoding", "identity"))


@mutant("payload_id_header_twice", ["HDR-12"], "sends the X-Payload-ID header twice")
def _payload_id_header_twice(p: Patcher) -> None:
    import httpx

    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        async def exchange(self: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
            if request.method == "POST":
                items = list(dict(request.headers).items())
                twice = [(k, v) for k, v in items if k.lower() == "x-payload-id"]
                p.fired()
                request = dataclasses.replace(request, headers=httpx.Headers(items + twice))
            return await orig(self, request, *args, **kwargs)

        return exchange

    p.wrap(CLIENT + "_exchange", make)


# =============================================================================================
# The package (section 7) and its encryption (section 8)
# =============================================================================================


def _rename(package: dict[str, Any]) -> None:
    package["encrypted_key"] = package.pop("encrypted_aes_key")


@mutant("package_member_renamed", ["PKG-1"], "names the wrapped key 'encrypted_key'")
def _package_member_renamed(p: Patcher) -> None:
    rewrite_package(p, _rename)


@mutant("package_version_1", ["PKG-2"], "sends version \"1\" instead of \"1.0\"")
def _package_version_1(p: Patcher) -> None:
    rewrite_package(p, lambda package: package.__setitem__("version", "1"))


@mutant("package_algorithm_other", ["PKG-3"], "sends algorithm \"hybrid-aes256-rsa2048\"")
def _package_algorithm_other(p: Patcher) -> None:
    rewrite_package(p, lambda package: package.__setitem__("algorithm", "hybrid-aes256-rsa2048"))


@mutant("package_key_algorithm_other", ["PKG-4"], "sends key_algorithm \"RSA-OAEP\"")
def _package_key_algorithm_other(p: Patcher) -> None:
    rewrite_package(p, lambda package: package.__setitem__("key_algorithm", "RSA-OAEP"))


@mutant("encrypted_payload_as_string", ["PKG-5"],
        "sends encrypted_payload as a JSON string holding the object")
def _encrypted_payload_as_string(p: Patcher) -> None:
    def edit(package: dict[str, Any]) -> None:
        package["encrypted_payload"] = json.dumps(package["encrypted_payload"])

    rewrite_package(p, edit)


def _unpad(package: dict[str, Any]) -> None:
    package["encrypted_aes_key"] = package["encrypted_aes_key"].rstrip("=")
    for name in ("ciphertext", "nonce", "tag"):
        package["encrypted_payload"][name] = package["encrypted_payload"][name].rstrip("=")


@mutant("unpadded_base64", ["PKG-6"], "sends base64 without '=' padding")
def _unpadded_base64(p: Patcher) -> None:
    rewrite_package(p, _unpad)


@mutant("nonce_16_bytes", ["PKG-7"], "encrypts with a 16-byte GCM nonce")
def _nonce_16_bytes(p: Patcher) -> None:
    reseal(p, lambda a, pkg: seal(pkg, bytes(a.arguments["plaintext"]), a.arguments["recipient"],
                                  nonce=os.urandom(16)))


@mutant("extra_package_member", ["PKG-8"], "adds a member \"client\": \"nomyo_ref\" to packages")
def _extra_package_member(p: Patcher) -> None:
    rewrite_package(p, lambda package: package.__setitem__("client", "nomyo_ref"))


@mutant("unknown_package_member_refused", ["PKG-9"],
        "refuses a response package with an unknown top-level member (ValueError)")
def _unknown_package_member_refused(p: Patcher) -> None:
    known = {"version", "algorithm", "encrypted_payload", "encrypted_aes_key", "key_algorithm",
             "payload_algorithm"}

    def refuse(body: Any) -> Exception | None:
        package = package_of(body)
        if package is not None and set(package) - known:
            return ValueError("unknown member in the response package")
        return None

    refuse_response(p, refuse)


@mutant("lenient_base64", ["PKG-10", "CHK-7"],
        "a response's base64 with characters outside the alphabet is decoded anyway")
def _lenient_base64(p: Patcher) -> None:
    need(p, E + "SecurityError")

    def act(step: str, exc: Exception, fields: Any, key: Any, retry: Any) -> Any:
        if step != "base64":
            raise p.get(E + "SecurityError")("decryption failed")
        cleaned = {}
        for name in SEALED:
            text = re.sub(r"[^A-Za-z0-9+/]", "", getattr(fields, name))
            cleaned[name] = text + "=" * (-len(text) % 4)
        return retry(dataclasses.replace(fields, **cleaned))

    on_decrypt_failure(p, act)


@mutant("unknown_sealed_member_refused", ["PKG-11"],
        "refuses a response whose encrypted_payload has an unknown member (ValueError)")
def _unknown_sealed_member_refused(p: Patcher) -> None:
    def refuse(body: Any) -> Exception | None:
        package = package_of(body)
        sealed = package.get("encrypted_payload") if package else None
        if isinstance(sealed, dict) and set(sealed) - {"ciphertext", "nonce", "tag"}:
            return ValueError("unknown member in encrypted_payload")
        return None

    refuse_response(p, refuse)


@mutant("aes128", ["ENC-1"], "encrypts the payload with AES-128-GCM (a 16-byte key)")
def _aes128(p: Patcher) -> None:
    reseal(p, lambda a, pkg: seal(pkg, bytes(a.arguments["plaintext"]), a.arguments["recipient"],
                                  key=os.urandom(16)))


@mutant("gcm_with_aad", ["ENC-2"], "uses GCM with associated data b\"nomyo\"")
def _gcm_with_aad(p: Patcher) -> None:
    reseal(p, lambda a, pkg: seal(pkg, bytes(a.arguments["plaintext"]), a.arguments["recipient"],
                                  aad=b"nomyo"))


@mutant("tag_appended", ["ENC-3"], "appends the GCM tag to the ciphertext (and sends it in tag)")
def _tag_appended(p: Patcher) -> None:
    reseal(p, lambda a, pkg: seal(pkg, bytes(a.arguments["plaintext"]), a.arguments["recipient"],
                                  tag_appended=True))


@mutant("oaep_sha1_wrap", ["ENC-4"], "wraps the AES key with RSA-OAEP-SHA1")
def _oaep_sha1_wrap(p: Patcher) -> None:
    reseal(p, lambda a, pkg: seal(pkg, bytes(a.arguments["plaintext"]), a.arguments["recipient"],
                                  wrap=oaep(hashes.SHA1)))


@mutant("wrapped_to_other_key", ["ENC-5"], "wraps the AES key to another RSA key of the same size")
def _wrapped_to_other_key(p: Patcher) -> None:
    def change(a: inspect.BoundArguments, pkg: dict[str, Any]) -> dict[str, Any]:
        size = a.arguments["recipient"].key_size
        return seal(pkg, bytes(a.arguments["plaintext"]), other_key(size).public_key())

    reseal(p, change)


@mutant("oaep_sha1_fallback", ["ENC-6"],
        "when RSA-OAEP-SHA256 fails, tries OAEP-SHA1 and PKCS#1 v1.5 on the answer")
def _oaep_sha1_fallback(p: Patcher) -> None:
    need(p, E + "SecurityError")

    def act(step: str, exc: Exception, fields: Any, key: Any, retry: Any) -> Any:
        security = p.get(E + "SecurityError")
        if step != "rsa":
            raise security("decryption failed")
        wrapped = base64.b64decode(fields.encrypted_aes_key)
        for wrap in (oaep(hashes.SHA1), oaep(hashes.SHA256, hashes.SHA1), padding.PKCS1v15()):
            try:
                aes = key.decrypt(wrapped, wrap)
                return bytearray(AESGCM(aes).decrypt(
                    base64.b64decode(fields.nonce),
                    base64.b64decode(fields.ciphertext) + base64.b64decode(fields.tag), None))
            except (ValueError, InvalidTag):
                continue
        raise security("decryption failed")

    on_decrypt_failure(p, act)


@mutant("gcm_tag_unchecked", ["ENC-7"], "returns GCM plaintext without verifying the tag")
def _gcm_tag_unchecked(p: Patcher) -> None:
    need(p, E + "SecurityError")

    def act(step: str, exc: Exception, fields: Any, key: Any, retry: Any) -> Any:
        if step != "gcm":
            raise p.get(E + "SecurityError")("decryption failed")
        aes = key.decrypt(base64.b64decode(fields.encrypted_aes_key), oaep())
        nonce = base64.b64decode(fields.nonce)
        decryptor = Cipher(algorithms.AES(aes), modes.GCM(nonce)).decryptor()
        return bytearray(decryptor.update(base64.b64decode(fields.ciphertext)))

    on_decrypt_failure(p, act)


@mutant("nonce_reused", ["ENC-8"], "every package uses the same AES key and nonce")
def _nonce_reused(p: Patcher) -> None:
    fixed = (os.urandom(32), os.urandom(12))
    reseal(p, lambda a, pkg: seal(pkg, bytes(a.arguments["plaintext"]), a.arguments["recipient"],
                                  key=fixed[0], nonce=fixed[1]))


# =============================================================================================
# The request plaintext (section 9)
# =============================================================================================


def wrap_serialise(p: Patcher, change: Callable[[Callable[..., Any], Any], Any]) -> None:
    """serialise_payload: `change(original, payload)` gives the bytes (or None: original's)."""

    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        def serialise(payload: Any, *args: Any, **kwargs: Any) -> Any:
            got = change(orig, payload)
            if got is not None:
                p.fired()
                return got
            return orig(payload, *args, **kwargs)

        return serialise

    p.wrap(P + "serialise_payload", make)


@mutant("plaintext_with_bom", ["REQ-1"], "the plaintext starts with a UTF-8 byte order mark")
def _plaintext_with_bom(p: Patcher) -> None:
    wrap_serialise(p, lambda orig, payload: bytearray(b"\xef\xbb\xbf" + bytes(orig(payload))))


def wrap_build_payload(p: Patcher, change: Callable[[dict[str, Any]], bool]) -> None:
    """build_payload: `change(payload)` may alter the plaintext object in place."""

    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        def build(*args: Any, **kwargs: Any) -> Any:
            payload = orig(*args, **kwargs)
            if change(payload):
                p.fired()
            return payload

        return build

    p.wrap(P + "build_payload", make)


def _bare_messages(payload: dict[str, Any]) -> bool:
    messages = payload.get("messages")
    if not isinstance(messages, list):
        return False
    bare = [{k: m[k] for k in ("role", "content") if k in m} if isinstance(m, dict) else m
            for m in messages]
    payload["messages"] = bare
    return bare != messages


@mutant("message_extras_dropped", ["REQ-2"],
        "keeps only role and content of each message (drops name, tool_calls, ...)")
def _message_extras_dropped(p: Patcher) -> None:
    wrap_build_payload(p, _bare_messages)


def _rename_max_tokens(payload: dict[str, Any]) -> bool:
    if "max_tokens" in payload:
        payload["max_completion_tokens"] = payload.pop("max_tokens")
        return True
    return False


@mutant("max_tokens_renamed", ["REQ-3"], "sends max_tokens as max_completion_tokens")
def _max_tokens_renamed(p: Patcher) -> None:
    wrap_build_payload(p, _rename_max_tokens)


def _inject_stream(payload: dict[str, Any]) -> bool:
    if "stream" not in payload:
        payload["stream"] = False
        return True
    return False


@mutant("stream_false_injected", ["REQ-5"], "adds \"stream\": false to every plaintext")
def _stream_false_injected(p: Patcher) -> None:
    wrap_build_payload(p, _inject_stream)


@mutant("tier_in_plaintext", ["REQ-6"], "puts security_tier into the plaintext too")
def _tier_in_plaintext(p: Patcher) -> None:
    p.set(P + "NON_PAYLOAD_KEYS", frozenset({"api_key", "base_url"}))

    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        async def send(self: Any, payload: Any, payload_id: Any, api_key: Any = None,
                       security_tier: Any = None, *args: Any, **kwargs: Any) -> Any:
            if security_tier is not None and isinstance(payload, dict):
                p.fired()
                payload = {**payload, "security_tier": security_tier}
            return await orig(self, payload, payload_id, api_key, security_tier, *args, **kwargs)

        return send

    p.wrap(CLIENT + "send_secure_request", make, needs=("api_key", "security_tier"))


def _stream_passed(orig: Callable[..., Any], payload: Any) -> Any:
    if isinstance(payload, dict) and payload.get("stream") not in (None, False):
        orig({k: v for k, v in payload.items() if k != "stream"})  # every other refusal
        text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        return bytearray(text.encode("utf-8"))
    return None


@mutant("stream_true_sent", ["REQ-7", "REQ-8"], "sends stream=True on (no local refusal)")
def _stream_true_sent(p: Patcher) -> None:
    wrap_serialise(p, _stream_passed)


@mutant("stream_true_dropped", ["REQ-8"],
        "silently drops stream=True instead of refusing it with ValueError")
def _stream_true_dropped(p: Patcher) -> None:
    def change(orig: Callable[..., Any], payload: Any) -> Any:
        if isinstance(payload, dict) and "stream" in payload \
                and payload["stream"] not in (None, False):
            return orig({k: v for k, v in payload.items() if k != "stream"})
        return None

    wrap_serialise(p, change)


@mutant("size_limit_raised", ["REQ-9"], "sends plaintexts up to 64 MiB (the limit is too high)")
def _size_limit_raised(p: Patcher) -> None:
    p.set(P + "MAX_PLAINTEXT_BYTES", 64 * 1024 * 1024)
    p.fired()


@mutant("size_limit_lowered", ["REQ-10"], "refuses a plaintext of exactly 10485760 bytes")
def _size_limit_lowered(p: Patcher) -> None:
    p.set(P + "MAX_PLAINTEXT_BYTES", 10 * 1024 * 1024 - 1)
    p.fired()


@mutant("nan_sent", ["REQ-11"], "serialises NaN/Infinity as bare tokens and other types via str()")
def _nan_sent(p: Patcher) -> None:
    def change(orig: Callable[..., Any], payload: Any) -> Any:
        try:
            json.dumps(payload, allow_nan=False)
        except (TypeError, ValueError):
            if isinstance(payload, dict) and payload:
                return bytearray(json.dumps(payload, default=str).encode("utf-8"))
        return None

    wrap_serialise(p, change)


@mutant("model_unvalidated", ["REQ-12"], "sends a model that is not a non-empty string")
def _model_unvalidated(p: Patcher) -> None:
    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        def build(model: Any, messages: Any, params: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return orig(model, messages, params, *args, **kwargs)
            except ValueError:
                orig("model", [], params, *args, **kwargs)  # the other refusals still apply
                p.fired()
                return {"model": model, "messages": messages, **params}

        return build

    p.wrap(P + "build_payload", make, needs=("model", "messages", "params"))


@mutant("unknown_params_dropped", ["REQ-13"],
        "drops keyword arguments that are not OpenAI seed parameters (seed, response_format)")
def _unknown_params_dropped(p: Patcher) -> None:
    seed = {"model", "messages", "temperature", "max_tokens", "top_p", "frequency_penalty",
            "presence_penalty", "stop", "n", "tools", "tool_choice", "user", "stream"}

    def change(payload: dict[str, Any]) -> bool:
        extra = [k for k in payload if k not in seed]
        for key in extra:
            del payload[key]
        return bool(extra)

    wrap_build_payload(p, change)


# =============================================================================================
# The answer: response checks (section 11), binding (section 12)
# =============================================================================================


def wrap_open(p: Patcher, after: Callable[[dict[str, Any], inspect.BoundArguments], bool]) -> None:
    """open_response: `after(result, arguments)` may change an accepted result in place."""

    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        def open_response(*args: Any, **kwargs: Any) -> Any:
            result = orig(*args, **kwargs)
            if after(result, bind(orig, args, kwargs)):
                p.fired()
            return result

        return open_response

    p.wrap(P + "open_response", make, needs=("body", "payload_id"))


def _drop_unknown_members(result: dict[str, Any], _a: inspect.BoundArguments) -> bool:
    known = {"id", "object", "created", "model", "choices", "usage", "_metadata"}
    extra = [k for k in result if k not in known]
    for key in extra:
        del result[key]
    return bool(extra)


@mutant("unknown_response_members_dropped", ["RSP-10"],
        "drops members of the answer other than id/object/created/model/choices/usage")
def _unknown_response_members_dropped(p: Patcher) -> None:
    wrap_open(p, _drop_unknown_members)


@mutant("body_not_object_as_security", ["CHK-1"],
        "a 200 body that is JSON but not an object raises SecurityError, not ValueError")
def _body_not_object_as_security(p: Patcher) -> None:
    need(p, E + "SecurityError")
    def refuse(body: Any) -> Exception | None:
        try:
            value = json.loads(bytes(body).decode("utf-8"))
        except (TypeError, UnicodeDecodeError, ValueError, RecursionError):
            return None
        if not isinstance(value, dict):
            return p.get(E + "SecurityError")("decryption failed")
        return None

    refuse_response(p, refuse)


def _force(name: str, value: str) -> Callable[[dict[str, Any]], bool]:
    def edit(package: dict[str, Any]) -> bool:
        if isinstance(package.get(name), str) and package[name] != value:
            package[name] = value
            return True
        return False

    return edit


@mutant("version_unchecked", ["CHK-3"], "decrypts a response package of any version")
def _version_unchecked(p: Patcher) -> None:
    rewrite_response(p, _force("version", "1.0"))


@mutant("algorithm_unchecked", ["CHK-4"], "decrypts a response package of any algorithm")
def _algorithm_unchecked(p: Patcher) -> None:
    rewrite_response(p, _force("algorithm", "hybrid-aes256-rsa4096"))


@mutant("algorithms_required", ["CHK-6"],
        "refuses a response package without key_algorithm/payload_algorithm")
def _algorithms_required(p: Patcher) -> None:
    def refuse(body: Any) -> Exception | None:
        package = package_of(body)
        if package is not None and not {"key_algorithm", "payload_algorithm"} <= set(package):
            return ValueError("response package lacks key_algorithm/payload_algorithm")
        return None

    refuse_response(p, refuse)


def _raise_for(steps: set[str], error: Callable[[str, Exception], Exception],
               p: Patcher) -> Act:
    need(p, E + "SecurityError")

    def act(step: str, exc: Exception, fields: Any, key: Any, retry: Any) -> Any:
        if step in steps:
            raise error(step, exc)
        raise p.get(E + "SecurityError")("decryption failed")

    return act


@mutant("bad_base64_as_value", ["CHK-7"], "invalid base64 in a response raises ValueError")
def _bad_base64_as_value(p: Patcher) -> None:
    on_decrypt_failure(p, _raise_for({"base64"}, lambda s, e: ValueError("invalid base64"), p))


@mutant("bad_lengths_as_value", ["CHK-8"], "a nonce/tag of the wrong length raises ValueError")
def _bad_lengths_as_value(p: Patcher) -> None:
    on_decrypt_failure(p, _raise_for({"length"}, lambda s, e: ValueError("bad nonce/tag"), p))


@mutant("rsa_failure_as_value", ["CHK-9"], "an RSA-OAEP unwrap failure raises ValueError")
def _rsa_failure_as_value(p: Patcher) -> None:
    on_decrypt_failure(p, _raise_for({"rsa"}, lambda s, e: ValueError("Decryption failed"), p))


@mutant("gcm_failure_escapes", ["CHK-10"], "a GCM tag failure escapes as cryptography's InvalidTag")
def _gcm_failure_escapes(p: Patcher) -> None:
    on_decrypt_failure(p, _raise_for({"gcm"}, lambda s, e: InvalidTag(), p))


@mutant("crypto_errors_name_step", ["CHK-11"],
        "decryption failures say which step failed ('decryption failed: rsa')")
def _crypto_errors_name_step(p: Patcher) -> None:
    security = p.get(E + "SecurityError")
    on_decrypt_failure(p, _raise_for({"base64", "length", "rsa", "gcm"},
                                     lambda s, e: security(f"decryption failed: {s}"), p))


@mutant("crypto_error_chained", ["CHK-12"],
        "the decryption SecurityError chains the underlying exception (raise ... from exc)")
def _crypto_error_chained(p: Patcher) -> None:
    security = p.get(E + "SecurityError")

    def act(step: str, exc: Exception, fields: Any, key: Any, retry: Any) -> Any:
        raise security("decryption failed") from exc

    on_decrypt_failure(p, act)


def accept_or_refuse(p: Patcher,
                     decide: Callable[[Any, inspect.BoundArguments], Any]) -> None:
    """open_response: when the original refuses with SecurityError after decryption,
    `decide(plaintext object or None, arguments)` returns a result to accept, raises, or
    returns None (the original's refusal stands)."""
    capture_plaintext(p)
    security = p.get(E + "SecurityError")

    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        def open_response(*args: Any, **kwargs: Any) -> Any:
            PLAINTEXT.set(None)
            try:
                return orig(*args, **kwargs)
            except security:
                if PLAINTEXT.get() is None:
                    raise
                got = decide(PLAINTEXT.get(), bind(orig, args, kwargs))
                if got is None:
                    raise
                p.fired()
                return got

        return open_response

    p.wrap(P + "open_response", make, needs=("body", "payload_id"))


@mutant("plaintext_not_object_as_value", ["CHK-13"],
        "a decrypted plaintext that is not a JSON object raises ValueError")
def _plaintext_not_object_as_value(p: Patcher) -> None:
    def decide(plaintext: bytes, a: inspect.BoundArguments) -> Any:
        try:
            value = json.loads(plaintext.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            value = None
        if not isinstance(value, dict):
            raise ValueError("the answer is not a JSON object")
        return None

    accept_or_refuse(p, decide)


@mutant("content_type_required", ["CHK-14"],
        "refuses a 200 answer whose Content-Type is not application/json")
def _content_type_required(p: Patcher) -> None:
    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        async def exchange(self: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
            status, headers, body = await orig(self, request, *args, **kwargs)
            kind = headers.get("content-type", "")
            if request.method == "POST" and status == 200 and "json" not in kind:
                p.fired()
                raise ValueError(f"unexpected Content-Type {kind!r}")
            return status, headers, body

        return exchange

    p.wrap(CLIENT + "_exchange", make)


def _strip_is_encrypted(result: dict[str, Any], _a: inspect.BoundArguments) -> bool:
    metadata = result.get("_metadata")
    if isinstance(metadata, dict) and "is_encrypted" in metadata:
        del metadata["is_encrypted"]
        del metadata["encryption_algorithm"]
        return True
    return False


@mutant("own_metadata_missing", ["CHK-16"],
        "does not set _metadata.is_encrypted and encryption_algorithm")
def _own_metadata_missing(p: Patcher) -> None:
    wrap_open(p, _strip_is_encrypted)


def _drop_server_metadata(result: dict[str, Any], _a: inspect.BoundArguments) -> bool:
    metadata = result.get("_metadata")
    own = {"payload_id", "processed_at", "is_encrypted", "encryption_algorithm"}
    if not isinstance(metadata, dict):
        return False
    extra = [k for k in metadata if k not in own]
    for key in extra:
        del metadata[key]
    return bool(extra)


@mutant("server_metadata_dropped", ["CHK-16"], "drops the server's other _metadata keys")
def _server_metadata_dropped(p: Patcher) -> None:
    wrap_open(p, _drop_server_metadata)


def _local_clock(result: dict[str, Any], _a: inspect.BoundArguments) -> bool:
    metadata = result.get("_metadata")
    if isinstance(metadata, dict):
        metadata["processed_at"] = time.time()
        return True
    return False


@mutant("processed_at_local_clock", ["CHK-17"],
        "_metadata.processed_at is taken from the local clock")
def _processed_at_local_clock(p: Patcher) -> None:
    wrap_open(p, _local_clock)


@mutant("duplicate_members_accepted", ["CHK-18"],
        "JSON with duplicate member names is accepted (the last one wins)")
def _duplicate_members_accepted(p: Patcher) -> None:
    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        def parse(*args: Any, **kwargs: Any) -> Any:
            bound = bind(orig, args, kwargs)
            if bound.arguments["unique"]:
                p.fired()
                bound.arguments["unique"] = False
            return orig(*bound.args, **bound.kwargs)

        return parse

    p.wrap(P + "parse_json", make, needs=("unique",))


@mutant("response_limit_8mib", ["CHK-19"], "refuses 200 bodies over 8 MiB")
def _response_limit_8mib(p: Patcher) -> None:
    p.set(P + "MAX_RESPONSE_BYTES", 8 * 1024 * 1024)
    p.fired()


@mutant("key_algorithm_unchecked", ["CHK-20"],
        "decrypts a response whose key_algorithm/payload_algorithm name something else")
def _key_algorithm_unchecked(p: Patcher) -> None:
    def edit(package: dict[str, Any]) -> bool:
        changed = _force("key_algorithm", "RSA-OAEP-SHA256")(package)
        return _force("payload_algorithm", "AES-256-GCM")(package) or changed

    rewrite_response(p, edit)


@mutant("version_missing_defaults", ["CHK-21"],
        "a response package without version (or a non-string one) is taken as \"1.0\"")
def _version_missing_defaults(p: Patcher) -> None:
    def edit(package: dict[str, Any]) -> bool:
        if not isinstance(package.get("version"), str):
            package["version"] = "1.0"
            return True
        return False

    rewrite_response(p, edit)


@mutant("encrypted_payload_missing_as_security", ["CHK-22"],
        "encrypted_payload missing or not an object raises SecurityError, not ValueError")
def _encrypted_payload_missing_as_security(p: Patcher) -> None:
    need(p, E + "SecurityError")
    def refuse(body: Any) -> Exception | None:
        package = package_of(body)
        if package is not None and not isinstance(package.get("encrypted_payload"), dict):
            return p.get(E + "SecurityError")("decryption failed")
        return None

    refuse_response(p, refuse)


@mutant("sealed_field_missing_as_security", ["CHK-23"],
        "ciphertext/nonce/tag missing or not a string raises SecurityError, not ValueError")
def _sealed_field_missing_as_security(p: Patcher) -> None:
    need(p, E + "SecurityError")
    def refuse(body: Any) -> Exception | None:
        package = package_of(body)
        sealed = package.get("encrypted_payload") if package else None
        if isinstance(sealed, dict) and not all(
                isinstance(sealed.get(n), str) for n in ("ciphertext", "nonce", "tag")):
            return p.get(E + "SecurityError")("decryption failed")
        return None

    refuse_response(p, refuse)


# -- payload ids and binding ------------------------------------------------------------------


def wrap_new_id(p: Patcher, make_id: Callable[[], str]) -> None:
    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        def new_payload_id(*args: Any, **kwargs: Any) -> str:
            p.fired()
            return make_id()

        return new_payload_id

    p.wrap(P + "new_payload_id", make)


@mutant("payload_id_uuid1", ["PID-1"], "payload ids are time-based UUIDv1")
def _payload_id_uuid1(p: Patcher) -> None:
    wrap_new_id(p, lambda: str(uuid.uuid1()))


@mutant("payload_id_upper_case", ["PID-2"], "payload ids are upper-case UUIDs")
def _payload_id_upper_case(p: Patcher) -> None:
    wrap_new_id(p, lambda: str(uuid.uuid4()).upper())


@mutant("payload_id_repeated", ["PID-3"], "every call of the process uses the same payload id")
def _payload_id_repeated(p: Patcher) -> None:
    fixed = str(uuid.uuid4())
    wrap_new_id(p, lambda: fixed)


@mutant("metadata_not_object_bound", ["PID-5"],
        "an answer whose _metadata is [], \"x\" or 0 is treated as bound")
def _metadata_not_object_bound(p: Patcher) -> None:
    def decide(plaintext: bytes, a: inspect.BoundArguments) -> Any:
        try:
            value = json.loads(plaintext.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            return None
        if isinstance(value, dict) and "_metadata" in value \
                and not isinstance(value["_metadata"], dict):
            value["_metadata"] = {}
            return finish_result(value, a.arguments["payload_id"], "hybrid-aes256-rsa4096")
        return None

    accept_or_refuse(p, decide)


@mutant("payload_id_mismatch_accepted", ["PID-6"],
        "an answer bound to another payload id (or none) is accepted")
def _payload_id_mismatch_accepted(p: Patcher) -> None:
    def decide(plaintext: bytes, a: inspect.BoundArguments) -> Any:
        try:
            value = json.loads(plaintext.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            return None
        metadata = value.get("_metadata") if isinstance(value, dict) else None
        if isinstance(metadata, dict) and metadata.get("payload_id") != a.arguments["payload_id"]:
            return finish_result(value, a.arguments["payload_id"], "hybrid-aes256-rsa4096")
        return None

    accept_or_refuse(p, decide)


@mutant("binding_on_package_member", ["PID-7"],
        "trusts an unauthenticated top-level payload_id of the package instead of _metadata")
def _binding_on_package_member(p: Patcher) -> None:
    def decide(plaintext: bytes, a: inspect.BoundArguments) -> Any:
        package = package_of(a.arguments["body"])
        if package is None or package.get("payload_id") != a.arguments["payload_id"]:
            return None
        try:
            value = json.loads(plaintext.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            return None
        if isinstance(value, dict):
            return finish_result(value, a.arguments["payload_id"], "hybrid-aes256-rsa4096")
        return None

    accept_or_refuse(p, decide)


@mutant("payload_id_unvalidated", ["PID-9"],
        "send_secure_request takes a payload id of any length, spaces included")
def _payload_id_unvalidated(p: Patcher) -> None:
    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        def check(payload_id: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return orig(payload_id, *args, **kwargs)
            except ValueError:
                if isinstance(payload_id, str) and payload_id \
                        and all(0x20 <= ord(c) <= 0x7E for c in payload_id):
                    p.fired()
                    return payload_id
                raise

        return check

    p.wrap(P + "check_payload_id", make)


@mutant("payload_id_changes_on_retry", ["PID-10"],
        "every retry and the rotation resend carry a new payload id")
def _payload_id_changes_on_retry(p: Patcher) -> None:
    def change(n: int, args: inspect.BoundArguments) -> bool:
        call = CALL.get()
        if n > 1 and call is not None:
            call["payload_id"] = str(uuid.uuid4())
            args.arguments["payload_id"] = call["payload_id"]
            return True
        return False

    per_call_build(p, change)

    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        def open_response(*args: Any, **kwargs: Any) -> Any:
            bound = bind(orig, args, kwargs)
            call = CALL.get()
            if call is not None and "payload_id" in call:
                bound.arguments["payload_id"] = call["payload_id"]
            return orig(*bound.args, **bound.kwargs)

        return open_response

    p.wrap(P + "open_response", make, needs=("payload_id",))


# =============================================================================================
# Errors (section 13)
# =============================================================================================


@mutant("status_400_as_api_error", ["ERR-1"], "400 raises APIError, not InvalidRequestError")
def _status_400(p: Patcher) -> None:
    remap_status(p, lambda s: s == 400, "APIError")


@mutant("status_401_as_forbidden", ["ERR-2"], "401 raises ForbiddenError")
def _status_401(p: Patcher) -> None:
    remap_status(p, lambda s: s == 401, "ForbiddenError")


@mutant("status_403_as_authentication", ["ERR-3"], "403 raises AuthenticationError")
def _status_403(p: Patcher) -> None:
    remap_status(p, lambda s: s == 403, "AuthenticationError")


@mutant("status_404_as_invalid_request", ["ERR-4"], "404 raises InvalidRequestError")
def _status_404(p: Patcher) -> None:
    remap_status(p, lambda s: s == 404, "InvalidRequestError")


@mutant("status_429_as_server", ["ERR-5"], "429 raises ServerError")
def _status_429(p: Patcher) -> None:
    remap_status(p, lambda s: s == 429, "ServerError")


@mutant("status_500_as_unavailable", ["ERR-6"], "500 raises ServiceUnavailableError")
def _status_500(p: Patcher) -> None:
    remap_status(p, lambda s: s == 500, "ServiceUnavailableError")


@mutant("status_502_504_as_server", ["ERR-7"], "502 and 504 raise ServerError")
def _status_502(p: Patcher) -> None:
    remap_status(p, lambda s: s in (502, 504), "ServerError")


@mutant("status_503_as_server", ["ERR-8"], "503 raises ServerError")
def _status_503(p: Patcher) -> None:
    remap_status(p, lambda s: s == 503, "ServerError")


@mutant("other_5xx_as_server", ["ERR-9"], "any other 5xx (501, 505, ...) raises ServerError")
def _other_5xx(p: Patcher) -> None:
    remap_status(p, lambda s: 500 < s < 600 and s not in (502, 503, 504), "ServerError")


@mutant("status_code_none_on_api_error", ["ERR-11"],
        "an APIError for 404, 502, 504 or another status has status_code None")
def _status_code_none(p: Patcher) -> None:
    api_error = p.get(E + "APIError")

    def change(exc: Any, status: int, body: bytes, orig: Any) -> bool:
        if type(exc) is api_error:
            exc.status_code = None
            return True
        return False

    tweak_error(p, change)


def wrap_error_body(p: Patcher, change: Callable[[Any, bytes, Any], Any]) -> None:
    """error_body: `change(original result, body, parsed JSON or None)` gives a new
    (detail, error_details) or None (the original's)."""

    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        def error_body(body: Any, *args: Any, **kwargs: Any) -> Any:
            result = orig(body, *args, **kwargs)
            data = bytes(body)
            try:
                parsed = json.loads(data.decode("utf-8")) if data.strip() else None
            except (UnicodeDecodeError, ValueError, RecursionError):
                parsed = None
            got = change(result, data, parsed)
            if got is not None:
                p.fired()
                return got
            return result

        return error_body

    p.wrap(P + "error_body", make)


@mutant("detail_str_not_json", ["ERR-12"],
        "a non-string detail is rendered with str() ({'a': 1}), not json.dumps")
def _detail_str_not_json(p: Patcher) -> None:
    def change(result: Any, data: bytes, parsed: Any) -> Any:
        if isinstance(parsed, dict) and "detail" in parsed \
                and not isinstance(parsed["detail"], str):
            rendered = str(parsed["detail"])
            if rendered != result[0]:
                return rendered, result[1]
        return None

    wrap_error_body(p, change)


@mutant("detail_text_uncut", ["ERR-13"], "non-JSON error text is not cut to 1024 characters")
def _detail_text_uncut(p: Patcher) -> None:
    def change(result: Any, data: bytes, parsed: Any) -> Any:
        if not isinstance(parsed, dict) and data:
            text = data.decode("utf-8", errors="replace")
            if text != result[0]:
                return text, {"detail": text}
        return None

    wrap_error_body(p, change)


@mutant("detail_for_object_without_detail", ["ERR-14"],
        "a JSON object body without 'detail' gives its JSON text as detail (not None)")
def _detail_for_object_without_detail(p: Patcher) -> None:
    def change(result: Any, data: bytes, parsed: Any) -> Any:
        if isinstance(parsed, dict) and "detail" not in parsed and result[0] is None:
            return data.decode("utf-8", errors="replace"), result[1]
        return None

    wrap_error_body(p, change)


@mutant("message_without_detail", ["ERR-15"],
        ".message is always the status's default text, never the detail")
def _message_without_detail(p: Patcher) -> None:
    def change(exc: Any, status: int, body: bytes, orig: Any) -> bool:
        default = orig(status, b"").message
        if default != exc.message:
            exc.message = default
            exc.args = (default,)
            return True
        return False

    tweak_error(p, change)


@mutant("error_details_empty_for_text", ["ERR-16"],
        "error_details is {} for a body that is not a JSON object (no {'detail': text})")
def _error_details_empty_for_text(p: Patcher) -> None:
    def change(result: Any, data: bytes, parsed: Any) -> Any:
        if not isinstance(parsed, dict) and result[1]:
            return result[0], {}
        return None

    wrap_error_body(p, change)


@mutant("error_body_list_crash", ["ERR-17"],
        "an error body that is a JSON array crashes with AttributeError")
def _error_body_list_crash(p: Patcher) -> None:
    def change(result: Any, data: bytes, parsed: Any) -> Any:
        if isinstance(parsed, list):
            raise AttributeError("'list' object has no attribute 'get'")
        return None

    wrap_error_body(p, change)


@mutant("error_json_needs_content_type", ["ERR-18"],
        "an error body is parsed as JSON only when Content-Type says JSON")
def _error_json_needs_content_type(p: Patcher) -> None:
    kind: contextvars.ContextVar[str] = contextvars.ContextVar("mutant_ct", default="")

    def make_exchange(orig: Callable[..., Any]) -> Callable[..., Any]:
        async def exchange(self: Any, *args: Any, **kwargs: Any) -> Any:
            status, headers, body = await orig(self, *args, **kwargs)
            kind.set(headers.get("content-type", ""))
            return status, headers, body

        return exchange

    def change(result: Any, data: bytes, parsed: Any) -> Any:
        if isinstance(parsed, dict) and "json" not in kind.get():
            text = data.decode("utf-8", errors="replace")[:1024]
            return text, {"detail": text}
        return None

    p.wrap(CLIENT + "_exchange", make_exchange)
    wrap_error_body(p, change)


@mutant("caller_error_type_error", ["ERR-19"],
        "an invalid API key raises TypeError (not a ValueError) before sending")
def _caller_error_type_error(p: Patcher) -> None:
    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        def check(*args: Any, **kwargs: Any) -> Any:
            try:
                return orig(*args, **kwargs)
            except ValueError as exc:
                p.fired()
                raise TypeError(str(exc)) from None

        return check

    p.wrap(P + "check_api_key", make)


@mutant("api_key_not_redacted", ["ERR-20"],
        "an error body quoting the call's API key is passed on unredacted")
def _api_key_not_redacted(p: Patcher) -> None:
    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        def error_for_status(*args: Any, **kwargs: Any) -> Any:
            bound = bind(orig, args, kwargs)
            if bound.arguments.get("api_key"):
                p.fired()
                bound.arguments["api_key"] = None
            return orig(*bound.args, **bound.kwargs)

        return error_for_status

    p.wrap(P + "error_for_status", make, needs=("api_key",))


# =============================================================================================
# Retries (section 14)
# =============================================================================================


def wrap_retryable(p: Patcher, decide: Callable[[int, bool], bool]) -> None:
    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        def is_retryable(status: int, *args: Any, **kwargs: Any) -> bool:
            original = orig(status, *args, **kwargs)
            got = decide(status, original)
            if got != original:
                p.fired()
            return got

        return is_retryable

    p.wrap(R + "is_retryable_status", make)


@mutant("no_retry_503", ["RTY-1"], "a 503 is not retried")
def _no_retry_503(p: Patcher) -> None:
    wrap_retryable(p, lambda status, retry: retry and status != 503)


@mutant("default_retries_3", ["RTY-2", "API-16"], "max_retries defaults to 3")
def _default_retries_3(p: Patcher) -> None:
    set_default(p, CHAT + "__init__", "max_retries", 3)
    set_default(p, CLIENT + "__init__", "max_retries", 3)
    p.fired()


def wrap_policy(p: Patcher, method: str,
                make: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
    p.wrap(R + "RetryPolicy." + method, make)


@mutant("zero_retries_means_default", ["RTY-3"], "max_retries=0 is taken as the default 2")
def _zero_retries_means_default(p: Patcher) -> None:
    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        def may_retry(self: Any, retries_done: int) -> bool:
            if self.max_retries == 0:
                p.fired()
                return retries_done < 2
            return orig(self, retries_done)

        return may_retry

    wrap_policy(p, "may_retry", make)


@mutant("retry_all_5xx", ["RTY-4"], "retries every 5xx (501 too) and 408")
def _retry_all_5xx(p: Patcher) -> None:
    wrap_retryable(p, lambda status, retry: retry or status >= 500 or status == 408)


@mutant("retry_failed_200", ["RTY-5"],
        "a 200 answer that fails the response checks is retried like a 5xx")
def _retry_failed_200(p: Patcher) -> None:
    refused: contextvars.ContextVar[list[bool] | None] = contextvars.ContextVar(
        "mutant_refused", default=None)

    def make_open(orig: Callable[..., Any]) -> Callable[..., Any]:
        def open_response(*args: Any, **kwargs: Any) -> Any:
            try:
                return orig(*args, **kwargs)
            except Exception:
                flag = refused.get()
                if flag is not None:
                    flag.append(True)
                raise

        return open_response

    def make_send(orig: Callable[..., Any]) -> Callable[..., Any]:
        async def send(self: Any, *args: Any, **kwargs: Any) -> Any:
            retries = 0
            while True:
                flag: list[bool] = []
                token = refused.set(flag)
                try:
                    return await orig(self, *args, **kwargs)
                except Exception:
                    if not flag or retries >= self.max_retries:
                        raise
                    retries += 1
                    p.fired()
                finally:
                    refused.reset(token)

        return send

    p.wrap(P + "open_response", make_open)
    p.wrap(CLIENT + "send_secure_request", make_send)


@mutant("first_error_kept", ["RTY-6"],
        "when retries are exhausted, raises the exception of the first answer, not the last")
def _first_error_kept(p: Patcher) -> None:
    need(p, R + "is_retryable_status")
    track_calls(p)

    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        async def exchange(self: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
            answer = await orig(self, request, *args, **kwargs)
            call = CALL.get()
            if call is not None and request.method == "POST":
                first = call.setdefault("first_answer", answer)
                if answer[0] != first[0] and answer[0] != 200 \
                        and p.get(R + "is_retryable_status")(answer[0]):
                    p.fired()
                    return first[0], answer[1], first[2]
            return answer

        return exchange

    p.wrap(CLIENT + "_exchange", make)


@mutant("constant_backoff", ["RTY-7"], "waits the base delay before every retry (no doubling)")
def _constant_backoff(p: Patcher) -> None:
    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        def delay(self: Any, attempt: int, jitter: float, retry_after: Any = None) -> float:
            if retry_after is None and attempt > 1:
                p.fired()
                return orig(self, 1, jitter, None)
            return orig(self, attempt, jitter, retry_after)

        return delay

    wrap_policy(p, "delay", make)


@mutant("no_jitter", ["RTY-8"], "adds no jitter to the backoff")
def _no_jitter(p: Patcher) -> None:
    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        def delay(self: Any, attempt: int, jitter: float, retry_after: Any = None) -> float:
            if jitter:
                p.fired()
            return orig(self, attempt, 0.0, retry_after)

        return delay

    wrap_policy(p, "delay", make)


@mutant("retry_after_ignored", ["RTY-9"], "ignores Retry-After")
def _retry_after_ignored(p: Patcher) -> None:
    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        def parse(value: Any, *args: Any, **kwargs: Any) -> Any:
            if orig(value, *args, **kwargs) is not None:
                p.fired()
            return None

        return parse

    p.wrap(R + "parse_retry_after", make)


@mutant("retry_after_uncapped", ["RTY-10"],
        "ignores the configured Retry-After cap (a built-in 12 s bound applies instead)")
def _retry_after_uncapped(p: Patcher) -> None:
    # 12 s, not an hour: long enough to break any sane cap, short enough for CI.
    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        def delay(self: Any, attempt: int, jitter: float, retry_after: Any = None) -> float:
            if retry_after is not None:
                if retry_after > self.retry_after_cap:
                    p.fired()
                return min(float(retry_after), 12.0)
            return orig(self, attempt, jitter, retry_after)

        return delay

    wrap_policy(p, "delay", make)


@mutant("bad_retry_after_crash", ["RTY-11"],
        "an unparseable Retry-After raises ValueError; a negative one is used as is")
def _bad_retry_after_crash(p: Patcher) -> None:
    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        def parse(value: Any, *args: Any, **kwargs: Any) -> Any:
            if value is None:
                return None
            if orig(value, *args, **kwargs) is None:
                p.fired()
            return max(float(value), 0.0)

        return parse

    p.wrap(R + "parse_retry_after", make)


@mutant("key_fetch_not_retried", ["RTY-13"], "the key fetch is never retried")
def _key_fetch_not_retried(p: Patcher) -> None:
    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        async def fetch(self: Any, *args: Any, **kwargs: Any) -> Any:
            policy = self._policy
            self._policy = dataclasses.replace(policy, max_retries=0)
            p.fired()
            try:
                return await orig(self, *args, **kwargs)
            finally:
                self._policy = policy

        return fetch

    if "_policy" not in inspect.getsource(p.get(CLIENT + "__init__")):
        raise MutantNoLongerApplies("key_fetch_not_retried: the client keeps no _policy")
    p.wrap(CLIENT + "fetch_server_public_key", make)


@mutant("max_retries_float_accepted", ["RTY-14"], "max_retries=2.5 is accepted")
def _max_retries_float_accepted(p: Patcher) -> None:
    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        def post_init(self: Any) -> None:
            value = self.max_retries
            if isinstance(value, float) and value >= 0:
                p.fired()
                object.__setattr__(self, "max_retries", 0)
                try:
                    orig(self)
                finally:
                    object.__setattr__(self, "max_retries", value)
                return
            orig(self)

        return post_init

    wrap_policy(p, "__post_init__", make)


@mutant("byte_identical_retry", ["RTY-15"], "retries resend the byte-identical package")
def _byte_identical_retry(p: Patcher) -> None:
    track_calls(p)

    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        def encrypt(*args: Any, **kwargs: Any) -> Any:
            call = CALL.get()
            bound = bind(orig, args, kwargs)
            if call is None:
                return orig(*args, **kwargs)
            memo = call.setdefault("packages", {})
            recipient = bound.arguments["recipient"]
            key = (bytes(bound.arguments["plaintext"]), recipient.public_numbers().n)
            if key in memo:
                p.fired()
                return memo[key]
            memo[key] = orig(*args, **kwargs)
            return memo[key]

        return encrypt

    p.wrap(C + "encrypt_package", make, needs=("plaintext", "recipient"))


@mutant("tls_failure_retried", ["RTY-16"], "a failed certificate verification is retried")
def _tls_failure_retried(p: Patcher) -> None:
    failure = p.get("nomyo_ref.client:_ConnectionFailure")

    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        async def exchange(self: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return await orig(self, *args, **kwargs)
            except failure as exc:
                if not exc.retryable:
                    p.fired()
                    exc.retryable = True
                raise

        return exchange

    p.wrap(CLIENT + "_exchange", make)


# =============================================================================================
# Security tiers (section 10)
# =============================================================================================


def wrap_tier_check(p: Patcher, decide: Callable[[Callable[..., Any], Any], Any]) -> None:
    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        def check(tier: Any, *args: Any, **kwargs: Any) -> Any:
            return decide(orig, tier)

        return check

    p.wrap(P + "check_security_tier", make)


@mutant("tier_high_refused", ["TIER-1"], "the tier \"high\" is refused (ValueError)")
def _tier_high_refused(p: Patcher) -> None:
    def decide(orig: Callable[..., Any], tier: Any) -> Any:
        if tier == "high":
            p.fired()
            raise ValueError("invalid security_tier")
        return orig(tier)

    wrap_tier_check(p, decide)


@mutant("tier_header_capitalised", ["TIER-2"], "sends X-Security-Tier capitalised (\"Maximum\")")
def _tier_header_capitalised(p: Patcher) -> None:
    def change(headers: dict[str, str]) -> None:
        for key in list(headers):
            if key.lower() == "x-security-tier":
                headers[key] = headers[key].capitalize()

    edit_headers(p, change)


@mutant("tier_header_always", ["TIER-3"], "sends X-Security-Tier: standard when none was asked")
def _tier_header_always(p: Patcher) -> None:
    def change(headers: dict[str, str]) -> None:
        if not any(k.lower() == "x-security-tier" for k in headers):
            headers["X-Security-Tier"] = "standard"

    edit_headers(p, change)


@mutant("tier_unvalidated", ["TIER-4"], "any string is accepted as tier and sent")
def _tier_unvalidated(p: Patcher) -> None:
    def decide(orig: Callable[..., Any], tier: Any) -> Any:
        try:
            return orig(tier)
        except ValueError:
            if isinstance(tier, str) and tier and not re.search(r"[\r\n\x00]", tier):
                p.fired()
                return tier
            raise

    wrap_tier_check(p, decide)


@mutant("tier_dropped_on_resend", ["TIER-5"],
        "the tier is dropped on every attempt after the first (the key-rotation resend too)")
def _tier_dropped_on_resend(p: Patcher) -> None:
    def change(n: int, args: inspect.BoundArguments) -> bool:
        if n > 1 and args.arguments["security_tier"] is not None:
            args.arguments["security_tier"] = None
            return True
        return False

    per_call_build(p, change)


@mutant("tier_answer_unchecked", ["TIER-9"],
        "an answer served at another tier than asked (or naming none) is accepted")
def _tier_answer_unchecked(p: Patcher) -> None:
    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        def open_response(*args: Any, **kwargs: Any) -> Any:
            bound = bind(orig, args, kwargs)
            if bound.arguments.get("security_tier") is not None:
                p.fired()
                bound.arguments["security_tier"] = None
            return orig(*bound.args, **bound.kwargs)

        return open_response

    p.wrap(P + "open_response", make, needs=("security_tier",))


# =============================================================================================
# Secure memory (section 15)
# =============================================================================================


@mutant("mlock_failure_fatal", ["MEM-3"], "a call fails (MemoryError) when mlock is refused")
def _mlock_failure_fatal(p: Patcher) -> None:
    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        def lock(buf: Any, *args: Any, **kwargs: Any) -> bool:
            ok = orig(buf, *args, **kwargs)
            if not ok and len(buf):
                p.fired()
                raise MemoryError("cannot lock memory")
            return ok

        return lock

    p.wrap(MEM + "lock", make)


@mutant("insecure_mode_differs", ["MEM-4"],
        "with secure_memory=False the package omits key_algorithm and payload_algorithm")
def _insecure_mode_differs(p: Patcher) -> None:
    def edit(package: dict[str, Any]) -> None:
        package.pop("key_algorithm", None)
        package.pop("payload_algorithm", None)

    rewrite_package(p, edit, when=lambda a: a.arguments.get("secure") is False)


# =============================================================================================
# The Python API (section 17)
# =============================================================================================


@mutant("export_missing", ["API-1"], "the package does not export ForbiddenError")
def _export_missing(p: Patcher) -> None:
    p.delete("nomyo_ref:ForbiddenError")
    p.fired()


@mutant("secure_memory_default_false", ["API-2"], "SecureChatCompletion's secure_memory defaults "
        "to False")
def _secure_memory_default_false(p: Patcher) -> None:
    set_default(p, CHAT + "__init__", "secure_memory", False)
    p.fired()


@mutant("create_not_coroutine", ["API-3"],
        "create is a plain function returning a coroutine (not a coroutine function)")
def _create_not_coroutine(p: Patcher) -> None:
    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        def create(*args: Any, **kwargs: Any) -> Any:
            p.fired()
            return orig(*args, **kwargs)

        return create

    p.wrap(CHAT + "create", make)


@mutant("acreate_not_coroutine", ["API-4"], "acreate is a plain function returning a coroutine")
def _acreate_not_coroutine(p: Patcher) -> None:
    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        def acreate(*args: Any, **kwargs: Any) -> Any:
            p.fired()
            return orig(*args, **kwargs)

        return acreate

    p.wrap(CHAT + "acreate", make)


@mutant("api_key_override_ignored", ["API-5"], "create's api_key keyword is dropped")
def _api_key_override_ignored(p: Patcher) -> None:
    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        async def create(self: Any, model: Any, messages: Any, **kwargs: Any) -> Any:
            if "api_key" in kwargs:
                p.fired()
                kwargs.pop("api_key")
            return await orig(self, model, messages, **kwargs)

        return create

    p.wrap(CHAT + "create", make)


@mutant("router_url_default_other", ["API-6"],
        "SecureCompletionClient's router_url defaults to https://api.nomyo.ai (no port)")
def _router_url_default_other(p: Patcher) -> None:
    set_default(p, CLIENT + "__init__", "router_url", "https://api.nomyo.ai")
    p.fired()


@mutant("generate_keys_default_dir", ["API-7"], "generate_keys' key_dir defaults to 'keys'")
def _generate_keys_default_dir(p: Patcher) -> None:
    set_default(p, CLIENT + "generate_keys", "key_dir", "keys")
    p.fired()


@mutant("load_keys_password_renamed", ["API-8"], "load_keys names its password 'passphrase'")
def _load_keys_password_renamed(p: Patcher) -> None:
    rename_parameter(p, CLIENT + "load_keys", "password", "passphrase")


@mutant("fetch_key_returns_bytes", ["API-9"], "fetch_server_public_key returns the PEM as bytes")
def _fetch_key_returns_bytes(p: Patcher) -> None:
    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        async def fetch(*args: Any, **kwargs: Any) -> Any:
            pem = await orig(*args, **kwargs)
            callers = {frame.function for frame in inspect.stack(0)[1:6]}
            if not callers & {"_get_server_key", "_server_key_rotated"}:
                p.fired()
                return pem.encode("ascii")
            return pem

        return fetch

    p.wrap(CLIENT + "fetch_server_public_key", make)


@mutant("empty_payload_encrypted", ["API-10"], "encrypt_payload({}) encrypts '{}'")
def _empty_payload_encrypted(p: Patcher) -> None:
    need(p, C + "encrypt_package")
    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        async def encrypt(self: Any, payload: Any, *args: Any, **kwargs: Any) -> Any:
            if payload == {} and isinstance(payload, dict):
                p.fired()
                server_key, _ = await self._get_server_key()
                return p.get(C + "encrypt_package")(bytearray(b"{}"), server_key)
            return await orig(self, payload, *args, **kwargs)

        return encrypt

    p.wrap(CLIENT + "encrypt_payload", make)


@mutant("decrypt_response_unchecked", ["API-11"],
        "low-level decrypt_response skips the binding and plaintext checks")
def _decrypt_response_unchecked(p: Patcher) -> None:
    need(p, P + "parse_package", C + "decrypt_fields")
    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        async def decrypt(self: Any, encrypted_response: Any, payload_id: Any,
                          *args: Any, **kwargs: Any) -> Any:
            if self.private_key is None:
                return await orig(self, encrypted_response, payload_id, *args, **kwargs)
            _, fields = p.get(P + "parse_package")(encrypted_response)
            plaintext = p.get(C + "decrypt_fields")(fields, self.private_key)
            p.fired()
            try:
                return json.loads(bytes(plaintext).decode("utf-8", errors="replace"))
            except ValueError:
                return {"content": bytes(plaintext).decode("utf-8", errors="replace")}

        return decrypt

    p.wrap(CLIENT + "decrypt_response", make)


@mutant("send_secure_request_tier_renamed", ["API-12"],
        "send_secure_request names its tier parameter 'tier'")
def _send_secure_request_tier_renamed(p: Patcher) -> None:
    rename_parameter(p, CLIENT + "send_secure_request", "security_tier", "tier")


@mutant("status_default_missing", ["API-13"],
        "InvalidRequestError(message) has status_code None (no default 400)")
def _status_default_missing(p: Patcher) -> None:
    p.set(E + "InvalidRequestError.default_status", None)
    p.fired()


@mutant("security_error_is_api_error", ["API-14"],
        "SecurityError subclasses APIError (an `except APIError: retry` swallows it)")
def _security_error_is_api_error(p: Patcher) -> None:
    security, api_error = p.get(E + "SecurityError"), p.get(E + "APIError")
    replacement = type("SecurityError", (api_error,), {
        "__module__": security.__module__, "__doc__": security.__doc__})
    p.set(E + "SecurityError", replacement)
    p.fired()


@mutant("str_not_message", ["API-15"], "str() of an API exception prefixes the status code")
def _str_not_message(p: Patcher) -> None:
    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        def text(self: Any) -> str:
            p.fired()
            return f"[{self.status_code}] {self.message}"

        return text

    p.wrap(E + "APIError.__str__", make)


@mutant("constructor_fetches_key", ["API-18"],
        "SecureCompletionClient's constructor fetches the server key (blocking GET)")
def _constructor_fetches_key(p: Patcher) -> None:
    import httpx

    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        def init(self: Any, *args: Any, **kwargs: Any) -> None:
            orig(self, *args, **kwargs)
            p.fired()
            with contextlib.suppress(Exception):
                httpx.get(self.router_url + "/pki/public_key", verify=self._verify, timeout=2.0)

        return init

    p.wrap(CLIENT + "__init__", make)


@mutant("unlocked_key_fetch", ["API-19"],
        "concurrent first calls each fetch the server key (no lock around the fetch)")
def _unlocked_key_fetch(p: Patcher) -> None:
    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        async def get(self: Any, *args: Any, **kwargs: Any) -> Any:
            if self._server_key is None:
                p.fired()
                await self.fetch_server_public_key()
            return await orig(self, *args, **kwargs)

        return get

    p.wrap(CLIENT + "_get_server_key", make)


@mutant("generate_keys_not_saved", ["API-20"], "generate_keys(save_to_file=True) writes no file")
def _generate_keys_not_saved(p: Patcher) -> None:
    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        def generate(self: Any, save_to_file: bool = False, *args: Any, **kwargs: Any) -> Any:
            if save_to_file:
                p.fired()
            return orig(self, False, *args, **kwargs)

        return generate

    p.wrap(CLIENT + "generate_keys", make, needs=("save_to_file",))


@mutant("answer_unbounded", ["API-21"],
        "the timeout bounds each socket read only, not the whole answer (a trickle never ends)")
def _answer_unbounded(p: Patcher) -> None:
    import asyncio
    import types

    client_module = p.get("nomyo_ref.client:asyncio")
    if client_module is not asyncio:
        raise MutantNoLongerApplies("answer_unbounded: nomyo_ref.client does not use asyncio")

    async def wait_for(awaitable: Any, timeout: Any = None) -> Any:
        p.fired()
        return await awaitable

    shim = types.ModuleType("asyncio_without_wait_for")
    shim.__dict__.update(asyncio.__dict__)
    shim.wait_for = wait_for  # type: ignore[attr-defined]
    p.set("nomyo_ref.client:asyncio", shim, aliases=False)


# =============================================================================================
# Secrets (section 16)
# =============================================================================================


@mutant("api_key_in_auth_error", ["LOG-1"], "the 401 error's message quotes the API key")
def _api_key_in_auth_error(p: Patcher) -> None:
    auth = p.get(E + "AuthenticationError")

    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        async def send(self: Any, payload: Any, payload_id: Any, api_key: Any = None,
                       *args: Any, **kwargs: Any) -> Any:
            try:
                return await orig(self, payload, payload_id, api_key, *args, **kwargs)
            except auth as exc:
                if api_key:
                    p.fired()
                    exc.message = f"{exc.message} (API key {api_key})"
                    exc.args = (exc.message,)
                raise

        return send

    p.wrap(CLIENT + "send_secure_request", make, needs=("api_key",))


@mutant("plaintext_logged_at_debug", ["LOG-2"],
        "logs each answer's plaintext at DEBUG; the package pins its logger at INFO")
def _plaintext_logged_at_debug(p: Patcher) -> None:
    log = logging.getLogger("nomyo_ref")
    level = log.level
    log.setLevel(logging.INFO)
    p.on_undo(lambda: log.setLevel(level))

    def after(result: dict[str, Any], _a: inspect.BoundArguments) -> bool:
        log.debug("answer: %s", json.dumps(result))
        return True

    wrap_open(p, after)

    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        def serialise(payload: Any, *args: Any, **kwargs: Any) -> Any:
            out = orig(payload, *args, **kwargs)
            log.debug("request: %s", bytes(out).decode("utf-8", errors="replace"))
            return out

        return serialise

    p.wrap(P + "serialise_payload", make)


@mutant("plaintext_chained", ["LOG-3"],
        "a plaintext that is not a JSON object is refused with its JSONDecodeError chained")
def _plaintext_chained(p: Patcher) -> None:
    security = p.get(E + "SecurityError")

    def decide(plaintext: bytes, a: inspect.BoundArguments) -> Any:
        try:
            json.loads(plaintext.decode("utf-8", errors="replace"))
        except ValueError as exc:
            raise security("decrypted response is not a UTF-8 JSON object") from exc
        return None

    accept_or_refuse(p, decide)


@mutant("repr_shows_api_key", ["LOG-4"], "repr() of SecureChatCompletion shows the API key")
def _repr_shows_api_key(p: Patcher) -> None:
    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        def show(self: Any) -> str:
            p.fired()
            return f"SecureChatCompletion(base_url={self.base_url!r}, api_key={self.api_key!r})"

        return show

    p.wrap(CHAT + "__repr__", make)


# =============================================================================================
# Requirements with no mutant, and why
# =============================================================================================

#: Testable client MUST/SHOULD requirements no mutant breaks, with the reason.
UNMUTATED: dict[str, str] = {}


def requirement_ids() -> set[str]:
    """Every requirement id some mutant names."""
    return {rid for m in REGISTRY.values() for rid in m.reqs}


def names_matching(patterns: Iterable[str]) -> list[str]:
    """Mutant names matching any fnmatch pattern (all when none given)."""
    import fnmatch

    pats = list(patterns)
    return [n for n in REGISTRY if not pats or any(fnmatch.fnmatchcase(n, q) for q in pats)]
