"""Best-effort secure memory for the buffers this package owns.

What it does, when ``secure_memory=True`` (the default):

* the plaintext of a request (its serialised JSON), the AES key of each message and the
  decrypted plaintext of each response are held in ``bytearray`` objects that this package
  creates; while in use their pages are locked in RAM (``mlock`` on POSIX, ``VirtualLock`` on
  Windows, through ``ctypes``) so they are not written to swap, and afterwards the bytes are
  overwritten with zeros and the pages unlocked.

What Python cannot guarantee, and this module does not pretend to:

* ``bytes`` and ``str`` are immutable. Every ``str`` in your ``messages``, the parsed response
  dict, and the AES key returned by the RSA decryption are ordinary objects that live until
  the garbage collector frees them, and their memory is not zeroed when it does.
* OpenSSL (inside ``cryptography``) keeps its own copies of keys and cipher state in memory
  that Python cannot reach.
* The private RSA key lives inside OpenSSL for the client's lifetime.
* Locking is limited by the OS (``RLIMIT_MEMLOCK``, often 64 KiB to 8 MiB); a page shared
  with another locked buffer is unlocked when either is released. When locking is not
  possible the call still succeeds: zeroing alone is done, and a debug record says so.
* Core dumps and a debugger attached to the process see everything.

``secure_memory=False`` switches locking and zeroing off. Nothing here ever makes a call fail.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import mmap
import sys
from collections.abc import Iterator

logger = logging.getLogger("nomyo_ref")

_PAGE = mmap.PAGESIZE


def _load_locker() -> tuple[object, object] | None:
    """Return (lock, unlock) callables taking (address, length), or None when unavailable."""
    try:
        if sys.platform == "win32":
            kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]
            lock, unlock = kernel32.VirtualLock, kernel32.VirtualUnlock
            for fn in (lock, unlock):
                fn.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
                fn.restype = ctypes.c_int
            return (lambda a, n: lock(a, n) != 0), (lambda a, n: unlock(a, n) != 0)
        libc = ctypes.CDLL(None, use_errno=True)
        mlock, munlock = libc.mlock, libc.munlock
        for fn in (mlock, munlock):
            fn.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
            fn.restype = ctypes.c_int
        return (lambda a, n: mlock(a, n) == 0), (lambda a, n: munlock(a, n) == 0)
    except (OSError, AttributeError):
        return None


_LOCKER = _load_locker()


def _page_range(buf: bytearray) -> tuple[int, int] | None:
    """Page-aligned (address, length) covering ``buf``'s storage, or None if empty."""
    if not buf:
        return None
    view = (ctypes.c_char * len(buf)).from_buffer(buf)
    try:
        address = ctypes.addressof(view)
    finally:
        del view  # release the buffer export so the bytearray stays resizable
    start = address - address % _PAGE
    end = address + len(buf)
    return start, end - start


def lock(buf: bytearray) -> bool:
    """Lock ``buf``'s pages in RAM. Returns False (never raises) when the OS refuses."""
    if _LOCKER is None:
        return False
    span = _page_range(buf)
    if span is None:
        return False
    try:
        ok = bool(_LOCKER[0](*span))  # type: ignore[operator]
    except Exception:
        ok = False
    if not ok:
        logger.debug("memory locking unavailable for a %d-byte buffer", len(buf))
    return ok


def unlock(buf: bytearray) -> None:
    """Unlock ``buf``'s pages (best effort)."""
    if _LOCKER is None:
        return
    span = _page_range(buf)
    if span is None:
        return
    with contextlib.suppress(Exception):
        _LOCKER[1](*span)  # type: ignore[operator]


def zero(buf: bytearray) -> None:
    """Overwrite ``buf`` in place with zeros (same length, so no reallocation)."""
    if buf:
        buf[:] = bytes(len(buf))


@contextlib.contextmanager
def protected(buf: bytearray, enabled: bool = True) -> Iterator[bytearray]:
    """Lock ``buf`` while the block runs, then zero and unlock it, whatever happens."""
    locked = lock(buf) if enabled else False
    try:
        yield buf
    finally:
        if enabled:
            zero(buf)
        if locked:
            unlock(buf)


def locking_available() -> bool:
    """True when this platform offers page locking at all (it may still fail per buffer)."""
    return _LOCKER is not None
