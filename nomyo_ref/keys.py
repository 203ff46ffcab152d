"""RSA key material: generate, load, save, check, fingerprint.

Saved keys follow the protocol's rules: ``private_key.pem`` is PKCS#8 PEM created with mode
0600 from the first byte (``os.open(..., 0o600)``, never group/world readable at any moment),
optionally encrypted with the best available PEM encryption; ``public_key.pem`` is
SubjectPublicKeyInfo PEM, mode 0644; a key directory this module creates gets mode 0700.
Writes are atomic: each file is written to a temporary file in the same directory, fsynced and
renamed over the old one only after both were written, so a failed save leaves the old files
intact. Error messages name the file, never the key or the password.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from .crypto import oaep_sha256

DEFAULT_KEY_SIZE = 4096
MIN_KEY_SIZE = 2048
PUBLIC_EXPONENT = 65537
PRIVATE_KEY_FILE = "private_key.pem"
PUBLIC_KEY_FILE = "public_key.pem"

Password = str | bytes | None


def generate_private_key(key_size: int = DEFAULT_KEY_SIZE) -> rsa.RSAPrivateKey:
    """A fresh RSA key (exponent 65537); refuses sizes under 2048 bits."""
    if not isinstance(key_size, int) or key_size < MIN_KEY_SIZE:
        raise ValueError(f"RSA key size must be at least {MIN_KEY_SIZE} bits")
    return rsa.generate_private_key(public_exponent=PUBLIC_EXPONENT, key_size=key_size)


def public_pem(key: rsa.RSAPublicKey | rsa.RSAPrivateKey) -> str:
    """SubjectPublicKeyInfo PEM text of a key (of its public half for a private key)."""
    public = key.public_key() if isinstance(key, rsa.RSAPrivateKey) else key
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def fingerprint(key: rsa.RSAPublicKey | rsa.RSAPrivateKey) -> str:
    """Lower-case hex SHA-256 of the DER SubjectPublicKeyInfo (the pinning fingerprint)."""
    public = key.public_key() if isinstance(key, rsa.RSAPrivateKey) else key
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


_HEX64 = re.compile(r"[0-9a-f]{64}")


def normalise_fingerprint(text: str) -> str:
    """Accept a fingerprint in any case, with or without ``:`` separators; return 64 hex."""
    if not isinstance(text, str):
        raise ValueError("server_key_sha256 must be a string of 64 hex digits")
    value = text.strip().replace(":", "").lower()
    if not _HEX64.fullmatch(value):
        raise ValueError("server_key_sha256 must be 64 hex digits (SHA-256 of the DER SPKI)")
    return value


def normalise_pins(value: object) -> tuple[str, ...] | None:
    """None, one fingerprint, or a non-empty sequence of them (a pin set, DISC-25: the
    current key and the next one an operator announced before a rotation)."""
    if value is None:
        return None
    if isinstance(value, str):
        return (normalise_fingerprint(value),)
    if isinstance(value, (list, tuple, set, frozenset)):
        if not value:
            raise ValueError("server_key_sha256 is an empty set of fingerprints")
        return tuple(dict.fromkeys(normalise_fingerprint(v) for v in value))
    raise ValueError("server_key_sha256 must be a fingerprint or a sequence of fingerprints")


def check_public_key(key: object, what: str) -> rsa.RSAPublicKey:
    """Require an RSA public key of at least 2048 bits; ValueError naming ``what`` otherwise."""
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError(f"{what} is not an RSA public key")
    if key.key_size < MIN_KEY_SIZE:
        raise ValueError(f"{what} is a {key.key_size}-bit RSA key; at least {MIN_KEY_SIZE} "
                         "bits are required")
    return key


def check_private_key(key: object, what: str) -> rsa.RSAPrivateKey:
    """Require an RSA private key of at least 2048 bits with exponent 65537."""
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"{what} is not an RSA private key")
    check_public_key(key.public_key(), what)
    if key.public_key().public_numbers().e != PUBLIC_EXPONENT:
        raise ValueError(f"{what}: RSA public exponent must be {PUBLIC_EXPONENT}")
    return key


def _password_bytes(password: Password) -> bytes | None:
    if password is None:
        return None
    if isinstance(password, str):
        return password.encode("utf-8") if password else None
    if isinstance(password, bytes | bytearray):
        return bytes(password) if password else None
    raise ValueError("password must be a str, bytes or None")


def parse_public_pem(data: bytes | str, what: str) -> rsa.RSAPublicKey:
    """Parse SPKI PEM text into a checked RSA public key (ValueError naming ``what``)."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    try:
        key = serialization.load_pem_public_key(raw)
    except (ValueError, TypeError, UnicodeError):
        raise ValueError(f"{what} is not a PEM public key") from None
    except Exception:
        raise ValueError(f"{what} is not a supported PEM public key") from None
    return check_public_key(key, what)


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ValueError(f"cannot read {what} {str(path)!r}: {reason}") from None


def load_private_key(path: str | os.PathLike[str], password: Password = None
                     ) -> rsa.RSAPrivateKey:
    """Load and check a PEM private key; a clear ValueError naming the file on any problem."""
    file = Path(path)
    data = _read(file, "private key file")
    secret = _password_bytes(password)
    name = repr(str(file))
    try:
        # OpenSSL's full RSA key check costs ~0.25 s for a 4096-bit key on every load; the
        # pairwise test below proves the key works (what the check is for) in ~3 ms.
        key = serialization.load_pem_private_key(
            data, password=secret, unsafe_skip_rsa_key_validation=True
        )
    except TypeError:
        if secret is None:
            raise ValueError(f"private key file {name} is encrypted: a password is required"
                             ) from None
        raise ValueError(f"private key file {name} is not encrypted: do not give a password"
                         ) from None
    except ValueError:
        if secret is not None and b"ENCRYPTED" in data:
            raise ValueError(f"cannot decrypt private key file {name}: wrong password"
                             ) from None
        raise ValueError(f"private key file {name} is corrupt or not a PEM private key"
                         ) from None
    except Exception:
        raise ValueError(f"private key file {name} holds an unsupported key") from None
    checked = check_private_key(key, f"private key file {name}")
    _pairwise_test(checked, f"private key file {name}")
    return checked


def _pairwise_test(key: rsa.RSAPrivateKey, what: str) -> None:
    """Encrypt a random probe to the public half and decrypt it with the private half.

    Keys are loaded without OpenSSL's slow consistency check, so this is what refuses a key
    whose private numbers do not belong to its public key (a corrupt or tampered file).
    """
    probe = os.urandom(32)
    oaep = oaep_sha256()
    try:
        consistent = key.decrypt(key.public_key().encrypt(probe, oaep), oaep) == probe
    except ValueError:
        consistent = False
    if not consistent:
        raise ValueError(f"{what} is corrupt: its private and public parts do not match")


def load_public_key(path: str | os.PathLike[str]) -> rsa.RSAPublicKey:
    """Load and check a PEM public key file."""
    file = Path(path)
    return parse_public_pem(_read(file, "public key file"), f"public key file {str(file)!r}")


def private_pem(key: rsa.RSAPrivateKey, password: Password = None) -> bytes:
    """PKCS#8 PEM of ``key``, encrypted with the best available scheme when a password is set."""
    secret = _password_bytes(password)
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(secret) if secret
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def _write_temp(directory: Path, data: bytes, mode: int) -> Path:
    """Write ``data`` to a new temp file in ``directory`` created with ``mode``; fsync it."""
    fd, name = tempfile.mkstemp(prefix=".tmp-", suffix=".pem", dir=directory)
    # mkstemp creates with 0600 already; set the final mode explicitly (umask-independent).
    try:
        os.fchmod(fd, mode) if hasattr(os, "fchmod") else os.chmod(name, mode)
        with os.fdopen(fd, "wb") as handle:
            fd = -1
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        if fd != -1:
            os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(name)
        raise
    return Path(name)


def _link_backup(target: Path) -> Path | None:
    """A hard link to ``target`` (no copy of the key bytes), so a pair replaced halfway can be
    put back; None when there is no old file or the file system cannot link."""
    if not target.exists():
        return None
    backup = target.with_name(f".bak-{os.getpid()}-{target.name}")
    with contextlib.suppress(OSError):
        backup.unlink()
    try:
        os.link(target, backup)
    except OSError:
        return None
    return backup


def _restore(backups: dict[Path, Path | None]) -> None:
    """Put the old key files back after a failed save, so the pair on disk still matches.

    A target without an old file is removed again (a half-written new pair must not stay).
    A crash (not an exception) between the two renames can still leave a mismatched pair;
    the private key, the one part that cannot be derived, is complete at every moment.
    """
    for target, backup in backups.items():
        with contextlib.suppress(OSError):
            if backup is not None:
                os.replace(backup, target)
            else:
                target.unlink()


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError, AttributeError):
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def save_key_pair(
    key: rsa.RSAPrivateKey, key_dir: str | os.PathLike[str], password: Password = None
) -> tuple[Path, Path]:
    """Atomically write ``private_key.pem`` (0600) and ``public_key.pem`` (0644).

    Creates ``key_dir`` with mode 0700 when missing. Both files are written to temp files
    first; the old files are replaced only once both temp files are complete.
    """
    directory = Path(key_dir)
    if not directory.exists():
        try:
            directory.mkdir(mode=0o700, parents=True)
            os.chmod(directory, 0o700)
        except OSError as exc:
            raise ValueError(f"cannot create key directory {str(directory)!r}: "
                             f"{exc.strerror or type(exc).__name__}") from None
    elif not directory.is_dir():
        raise ValueError(f"key directory {str(directory)!r} is not a directory")
    private_data = private_pem(key, password)
    public_data = public_pem(key).encode("ascii")
    private_path = directory / PRIVATE_KEY_FILE
    public_path = directory / PUBLIC_KEY_FILE
    temps: list[Path] = []
    backups: dict[Path, Path | None] = {}
    try:
        temps.append(_write_temp(directory, private_data, 0o600))
        temps.append(_write_temp(directory, public_data, 0o644))
        backups = {target: _link_backup(target) for target in (private_path, public_path)}
        os.replace(temps[0], private_path)
        os.replace(temps[1], public_path)
        temps.clear()
    except OSError as exc:
        _restore(backups)
        raise ValueError(f"cannot save keys in {str(directory)!r}: "
                         f"{exc.strerror or type(exc).__name__}") from None
    finally:
        for leftover in [*temps, *(b for b in backups.values() if b is not None)]:
            with contextlib.suppress(OSError):
                leftover.unlink()
    _fsync_dir(directory)
    return private_path, public_path
