"""Keys on disk (spec 3.3, KEY-6..KEY-11): atomic saves, modes at every moment, no damage from
wrong passwords or corrupt files.

* A save interrupted at any step (temp file write/fsync, either rename) leaves the previous
  key files byte-identical and loadable as a pair, no temp file behind, and the client's keys
  in memory unchanged.
* While saving, no file holding private key material is ever group- or world-readable
  (checked at every fchmod/fsync/rename during the save), whatever the umask; the final modes
  are 0600/0644 and a created directory 0700.
* A wrong or missing password, a mismatched public key file, or a corrupt/truncated
  private_key.pem raises ValueError and changes nothing: files byte-identical, client keys
  unchanged, nothing overwritten, nothing sent.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

import nomyo_ref.keys
from nomyo_ref import SecureChatCompletion, SecureCompletionClient

PASSWORD = "correct horse battery staple"


@pytest.fixture
def tmp_path() -> Iterator[Path]:
    """A temporary directory on tmpfs when there is one (fsync there costs nothing)."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    directory = Path(tempfile.mkdtemp(prefix="nomyo-rel-keys-", dir=base))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def numbers(key: rsa.RSAPrivateKey | None) -> Any:
    assert key is not None
    return key.private_numbers()


@pytest.fixture
def key_source(monkeypatch: pytest.MonkeyPatch, rel_client_key: rsa.RSAPrivateKey,
               rel_other_key: rsa.RSAPrivateKey) -> list[rsa.RSAPrivateKey]:
    """Key generation hands out the session keys in turn (first A, then B, A, B, ...)."""
    queue = [rel_client_key, rel_other_key]
    count = {"n": 0}

    def generate(key_size: int = 4096) -> rsa.RSAPrivateKey:
        key = queue[count["n"] % 2]
        count["n"] += 1
        return key

    monkeypatch.setattr(nomyo_ref.keys, "generate_private_key", generate)
    return queue


def client() -> SecureCompletionClient:
    return SecureCompletionClient("https://router.test")


# --- atomicity ------------------------------------------------------------------------------

class Interrupt:
    """Wraps an os function so that its n-th call (1-based) raises OSError(ENOSPC)."""

    def __init__(self, real: Callable[..., Any], fail_at: int) -> None:
        self.real = real
        self.fail_at = fail_at
        self.calls = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls == self.fail_at:
            raise OSError(28, "No space left on device (simulated)")
        return self.real(*args, **kwargs)


POINTS = [("fsync", 1), ("fsync", 2), ("replace", 1),
          ("replace", 2)]


@pytest.mark.parametrize(("function", "fail_at"), POINTS)
@pytest.mark.parametrize("password", [None, PASSWORD], ids=["plain", "encrypted"])
def test_interrupted_save_leaves_old_keys_intact(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key_source: list[rsa.RSAPrivateKey],
        function: str, fail_at: int, password: str | None) -> None:
    directory = tmp_path / "keys"
    c = client()
    c.generate_keys(save_to_file=True, key_dir=str(directory), password=password)  # key A
    before = snapshot(directory)
    key_before = numbers(c.private_key)
    interrupt = Interrupt(getattr(os, function), fail_at)
    monkeypatch.setattr(os, function, interrupt)
    with pytest.raises((ValueError, OSError)):
        c.generate_keys(save_to_file=True, key_dir=str(directory), password=password)  # B
    monkeypatch.undo()
    assert interrupt.calls >= fail_at, "the interruption point was never reached"
    assert numbers(c.private_key) == key_before, "the client's keys changed"
    assert sorted(snapshot(directory)) == ["private_key.pem", "public_key.pem"], \
        "a temp file was left behind"
    assert snapshot(directory) == before, "the old key files changed"
    fresh = client()
    fresh.load_keys(directory / "private_key.pem", directory / "public_key.pem", password)
    assert numbers(fresh.private_key) == key_before


# --- modes at every moment ------------------------------------------------------------------

@pytest.mark.parametrize("umask", [0o000, 0o022, 0o077])
@pytest.mark.parametrize("password", [None, PASSWORD], ids=["plain", "encrypted"])
def test_private_key_never_readable_by_others_during_save(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key_source: list[rsa.RSAPrivateKey],
        umask: int, password: str | None) -> None:
    directory = tmp_path / "created" / "keys"
    checks: list[str] = []
    violations: list[str] = []

    def inspect(moment: str) -> None:
        checks.append(moment)
        if not directory.exists():
            return
        for path in directory.iterdir():
            mode = stat.S_IMODE(path.stat().st_mode)
            if b"PRIVATE KEY" in path.read_bytes() and mode & 0o077:
                violations.append(f"{moment}: {path.name} has mode {oct(mode)}")

    def watch(name: str) -> None:
        real = getattr(os, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            inspect(f"before {name}")
            result = real(*args, **kwargs)
            inspect(f"after {name}")
            return result

        monkeypatch.setattr(os, name, wrapper)

    for name in ("fchmod", "chmod", "fsync", "replace", "rename", "close"):
        watch(name)
    real_mkstemp = tempfile.mkstemp

    def mkstemp(*args: Any, **kwargs: Any) -> Any:
        result = real_mkstemp(*args, **kwargs)
        inspect("after mkstemp")
        return result

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    old_umask = os.umask(umask)
    try:
        client().generate_keys(save_to_file=True, key_dir=str(directory), password=password)
        client().generate_keys(save_to_file=True, key_dir=str(directory), password=password)
    finally:
        os.umask(old_umask)
        monkeypatch.undo()
    assert len(checks) > 10, checks  # the watch really saw the save happen
    assert violations == []
    assert stat.S_IMODE((directory / "private_key.pem").stat().st_mode) == 0o600
    assert stat.S_IMODE((directory / "public_key.pem").stat().st_mode) == 0o644
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert sorted(p.name for p in directory.iterdir()) == ["private_key.pem", "public_key.pem"]


# --- wrong passwords and corrupt files change nothing ----------------------------------------

@pytest.fixture
def saved_encrypted(tmp_path: Path, key_source: list[rsa.RSAPrivateKey]
                    ) -> tuple[Path, dict[str, bytes]]:
    directory = tmp_path / "keys"
    client().generate_keys(save_to_file=True, key_dir=str(directory), password=PASSWORD)
    return directory, snapshot(directory)


@pytest.mark.parametrize("password", ["Wr0ng-pw-7731", None, "", "correct horse battery"])
def test_wrong_password_changes_nothing(saved_encrypted: tuple[Path, dict[str, bytes]],
                                        password: str | None) -> None:
    directory, before = saved_encrypted
    c = client()
    c.generate_keys()  # some other key in memory (B)
    key_before = numbers(c.private_key)
    pem_before = c.public_key_pem
    with pytest.raises(ValueError, match=r"private_key\.pem") as info:
        c.load_keys(directory / "private_key.pem", directory / "public_key.pem", password)
    assert "private_key.pem" in str(info.value)
    if password:
        assert password not in str(info.value)
    assert numbers(c.private_key) == key_before
    assert c.public_key_pem == pem_before
    assert snapshot(directory) == before


def test_mismatched_public_key_changes_nothing(tmp_path: Path,
                                               key_source: list[rsa.RSAPrivateKey]) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    client().generate_keys(save_to_file=True, key_dir=str(first))   # A
    client().generate_keys(save_to_file=True, key_dir=str(second))  # B
    before = snapshot(first), snapshot(second)
    c = client()
    c.generate_keys()  # A in memory
    key_before = numbers(c.private_key)
    with pytest.raises(ValueError, match="does not match"):
        c.load_keys(first / "private_key.pem", second / "public_key.pem")
    assert numbers(c.private_key) == key_before
    assert (snapshot(first), snapshot(second)) == before


def corruptions(good: bytes) -> dict[str, bytes]:
    lines = good.splitlines(keepends=True)
    return {
        "garbage": b"\x00\xff not a key at all \x89PNG",
        "empty": b"",
        "truncated": good[: len(good) // 2],
        "header-only": lines[0],
        "flipped-base64": good.replace(lines[3], lines[3][::-1]),
        "public-key-as-private": nomyo_ref.keys.public_pem(
            nomyo_ref.keys.load_private_key.__globals__["serialization"].load_pem_private_key(
                good, None)).encode(),
    }


@pytest.mark.parametrize("kind", ["garbage", "empty", "truncated", "header-only",
                                  "flipped-base64", "public-key-as-private"])
async def test_corrupt_private_key_file_changes_nothing(
        tmp_path: Path, key_source: list[rsa.RSAPrivateKey], kind: str) -> None:
    directory = tmp_path / "keys"
    client().generate_keys(save_to_file=True, key_dir=str(directory))
    private = directory / "private_key.pem"
    private.write_bytes(corruptions(private.read_bytes())[kind])
    before = snapshot(directory)
    # load_keys: ValueError, client unchanged
    c = client()
    c.generate_keys()
    key_before = numbers(c.private_key)
    with pytest.raises(ValueError, match=r"private_key\.pem"):
        c.load_keys(private)
    assert numbers(c.private_key) == key_before
    # SecureChatCompletion(key_dir=...): ValueError naming the file before any network I/O
    # (the URL goes nowhere: reaching the network would be an APIConnectionError instead)
    chat = SecureChatCompletion("https://127.0.0.1:9", key_dir=str(directory), max_retries=0)
    with pytest.raises(ValueError, match=r"private_key\.pem"):
        await chat.create("m", [{"role": "user", "content": "x"}])
    await chat.aclose()
    assert snapshot(directory) == before, "a corrupt key file was overwritten or added to"
