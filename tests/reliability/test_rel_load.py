"""Load: the router under uvicorn on loopback serves many concurrent nomyo_ref clients.

CI: 2,000 requests from 64 concurrent clients (router key 2048 bits). Thorough
(NOMYO_THOROUGH=1): 10,000 requests from 128 clients, router key 4096 bits.

Proves: zero failures; every answer is bound to its own request (nomyo_ref checks
``_metadata.payload_id``; here each answer's echoed content must also be exactly what that
client asked for, and all payload ids are distinct); the process's resident memory after
warm-up stays flat (router and clients share this process: the router serves from a thread).
"""

from __future__ import annotations

import asyncio
import gc
import time
import uuid
import warnings
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import rsa

from mock_router import MockRouter, serve
from nomyo_ref import SecureChatCompletion
from tests.reliability.conftest import THOROUGH, open_sockets, rss_kib, scaled

TOTAL = scaled(2048, 10_240)  # a multiple of CLIENTS
CLIENTS = scaled(64, 128)
WARMUP_PER_CLIENT = 4
#: Allowed RSS growth between the end of warm-up and the end of the run (generous: a leak of
#: a few KiB per request over thousands of requests still exceeds it).
RSS_GROWTH_LIMIT_KIB = scaled(48 * 1024, 64 * 1024)


async def test_load_many_clients_zero_failures_bound_answers_flat_memory(
        rel_server_key: rsa.RSAPrivateKey, shared_key_dir: Path) -> None:
    # The record of seen requests is capped so its (bounded, by design) growth is not
    # mistaken for a leak: it is full before warm-up ends.
    router = MockRouter(rel_server_key, max_seen=256)
    per_client = TOTAL // CLIENTS
    assert per_client > WARMUP_PER_CLIENT
    answered: list[str] = []
    failures: list[str] = []

    async def one_client(index: int, chat: SecureChatCompletion, count: int) -> None:
        for _ in range(count):
            content = f"load-{index}-{uuid.uuid4().hex}"
            try:
                reply = await chat.create("load-model",
                                          [{"role": "user", "content": content}])
            except Exception as exc:  # every failure is counted, none hidden
                failures.append(f"client {index}: {type(exc).__name__}: {exc}")
                continue
            got = reply["choices"][0]["message"]["content"]
            if got != content:
                failures.append(f"client {index}: answer bound to another request")
                continue
            answered.append(reply["_metadata"]["payload_id"])

    with serve(router) as server:
        sockets_before = open_sockets()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # allow_http's "insecure" warning
            chats = [SecureChatCompletion(server.url, allow_http=True, key_dir=shared_key_dir,
                                          max_retries=0, timeout=60.0)
                     for _ in range(CLIENTS)]
        try:
            await asyncio.gather(*(one_client(i, chat, WARMUP_PER_CLIENT)
                                   for i, chat in enumerate(chats)))
            gc.collect()
            rss_after_warmup = rss_kib()
            started = time.perf_counter()
            await asyncio.gather(*(one_client(i, chat, per_client - WARMUP_PER_CLIENT)
                                   for i, chat in enumerate(chats)))
            elapsed = time.perf_counter() - started
            gc.collect()
            rss_end = rss_kib()
        finally:
            for chat in chats:
                await chat.aclose()
        seen = router.seen

    measured = CLIENTS * (per_client - WARMUP_PER_CLIENT)
    growth = rss_end - rss_after_warmup
    print(f"\nload: {CLIENTS} clients, {CLIENTS * per_client} requests "
          f"({'thorough' if THOROUGH else 'CI'}, router key {rel_server_key.key_size} bits), "
          f"{measured} after warm-up in {elapsed:.1f}s = {measured / elapsed:.0f} req/s; "
          f"RSS after warm-up {rss_after_warmup / 1024:.1f} MiB, at end "
          f"{rss_end / 1024:.1f} MiB (growth {growth / 1024:+.1f} MiB); "
          f"sockets before {sockets_before}")
    assert failures == [], failures[:10]
    assert len(answered) == CLIENTS * per_client
    assert len(set(answered)) == len(answered), "two answers carried the same payload id"
    assert all(s.status == 200 for s in seen), {s.status for s in seen}
    assert growth < RSS_GROWTH_LIMIT_KIB, (
        f"RSS grew by {growth} KiB after warm-up (limit {RSS_GROWTH_LIMIT_KIB} KiB)")
