"""The Python public surface of the seed (capability python_api): names, signatures, types.

The risk: code written against the seed's API reference (positional arguments, keyword
names, `except APIError`, `await client.create(...)`) breaks, or worse, silently behaves
differently, on a port whose surface drifts. These checks read `impl.module` with `inspect`.
"""

from __future__ import annotations

import inspect
import warnings
from typing import Any

import pytest

from conformance import expect
from conformance.checks._support import (
    MODEL,
    expect_kind,
    messages,
    nothing_sent,
    payload_of,
    posts,
    sent_posts,
)
from mock_router import Scenario

EXCEPTIONS = (
    "APIError",
    "AuthenticationError",
    "InvalidRequestError",
    "APIConnectionError",
    "RateLimitError",
    "ForbiddenError",
    "ServerError",
    "ServiceUnavailableError",
    "SecurityError",
)
STATUS_DEFAULTS = {
    "AuthenticationError": 401,
    "InvalidRequestError": 400,
    "RateLimitError": 429,
    "ForbiddenError": 403,
    "ServerError": 500,
    "ServiceUnavailableError": 503,
}


def _attr(impl: Any, name: str) -> Any:
    """A class of the port's package; a same-named submodule (the official client's layout,
    nomyo.SecureCompletionClient.SecureCompletionClient) is looked into."""
    value = getattr(impl.module, name, None)
    if inspect.ismodule(value):
        value = getattr(value, name, None)
    expect.true(inspect.isclass(value), f"class {impl.module.__name__}.{name}", value)
    return value


def _params(func: Any) -> list[tuple[str, Any]]:
    """(name, default) of the leading positional-or-keyword parameters, self excluded."""
    out = []
    for p in inspect.signature(func).parameters.values():
        if p.name == "self":
            continue
        if p.kind is not inspect.Parameter.POSITIONAL_OR_KEYWORD:
            break
        out.append((p.name, None if p.default is inspect.Parameter.empty else p.default))
    return out


def _starts_with(func: Any, expected: list[tuple[str, Any]], what: str) -> None:
    found = _params(func)[: len(expected)]
    expect.equal(found, expected, f"leading parameters (name, default) of {what}")


@pytest.mark.req("API-1")
@pytest.mark.requires("python_api")
def test_exports(impl: Any) -> None:
    """Evidence: client behaviour. SecureChatCompletion and the nine exception classes are
    importable from the package."""
    for name in ("SecureChatCompletion", *EXCEPTIONS):
        _attr(impl, name)


@pytest.mark.req("API-2", "API-16")
@pytest.mark.requires("python_api")
def test_secure_chat_completion_signature(impl: Any) -> None:
    """Evidence: client behaviour. SecureChatCompletion(base_url="https://api.nomyo.ai",
    allow_http=False, api_key=None,
    secure_memory=True), plus keywords key_dir=None and max_retries=2."""
    cls = _attr(impl, "SecureChatCompletion")
    with expect.clause("API-2"):
        _starts_with(
            cls.__init__,
            [
                ("base_url", "https://api.nomyo.ai"),
                ("allow_http", False),
                ("api_key", None),
                ("secure_memory", True),
            ],
            "SecureChatCompletion",
        )
    params = inspect.signature(cls.__init__).parameters
    for name, default in (("key_dir", None), ("max_retries", 2)):
        with expect.clause("API-16"):
            expect.true(
                name in params and params[name].default == default,
                f"keyword {name}={default!r}",
                params.get(name),
            )


@pytest.mark.req("API-3", "API-4")
@pytest.mark.requires("python_api")
def test_create_and_acreate_are_coroutines(impl: Any) -> None:
    """Evidence: client behaviour. create(model, messages, **kwargs) and acreate(...) are
    coroutine functions."""
    cls = _attr(impl, "SecureChatCompletion")
    for name, rid in (("create", "API-3"), ("acreate", "API-4")):
        with expect.clause(rid):
            method = getattr(cls, name, None)
            expect.true(inspect.iscoroutinefunction(method), f"{name} a coroutine function", method)
            params = list(inspect.signature(method).parameters.values())
            names = [p.name for p in params if p.name != "self"]
            expect.equal(names[:2], ["model", "messages"], f"parameters of {name}")
            expect.true(
                any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params),
                f"{name} to accept **kwargs",
                names,
            )


@pytest.mark.req("API-6", "API-7", "API-8")
@pytest.mark.requires("python_api")
def test_secure_completion_client_signatures(impl: Any) -> None:
    """Evidence: client behaviour.
    SecureCompletionClient(router_url="https://api.nomyo.ai:12434", allow_http=False);
    generate_keys(save_to_file=False, key_dir="client_keys", password=None) and
    load_keys(private_key_path, public_key_path=None, password=None) are plain methods."""
    cls = _attr(impl, "SecureCompletionClient")
    with expect.clause("API-6"):
        _starts_with(
            cls.__init__,
            [("router_url", "https://api.nomyo.ai:12434"), ("allow_http", False)],
            "SecureCompletionClient",
        )
    expected = {
        "generate_keys": (
            "API-7",
            [("save_to_file", False), ("key_dir", "client_keys"), ("password", None)],
        ),
        "load_keys": (
            "API-8",
            [("private_key_path", None), ("public_key_path", None), ("password", None)],
        ),
    }
    for name, (rid, params) in expected.items():
        with expect.clause(rid):
            _starts_with(getattr(cls, name), params, name)
            expect.true(
                not inspect.iscoroutinefunction(getattr(cls, name)),
                f"{name} a plain method",
                "a coroutine function",
            )


@pytest.mark.req("API-9", "API-10", "API-11", "API-12")
@pytest.mark.requires("python_api")
def test_low_level_methods_are_coroutines(impl: Any) -> None:
    """Evidence: client behaviour. fetch_server_public_key(), encrypt_payload(payload),
    decrypt_response(encrypted_response,
    payload_id) and send_secure_request(payload, payload_id, api_key=None,
    security_tier=None) are coroutine functions with the seed's parameters."""
    cls = _attr(impl, "SecureCompletionClient")
    expected = {
        "fetch_server_public_key": ("API-9", []),
        "encrypt_payload": ("API-10", [("payload", None)]),
        "decrypt_response": ("API-11", [("encrypted_response", None), ("payload_id", None)]),
        "send_secure_request": (
            "API-12",
            [("payload", None), ("payload_id", None), ("api_key", None), ("security_tier", None)],
        ),
    }
    for name, (rid, params) in expected.items():
        with expect.clause(rid):
            method = getattr(cls, name, None)
            expect.true(inspect.iscoroutinefunction(method), f"{name} a coroutine function", method)
            _starts_with(method, params, name)


@pytest.mark.req("API-13", "API-15")
@pytest.mark.requires("python_api")
def test_exception_constructors_and_attributes(impl: Any) -> None:
    """Evidence: client behaviour. APIError(message, status_code=None, error_details=None)
    keeps its arguments; each
    subclass defaults status_code to its status; str() is the message."""
    api_error = _attr(impl, "APIError")
    err = api_error("boom", 418, {"detail": "x"})
    with expect.clause("API-13"):
        _starts_with(
            api_error.__init__,
            [("message", None), ("status_code", None), ("error_details", None)],
            "APIError",
        )
        plain = api_error("boom")
        expect.equal(
            (plain.message, plain.status_code), ("boom", None), "APIError('boom') attributes"
        )
        expect.equal((err.status_code, err.error_details), (418, {"detail": "x"}), "attributes")
        for name, status in STATUS_DEFAULTS.items():
            expect.equal(_attr(impl, name)("m").status_code, status, f"{name}('m').status_code")
    with expect.clause("API-15"):
        expect.equal(str(err), "boom", "str(APIError)")


@pytest.mark.req("API-14")
@pytest.mark.requires("python_api")
def test_exception_hierarchy(impl: Any) -> None:
    """Evidence: client behaviour. Every API exception, APIConnectionError included,
    subclasses APIError (so one `except
    APIError` catches them all); SecurityError does not (it must not be swallowed there)."""
    api_error = _attr(impl, "APIError")
    for name in EXCEPTIONS:
        cls = _attr(impl, name)
        if name == "SecurityError":
            expect.true(
                issubclass(cls, Exception) and not issubclass(cls, api_error),
                "SecurityError outside APIError",
                cls.__mro__,
            )
        elif name != "APIError":
            expect.true(
                issubclass(cls, api_error),
                f"{name} a subclass of APIError",
                [c.__name__ for c in cls.__mro__],
            )


@pytest.mark.req("API-18")
@pytest.mark.requires("python_api")
def test_constructors_do_no_network_io(impl: Any, http_server: Any, router: Any) -> None:
    """Evidence: request. Building a client sends nothing: construction must be cheap and
    side-effect free."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the allow_http warning (TLS-4's check)
        _attr(impl, "SecureChatCompletion")(base_url=http_server.url, allow_http=True)
        _attr(impl, "SecureCompletionClient")(http_server.url, allow_http=True)
    nothing_sent(router, "constructors only")


def _teapot() -> Scenario:
    return Scenario.status(418, {"detail": "scripted"})


def _keys_of_plaintext(seen: Any) -> list[str]:
    payload = payload_of(seen)
    return sorted(payload) if isinstance(payload, dict) else []


@pytest.mark.req("API-5")
@pytest.mark.requires("python_api", "api_key")
def test_create_consumes_api_key_override(call: Any, make_config: Any, router: Any) -> None:
    """Evidence: request. create(..., api_key=...) overrides the instance key, as a header,
    not a parameter of the plaintext."""
    router.push(_teapot())
    call(
        model=MODEL,
        messages=messages(),
        config=make_config(api_key="sk-instance"),
        api_key="sk-override",
    )
    seen = sent_posts(router)[-1]
    expect.equal(seen.headers.get("authorization"), "Bearer sk-override", "Authorization")
    keys = _keys_of_plaintext(seen)
    expect.true("api_key" not in keys, "no api_key in the plaintext", keys)


@pytest.mark.req("API-5")
@pytest.mark.requires("python_api")
def test_create_consumes_base_url_override(
    call: Any, make_config: Any, http_server: Any, router: Any
) -> None:
    """Evidence: request. create(..., base_url=...) sends to that router (the client's own
    URL leads nowhere), and base_url is not a parameter of the plaintext."""
    router.push(_teapot())
    config = make_config(base_url="http://127.0.0.1:9")
    outcome = call(model=MODEL, messages=messages(), config=config, base_url=http_server.url)
    if not posts(router) and outcome.error is not None and outcome.error.kind == "connection":
        raise AssertionError(
            f"expected <a POST to the overriding router>, actual <{outcome}> (the client's "
            "own URL was used)"
        )
    seen = sent_posts(router, "a POST to the overriding router")[-1]
    keys = _keys_of_plaintext(seen)
    expect.true("base_url" not in keys, "no base_url in the plaintext", keys)


@pytest.mark.req("TLS-6")
@pytest.mark.requires("python_api")
def test_base_url_override_obeys_the_https_rule(
    call: Any, make_tls_config: Any, http_server: Any, router: Any
) -> None:
    """Evidence: request, client behaviour. A per-call base_url is held to the same rule:
    an http override on a client without allow_http sends nothing (SecurityError, or
    ValueError if overrides are refused). The client's own base URL leads nowhere, so only
    the override can reach the router; a client that ignored the override (a connection
    error to its own URL) is API-5's failure."""
    config = make_tls_config(base_url="https://127.0.0.1:9")
    outcome = call(model=MODEL, messages=messages(), config=config, base_url=http_server.url)
    nothing_sent(router, "an http base_url override without allow_http")
    if outcome.error is not None and outcome.error.kind == "connection":
        expect.blocked(
            "API-5", "the override was not used (a connection error to the client's URL)"
        )
    expect_kind(outcome, {"security", "value"}, "http base_url override")
