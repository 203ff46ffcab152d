"""Figure 5's load: client worker processes, each with concurrent nomyo_ref clients.

Client work runs in separate processes (spawned, so nothing is inherited) because one Python
process cannot use more than one core for the client side; the router runs in its own process
under uvicorn. All workers warm up (keys loaded, server key fetched, connection open), meet at
a barrier with the parent, then call as fast as they can for ``duration`` seconds.
``max_retries=0``: a failure is counted, never hidden by a retry.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import threading
import time
import warnings
from typing import Any

from .harness import process_cpu_seconds


async def _work(url: str, key_dir: str, concurrency: int, duration: float,
                barrier: Any) -> dict[str, Any]:
    import nomyo_ref

    from . import workload

    chats = [nomyo_ref.SecureChatCompletion(url, allow_http=True, key_dir=key_dir,
                                            max_retries=0) for _ in range(concurrency)]
    await asyncio.gather(*(c.create(workload.MODEL, workload.SMALL_MESSAGES) for c in chats))
    await asyncio.gather(*(c.create(workload.MODEL, workload.SMALL_MESSAGES) for c in chats))
    await asyncio.to_thread(barrier.wait, 120)
    ok = 0
    failures: dict[str, int] = {}
    c0, t0 = time.process_time(), time.perf_counter()
    deadline = t0 + duration
    last = t0

    async def loop(chat: Any) -> None:
        nonlocal ok, last
        while time.perf_counter() < deadline:
            try:
                await chat.create(workload.MODEL, workload.SMALL_MESSAGES)
                ok += 1
            except Exception as exc:  # counted, reported by type
                failures[type(exc).__name__] = failures.get(type(exc).__name__, 0) + 1
            last = time.perf_counter()

    await asyncio.gather(*(loop(c) for c in chats))
    cpu = time.process_time() - c0
    for c in chats:
        await c.aclose()
    return {"ok": ok, "failures": failures, "elapsed": last - t0, "cpu": cpu}


def worker(url: str, key_dir: str, concurrency: int, duration: float, barrier: Any,
           results: Any) -> None:
    for name in ("nomyo_ref", "httpx"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    warnings.filterwarnings("ignore", category=UserWarning)
    try:
        results.put(asyncio.run(_work(url, key_dir, concurrency, duration, barrier)))
    except BaseException as exc:
        results.put({"error": f"{type(exc).__name__}: {exc}"})
        barrier.abort()


def run(url: str, key_dir: str, workers: int, concurrency: int, duration: float,
        router_pid: int) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(workers + 1)
    results = ctx.Queue()
    procs = [ctx.Process(target=worker, args=(url, key_dir, concurrency, duration, barrier,
                                              results), daemon=True) for _ in range(workers)]
    for p in procs:
        p.start()
    try:
        try:
            barrier.wait(180)
        except threading.BrokenBarrierError:
            reasons = []
            while not results.empty():
                reasons.append(str(results.get().get("error")))
            dead = sum(1 for p in procs if not p.is_alive())
            raise RuntimeError(f"throughput workers did not start ({dead} exited): "
                               + ("; ".join(reasons) or "no error reported")) from None
        r0 = process_cpu_seconds(router_pid)
        got = [results.get(timeout=duration + 120) for _ in procs]
        r1 = process_cpu_seconds(router_pid)
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.terminate()
    errors = [g["error"] for g in got if "error" in g]
    if errors:
        raise RuntimeError("throughput worker failed: " + "; ".join(errors))
    failures: dict[str, int] = {}
    for g in got:
        for k, v in g["failures"].items():
            failures[k] = failures.get(k, 0) + v
    client_cpu = sum(g["cpu"] for g in got)
    return {"requests": sum(g["ok"] for g in got), "failures": sum(failures.values()),
            "failure_types": failures, "elapsed": max(g["elapsed"] for g in got),
            "router_cpu": r1 - r0, "client_cpu": client_cpu,
            "cpu_total": (r1 - r0) + client_cpu}
