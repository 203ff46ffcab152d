"""SecureCompletionClient: the I/O shell around the sans-IO core, on httpx.

One pooled ``httpx.AsyncClient`` per client (TLS always verified, redirects never followed),
the client's RSA keys made or loaded once under a lock, the server key fetched once under a
lock and cached (re-fetched once after a 400 to notice a rotation, after an hour, and after a
call that exhausted its retries on 5xx answers or network failures, so a stale key cannot
wedge the client), optional pinning of the server key, bounded retries with exponential
backoff, jitter and a capped ``Retry-After`` (every attempt encrypted anew), and response
bodies read with a cap so a huge answer cannot exhaust memory.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import os
import random
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric import rsa

from . import crypto, keys, protocol, secure_memory
from ._version import __version__
from .errors import APIConnectionError, APIError, SecurityError
from .retry import RetryPolicy, is_retryable_status, parse_retry_after
from .urls import normalise_base_url

logger = logging.getLogger("nomyo_ref")

DEFAULT_ROUTER_URL = "https://api.nomyo.ai:12434"

_jitter_source = random.SystemRandom()


def _check_timeout(timeout: object) -> float:
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) \
            or not math.isfinite(timeout) or timeout <= 0:
        raise ValueError("timeout must be a positive number of seconds")
    return float(timeout)


def _tls_context(ca_bundle: str | os.PathLike[str] | None) -> ssl.SSLContext:
    """A verifying TLS context (TLS 1.2 or newer): the system trust store, or exactly the
    certificates of ``ca_bundle`` when one is given. There is no way to turn verification off.

    Building a context loads the whole trust store (~30 ms), so contexts are shared: one per
    trust source, keyed by the bundle's path and modification time so an edited bundle is
    read again. An SSLContext is safe to share between clients.
    """
    if ca_bundle is None:
        return _cached_tls_context(None, 0)
    path = Path(ca_bundle)
    try:
        mtime = path.stat().st_mtime_ns
    except OSError as exc:
        raise ValueError(f"cannot load CA bundle {str(path)!r}: "
                         f"{exc.strerror or type(exc).__name__}") from None
    return _cached_tls_context(str(path.resolve()), mtime)


@functools.lru_cache(maxsize=16)
def _cached_tls_context(cafile: str | None, _mtime_ns: int) -> ssl.SSLContext:
    if cafile is None:
        context = ssl.create_default_context()
    else:
        reason = ""
        try:
            context = ssl.create_default_context(cafile=cafile)
        except (OSError, ssl.SSLError) as exc:
            reason = getattr(exc, "strerror", None) or type(exc).__name__
        if reason:
            raise ValueError(f"cannot load CA bundle {cafile!r}: {reason}")
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def _is_tls_verification_failure(exc: BaseException) -> bool:
    """True when the chain of causes holds a certificate verification error (not retried:
    a wrong certificate does not fix itself)."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            return True
        pending += [current.__cause__, current.__context__]
    return False


class _ConnectionFailure(APIConnectionError):
    """An APIConnectionError that knows whether retrying it makes sense."""

    def __init__(self, message: str, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class SecureCompletionClient:
    """Client of ``POST /v1/chat/secure_completion`` (keys, encryption, transport).

    Usable as ``async with SecureCompletionClient(...) as client:``; otherwise call
    ``await client.aclose()`` when done. The URL is checked here, so a refused URL never
    reaches the network: ``SecurityError`` for http:// without ``allow_http``, ``ValueError``
    for any other scheme, user-info, a missing host or a malformed URL.
    """

    #: Size of the keys ``generate_keys`` makes (4096 bits, as the protocol's clients do).
    key_size: int = keys.DEFAULT_KEY_SIZE

    def __init__(
        self,
        router_url: str = DEFAULT_ROUTER_URL,
        allow_http: bool = False,
        *,
        secure_memory: bool = True,
        max_retries: int = 2,
        timeout: float = 60.0,
        ca_bundle: str | os.PathLike[str] | None = None,
        server_key_sha256: str | Sequence[str] | None = None,
        retry_backoff: float = 1.0,
        retry_after_cap: float = 60.0,
    ) -> None:
        self._policy = RetryPolicy(max_retries, retry_backoff, retry_after_cap)
        self.timeout = _check_timeout(timeout)
        self._verify = _tls_context(ca_bundle)
        self._pin = keys.normalise_pins(server_key_sha256)
        self.allow_http = bool(allow_http)
        self.router_url = normalise_base_url(router_url, allow_http=self.allow_http)
        self.secure_memory = bool(secure_memory)
        self.ca_bundle = ca_bundle
        self.private_key: rsa.RSAPrivateKey | None = None
        self.public_key_pem: str | None = None
        self._server_key: rsa.RSAPublicKey | None = None
        self._server_key_pem: str | None = None
        self._server_key_time = 0.0  # self._clock() when the cached key was fetched
        self._http: httpx.AsyncClient | None = None
        self._keys_lock = asyncio.Lock()
        self._server_key_lock = asyncio.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        # Where SecureChatCompletion keeps its keys (None: in memory only).
        self._key_dir: str | os.PathLike[str] | None = None
        # Seams for tests: how to wait, where jitter comes from, what time it is.
        self._sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep
        self._jitter: Callable[[], float] = _jitter_source.random
        self._clock: Callable[[], float] = time.monotonic

    def __repr__(self) -> str:
        return f"SecureCompletionClient(router_url={self.router_url!r})"

    # --- options, read-only views -------------------------------------------------------

    @property
    def max_retries(self) -> int:
        return self._policy.max_retries

    @property
    def server_key_sha256(self) -> str | tuple[str, ...] | None:
        """The pinned fingerprint (normalised), the pin set when several, or None."""
        if self._pin is None:
            return None
        return self._pin[0] if len(self._pin) == 1 else self._pin

    # --- lifecycle ------------------------------------------------------------------------

    def _bind_loop(self) -> None:
        """Follow the running event loop: pooled connections and locks belong to one loop, so
        a client reused under a new loop (e.g. a second ``asyncio.run``) starts them afresh.
        Cached keys are kept."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            if self._loop is not None:
                logger.debug("event loop changed: new connection pool and locks")
                self._http = None
                self._keys_lock = asyncio.Lock()
                self._server_key_lock = asyncio.Lock()
            self._loop = loop

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(
                timeout=httpx.Timeout(self.timeout),
                verify=self._verify,
                follow_redirects=False,
                headers={"User-Agent": f"nomyo_ref/{__version__}"},
            )
        return self._http

    async def aclose(self) -> None:
        """Close the pooled connections (the client may be used again afterwards)."""
        self._bind_loop()
        http, self._http = self._http, None
        if http is not None:
            await http.aclose()

    async def __aenter__(self) -> SecureCompletionClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # --- the client's keys ----------------------------------------------------------------

    def _install_private_key(self, key: rsa.RSAPrivateKey) -> None:
        self.private_key = key
        self.public_key_pem = keys.public_pem(key)

    def generate_keys(
        self,
        save_to_file: bool = False,
        key_dir: str | os.PathLike[str] = "client_keys",
        password: str | None = None,
    ) -> None:
        """Make a fresh RSA key pair (``key_size`` bits, 4096 by default).

        With ``save_to_file``, writes ``private_key.pem`` (0600, encrypted when a password is
        given) and ``public_key.pem`` (0644) atomically into ``key_dir`` (created 0700). The
        client keeps its old keys if saving fails.
        """
        key = keys.generate_private_key(self.key_size)
        if save_to_file:
            keys.save_key_pair(key, key_dir, password)
        self._install_private_key(key)
        logger.debug("generated a %d-bit client key", key.key_size)

    def load_keys(
        self,
        private_key_path: str | os.PathLike[str],
        public_key_path: str | os.PathLike[str] | None = None,
        password: str | None = None,
    ) -> None:
        """Load the client key pair; the public key file, if given, must match the private.

        ValueError naming the file for a missing/corrupt file, a wrong or missing password,
        a non-RSA key, a key under 2048 bits, or mismatched files; the client is unchanged.
        """
        key = keys.load_private_key(private_key_path, password)
        if public_key_path is not None:
            public = keys.load_public_key(public_key_path)
            if public.public_numbers() != key.public_key().public_numbers():
                raise ValueError(f"public key file {str(public_key_path)!r} does not match "
                                 f"private key file {str(private_key_path)!r}")
        self._install_private_key(key)
        logger.debug("loaded a %d-bit client key", key.key_size)

    def _load_or_create_in_dir(self, key_dir: str | os.PathLike[str]) -> rsa.RSAPrivateKey:
        directory = Path(key_dir)
        private_path = directory / keys.PRIVATE_KEY_FILE
        public_path = directory / keys.PUBLIC_KEY_FILE
        if private_path.exists():
            key = keys.load_private_key(private_path)
            if public_path.exists():
                public = keys.load_public_key(public_path)
                if public.public_numbers() != key.public_key().public_numbers():
                    raise ValueError(f"public key file {str(public_path)!r} does not match "
                                     f"private key file {str(private_path)!r}")
            return key
        key = keys.generate_private_key(self.key_size)
        keys.save_key_pair(key, directory)
        return key

    async def _ensure_keys(self) -> tuple[rsa.RSAPrivateKey, str]:
        """The client key pair, made (or loaded from ``_key_dir``) once, under a lock."""
        self._bind_loop()
        if self.private_key is None:
            async with self._keys_lock:
                if self.private_key is None:
                    if self._key_dir is not None:
                        key = await asyncio.to_thread(self._load_or_create_in_dir,
                                                      self._key_dir)
                    else:
                        key = await asyncio.to_thread(keys.generate_private_key,
                                                      self.key_size)
                    self._install_private_key(key)
        assert self.private_key is not None
        assert self.public_key_pem is not None
        return self.private_key, self.public_key_pem

    # --- transport --------------------------------------------------------------------------

    async def _exchange(self, request: protocol.HTTPRequest, ok_limit: int,
                        oversize: type[Exception] = ValueError
                        ) -> tuple[int, httpx.Headers, bytes]:
        """One HTTP exchange; the body is read with a cap (200: refuse with ``oversize``;
        other statuses: keep one byte more than MAX_ERROR_BYTES, enough for ``error_body`` to
        tell a body it parses from a longer one it treats as text)."""
        try:
            async with self._client().stream(
                request.method, request.url, headers=request.headers, content=request.body
            ) as response:
                status = response.status_code
                limit = ok_limit if status == 200 else protocol.MAX_ERROR_BYTES + 1
                declared = response.headers.get("content-length", "")
                if status == 200 and declared.isdigit() and int(declared) > ok_limit:
                    raise oversize(f"response body too large (over {ok_limit} bytes)")
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.aiter_bytes():
                    chunks.append(chunk)
                    size += len(chunk)
                    if size > limit:
                        if status == 200:
                            raise oversize(f"response body too large (over {ok_limit} "
                                           "bytes)")
                        break
                body = b"".join(chunks)[:limit]
                return status, response.headers, body
        except httpx.TimeoutException:
            raise _ConnectionFailure("request to the router timed out", True) from None
        except httpx.TransportError as exc:
            if _is_tls_verification_failure(exc):
                raise _ConnectionFailure(
                    "TLS certificate verification failed for the router", False) from None
            raise _ConnectionFailure(
                f"cannot reach the router ({type(exc).__name__})", True) from None
        except httpx.HTTPError as exc:
            raise _ConnectionFailure(
                f"could not read the router's answer ({type(exc).__name__})", False) from None

    async def _call(self, make_request: Callable[[], protocol.HTTPRequest], ok_limit: int,
                    oversize: type[Exception] = ValueError,
                    on_exhausted: Callable[[int | None], None] | None = None,
                    ) -> tuple[int, httpx.Headers, bytes]:
        """The exchange with the retry policy applied; returns the last answer.

        ``make_request`` is called for every attempt (so a POST is encrypted anew each time,
        RTY-15). ``on_exhausted`` learns when the call gives up on a retryable condition: the
        status, or None for a network failure or timeout.
        """
        retries = 0
        while True:
            retry_after: float | None = None
            request = make_request()
            try:
                # ``timeout`` bounds the whole attempt, not only each socket operation, so a
                # server trickling bytes cannot hold a call forever.
                status, headers, body = await asyncio.wait_for(
                    self._exchange(request, ok_limit, oversize), self.timeout)
            except asyncio.TimeoutError:
                if not self._policy.may_retry(retries):
                    if on_exhausted is not None:
                        on_exhausted(None)
                    raise APIConnectionError("request to the router timed out") from None
                reason = "timed out"
            except _ConnectionFailure as exc:
                if not exc.retryable:
                    raise APIConnectionError(exc.message) from None
                if not self._policy.may_retry(retries):
                    if on_exhausted is not None:
                        on_exhausted(None)
                    raise APIConnectionError(exc.message) from None
                reason = exc.message
            else:
                if not is_retryable_status(status):
                    return status, headers, body
                if not self._policy.may_retry(retries):
                    if on_exhausted is not None:
                        on_exhausted(status)
                    return status, headers, body
                retry_after = parse_retry_after(headers.get("retry-after"))
                reason = f"HTTP {status}"
            retries += 1
            delay = self._policy.delay(retries, self._jitter(), retry_after)
            logger.info("%s %s: %s; retry %d/%d in %.2fs", request.method,
                           request.url, reason, retries, self._policy.max_retries, delay)
            await self._sleep(delay)

    # --- the server key ---------------------------------------------------------------------

    async def fetch_server_public_key(self) -> str:
        """GET the server's public key (PEM), check it (RSA ≥ 2048 bits, the pin) and cache it.

        SecurityError when the answer is not a usable key (one SubjectPublicKeyInfo PEM, RSA,
        at least 2048 bits) or a pinned fingerprint does not match; the status's APIError for
        a non-200 answer. Resets the cache's age (keys are re-fetched after an hour).
        """
        self._bind_loop()
        request = protocol.build_key_request(self.router_url)
        status, _, body = await self._call(lambda: request, protocol.MAX_KEY_BYTES,
                                           SecurityError)
        key, pem = protocol.parse_server_key(status, body, self._pin)
        if self._server_key_pem is not None and self._server_key_pem != pem:
            logger.info("server public key changed (fingerprint %s)", keys.fingerprint(key))
        self._server_key, self._server_key_pem = key, pem
        self._server_key_time = self._clock()
        return pem

    def _server_key_fresh(self) -> bool:
        """A key is cached and younger than SERVER_KEY_MAX_AGE (DISC-13)."""
        return self._server_key is not None and \
            self._clock() - self._server_key_time < protocol.SERVER_KEY_MAX_AGE

    async def _get_server_key(self) -> tuple[rsa.RSAPublicKey, str]:
        """The cached server key, fetched under a lock when there is none or it is too old."""
        self._bind_loop()
        if not self._server_key_fresh():
            async with self._server_key_lock:
                if not self._server_key_fresh():
                    await self.fetch_server_public_key()
        assert self._server_key is not None
        assert self._server_key_pem is not None
        return self._server_key, self._server_key_pem

    def _drop_server_key(self, used_pem: str, status: int | None) -> None:
        """After a POST gave up on 5xx answers or network failures (DISC-12): forget the
        key it was encrypted to, so the next call fetches the key anew (a server that lost
        or rotated its key must not wedge the client). 429 says nothing about the key; a key
        another call already replaced stays."""
        if status is not None and status < 500:
            return
        if self._server_key_pem == used_pem:
            logger.info("retries exhausted; the cached server key is dropped")
            self._server_key, self._server_key_pem = None, None

    async def _server_key_rotated(self, used_pem: str) -> bool:
        """After a 400: re-fetch the key once; True when it differs from the one we used.

        A pin mismatch propagates (SecurityError); any other failure means "no rotation".
        """
        async with self._server_key_lock:
            if self._server_key_pem is not None and self._server_key_pem != used_pem:
                return True  # another call already noticed the rotation
            try:
                pem = await self.fetch_server_public_key()
            except SecurityError:
                raise
            except (APIError, ValueError) as exc:
                logger.debug("server key re-fetch after 400 failed: %s", type(exc).__name__)
                return False
        return pem != used_pem

    # --- the seed's operations ------------------------------------------------------------

    async def encrypt_payload(self, payload: dict[str, Any]) -> bytes:
        """Encrypt a chat request object to the server's key; returns the package bytes."""
        plaintext = protocol.serialise_payload(payload)
        with secure_memory.protected(plaintext, self.secure_memory):
            server_key, _ = await self._get_server_key()
            return crypto.encrypt_package(plaintext, server_key, secure=self.secure_memory)

    async def decrypt_response(self, encrypted_response: bytes, payload_id: str, *,
                               security_tier: str | None = None) -> dict[str, Any]:
        """Decrypt a response package and check it answers ``payload_id``.

        ValueError for a malformed package (checked before decryption), one opaque
        SecurityError for any cryptographic failure, SecurityError when the plaintext is not
        a JSON object or its ``_metadata.payload_id`` differs from ``payload_id`` (or, when
        ``security_tier`` is given, its ``_metadata.security_tier`` differs from it).
        """
        if not isinstance(payload_id, str):
            raise ValueError("payload_id must be a string")
        protocol.check_security_tier(security_tier)
        if self.private_key is None:
            protocol.parse_package(encrypted_response)
            raise SecurityError("no client private key: call generate_keys() or load_keys()")
        return protocol.open_response(encrypted_response, payload_id, self.private_key,
                                      secure=self.secure_memory, security_tier=security_tier)

    async def send_secure_request(
        self,
        payload: dict[str, Any],
        payload_id: str,
        api_key: str | None = None,
        security_tier: str | None = None,
    ) -> dict[str, Any]:
        """Encrypt ``payload``, POST it, and return the decrypted, checked completion.

        Everything the caller controls is validated before any byte is sent (tier, header
        values, payload id, payload size). Every attempt is encrypted anew with the same
        headers (RTY-15, TIER-5). Retries per the policy; on a 400 the server key is
        re-fetched once and, if it rotated, the request is encrypted to the new key and sent
        once more. When a tier was asked for, the answer must confirm it (TIER-9).
        """
        tier = protocol.check_security_tier(security_tier)
        token = protocol.check_api_key(api_key)
        protocol.check_payload_id(payload_id)
        plaintext = protocol.serialise_payload(payload)
        with secure_memory.protected(plaintext, self.secure_memory):
            private_key, public_pem = await self._ensure_keys()
            server_key, used_pem = await self._get_server_key()
            rotation_checked = False
            while True:
                attempt = functools.partial(
                    protocol.encrypt_chat_request, self.router_url, plaintext, server_key,
                    payload_id, public_pem, token, tier, secure=self.secure_memory)
                status, _, body = await self._call(
                    attempt, protocol.MAX_RESPONSE_BYTES,
                    on_exhausted=functools.partial(self._drop_server_key, used_pem))
                logger.debug("secure completion %s: HTTP %d", payload_id, status)
                if status == 200:
                    return protocol.open_response(body, payload_id, private_key,
                                                  secure=self.secure_memory,
                                                  security_tier=tier)
                error = protocol.error_for_status(status, body, token)
                if status == 400 and not rotation_checked:
                    rotation_checked = True
                    if await self._server_key_rotated(used_pem):
                        server_key, used_pem = await self._get_server_key()
                        logger.info("server key rotated; resending %s once", payload_id)
                        continue
                raise error
