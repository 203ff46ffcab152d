"""The pure retry policy and the best-effort secure memory helpers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nomyo_ref import secure_memory
from nomyo_ref.retry import RetryPolicy, is_retryable_status, parse_retry_after


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_retryable_statuses(status: int) -> None:
    assert is_retryable_status(status)


@given(st.integers(100, 599).filter(lambda s: s not in {429, 500, 502, 503, 504}))
def test_everything_else_is_final(status: int) -> None:
    assert not is_retryable_status(status)


@pytest.mark.parametrize(("value", "expected"), [
    (None, None), ("", None), ("0", 0.0), ("12", 12.0), (" 3 ", 3.0), ("-1", None),
    ("1.5", None), ("abc", None), ("Wed, 21 Oct 2015 07:28:00 GMT", None), ("١٢", None),
    ("99999999999999999999", 1e9), ("+5", None), ("5s", None),
])
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value) == expected


@given(attempt=st.integers(1, 10), jitter=st.floats(0, 1, exclude_max=True),
       backoff=st.floats(0, 5))
def test_backoff_is_exponential_with_at_most_half_jitter(attempt: int, jitter: float,
                                                         backoff: float) -> None:
    policy = RetryPolicy(max_retries=10, backoff=backoff)
    base = backoff * 2 ** (attempt - 1)
    delay = policy.delay(attempt, jitter)
    assert base <= delay <= base * 1.5 + 1e-9
    assert policy.delay(attempt, 0.0) == base


@given(retry_after=st.floats(0, 1e6), cap=st.floats(0, 100), jitter=st.floats(0, 1))
def test_retry_after_replaces_the_delay_and_is_capped(retry_after: float, cap: float,
                                                      jitter: float) -> None:
    policy = RetryPolicy(retry_after_cap=cap, backoff=1000.0)
    assert policy.delay(1, jitter, retry_after) == min(retry_after, cap)


def test_retry_budget() -> None:
    assert [RetryPolicy(max_retries=2).may_retry(n) for n in range(4)] == \
        [True, True, False, False]
    assert not RetryPolicy(max_retries=0).may_retry(0)
    for bad in [-1, 1.0, True, "2", None]:
        with pytest.raises(ValueError, match="max_retries"):
            RetryPolicy(max_retries=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="attempt"):
        RetryPolicy().delay(0, 0.0)


def test_protected_buffer_is_zeroed_even_on_error() -> None:
    buf = bytearray(b"secret plaintext" * 100)
    def use_and_fail() -> None:
        with secure_memory.protected(buf):
            assert buf.startswith(b"secret")
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        use_and_fail()
    assert buf == bytearray(len(buf))


def test_secure_memory_off_leaves_the_buffer() -> None:
    buf = bytearray(b"data")
    with secure_memory.protected(buf, enabled=False):
        pass
    assert buf == b"data"


def test_locking_never_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    buf = bytearray(b"x" * 10)
    result = secure_memory.lock(buf)
    assert isinstance(result, bool)
    secure_memory.unlock(buf)

    def refuse(address: int, length: int) -> bool:
        raise OSError("locked memory limit")

    monkeypatch.setattr(secure_memory, "_LOCKER", (refuse, refuse))
    assert secure_memory.lock(buf) is False
    with secure_memory.protected(buf):
        pass
    assert buf == bytearray(10)
    monkeypatch.setattr(secure_memory, "_LOCKER", None)
    assert secure_memory.lock(bytearray(b"y")) is False
    assert not secure_memory.locking_available()
    assert secure_memory.lock(bytearray()) is False
