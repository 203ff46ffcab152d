"""The six figures. Each returns ``Figure`` objects; ``run`` puts them together.

Method (see also the README section "Benchmarks"):

* Figures 1, 2, 4, 5 talk to a mock router running in its **own process**
  (``python -m mock_router --port 0``), so ``time.process_time()`` of this process is the
  client's CPU alone; wall time per call is reported beside it.
* Figure 3 calls the router's ASGI app directly in this process (no socket, no HTTP client),
  so process CPU time is the router's cost alone.
* Every measured side and its floor/peer are measured **interleaved, round by round**, in the
  same process, and each figure is the median of the rounds after a warm-up: a burst of load
  from elsewhere on the machine hits both sides of a ratio alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import multiprocessing
import re
import resource
import subprocess
import sys
import time
import tracemalloc
import uuid
import warnings
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from cryptography.hazmat.primitives import serialization

from . import workload
from .harness import (
    REPO,
    BenchKeys,
    Figure,
    Sample,
    cores,
    median,
    medians,
    process_cpu_seconds,
    spread,
    time_async_ops,
    time_ops,
    unavailable,
)

MiB = 1024 * 1024


@dataclass
class Config:
    rounds: int = 7
    quick: bool = False
    key_size: int = 4096
    calls: int = 20            # small calls per round (figures 1-3)
    official_calls: int = 8    # official client calls per round (each is much dearer)
    large_sizes: tuple[int, ...] = (1 * MiB, 10 * MiB - 4096)
    workers: int = 2           # client processes of figure 5
    concurrency: int = 4       # concurrent clients per worker process
    duration: float = 6.0      # seconds of figure 5's measured window
    suite_args: list[str] = field(default_factory=list)  # extra pytest args (figure 6)
    suite_timeout: float = 900.0
    only: frozenset[str] = frozenset({"1", "2", "3", "4", "5", "6"})

    @classmethod
    def make(cls, rounds: int | None = None, quick: bool = False, **kw: Any) -> Config:
        cfg = cls(quick=quick, **kw)
        if quick:
            cfg.rounds, cfg.calls, cfg.official_calls, cfg.duration = 3, 8, 3, 3.0
        if rounds is not None:
            cfg.rounds = rounds
        return cfg


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Logging off for both clients while measuring, then put back as it was.

    The official client logs WARNING on every HTTP call; with no handler configured Python
    prints those to stderr. Both clients get logging off, so neither pays for it. Restoring
    matters when the figures run inside another process (the smoke test under pytest).
    """
    loggers = [logging.getLogger(name)
               for name in ("nomyo", "nomyo_ref", "mock_router", "httpx", "uvicorn")]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning)
        for logger in loggers:
            logger.setLevel(logging.CRITICAL)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels, strict=True):
                logger.setLevel(level)


def _ms(seconds: float) -> float:
    return seconds * 1e3


# --- figures 1 and 2: client cost per call -------------------------------------------------

async def _client_calls(cfg: Config, keys: BenchKeys, url: str, router_pid: int
                        ) -> list[Figure]:
    import nomyo

    import nomyo_ref

    key_dir = str(keys.client_key_dir)
    ref = nomyo_ref.SecureChatCompletion(url, allow_http=True, key_dir=key_dir)
    official = nomyo.SecureChatCompletion(base_url=url, allow_http=True, key_dir=key_dir)

    async def ref_call() -> dict[str, Any]:
        return await ref.create(workload.MODEL, workload.SMALL_MESSAGES)

    async def official_call() -> dict[str, Any]:
        return await official.create(workload.MODEL, workload.SMALL_MESSAGES)

    sample = None
    for _ in range(3):  # warm-up: keys loaded, server key cached, connection open, imports
        sample = await ref_call()
        await official_call()
    assert sample is not None
    response_plaintext = json.dumps(sample).encode()
    request_plaintext = json.dumps(workload.small_payload(), separators=(",", ":")).encode()
    floor = workload.ClientCallFloor(keys.client, keys.router.public_key(), request_plaintext,
                                     response_plaintext)
    for _ in range(3):
        floor()
    # A bare httpx POST of a ready package on one reused connection: how much of the client's
    # cost is the HTTP stack alone (not part of the floor, reported beside it).
    bare = httpx.AsyncClient()
    bare_body = workload.seal(request_plaintext, keys.router.public_key())
    bare_headers = {"X-Public-Key": quote(ref.client.public_key_pem or ""),
                    "Content-Type": "application/octet-stream"}

    async def bare_post() -> None:
        answer = await bare.post(url + workload.POST_PATH, content=bare_body,
                                 headers={**bare_headers, "X-Payload-ID": str(uuid.uuid4())})
        answer.raise_for_status()

    await bare_post()

    ref_s: list[Sample] = []
    off_s: list[Sample] = []
    floor_s: list[Sample] = []
    bare_s: list[Sample] = []
    router_cpu: list[float] = []
    for _ in range(cfg.rounds):
        before = process_cpu_seconds(router_pid)
        ref_s.append(await time_async_ops(ref_call, cfg.calls))
        router_cpu.append((process_cpu_seconds(router_pid) - before) / cfg.calls)
        off_s.append(await time_async_ops(official_call, cfg.official_calls))
        floor_s.append(time_ops(floor, 3 * cfg.calls))
        bare_s.append(await time_async_ops(bare_post, cfg.calls))
    await ref.aclose()
    await bare.aclose()
    r, o, f, b = medians(ref_s), medians(off_s), medians(floor_s), medians(bare_s)
    fig1 = Figure(
        "1", "client CPU per small call: nomyo_ref vs official nomyo 0.2.9 (loopback HTTP)",
        _ms(r.cpu), _ms(o.cpu), "ms CPU/call", "nomyo_ref", "official nomyo", "<= 0.5",
        notes=(f"wall/call {_ms(r.wall):.2f} ms vs {_ms(o.wall):.2f} ms (ratio "
               f"{r.wall / o.wall:.2f}); round spread {spread([s.cpu for s in ref_s]):.0%} / "
               f"{spread([s.cpu for s in off_s]):.0%}"),
        extra={"ref_wall_ms": _ms(r.wall), "official_wall_ms": _ms(o.wall),
               "router_process_cpu_ms_per_ref_call": _ms(median(router_cpu)),
               "ref_cpu_rounds_ms": [_ms(s.cpu) for s in ref_s],
               "official_cpu_rounds_ms": [_ms(s.cpu) for s in off_s]})
    fig2 = Figure(
        "2", "client CPU per small call vs its crypto floor (1 RSA priv + 1 RSA pub + 2 GCM)",
        _ms(r.cpu), _ms(f.cpu), "ms CPU/call", "nomyo_ref", "floor", "<= 1.5",
        notes=(f"request {len(request_plaintext)} B, answer {len(response_plaintext)} B "
               f"plaintext; overhead above floor {_ms(r.cpu - f.cpu):.2f} ms/call, of which a "
               f"bare httpx POST of a ready package costs {_ms(b.cpu):.2f} ms "
               f"(floor + bare POST = {_ms(f.cpu + b.cpu):.2f} ms, nomyo_ref / that = "
               f"{r.cpu / (f.cpu + b.cpu):.2f}); floor round spread "
               f"{spread([s.cpu for s in floor_s]):.0%}"),
        extra={"floor_rounds_ms": [_ms(s.cpu) for s in floor_s],
               "overhead_ms": _ms(r.cpu - f.cpu), "bare_httpx_post_ms": _ms(b.cpu),
               "ratio_to_floor_plus_bare_post": r.cpu / (f.cpu + b.cpu)})
    return [fig1, fig2]


# --- figure 3: router cost per request, in-process ---------------------------------------

async def _router_requests(cfg: Config, keys: BenchKeys, over_http_ms: float | None = None
                           ) -> Figure:
    from mock_router import MockRouter

    router = MockRouter(server_key=keys.router, max_seen=100, replay_window=0)  # resends
    client_pem = keys.client.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    request_plaintext = json.dumps(workload.small_payload(), separators=(",", ":")).encode()
    body = workload.seal(request_plaintext, keys.router.public_key())
    direct = workload.DirectASGI(router.app, client_pem, body)
    status, answer = 0, b""
    for _ in range(5):
        status, answer = await direct.post()
    if status != 200:
        raise RuntimeError(f"router answered {status}: {answer[:200]!r}")
    response_plaintext = json.dumps(
        workload.DecryptFloor(answer, keys.client)()).encode()
    floor = workload.RouterRequestFloor(keys.router, keys.client.public_key(),
                                        request_plaintext, response_plaintext)
    rs: list[Sample] = []
    fs: list[Sample] = []
    for _ in range(cfg.rounds):
        rs.append(await time_async_ops(direct.post, cfg.calls))
        fs.append(time_ops(floor, 3 * cfg.calls))
    r, f = medians(rs), medians(fs)
    return Figure(
        "3", "router CPU per request, ASGI app called in-process vs its crypto floor",
        _ms(r.cpu), _ms(f.cpu), "ms CPU/req", "mock_router", "floor", "<= 1.3",
        notes=("floor = RSA-OAEP decrypt (router key) + GCM open of the request + RSA-OAEP "
               "encrypt to the client key + GCM seal of the answer; "
               f"overhead {_ms(r.cpu - f.cpu):.2f} ms/req; wall/req {_ms(r.wall):.2f} ms; "
               f"round spread {spread([s.cpu for s in rs]):.0%} / "
               f"{spread([s.cpu for s in fs]):.0%}"
               + (f"; the same router under uvicorn over loopback HTTP (figure 1's calls, "
                  f"router process CPU, 10 ms clock ticks) costs {over_http_ms:.2f} ms/req"
                  if over_http_ms is not None else "")),
        extra={"router_wall_ms": _ms(r.wall), "overhead_ms": _ms(r.cpu - f.cpu)})


# --- figure 4: large payloads ------------------------------------------------------------

async def _peak(fn: Callable[[], Awaitable[Any]] | Callable[[], Any]) -> int:
    """Peak Python heap (tracemalloc) above what was allocated before the call."""
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        result = fn()
        if asyncio.iscoroutine(result):
            result = await result
        del result
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def _size_label(size: int) -> str:
    if size % MiB == 0:
        return f"{size // MiB} MiB"
    if size < MiB:
        return f"{size / 1024:.0f} KiB"
    whole = round(size / MiB)
    return f"{whole} MiB - {(whole * MiB - size) / 1024:.0f} KiB"


async def _large_payloads(cfg: Config, keys: BenchKeys, url: str) -> list[Figure]:
    import nomyo_ref

    client = nomyo_ref.SecureCompletionClient(url, allow_http=True)
    client.load_keys(keys.client_key_dir / "private_key.pem")
    await client.fetch_server_public_key()
    figures: list[Figure] = []
    for size in cfg.large_sizes:
        payload = workload.large_payload(size)
        plain_size = len(json.dumps(payload, ensure_ascii=False,
                                    separators=(",", ":")).encode())
        pid = str(uuid.uuid4())
        content = payload["messages"][0]["content"]
        body = workload.seal(json.dumps(workload.completion_for(pid, content)).encode(),
                             keys.client.public_key())
        enc_floor = workload.EncryptFloor(payload, keys.router.public_key())
        dec_floor = workload.DecryptFloor(body, keys.client)

        async def enc(payload: dict[str, Any] = payload) -> bytes:
            return await client.encrypt_payload(payload)

        async def dec(body: bytes = body, pid: str = pid) -> dict[str, Any]:
            return await client.decrypt_response(body, pid)

        n = 3 if size <= 2 * MiB else 1
        await enc()
        await dec()
        enc_floor()
        dec_floor()
        es: list[Sample] = []
        efs: list[Sample] = []
        ds: list[Sample] = []
        dfs: list[Sample] = []
        for _ in range(cfg.rounds):
            es.append(await time_async_ops(enc, n))
            efs.append(time_ops(enc_floor, n))
            ds.append(await time_async_ops(dec, n))
            dfs.append(time_ops(dec_floor, n))
        e, ef, d, df = medians(es), medians(efs), medians(ds), medians(dfs)
        label = _size_label(size)
        mem_notes = {"enc": "", "dec": ""}
        extra: dict[str, dict[str, Any]] = {"enc": {}, "dec": {}}
        if size > 2 * MiB:  # peak memory of the big case only (tracemalloc is slow)
            for side, ours, theirs in (("enc", enc, enc_floor), ("dec", dec, dec_floor)):
                p_ref, p_floor = await _peak(ours), await _peak(theirs)
                mem_notes[side] = (f"; tracemalloc peak {p_ref / MiB:.1f} MiB = "
                                   f"{p_ref / plain_size:.1f} copies of the payload "
                                   f"(floor: {p_floor / MiB:.1f} MiB = "
                                   f"{p_floor / plain_size:.1f} copies)")
                extra[side] = {"peak_bytes": p_ref, "copies": p_ref / plain_size,
                               "floor_peak_bytes": p_floor,
                               "floor_copies": p_floor / plain_size}
        figures.append(Figure(
            f"4{'abcdefgh'[len(figures)]}", f"encrypt_payload, {label} request",
            _ms(e.cpu), _ms(ef.cpu), "ms CPU", "nomyo_ref", "floor", "<= 2",
            notes=(f"plaintext {plain_size} B; floor = json.dumps + AES-GCM + base64 + "
                   f"package JSON + 1 RSA-OAEP encrypt" + mem_notes["enc"]),
            extra={"plaintext_bytes": plain_size, **extra["enc"]}))
        figures.append(Figure(
            f"4{'abcdefgh'[len(figures)]}", f"decrypt_response, {label} answer",
            _ms(d.cpu), _ms(df.cpu), "ms CPU", "nomyo_ref", "floor", "<= 2",
            notes=(f"answer plaintext ~{plain_size} B; floor = json.loads(package) + base64 "
                   f"decode + 1 RSA-OAEP decrypt + AES-GCM + json.loads" + mem_notes["dec"]),
            extra={"plaintext_bytes": plain_size, **extra["dec"]}))
    await client.aclose()
    return figures


# --- figure 5: throughput ----------------------------------------------------------------

def _throughput(cfg: Config, keys: BenchKeys, url: str, router_pid: int) -> Figure:
    from . import throughput

    wrapped = keys.client.public_key().encrypt(b"k" * 32, workload.OAEP)
    router_wrapped = keys.router.public_key().encrypt(b"k" * 32, workload.OAEP)
    def private_ops() -> tuple[list[float], list[float]]:
        return ([time_ops(lambda: keys.client.decrypt(wrapped, workload.OAEP), 10).cpu
                 for _ in range(cfg.rounds)],
                [time_ops(lambda: keys.router.decrypt(router_wrapped, workload.OAEP), 10).cpu
                 for _ in range(cfg.rounds)])

    # The bound's private-key costs are measured just before and just after the load, and
    # the median of both taken, so they see the same machine the load saw.
    client_before, router_before = private_ops()
    result = throughput.run(url, str(keys.client_key_dir), cfg.workers, cfg.concurrency,
                            cfg.duration, router_pid)
    client_after, router_after = private_ops()
    t_client = median(client_before + client_after)
    t_router = median(router_before + router_after)
    n_cores = cores()
    bound = n_cores / (t_client + t_router)
    rps = result["requests"] / result["elapsed"]
    cpu_per_req = (result["cpu_total"] / result["requests"]) if result["requests"] else 0.0
    ceiling = (f"; with every core ours the ratio could reach at most "
               f"{(t_client + t_router) / cpu_per_req:.2f} at this CPU cost per request"
               if cpu_per_req else "")
    fig = Figure(
        "5", f"throughput: router under uvicorn + {cfg.workers}x{cfg.concurrency} concurrent "
             "nomyo_ref clients (loopback)",
        rps, bound, "req/s", "measured", "RSA-private bound", ">= 0.6",
        notes=(f"bound = {n_cores} cores / ({_ms(t_router):.2f} + {_ms(t_client):.2f} ms "
               f"private-key ops); {result['requests']} ok, {result['failures']} failed in "
               f"{result['elapsed']:.1f} s; CPU used {_ms(cpu_per_req):.2f} ms/req "
               f"(router {_ms(result['router_cpu'] / max(result['requests'], 1)):.2f}, "
               f"clients {_ms(result['client_cpu'] / max(result['requests'], 1)):.2f}); "
               f"CPU obtained {result['cpu_total'] / result['elapsed']:.2f} of {n_cores} "
               "cores (the rest went to other processes)" + ceiling),
        extra={**result, "t_client_priv_ms": _ms(t_client), "t_router_priv_ms": _ms(t_router),
               "cores": n_cores, "cpu_ms_per_request": _ms(cpu_per_req),
               "ratio_if_all_cores_ours": ((t_client + t_router) / cpu_per_req
                                           if cpu_per_req else None)})
    if result["failures"]:
        fig.met = False
    return fig


# --- figure 6: the suite -----------------------------------------------------------------

# "6 passing, 0 failing, and 0 invalid test cases" (older: "6 passing examples, 0 failing ...")
_STATS = re.compile(r"(\d+) passing(?: examples?)?, (\d+) failing(?: examples?)?,"
                    r"(?: and)? (\d+) invalid")
_PHASE = re.compile(r"during \w+ phase \(([\d.]+) seconds\)")
_SUMMARY = re.compile(r"^=*\s*(\d+ (?:passed|failed|error|errors|skipped|deselected|xfailed"
                      r"|xpassed|warnings?|tests? collected)\b.*? in [\d.]+s)", re.MULTILINE)


def _suite(cfg: Config) -> Figure:
    title = "conformance suite wall time: pytest conformance --impl=nomyo_ref (default profile)"
    cmd = [sys.executable, "-m", "pytest", "conformance", "--impl=nomyo_ref", "-q",
           "-p", "no:cacheprovider", "--hypothesis-show-statistics", *cfg.suite_args]
    t0 = time.perf_counter()
    u0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True,
                              timeout=cfg.suite_timeout, check=False)
    except subprocess.TimeoutExpired:
        return unavailable("6", title, "<= 1", f"not available: timed out after "
                           f"{cfg.suite_timeout:.0f} s")
    wall = time.perf_counter() - t0
    u1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (u1.ru_utime - u0.ru_utime) + (u1.ru_stime - u0.ru_stime)
    out = proc.stdout + proc.stderr
    tail = [line for line in out.splitlines() if line.strip()][-3:]
    if proc.returncode not in (0, 1):
        return unavailable("6", title, "<= 1",
                           f"not available: pytest exit status {proc.returncode}: "
                           + " | ".join(tail)[-400:])
    examples = sum(sum(map(int, m)) for m in _STATS.findall(out))
    hypo_seconds = sum(float(s) for s in _PHASE.findall(out))
    summary = _SUMMARY.findall(out)
    notes = (f"pytest: {summary[-1] if summary else ' | '.join(tail)[-200:]}; CPU time of "
             f"the run {cpu:.1f} s (wall minus CPU = waiting, or other processes' load)")
    if proc.returncode == 1:
        notes += " (some checks failed; the time still counts)"
    if examples:
        notes += f"; hypothesis: {examples} examples, {examples / wall:.1f}/s of suite wall time"
        if hypo_seconds:
            notes += (f", {examples / hypo_seconds:.1f}/s inside hypothesis phases "
                      f"({hypo_seconds:.1f} s)")
    return Figure("6", title, wall, 60.0, "s", "wall", "target 60 s", "<= 1", notes=notes,
                  extra={"exit_status": proc.returncode, "cpu_seconds": cpu,
                         "hypothesis_examples": examples,
                         "hypothesis_phase_seconds": hypo_seconds, "command": cmd})


# --- all of it ---------------------------------------------------------------------------

def _guard(ids: list[str], measure: Callable[[], list[Figure]]) -> list[Figure]:
    """Measure; if that fails, report the figures as not available with the reason."""
    try:
        return measure()
    except Exception as exc:
        why = f"not available: {type(exc).__name__}: {exc}"[:400]
        return [unavailable(i, f"figure {i}", "-", why) for i in ids]


def run(cfg: Config, progress: Callable[[str], None] = lambda s: None) -> list[Figure]:
    """Measure the selected figures; a figure that cannot be measured is reported, not fatal."""
    with _quiet():
        return _run(cfg, progress)


def _run(cfg: Config, progress: Callable[[str], None]) -> list[Figure]:
    from .harness import bench_keys, router_process

    figures: list[Figure] = []
    over_http: float | None = None
    progress(f"generating {cfg.key_size}-bit client and router keys")
    with bench_keys(cfg.key_size) as keys:
        need_router = cfg.only & {"1", "2", "4", "5"}
        if need_router:
            progress("starting the mock router in its own process")
        ctx = router_process(keys.router_key_file, keys.directory) if need_router else None
        router = ctx.__enter__() if ctx else None
        try:
            if router and cfg.only & {"1", "2"}:
                progress("figures 1-2: client cost per call (nomyo_ref vs official, floor)")
                got = _guard(["1", "2"], lambda: asyncio.run(
                    _client_calls(cfg, keys, router.url, router.pid)))
                over_http = got[0].extra.get("router_process_cpu_ms_per_ref_call")
                figures += [f for f in got if f.id in cfg.only]
            if "3" in cfg.only:
                progress("figure 3: router cost per request (in-process)")
                figures += _guard(["3"], lambda: [asyncio.run(
                    _router_requests(cfg, keys, over_http))])
            if router and "4" in cfg.only:
                progress("figure 4: large payloads")
                figures += _guard(["4"], lambda: asyncio.run(
                    _large_payloads(cfg, keys, router.url)))
            if router and "5" in cfg.only:
                progress("figure 5: throughput")
                figures += _guard(["5"], lambda: [_throughput(cfg, keys, router.url,
                                                               router.pid)])
        finally:
            if ctx:
                ctx.__exit__(None, None, None)
    if "6" in cfg.only:
        progress("figure 6: the conformance suite (subprocess)")
        figures.append(_suite(cfg))
    return figures


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    import platform

    import cryptography
    from cryptography.hazmat.backends.openssl.backend import backend

    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    load: list[str] = []
    with contextlib.suppress(OSError):
        load = Path("/proc/loadavg").read_text().split()[:3]
    return {"cores": cores(), "cpu": model, "python": platform.python_version(),
            "implementation": platform.python_implementation(), "platform": platform.platform(),
            "cryptography": cryptography.__version__,
            "openssl": backend.openssl_version_text(), "loadavg": load,
            "multiprocessing_start": multiprocessing.get_start_method(allow_none=True)}
