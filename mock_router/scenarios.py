"""Scripted answers: what the next requests to an endpoint get instead of the normal answer.

A scenario is queued with ``MockRouter.push`` and used by the next requests to its path, in
FIFO order, ``times`` times each. A scenario is used up by a request to its path whatever that
request looks like (a refused request uses up a response-shaping scenario too): the rule is
simple and deterministic, so a test knows exactly which request got what.

Answers independent of the request (``always=True``, and ``Scenario.scripted()``): an
answer-shaping scenario normally shapes the answer to a request the router accepted, and a
refused request gets its 4xx. With ``always=True`` the router answers 200 with the shaped
package whatever the request's package holds (refused, undecryptable, replayed), built from
the request's ``X-Public-Key`` (any RSA key that can wrap an AES key, even one the router
refused as too small) and ``X-Payload-ID`` alone: the completion is the fixed
``SCRIPTED_CONTENT`` answer, never the model's, so the answer does not depend on the body at
all. The refusal is still recorded (``SeenRequest.refusal_code``, ``valid`` False). Without
both headers, or with a key nothing can be wrapped to, the refusal stands. Checks of how a
client treats answers (downgrades, binding, tampering) thereby run even when the client's own
package is refused.
"""

from __future__ import annotations

import copy
import re
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

KEY_PATH = "/pki/public_key"
POST_PATH = "/v1/chat/secure_completion"
TAMPER_FIELDS = ("ciphertext", "tag", "nonce", "encrypted_aes_key")

#: Kinds that shape a 200 answer (these take ``always``).
ANSWER_KINDS = ("payload_id", "no_metadata", "tamper", "package", "plaintext",
                "wrong_recipient", "completion", "key_wrap", "content_type", "metadata",
                "duplicate", "large", "nested", "scripted", "payload_id_like",
                "payload_member")
KINDS = ("status", "delay", "drop", *ANSWER_KINDS)
#: Where ``Scenario.duplicate`` repeats a member name.
DUPLICATE_WHERE = ("package", "encrypted_payload", "plaintext", "metadata")
#: Where ``Scenario.large`` / ``Scenario.nested`` grow the answer.
GROW_WHERE = ("plaintext", "package")
MAX_LARGE_BYTES = 256 * 1024 * 1024
MAX_NESTING = 1_000_000
#: ``Scenario.duplicate``'s default value: repeat the member with its own value.
SAME = "__mock_router_same_value__"
#: Other ways of wrapping the answer's AES key (ENC-6: a client must refuse every one).
KEY_WRAP_PADDINGS = ("oaep-sha1", "oaep-mgf1-sha1", "oaep-label", "pkcs1v15")
#: How ``Scenario.tamper`` changes a real base64 value: "flip" one bit of the decoded bytes;
#: "strip-padding" removes its trailing "=" (the tag only: 16 bytes always end in "==");
#: "non-alphabet" inserts "*", "space" a " ", "newline" a "\r\n" in the middle. The last
#: four leave the bytes a lenient decoder reads unchanged (PKG-10: a receiver must refuse).
TAMPER_HOWS = ("flip", "strip-padding", "non-alphabet", "space", "newline")
#: Where ``tamper(how=...)`` inserts into the value: this character string.
TAMPER_INSERTS = {"non-alphabet": "*", "space": " ", "newline": "\r\n"}
#: How ``Scenario.payload_id_like`` changes the request's own id (PID-6: "exactly equal").
PAYLOAD_ID_TRANSFORMS = ("upper", "strip-hyphens", "pad-space", "truncate")
#: Stands for the request's own ``X-Payload-ID`` in ``payload_id(value, top_level=...)``,
#: ``package(**overrides)`` and ``metadata(**overrides)`` values (top-level values only).
REQUEST_ID = "__mock_router_request_payload_id__"
#: The members of ``encrypted_payload`` (``payload_member`` adds any other).
PAYLOAD_MEMBERS = ("ciphertext", "nonce", "tag")


def transform_payload_id(value: str, how: str) -> str:
    """``value`` changed by ``how`` (PAYLOAD_ID_TRANSFORMS), never equal to ``value``:
    "upper" upper-cases it (lower-cases an id that is already upper-case), "strip-hyphens"
    removes its hyphens, "pad-space" appends one space, "truncate" drops its last
    character. Where "upper" or "strip-hyphens" would change nothing (an id without letters
    or without hyphens: never a canonical UUID, PID-2), the id is truncated instead."""
    if how == "upper":
        out = value.upper() if value.upper() != value else value.lower()
    elif how == "strip-hyphens":
        out = value.replace("-", "")
    elif how == "pad-space":
        out = value + " "
    elif how == "truncate":
        out = value[:-1]
    else:
        raise ValueError(f"payload id transform must be one of "
                         f"{', '.join(PAYLOAD_ID_TRANSFORMS)}")
    return out if out != value else value[:-1]


def tamper_base64(value: str, how: str) -> str | None:
    """The base64 text ``value`` changed by ``how`` other than "flip" (TAMPER_HOWS), or None
    when it has no padding to strip. Inserts go in the middle of the data characters, so a
    decoder that skips foreign characters reads the original bytes."""
    data = value.rstrip("=")
    if how == "strip-padding":
        return data if data != value else None
    middle = len(data) // 2
    return value[:middle] + TAMPER_INSERTS[how] + value[middle:]


_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_FIELD_VALUE = re.compile(r"([\x21-\x7e\x80-\xff]([\t\x20-\x7e\x80-\xff]*[\x21-\x7e\x80-\xff])?)?")


def _check_header(name: object, value: object) -> None:
    """Refuse, when the scenario is made, a header that could not be sent on the wire
    (otherwise the router would fail while answering and the client would see a 500)."""
    if not isinstance(name, str) or not _TOKEN.fullmatch(name):
        raise ValueError(f"scenario header name {name!r} is not an HTTP token")
    if not isinstance(value, str) or not _FIELD_VALUE.fullmatch(value):
        raise ValueError(f"scenario header {name!r} needs a value of visible latin-1 "
                         "characters (inner spaces allowed)")


@dataclass(frozen=True)
class Scenario:
    """One scripted answer. Build it with the class methods, not the constructor."""

    kind: str
    params: dict[str, Any] = field(default_factory=dict)
    times: int = 1
    path: str = POST_PATH
    always: bool = False  # answer whatever the request holds (module docstring)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown scenario kind {self.kind!r}")
        if not isinstance(self.always, bool):
            raise ValueError("always must be true or false")
        if self.always and self.kind not in ANSWER_KINDS:
            raise ValueError(f"always=True only applies to answer-shaping scenarios; "
                             f"{self.kind!r} already answers whatever the request holds")
        if isinstance(self.times, bool) or not isinstance(self.times, int) or self.times < 1:
            raise ValueError("times must be a positive integer")
        if self.path not in (KEY_PATH, POST_PATH):
            raise ValueError(f"path must be {KEY_PATH!r} or {POST_PATH!r}")
        if self.path == KEY_PATH and self.kind not in ("status", "delay", "drop"):
            raise ValueError(f"scenario {self.kind!r} only applies to {POST_PATH}")

    # -- constructors (the contract) -----------------------------------------------------
    @classmethod
    def status(cls, code: int, body: Any = None, *, content_type: str | None = None,
               headers: dict[str, str] | None = None, path: str = POST_PATH,
               times: int = 1) -> Scenario:
        """A raw answer: ``body`` is bytes, str, any JSON value, or None (empty body)."""
        if isinstance(code, bool) or not isinstance(code, int) or not 100 <= code <= 599:
            raise ValueError("status code must be an integer from 100 to 599")
        headers = dict(headers or {})
        for name, value in headers.items():
            _check_header(name, value)
        if content_type is not None:
            _check_header("content-type", content_type)
        return cls("status", {"code": code, "body": copy.deepcopy(body),
                              "content_type": content_type, "headers": headers},
                   times, path)

    @classmethod
    def payload_id(cls, value: Any, *, top_level: Any = None, times: int = 1,
                   always: bool = False) -> Scenario:
        """Bind the answer to another payload id (None: leave ``payload_id`` out;
        ``REQUEST_ID``: the request's own). ``top_level``: also put a member "payload_id"
        with this value at the package's unencrypted top level (``REQUEST_ID``: the
        request's own id), e.g. ``payload_id(other, top_level=REQUEST_ID)``: bound to
        ``other`` inside the encryption, to the request outside it (PID-7: a client binds
        on what decrypted only, so it refuses)."""
        params: dict[str, Any] = {"value": copy.deepcopy(value)}
        if top_level is not None:
            params["top_level"] = copy.deepcopy(top_level)
        return cls("payload_id", params, times, always=always)

    @classmethod
    def no_metadata(cls, *, times: int = 1, always: bool = False) -> Scenario:
        """An answer whose plaintext has no ``_metadata`` at all."""
        return cls("no_metadata", {}, times, always=always)

    @classmethod
    def tamper(cls, field: str, *, how: str = "flip", times: int = 1,
               always: bool = False) -> Scenario:
        """Damage one crypto field of the answer (the client must refuse it). ``how``
        (``TAMPER_HOWS``): "flip" one bit of its bytes (the default; a GCM or OAEP failure);
        or change only its base64 text, which a lenient decoder still reads as the right
        bytes (PKG-10 receiver side, CHK-7: a strict one refuses): "strip-padding" removes
        the tag's "==" (``field`` must be "tag"), "non-alphabet" inserts "*", "space" a
        space, "newline" a CR LF, in the middle of the value."""
        if field not in TAMPER_FIELDS:
            raise ValueError(f"tamper field must be one of {', '.join(TAMPER_FIELDS)}")
        if how not in TAMPER_HOWS:
            raise ValueError(f"tamper how must be one of {', '.join(TAMPER_HOWS)}")
        if how == "strip-padding" and field != "tag":
            raise ValueError("strip-padding applies to the tag only (the one value whose "
                             "padding does not depend on key or message size)")
        params: dict[str, Any] = {"field": field}
        if how != "flip":
            params["how"] = how
        return cls("tamper", params, times, always=always)

    @classmethod
    def payload_id_like(cls, transform: str, *, times: int = 1,
                        always: bool = False) -> Scenario:
        """Bind the answer to a near miss of the request's own X-Payload-ID (PID-6: "exactly
        equal"): ``transform`` is "upper" (upper-cased), "strip-hyphens", "pad-space" (a
        trailing space) or "truncate" (the last character dropped); see
        ``transform_payload_id``. A client comparing case-insensitively, without hyphens,
        after strip() or by prefix accepts it; a conforming one refuses (SecurityError)."""
        if transform not in PAYLOAD_ID_TRANSFORMS:
            raise ValueError(f"payload id transform must be one of "
                             f"{', '.join(PAYLOAD_ID_TRANSFORMS)}")
        return cls("payload_id_like", {"transform": transform}, times, always=always)

    @classmethod
    def payload_member(cls, name: str, value: Any, *, times: int = 1,
                       always: bool = False) -> Scenario:
        """The normal answer with one more member ``name`` inside its real
        ``encrypted_payload`` (PKG-11: receivers ignore it; later 1.x versions may add
        one). ``name`` must not be ciphertext, nonce or tag (``package()`` replaces the
        whole ``encrypted_payload``)."""
        if not isinstance(name, str):
            raise TypeError("payload member name must be a string")
        if name in PAYLOAD_MEMBERS:
            raise ValueError(f"payload_member adds a member; {name!r} is one of "
                             f"{', '.join(PAYLOAD_MEMBERS)}")
        return cls("payload_member", {"name": name, "value": copy.deepcopy(value)}, times,
                   always=always)

    @classmethod
    def package(cls, *, times: int = 1, always: bool = False, **overrides: Any) -> Scenario:
        """Override top-level package fields of the answer; a value of None deletes it."""
        return cls("package", {"overrides": copy.deepcopy(overrides)}, times, always=always)

    @classmethod
    def plaintext(cls, raw: bytes, *, times: int = 1, always: bool = False) -> Scenario:
        """Encrypt exactly these bytes as the answer's plaintext (no metadata added)."""
        if not isinstance(raw, (bytes, bytearray)):
            raise TypeError("raw plaintext must be bytes")
        return cls("plaintext", {"raw": bytes(raw)}, times, always=always)

    @classmethod
    def wrong_recipient(cls, *, times: int = 1, always: bool = False) -> Scenario:
        """Encrypt the answer to a key other than the client's."""
        return cls("wrong_recipient", {}, times, always=always)

    @classmethod
    def completion(cls, obj: dict[str, Any], *, times: int = 1,
                   always: bool = False) -> Scenario:
        """Answer with this completion; the standard ``_metadata`` is still added (keys the
        object's own ``_metadata`` sets win)."""
        if not isinstance(obj, dict):
            raise TypeError("completion must be a dict")
        return cls("completion", {"obj": copy.deepcopy(obj)}, times, always=always)

    @classmethod
    def delay(cls, seconds: float, *, path: str = POST_PATH, times: int = 1) -> Scenario:
        """Wait this long, then answer normally."""
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
            raise ValueError("delay must be a non-negative number of seconds")
        return cls("delay", {"seconds": float(seconds)}, times, path)

    @classmethod
    def drop(cls, *, path: str = POST_PATH, times: int = 1) -> Scenario:
        """Drop the connection without a complete answer."""
        return cls("drop", {}, times, path)

    @classmethod
    def key_wrap(cls, padding: str, *, times: int = 1, always: bool = False) -> Scenario:
        """Wrap the answer's AES key with another padding (``KEY_WRAP_PADDINGS``):
        "oaep-sha1" (OAEP, SHA-1 and MGF1-SHA-1), "oaep-mgf1-sha1" (OAEP SHA-256 with
        MGF1-SHA-1), "oaep-label" (OAEP SHA-256 with a non-empty label) or "pkcs1v15".
        Everything else (package fields, metadata, binding) stays correct."""
        if padding not in KEY_WRAP_PADDINGS:
            raise ValueError(f"key wrap padding must be one of {', '.join(KEY_WRAP_PADDINGS)}")
        return cls("key_wrap", {"padding": padding}, times, always=always)

    @classmethod
    def content_type(cls, value: str | None, *, times: int = 1,
                     always: bool = False) -> Scenario:
        """The normal answer with this Content-Type header (None: no Content-Type at all)."""
        if value is not None:
            _check_header("content-type", value)
        return cls("content_type", {"value": value}, times, always=always)

    @classmethod
    def scripted(cls, *, times: int = 1) -> Scenario:
        """A correct answer built from the request's headers alone, whatever its body holds:
        the fixed ``SCRIPTED_CONTENT`` completion, bound to ``X-Payload-ID``, encrypted to
        ``X-Public-Key`` (the positive control of checks that use ``always=True``)."""
        return cls("scripted", {}, times, always=True)

    @classmethod
    def metadata(cls, *, times: int = 1, always: bool = False, **overrides: Any) -> Scenario:
        """Override members of the answer's ``_metadata`` (inside the encryption); a value of
        None deletes the member. E.g. ``metadata(security_tier="high")`` (a tier other than
        the one asked, TIER-9), ``metadata(security_tier=None)``, ``metadata(processed_at=7)``.
        """
        return cls("metadata", {"overrides": copy.deepcopy(overrides)}, times, always=always)

    @classmethod
    def duplicate(cls, member: str, value: Any = SAME, *, where: str = "package",
                  times: int = 1, always: bool = False) -> Scenario:
        """An answer whose JSON names ``member`` twice in one object (CHK-18): ``where`` is
        "package" (top level), "encrypted_payload", "plaintext" (the completion's top level)
        or "metadata" (its ``_metadata``). The extra copy comes first and carries ``value``
        (default: the member's own value, so only a duplicate check can tell); the real one
        follows, so a last-wins parser reads the genuine value. A member the object lacks is
        written twice (``value``, or null)."""
        if not isinstance(member, str):
            raise TypeError("duplicate member must be a string")
        if where not in DUPLICATE_WHERE:
            raise ValueError(f"duplicate where must be one of {', '.join(DUPLICATE_WHERE)}")
        return cls("duplicate", {"member": member, "value": copy.deepcopy(value),
                                 "where": where}, times, always=always)

    @classmethod
    def large(cls, size: int, *, where: str = "plaintext", times: int = 1,
              always: bool = False) -> Scenario:
        """An answer grown to ``size`` bytes (CHK-19): where="plaintext" pads the first
        choice's content (or, without text content, a top-level "x_mock_padding" member) so
        the plaintext is exactly ``size`` bytes; where="package" adds a top-level
        "x_mock_padding" member (PKG-9: receivers ignore it) so the body is exactly ``size``
        bytes. A size below the natural one leaves the answer as it is."""
        if isinstance(size, bool) or not isinstance(size, int) \
                or not 0 < size <= MAX_LARGE_BYTES:
            raise ValueError(f"large size must be an integer from 1 to {MAX_LARGE_BYTES}")
        if where not in GROW_WHERE:
            raise ValueError(f"large where must be one of {', '.join(GROW_WHERE)}")
        return cls("large", {"size": size, "where": where}, times, always=always)

    @classmethod
    def nested(cls, depth: int, *, where: str = "plaintext", times: int = 1,
               always: bool = False) -> Scenario:
        """An answer whose JSON nests ``depth`` levels deep (CHK-19), counting the top-level
        object as level 1: a member "x_mock_nested" holding ``depth - 1`` nested arrays is
        added at the top level of the plaintext or of the package (an answer's own structure
        is at most 5 levels deep)."""
        if isinstance(depth, bool) or not isinstance(depth, int) \
                or not 2 <= depth <= MAX_NESTING:
            raise ValueError(f"nested depth must be an integer from 2 to {MAX_NESTING}")
        if where not in GROW_WHERE:
            raise ValueError(f"nested where must be one of {', '.join(GROW_WHERE)}")
        return cls("nested", {"depth": depth, "where": where}, times, always=always)

    # -- description for humans and the admin endpoint ----------------------------------
    def describe(self) -> dict[str, Any]:
        """A JSON-able description (the admin format, bytes shown as latin-1 text)."""
        out: dict[str, Any] = {"kind": self.kind, "times": self.times, "path": self.path}
        if self.always and self.kind != "scripted":
            out["always"] = True
        for key, value in self.params.items():
            if isinstance(value, bytes):
                out[key] = value.decode("latin-1")
            else:
                out[key] = value
        return out

    @classmethod
    def from_description(cls, desc: Any) -> Scenario:
        """Build a scenario from the admin endpoint's JSON (ValueError naming the problem)."""
        if not isinstance(desc, dict):
            raise ValueError("each scenario must be a JSON object")
        desc = dict(desc)
        kind = desc.pop("kind", None)
        times = desc.pop("times", 1)
        path = desc.pop("path", POST_PATH)
        always = desc.pop("always", False)
        if kind in ANSWER_KINDS and kind != "scripted":
            opts: dict[str, Any] = {"times": times, "always": always}
        elif always and kind != "scripted":  # a scripted answer is always=True anyway
            raise ValueError(f"always=True only applies to answer-shaping scenarios, "
                             f"not {kind!r}")
        else:
            opts = {"times": times}
        try:
            if kind == "status":
                return cls.status(desc.pop("code"), desc.pop("body", None),
                                  content_type=desc.pop("content_type", None),
                                  headers=desc.pop("headers", None), path=path, times=times)
            if kind == "payload_id":
                return cls.payload_id(desc.pop("value"), top_level=desc.pop("top_level", None),
                                      **opts)
            if kind == "payload_id_like":
                return cls.payload_id_like(desc.pop("transform"), **opts)
            if kind == "payload_member":
                return cls.payload_member(desc.pop("name"), desc.pop("value"), **opts)
            if kind == "no_metadata":
                return cls.no_metadata(**opts)
            if kind == "tamper":
                return cls.tamper(desc.pop("field"), how=desc.pop("how", "flip"), **opts)
            if kind == "package":
                overrides = desc.pop("overrides", {})
                if not isinstance(overrides, dict):
                    raise ValueError("package overrides must be an object")
                return cls.package(**opts, **overrides)
            if kind == "plaintext":
                raw = desc.pop("raw")
                if not isinstance(raw, str):
                    raise ValueError("plaintext raw must be a string")
                return cls.plaintext(raw.encode("utf-8"), **opts)
            if kind == "wrong_recipient":
                return cls.wrong_recipient(**opts)
            if kind == "completion":
                return cls.completion(desc.pop("obj"), **opts)
            if kind == "delay":
                return cls.delay(desc.pop("seconds"), path=path, times=times)
            if kind == "drop":
                return cls.drop(path=path, times=times)
            if kind == "key_wrap":
                return cls.key_wrap(desc.pop("padding"), **opts)
            if kind == "content_type":
                return cls.content_type(desc.pop("value"), **opts)
            if kind == "scripted":
                return cls.scripted(**opts)
            if kind == "metadata":
                overrides = desc.pop("overrides", {})
                if not isinstance(overrides, dict):
                    raise ValueError("metadata overrides must be an object")
                return cls.metadata(**opts, **overrides)
            if kind == "duplicate":
                return cls.duplicate(desc.pop("member"), desc.pop("value", SAME),
                                     where=desc.pop("where", "package"), **opts)
            if kind == "large":
                return cls.large(desc.pop("size"), where=desc.pop("where", "plaintext"),
                                 **opts)
            if kind == "nested":
                return cls.nested(desc.pop("depth"), where=desc.pop("where", "plaintext"),
                                  **opts)
        except KeyError as exc:
            raise ValueError(f"scenario {kind!r} needs {exc.args[0]!r}") from None
        except TypeError as exc:
            raise ValueError(f"scenario {kind!r}: {exc}") from None
        raise ValueError(f"unknown scenario kind {kind!r}; one of {', '.join(KINDS)}")


class ScenarioQueue:
    """Thread-safe FIFO of scenarios with their remaining uses."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: deque[list[Any]] = deque()  # [scenario, remaining]

    def push(self, *scenarios: Scenario) -> None:
        for sc in scenarios:
            if not isinstance(sc, Scenario):
                raise TypeError(f"expected a Scenario, got {type(sc).__name__}")
        with self._lock:
            self._items.extend([sc, sc.times] for sc in scenarios)

    def take(self, path: str) -> Scenario | None:
        """The first queued scenario for ``path`` (one use of it), or None."""
        with self._lock:
            for item in self._items:
                if item[0].path == path:
                    item[1] -= 1
                    if item[1] <= 0:
                        self._items.remove(item)
                    return item[0]
        return None

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def pending(self) -> list[tuple[Scenario, int]]:
        """A snapshot: (scenario, remaining uses) in queue order."""
        with self._lock:
            return [(sc, n) for sc, n in self._items]
