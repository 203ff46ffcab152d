"""Measurement plumbing: figures, medians, key files and a mock router in its own process.

Timing rule: CPU time (``time.process_time``: user + system, all threads of this process) is
the primary measure wherever the cost of one side has to be separated from the other; wall
time is reported beside it. Each figure is the median of several rounds after a warm-up.
"""

from __future__ import annotations

import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Figure:
    """One line of the table: ``measured`` against ``reference`` (a floor or a peer)."""

    id: str
    title: str
    measured: float | None
    reference: float | None
    unit: str
    measured_label: str
    reference_label: str
    target: str  # e.g. "<= 0.5" or ">= 0.6"
    ratio: float | None = None
    met: bool | None = None
    available: bool = True
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.ratio is None and self.measured is not None and self.reference:
            self.ratio = self.measured / self.reference
        if self.met is None and self.ratio is not None:
            op, _, bound = self.target.partition(" ")
            limit = float(bound)
            self.met = self.ratio <= limit if op == "<=" else self.ratio >= limit

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def unavailable(id_: str, title: str, target: str, why: str) -> Figure:
    return Figure(id_, title, None, None, "", "", "", target, available=False, notes=why)


def median(values: list[float]) -> float:
    return statistics.median(values)


def spread(values: list[float]) -> float:
    """Relative spread of the rounds ((max - min) / median), to show how noisy a figure is."""
    mid = statistics.median(values)
    return (max(values) - min(values)) / mid if mid else math.inf


@dataclass
class Sample:
    """Per-operation CPU and wall seconds of one round."""

    cpu: float
    wall: float


def time_ops(fn: Callable[[], object], n: int) -> Sample:
    """Run ``fn`` n times; per-call CPU and wall seconds."""
    c0, w0 = time.process_time(), time.perf_counter()
    for _ in range(n):
        fn()
    return Sample((time.process_time() - c0) / n, (time.perf_counter() - w0) / n)


async def time_async_ops(fn: Callable[[], Any], n: int) -> Sample:
    c0, w0 = time.process_time(), time.perf_counter()
    for _ in range(n):
        await fn()
    return Sample((time.process_time() - c0) / n, (time.perf_counter() - w0) / n)


def medians(samples: list[Sample]) -> Sample:
    return Sample(median([s.cpu for s in samples]), median([s.wall for s in samples]))


# --- keys --------------------------------------------------------------------------------

@dataclass
class BenchKeys:
    """The keys of one run: one client key (shared by every client, so both clients pay the
    same RSA cost) and the router key, both on disk so other processes can load them."""

    directory: Path
    client: rsa.RSAPrivateKey
    router: rsa.RSAPrivateKey

    @property
    def client_key_dir(self) -> Path:
        return self.directory / "client"

    @property
    def router_key_file(self) -> Path:
        return self.directory / "router_key.pem"


def _pkcs8(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _spki(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


@contextmanager
def bench_keys(key_size: int) -> Iterator[BenchKeys]:
    with tempfile.TemporaryDirectory(prefix="nomyo-bench-") as tmp:
        directory = Path(tmp)
        client = rsa.generate_private_key(public_exponent=65537, key_size=key_size)
        router = rsa.generate_private_key(public_exponent=65537, key_size=key_size)
        keys = BenchKeys(directory, client, router)
        keys.client_key_dir.mkdir(mode=0o700)
        private = keys.client_key_dir / "private_key.pem"
        private.touch(mode=0o600)
        private.write_bytes(_pkcs8(client))
        (keys.client_key_dir / "public_key.pem").write_bytes(_spki(client))
        keys.router_key_file.touch(mode=0o600)
        keys.router_key_file.write_bytes(_pkcs8(router))
        yield keys


# --- the mock router in its own process -----------------------------------------------

@dataclass
class RouterProcess:
    url: str
    pid: int


@contextmanager
def router_process(key_file: Path, log_dir: Path) -> Iterator[RouterProcess]:
    """``python -m mock_router --port 0`` with the bench's router key; stopped with SIGINT."""
    out = log_dir / "router.out"
    err = log_dir / "router.err"
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mock_router", "--port", "0", "--key-file", str(key_file),
             # the bench resends one body on purpose: no replay cache (SRV-21) for it
             "--replay-window", "0", "--log-level", "warning"],
            cwd=REPO, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL)
    try:
        url = None
        deadline = time.monotonic() + 60
        while url is None:
            for line in out.read_text(errors="replace").splitlines():
                if "listening on " in line:
                    url = line.split("listening on ", 1)[1].strip()
            if url is None:
                if proc.poll() is not None:
                    raise RuntimeError("mock router exited: " + err.read_text(errors="replace"))
                if time.monotonic() > deadline:
                    raise RuntimeError("mock router did not start in time")
                time.sleep(0.05)
        yield RouterProcess(url, proc.pid)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of another process (Linux /proc), in seconds; NaN when unreadable."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return math.nan
    fields = stat.rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
