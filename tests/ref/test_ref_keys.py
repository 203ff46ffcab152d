"""Key files: modes, passwords, refusals, atomic saves, fingerprints."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

import nomyo_ref.keys as keys
from nomyo_ref import SecureCompletionClient, fingerprint
from tests.ref.conftest import KeyCounter

posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def write_pem(path: Path, key: object, password: bytes | None = None) -> Path:
    enc = (serialization.BestAvailableEncryption(password) if password
           else serialization.NoEncryption())
    path.write_bytes(key.private_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc))
    return path


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


@posix_only
def test_saved_files_have_the_right_modes(tmp_path: Path, client_key: rsa.RSAPrivateKey,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    old = os.umask(0)  # modes must not depend on the umask
    try:
        key_dir = tmp_path / "new" / "client_keys"
        private, public = keys.save_key_pair(client_key, key_dir)
    finally:
        os.umask(old)
    assert mode(key_dir) == 0o700
    assert mode(private) == 0o600
    assert mode(public) == 0o644
    assert private.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert public.read_text() == keys.public_pem(client_key)
    assert sorted(p.name for p in key_dir.iterdir()) == ["private_key.pem", "public_key.pem"]


@posix_only
def test_private_key_is_never_readable_by_others_while_written(
        tmp_path: Path, client_key: rsa.RSAPrivateKey, monkeypatch: pytest.MonkeyPatch) -> None:
    """The private key file is 0600 from creation on: every mode it ever has is 0600."""
    modes: list[int] = []
    real_fdopen, real_fchmod, real_mkstemp = os.fdopen, os.fchmod, tempfile.mkstemp

    def spy_mkstemp(*args: object, **kwargs: object) -> tuple[int, str]:
        fd, name = real_mkstemp(*args, **kwargs)  # type: ignore[call-overload]
        if not modes:
            modes.append(stat.S_IMODE(os.fstat(fd).st_mode))
        return fd, name

    def spy_fchmod(fd: int, mode: int) -> None:
        if len(modes) < 3:
            modes.append(mode)
        real_fchmod(fd, mode)

    def spy_fdopen(fd: int, *args: object, **kwargs: object) -> object:
        if len(modes) < 3:
            modes.append(stat.S_IMODE(os.fstat(fd).st_mode))
        return real_fdopen(fd, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(tempfile, "mkstemp", spy_mkstemp)
    monkeypatch.setattr(os, "fchmod", spy_fchmod)
    monkeypatch.setattr(os, "fdopen", spy_fdopen)
    old = os.umask(0)
    try:
        keys.save_key_pair(client_key, tmp_path)
    finally:
        os.umask(old)
    # creation, every chmod, and the moment the bytes are written: all 0600
    assert len(modes) == 3
    assert set(modes) == {0o600}


def test_password_round_trip_and_refusals(tmp_path: Path, client_key: rsa.RSAPrivateKey
                                          ) -> None:
    private, public = keys.save_key_pair(client_key, tmp_path, "s3cret-pw")
    assert b"ENCRYPTED" in private.read_bytes()
    client = SecureCompletionClient()
    client.load_keys(str(private), str(public), password="s3cret-pw")
    assert client.private_key is not None
    assert fingerprint(client.private_key) == fingerprint(client_key)
    for password, match in [("wrong-pw", "wrong password"), (None, "password is required")]:
        fresh = SecureCompletionClient()
        with pytest.raises(ValueError, match=match) as info:
            fresh.load_keys(str(private), password=password)
        assert str(private) in str(info.value)
        assert "s3cret" not in str(info.value)
        assert "wrong-pw" not in str(info.value)
        assert fresh.private_key is None


def test_password_for_an_unencrypted_key_is_refused(tmp_path: Path,
                                                    client_key: rsa.RSAPrivateKey) -> None:
    private, _ = keys.save_key_pair(client_key, tmp_path)
    with pytest.raises(ValueError, match="not encrypted"):
        keys.load_private_key(private, "pw")


@pytest.mark.parametrize("content", [b"", b"garbage", b"-----BEGIN PRIVATE KEY-----\nAAAA\n"
                                     b"-----END PRIVATE KEY-----\n", b"\x00\xff" * 100])
def test_corrupt_file_is_a_value_error_naming_it(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "private_key.pem"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=r"private_key\.pem"):
        keys.load_private_key(path)


def test_missing_file_is_a_value_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"nope\.pem"):
        SecureCompletionClient().load_keys(str(tmp_path / "nope.pem"))


def test_non_rsa_key_is_refused(tmp_path: Path, ec_key: ec.EllipticCurvePrivateKey) -> None:
    path = write_pem(tmp_path / "ec.pem", ec_key)
    with pytest.raises(ValueError, match="not an RSA"):
        SecureCompletionClient().load_keys(str(path))


def test_inconsistent_private_key_is_refused(tmp_path: Path, client_key: rsa.RSAPrivateKey
                                             ) -> None:
    """Keys load without OpenSSL's slow check, so the pairwise test must catch a key whose
    private numbers do not belong to its modulus (a corrupt or tampered file). OpenSSL
    re-checks a CRT result and falls back to ``d``, so both must be wrong to break it."""
    good = client_key.private_numbers()
    bad = rsa.RSAPrivateNumbers(good.p, good.q, good.d + 2, good.dmp1 + 2, good.dmq1,
                                good.iqmp, good.public_numbers)
    broken = bad.private_key(unsafe_skip_rsa_key_validation=True)
    path = write_pem(tmp_path / "broken.pem", broken)
    client = SecureCompletionClient()
    with pytest.raises(ValueError, match="corrupt"):
        client.load_keys(str(path))
    assert client.private_key is None


def test_small_rsa_key_is_refused(tmp_path: Path, small_key: rsa.RSAPrivateKey) -> None:
    path = write_pem(tmp_path / "small.pem", small_key)
    client = SecureCompletionClient()
    with pytest.raises(ValueError, match="1024-bit"):
        client.load_keys(str(path))
    assert client.private_key is None


def test_mismatched_public_key_file_is_refused(tmp_path: Path, client_key: rsa.RSAPrivateKey,
                                               server_key: rsa.RSAPrivateKey) -> None:
    private, _ = keys.save_key_pair(client_key, tmp_path / "a")
    _, other_public = keys.save_key_pair(server_key, tmp_path / "b")
    client = SecureCompletionClient()
    with pytest.raises(ValueError, match="does not match"):
        client.load_keys(str(private), str(other_public))
    assert client.private_key is None


def test_failed_save_leaves_the_old_files_intact(tmp_path: Path, client_key: rsa.RSAPrivateKey,
                                                 server_key: rsa.RSAPrivateKey,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    keys.save_key_pair(client_key, tmp_path)
    before = snapshot(tmp_path)
    calls = {"n": 0}
    real_fsync = os.fsync

    def failing_fsync(fd: int) -> None:
        calls["n"] += 1
        if calls["n"] == 2:  # the second temp file (the public key) fails
            raise OSError(28, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(ValueError, match="cannot save keys"):
        keys.save_key_pair(server_key, tmp_path)
    assert snapshot(tmp_path) == before  # old files intact, no temp files left behind


def test_failed_generate_and_save_keeps_the_client_unchanged(
        tmp_path: Path, fast_keys: KeyCounter, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    client = SecureCompletionClient()
    with pytest.raises(ValueError, match="not a directory"):
        client.generate_keys(save_to_file=True, key_dir=str(blocker))
    assert client.private_key is None


def test_generate_keys_saves_loadable_files(tmp_path: Path, fast_keys: KeyCounter) -> None:
    client = SecureCompletionClient()
    client.generate_keys(save_to_file=True, key_dir=str(tmp_path / "k"), password="pw")
    other = SecureCompletionClient()
    other.load_keys(str(tmp_path / "k" / "private_key.pem"),
                    str(tmp_path / "k" / "public_key.pem"), "pw")
    assert other.public_key_pem == client.public_key_pem


def test_default_key_size_is_4096() -> None:
    client = SecureCompletionClient()
    client.generate_keys()
    assert client.private_key is not None
    assert client.private_key.key_size == 4096
    assert client.private_key.public_key().public_numbers().e == 65537
    assert client.public_key_pem == keys.public_pem(client.private_key)


def test_fingerprint_is_sha256_of_der_spki(server_key: rsa.RSAPrivateKey) -> None:
    der = server_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    digest = hashes.Hash(hashes.SHA256())
    digest.update(der)
    expected = digest.finalize().hex()
    assert fingerprint(server_key) == expected
    assert fingerprint(server_key.public_key()) == expected
    colons = ":".join(expected[i:i + 2] for i in range(0, 64, 2)).upper()
    assert keys.normalise_fingerprint(colons) == expected
    for bad in ["", "zz" * 32, expected[:-1], expected + "0"]:
        with pytest.raises(ValueError, match="64 hex"):
            keys.normalise_fingerprint(bad)
