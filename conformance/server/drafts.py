"""A request before it is sealed (`Draft`), and sealing it into headers and body (`prepare`).

A Draft says what a check varies: the plaintext, each header, how the package is sealed and
edited afterwards. It is frozen and hashable, so hypothesis can show it as the minimal
failing example and a session can answer a repeated valid draft from its cache. Placeholders
stand for what only the run knows: the model (--server-model), a fresh payload id, the
encoded client key and the API key (never part of a draft, so never in a report).
"""

from __future__ import annotations

import gzip
import json
import os
import uuid
from dataclasses import dataclass, field, replace
from typing import Any

from conformance.server import key_forms
from conformance.server.keys import Keyring
from conformance.server.wire import (
    OCTET_STREAM,
    PROTOCOL_WRAP,
    Sealed,
    b64,
    encode_public_key,
    seal,
    strict_b64decode,
)

MODEL = "@server-model@"  # replaced by --server-model when sealed
FRESH = "@fresh-uuid4@"  # a fresh uuid4 for X-Payload-ID at every send
DEFAULT = "@default@"  # the header a conforming client sends
MAX_PLAINTEXT = 10 * 1024 * 1024
MAX_BODY = 16 * 1024 * 1024


def chat(messages: Any = None, **params: Any) -> bytes:
    """A chat request plaintext naming the run's model (MODEL placeholder)."""
    body: dict[str, Any] = {"model": MODEL}
    body["messages"] = (
        messages if messages is not None else [{"role": "user", "content": "Say OK."}]
    )
    body.update(params)
    return json.dumps(body).encode("utf-8")


VALID_PLAINTEXT = chat(max_tokens=16)


@dataclass(frozen=True)
class Draft:
    """One request as a check means it (fields default to a conforming client's request).

    edits: ("set", "a.b", json text) | ("remove", "a.b", "") | ("b64", "a.b", mutation) |
    ("resize", "a.b", byte count), applied to the sealed package in order.
    """

    plaintext: bytes = VALID_PLAINTEXT
    payload_id: str | bytes | None = FRESH
    tier: str | None = None
    content_type: str | None = OCTET_STREAM
    authorization: str | None = DEFAULT
    client_key: str = "main"
    key_style: str = "python"
    key_header: str | bytes | None = DEFAULT
    key_crlf: bool = False
    key_form: str = "spki"
    wrap: str = PROTOCOL_WRAP
    aes_key_size: int = 32
    tag_appended: bool = False
    recipient: str = "server"
    tamper: str | None = None
    edits: tuple[tuple[str, str, str], ...] = ()
    duplicate: str | None = None
    body: bytes | None = None
    oversize: int = 0
    pad_to: int = 0
    content_encoding: str | None = None
    repeat: str | None = None
    note: str = field(default="", compare=False)

    def __repr__(self) -> str:
        """Only what differs from a conforming request (the readable minimal example)."""
        plain = Draft()
        parts = [
            f"{name}={_short(getattr(self, name))}"
            for name in self.__dataclass_fields__
            if name != "note" and getattr(self, name) != getattr(plain, name)
        ]
        label = f"{self.note}: " if self.note else ""
        return f"Draft({label}{', '.join(parts)})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        """How hypothesis prints a minimal failing example: the short repr, not every field."""
        printer.text(repr(self))

    def plus(self, **changes: Any) -> Draft:
        """A copy with `changes`; `edits` are appended, not replaced."""
        if "edits" in changes:
            changes["edits"] = self.edits + tuple(changes["edits"])
        return replace(self, **changes)


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(value)} long)"


@dataclass(frozen=True)
class Prepared:
    """The bytes of one request and what the answer is judged against."""

    draft: Draft
    headers: tuple[tuple[str, bytes], ...] = field(repr=False)  # may hold the API key
    body: bytes
    payload_id: str | None
    tier: str | None
    client_private: Any
    key_header: str | None
    sealed: Sealed | None
    plaintext: bytes


def _header_bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8")


def _pem(keyring: Keyring, draft: Draft) -> str:
    pem = keyring.pem(draft.client_key) if draft.key_form == "spki" else (
        key_forms.render(keyring.private(draft.client_key), draft.key_form))
    if draft.key_crlf:
        pem = pem.rstrip("\n").replace("\n", "\r\n")
    return pem


def prepare(draft: Draft, keyring: Keyring, server_key: Any, model: str,
            api_key: str | None) -> Prepared:
    """Seal and serialise `draft` (placeholders resolved)."""
    plaintext = draft.plaintext.replace(json.dumps(MODEL).encode(), json.dumps(model).encode())
    if draft.pad_to:
        plaintext = pad(plaintext, draft.pad_to)
    payload_id: str | bytes | None = draft.payload_id
    if payload_id == FRESH:
        payload_id = str(uuid.uuid4())
    key_header: str | bytes | None = draft.key_header
    if key_header == DEFAULT:
        key_header = encode_public_key(_pem(keyring, draft), draft.key_style)
    authorization = draft.authorization
    if authorization == DEFAULT:
        authorization = f"Bearer {api_key}" if api_key is not None else None
    sealed: Sealed | None = None
    body = draft.body
    if body is None:
        recipient = server_key if draft.recipient == "server" else (
            keyring.private("other").public_key())  # "other": wrapped to a key not the router's
        sealed = seal(recipient, plaintext, wrap=draft.wrap, aes_key_size=draft.aes_key_size,
                      tag_appended=draft.tag_appended)
        package = json.loads(json.dumps(sealed.package))
        _tamper(package, draft.tamper)
        for op, path, arg in draft.edits:
            _edit(package, op, path, arg)
        body = serialise(package, draft.duplicate).encode("utf-8")
    headers: list[tuple[str, bytes]] = []
    if draft.content_type is not None:
        headers.append(("Content-Type", _header_bytes(draft.content_type)))
    if draft.content_encoding is not None:
        headers.append(("Content-Encoding", draft.content_encoding.encode("ascii")))
        if draft.content_encoding == "gzip":
            body = gzip.compress(body)
    if payload_id is not None:
        headers.append(("X-Payload-ID", _header_bytes(payload_id)))
    if key_header is not None:
        headers.append(("X-Public-Key", _header_bytes(key_header)))
    if draft.tier is not None:
        headers.append(("X-Security-Tier", _header_bytes(draft.tier)))
    if authorization is not None:
        headers.append(("Authorization", _header_bytes(authorization)))
    if draft.repeat is not None:
        headers += [(name, value) for name, value in headers if name == draft.repeat]
    return Prepared(
        draft=draft,
        headers=tuple(headers),
        body=body,
        payload_id=payload_id.decode("latin-1") if isinstance(payload_id, bytes) else payload_id,
        tier=draft.tier,
        client_private=keyring.private(draft.client_key),
        key_header=key_header.decode("latin-1") if isinstance(key_header, bytes) else key_header,
        sealed=sealed,
        plaintext=plaintext,
    )


def pad(plaintext: bytes, size: int) -> bytes:
    """The chat plaintext grown to exactly `size` bytes by a system message of padding."""
    obj = json.loads(plaintext)
    obj["messages"] = [{"role": "system", "content": ""}, *obj["messages"]]
    text = json.dumps(obj).encode("utf-8")
    obj["messages"][0]["content"] = "x" * (size - len(text))
    out = json.dumps(obj).encode("utf-8")
    assert len(out) == size, "padding must land on the size exactly"
    return out


def _flip(text: str) -> str:
    raw = bytearray(strict_b64decode(text))
    raw[len(raw) // 2] ^= 0x01
    return b64(bytes(raw))


def _tamper(package: dict[str, Any], what: str | None) -> None:
    if what is None:
        return
    if what == "encrypted_aes_key":
        package[what] = _flip(package[what])
    else:
        package["encrypted_payload"][what] = _flip(package["encrypted_payload"][what])


def _parent(package: dict[str, Any], path: str) -> tuple[dict[str, Any], str]:
    *outer, name = path.split(".")
    node = package
    for part in outer:
        node = node[part]
    return node, name


def mutate_b64(text: str, mutation: str) -> str:
    """Break valid base64 one way (SRV-10): `kind` or `kind:position`."""
    kind, _, where = mutation.partition(":")
    pos = int(where) % (len(text) + 1) if where else len(text) // 2
    if kind == "bad-char":
        return text[:pos] + "!" + text[pos:]
    if kind == "urlsafe":
        return text[:pos] + "-_" + text[pos:]
    if kind == "newline":
        return text[:pos] + "\n" + text[pos:]
    if kind == "space":
        return text[:pos] + " " + text[pos:]
    if kind == "no-padding":
        stripped = text.rstrip("=")
        return stripped if stripped != text else text[:-1]  # no padding: cut a character
    if kind == "extra-padding":
        return text + "=="
    raise ValueError(f"unknown base64 mutation {mutation!r}")


def _edit(package: dict[str, Any], op: str, path: str, arg: str) -> None:
    node, name = _parent(package, path)
    if op == "set":
        node[name] = json.loads(arg)
    elif op == "remove":
        node.pop(name, None)
    elif op == "b64":
        node[name] = mutate_b64(node[name], arg)
    elif op == "resize":
        node[name] = b64(os.urandom(int(arg)))
    else:
        raise ValueError(f"unknown package edit {op!r}")


def serialise(package: dict[str, Any], duplicate: str | None = None) -> str:
    """JSON text of a package; `duplicate` ("a" or "a.b") writes that member twice (SRV-20)."""
    if duplicate is None:
        return json.dumps(package)
    first, _, inner = duplicate.partition(".")

    def obj(node: dict[str, Any], twice: str, nested: str) -> str:
        pairs = []
        for key, value in node.items():
            text = (obj(value, nested, "") if key == twice and nested
                    else json.dumps(value))
            pairs.append(f"{json.dumps(key)}: {text}")
            if key == twice and not nested:
                pairs.append(f"{json.dumps(key)}: {text}")
        return "{" + ", ".join(pairs) + "}"

    return obj(package, first, inner)
