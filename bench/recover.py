"""Recovery of 100,000 failed deliveries: the API's latency while POST /v1/hooks/{id}/recover
makes them pending again (in batches of small transactions) and the loop delivers them.

A database is seeded with the storage layer's own verbs (one hook, N events published, every
delivery claimed and recorded as failed), then a real `gateway serve` starts on it and a probe
sends a steady 40 requests/s (GET /v1/hooks/{id}, a publish of one event to a topic without
hooks, alternately) through three phases: idle, during the recover request, and while the
loop delivers the recovered rows to a receiver. Prints each phase's p50/p99/max in ms, how
long the recover request took and how long delivering took.

Run: python bench/recover.py [--n 100000] [--rate 40]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

import aiohttp
import orjson
from harness import ACCOUNT, Gateway, percentile, receivers

from gateway.models import Attempt, PayloadMode, new_secret
from gateway.outcome import Outcome
from gateway.storage import AttemptResult, Claim, NewEvent, Storage
from gateway.targets import host_key


async def seed(db: str, url: str, n: int) -> str:
    storage = Storage(db, synchronous="normal")
    await storage.open()
    try:
        now = time.time()
        await storage.put_topics([("bench.a", "benchmark"), ("bench.b", "probe")], now)
        hook = await storage.create_hook(
            account=ACCOUNT, target_url=url, host=host_key(url), topics=["bench.a"],
            payload=PayloadMode.FULL, ordered=False, description="", headers={},
            secret=new_secret(), now=now)
        for start in range(0, n, 1000):
            await storage.publish([NewEvent(ACCOUNT, "bench.a", orjson.dumps({"i": i}), None, None)
                                   for i in range(start, min(n, start + 1000))], time.time())
        failed = 0
        while failed < n:
            claimed = await storage.claim_due(Claim(time.time() + 1, 5000, {}, 5000))
            if not claimed.rows:
                break
            at = time.time()
            await storage.record_attempts(
                [AttemptResult(d.id, d.hook_id, Attempt(at, 500, None, 1.0, ""), Outcome.FAILED,
                               None) for d in claimed.rows],
                at, disable_after_failures=10**9, disable_after_seconds=10**9)
            failed += len(claimed.rows)
        return hook.id
    finally:
        await storage.close()


async def probe(base: str, key: str, hook_id: str, rate: float, samples: list[tuple[float, float]],
                stop: asyncio.Event) -> None:
    """Open loop: one request every 1/rate s, each timed from when it was due."""
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    body = orjson.dumps({"topic": "bench.b", "account": ACCOUNT, "data": {"probe": True}})
    tasks: set[asyncio.Task[None]] = set()
    async with aiohttp.ClientSession(headers=headers) as s:
        async def one(i: int, due: float) -> None:
            if i % 2:
                req = s.post(f"{base}/v1/events", data=body)
            else:
                req = s.get(f"{base}/v1/hooks/{hook_id}")
            async with req as r:
                await r.read()
                assert r.status in (200, 202), r.status
            samples.append((due, time.perf_counter() - due))

        start, i = time.perf_counter(), 0
        while not stop.is_set():
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            t = asyncio.create_task(one(i, due))
            tasks.add(t)
            t.add_done_callback(tasks.discard)
            i += 1
        await asyncio.gather(*tasks)


def phase(name: str, samples: list[tuple[float, float]], t0: float, t1: float) -> dict[str, Any]:
    ms = [lat * 1000 for due, lat in samples if t0 <= due < t1]
    out = {"phase": name, "requests": len(ms), "p50_ms": round(percentile(ms, 50), 2),
           "p99_ms": round(percentile(ms, 99), 2), "max_ms": round(max(ms, default=0), 2),
           "seconds": round(t1 - t0, 2)}
    print(orjson.dumps(out).decode(), flush=True)
    return out


async def main(n: int, rate: float) -> None:
    async with receivers({"mode": "ok"}) as (recv,):
        g = Gateway(topics=("bench.a", "bench.b"))
        try:
            g.make_keys()
            t = time.time()
            hook_id = await seed(str(g.db), recv.url("0"), n)
            print(f"seeded {n} failed deliveries in {time.time() - t:.1f} s", file=sys.stderr)
            await g.start()
            await recv.reset(n)
            samples: list[tuple[float, float]] = []
            stop = asyncio.Event()
            prober = asyncio.create_task(probe(g.base, g.admin_key, hook_id, rate, samples, stop))
            p0 = time.perf_counter()
            await asyncio.sleep(5)
            p1 = time.perf_counter()
            async with g.api() as api:
                out = await api.call("POST", f"/v1/hooks/{hook_id}/recover",
                                     {"since": "2000-01-01T00:00:00Z"}, expect=202)
            p2 = time.perf_counter()
            st = await recv.wait(600)
            p3 = time.perf_counter()
            stop.set()
            await prober
            if out["deliveries"] != n or st["target_at"] is None:
                raise RuntimeError(f"recovered {out['deliveries']}, delivered {st['ok']} of {n}")
            phase("idle", samples, p0, p1)
            phase("recover request", samples, p1, p2)
            phase("delivering", samples, p2, p3)
            print(orjson.dumps({"recovered": out["deliveries"], "recover_seconds": round(p2 - p1, 2),
                                "deliver_seconds": round(p3 - p2, 2),
                                "deliveries_per_s": round(n / (p3 - p2))}).decode())
        finally:
            g.cleanup()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--rate", type=float, default=40.0)
    a = ap.parse_args()
    asyncio.run(main(a.n, a.rate))
