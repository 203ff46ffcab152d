"""The exceptions of the seed API, plus the two the deployed service adds.

Every HTTP-level error carries ``message``, ``status_code`` and ``error_details`` so callers
can inspect an answer without parsing text. ``SecurityError`` deliberately is *not* an
``APIError``: a security violation must never be swallowed by a handler written for ordinary
API failures (``except APIError: retry()``).
"""

from __future__ import annotations

from typing import Any


class SecurityError(Exception):
    """A security property failed: HTTPS refused, decryption failed, response not bound to
    the request, server key not matching its pin. Never retried, never downgraded."""


class APIError(Exception):
    """Base class of every error the router (or the way to it) reports."""

    default_status: int | None = None

    def __init__(
        self,
        message: str,
        status_code: int | None = None,
        error_details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = self.default_status if status_code is None else status_code
        self.error_details: dict[str, Any] = {} if error_details is None else error_details

    def __str__(self) -> str:
        return self.message


class InvalidRequestError(APIError):
    """HTTP 400: the router refused the request (bad package, bad parameters, stream=True)."""

    default_status = 400


class AuthenticationError(APIError):
    """HTTP 401: API key missing or wrong."""

    default_status = 401


class ForbiddenError(APIError):
    """HTTP 403: e.g. the model is not allowed for the requested security tier."""

    default_status = 403


class RateLimitError(APIError):
    """HTTP 429: too many requests (retried before it is raised)."""

    default_status = 429


class ServerError(APIError):
    """HTTP 500: the router failed (retried before it is raised)."""

    default_status = 500


class ServiceUnavailableError(APIError):
    """HTTP 503: the inference backend is down (retried before it is raised)."""

    default_status = 503


class APIConnectionError(APIError):
    """The router could not be reached, the connection dropped, or the call timed out.

    ``status_code`` is always None: there was no HTTP answer.
    """

    def __init__(
        self,
        message: str,
        status_code: int | None = None,
        error_details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message, None, error_details)
