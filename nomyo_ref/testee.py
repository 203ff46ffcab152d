"""The reference testee: nomyo_ref behind the testee protocol (spec/testee.md).

    python -m nomyo_ref.testee

Reads one JSON request per line on stdin, writes one JSON answer per line on stdout; logs go
to stderr only. Built on nomyo_ref's public API alone, exactly as a port in another
language would wrap its own client, so the suite's subprocess path is exercised on every run.

It parses requests as strictly as a JavaScript, Go or Rust testee would (a NaN literal is
refused), so a suite that wrote anything but RFC 8259 JSON would fail its own reference run;
non-finite numbers arrive tagged (`{"$float": "NaN"}`) and are decoded here.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import math
import os
import sys
import warnings
from collections.abc import Awaitable, Callable
from typing import Any

import nomyo_ref
from nomyo_ref import (
    APIConnectionError,
    APIError,
    AuthenticationError,
    ForbiddenError,
    InvalidRequestError,
    RateLimitError,
    SecureChatCompletion,
    SecureCompletionClient,
    SecurityError,
    ServerError,
    ServiceUnavailableError,
)

PROTOCOL = "nomyo-testee/1"
CAPABILITIES = [
    "create", "api_key", "security_tier", "allow_http", "ca_cert", "pinning", "max_retries",
    "retry_backoff", "timeout", "client_reuse", "key_files", "low_level", "warnings",
    "retry_after_cap", "key_dir", "secure_memory", "key_password", "call_overrides",
    "client_describe",
]  # fmt: skip
NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
KINDS: list[tuple[type[BaseException], str]] = [  # most specific first
    (AuthenticationError, "authentication"),
    (InvalidRequestError, "invalid_request"),
    (ForbiddenError, "forbidden"),
    (RateLimitError, "rate_limit"),
    (ServerError, "server"),
    (ServiceUnavailableError, "service_unavailable"),
    (APIConnectionError, "connection"),
    (APIError, "api"),
    (SecurityError, "security"),
    (ValueError, "value"),
]
# ClientConfig field -> keyword of SecureChatCompletion / SecureCompletionClient.
CHAT_OPTIONS = {
    "api_key": "api_key", "secure_memory": "secure_memory", "key_dir": "key_dir",
    "max_retries": "max_retries", "timeout": "timeout", "ca_cert": "ca_bundle",
    "server_key_sha256": "server_key_sha256", "retry_backoff": "retry_backoff",
    "retry_after_cap": "retry_after_cap",
}  # fmt: skip
LOW_LEVEL_OPTIONS = {k: v for k, v in CHAT_OPTIONS.items() if k not in ("api_key", "key_dir")}

log = logging.getLogger("nomyo_ref.testee")


class Unsupported(Exception):
    """An operation this testee does not implement."""


class ProtocolError(Exception):
    """A request line that breaks the testee protocol (answered as kind internal)."""


def _refuse_constant(name: str) -> Any:
    raise ProtocolError(f'{name} is not RFC 8259 JSON; the suite sends {{"$float": ...}}')


def decode(value: Any) -> Any:
    """Undo the suite's tags: {"$float": "NaN"} is the number, {"$object": {...}} the object."""
    if isinstance(value, list):
        return [decode(item) for item in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        ((key, item),) = value.items()
        if key == "$float" and item in NON_FINITE:
            return NON_FINITE[item]
        if key == "$object" and isinstance(item, dict):
            return {k: decode(v) for k, v in item.items()}
    return {k: decode(v) for k, v in value.items()}


def encode(value: Any) -> Any:
    """Tag non-finite numbers in an answer, so it stays RFC 8259 JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        name = "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
        return {"$float": name}
    if isinstance(value, dict):
        out = {str(k): encode(v) for k, v in value.items()}
        if len(out) == 1 and next(iter(out)) in ("$float", "$object"):
            return {"$object": out}
        return out
    if isinstance(value, (list, tuple)):
        return [encode(item) for item in value]
    return value


class Testee:
    """State of one testee process: its client handles."""

    def __init__(self) -> None:
        self.handles: dict[str, Any] = {}
        self.counter = 0

    def _keep(self, obj: Any) -> str:
        self.counter += 1
        handle = f"c{self.counter}"
        self.handles[handle] = obj
        return handle

    def _get(self, handle: Any) -> Any:
        if handle not in self.handles:
            raise KeyError(f"unknown client handle {handle!r}")  # a suite bug: internal
        return self.handles[handle]

    @staticmethod
    def _options(config: dict[str, Any], table: dict[str, str]) -> dict[str, Any]:
        options: dict[str, Any] = {"allow_http": bool(config.get("allow_http", False))}
        for field, keyword in table.items():
            if config.get(field) is not None:
                options[keyword] = config[field]
        return options

    def _chat(self, config: dict[str, Any]) -> SecureChatCompletion:
        return SecureChatCompletion(config["base_url"], **self._options(config, CHAT_OPTIONS))

    async def op_hello(self, req: dict[str, Any]) -> Any:
        if req.get("protocol") != PROTOCOL:
            raise ValueError(f"this testee speaks {PROTOCOL}, not {req.get('protocol')!r}")
        return {
            "name": "nomyo_ref",
            "version": nomyo_ref.__version__,
            "language": "python",
            "protocol": PROTOCOL,
            "capabilities": CAPABILITIES,
        }

    async def op_client_open(self, req: dict[str, Any]) -> Any:
        return {"client": self._keep(self._chat(req["config"]))}

    async def op_client_close(self, req: dict[str, Any]) -> Any:
        obj = self.handles.pop(req.get("client"), None)
        if obj is not None:
            await obj.aclose()
        return {}

    async def op_client_describe(self, req: dict[str, Any]) -> Any:
        chat = self._get(req["client"])
        forms = [repr(chat), str(chat)]
        inner = getattr(chat, "client", None)  # the SecureCompletionClient it drives
        if inner is not None:
            forms += [repr(inner), str(inner)]
        return forms

    async def op_create(self, req: dict[str, Any]) -> Any:
        kwargs = req.get("kwargs") or {}
        if req.get("client") is not None:
            return await self._get(req["client"]).create(req["model"], req["messages"], **kwargs)
        chat = self._chat(req["config"])
        try:
            return await chat.create(req["model"], req["messages"], **kwargs)
        finally:
            await chat.aclose()

    async def op_keys_generate(self, req: dict[str, Any]) -> Any:
        directory = req["directory"]
        client = SecureCompletionClient()
        client.generate_keys(save_to_file=True, key_dir=directory, password=req.get("password"))
        await client.aclose()
        return {
            "private_key_path": os.path.join(directory, "private_key.pem"),
            "public_key_path": os.path.join(directory, "public_key.pem"),
        }

    async def op_keys_load(self, req: dict[str, Any]) -> Any:
        client = SecureCompletionClient()
        client.load_keys(req["private_key_path"], req.get("public_key_path"), req.get("password"))
        await client.aclose()
        return {"public_key_pem": client.public_key_pem}

    async def op_encrypt_payload(self, req: dict[str, Any]) -> Any:
        if req.get("client") is not None:
            handle = req["client"]
            client = self._get(handle)
        else:
            config = req["config"]
            client = SecureCompletionClient(
                config["base_url"], **self._options(config, LOW_LEVEL_OPTIONS)
            )
            client.generate_keys()
            handle = self._keep(client)
        body = await client.encrypt_payload(req["payload"])
        return {
            "body_b64": base64.b64encode(body).decode("ascii"),
            "public_key_pem": client.public_key_pem,
            "client": handle,
        }

    async def op_decrypt_response(self, req: dict[str, Any]) -> Any:
        client = self._get(req["client"])
        body = base64.b64decode(req["body_b64"])
        return await client.decrypt_response(body, req["payload_id"])

    async def op_shutdown(self, req: dict[str, Any]) -> Any:
        return {}

    def handler(self, op: str) -> Callable[[dict[str, Any]], Awaitable[Any]]:
        method = getattr(self, "op_" + op.replace(".", "_"), None)
        if method is None:
            raise Unsupported(f"operation {op!r} is not supported by this testee")
        return method  # type: ignore[no-any-return]


def error_of(exc: BaseException) -> dict[str, Any]:
    kind = "internal"
    if isinstance(exc, Unsupported):
        kind = "unsupported"
    else:
        for klass, name in KINDS:
            if isinstance(exc, klass):
                kind = name
                break
    message = getattr(exc, "message", None)
    details = getattr(exc, "error_details", None)
    status = getattr(exc, "status_code", None)
    return {
        "kind": kind,
        "message": message if isinstance(message, str) else str(exc),
        "status_code": status if isinstance(status, int) else None,
        "details": details if isinstance(details, (dict, list, str)) else None,
        "type": f"{type(exc).__module__}.{type(exc).__qualname__}",
    }


async def answer(testee: Testee, line: bytes) -> tuple[dict[str, Any], str | None]:
    """The reply to one request line, and the request's op."""
    try:
        try:
            req = json.loads(line, parse_constant=_refuse_constant)
        except ValueError as exc:
            raise ProtocolError(f"a request line is not JSON: {exc}") from None
        if not isinstance(req, dict):
            raise ProtocolError("a request must be a JSON object")
        req = decode(req)
    except ProtocolError as exc:
        return {"id": None, "ok": False, "error": error_of(exc), "warnings": []}, None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = await testee.handler(str(req.get("op")))(req)
            reply: dict[str, Any] = {"id": req.get("id"), "ok": True, "result": result}
        except Exception as exc:
            log.debug("op %s failed with %s", req.get("op"), type(exc).__name__)
            reply = {"id": req.get("id"), "ok": False, "error": error_of(exc)}
    reply["warnings"] = [f"{w.category.__name__}: {w.message}" for w in caught]
    return reply, str(req.get("op"))


async def serve(stdin: Any, stdout: Any) -> None:
    testee = Testee()
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, stdin.readline)
        if not line:
            break
        if not line.strip():
            continue
        reply, op = await answer(testee, line)
        text = json.dumps(encode(reply), default=repr, allow_nan=False, ensure_ascii=False)
        stdout.write(text.encode("utf-8") + b"\n")
        stdout.flush()
        if op == "shutdown":
            break
    for obj in list(testee.handles.values()):
        await obj.aclose()


def main() -> None:
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)  # stdout is the protocol
    asyncio.run(serve(sys.stdin.buffer, sys.stdout.buffer))


if __name__ == "__main__":
    main()
