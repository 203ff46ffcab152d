"""nomyo_ref: the reference client of the NOMYO secure completion protocol v1.0 (spec 1.0.1).

Public surface (the seed API reference, plus keyword-only options)::

    from nomyo_ref import SecureChatCompletion
    async with SecureChatCompletion(base_url="https://api.nomyo.ai", api_key="...") as chat:
        result = await chat.create("model", [{"role": "user", "content": "hi"}])

Layout: ``protocol`` (sans-IO core), ``crypto`` (hybrid encryption), ``keys`` (key files and
fingerprints), ``urls`` (the HTTPS rule), ``retry`` (retry policy), ``secure_memory``
(best-effort locking and zeroing), ``client`` (SecureCompletionClient, the httpx shell) and
``chat`` (SecureChatCompletion).
"""

from ._version import __version__
from .chat import SecureChatCompletion
from .client import SecureCompletionClient
from .errors import (
    APIConnectionError,
    APIError,
    AuthenticationError,
    ForbiddenError,
    InvalidRequestError,
    RateLimitError,
    SecurityError,
    ServerError,
    ServiceUnavailableError,
)
from .keys import fingerprint

__all__ = [
    "APIConnectionError",
    "APIError",
    "AuthenticationError",
    "ForbiddenError",
    "InvalidRequestError",
    "RateLimitError",
    "SecureChatCompletion",
    "SecureCompletionClient",
    "SecurityError",
    "ServerError",
    "ServiceUnavailableError",
    "__version__",
    "fingerprint",
]
