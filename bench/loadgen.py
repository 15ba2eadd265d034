"""The publishers' load generator: an aiohttp client (uvloop) in its own process.

Two modes, each printing one JSON line:

  closed  N connections POST the same body back to back for D seconds (the fallback for wrk):
          {"accepted", "other", "errors", "duration", "p50_ms", "p99_ms"}
  rate    open loop: R single events per second for D seconds, each carrying its send time
          time.time() in data.t (the receiver computes arrival - data.t):
          {"sent", "accepted", "other", "errors", "duration", "p50_ms", "p99_ms", "late_ms"}

Run: python bench/loadgen.py closed --url URL --key KEY --body-file F --concurrency 64 --duration 10
     python bench/loadgen.py rate --url URL --key KEY --topic bench.a --rate 200 --duration 20
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import aiohttp
import orjson
import uvloop


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, round((len(s) - 1) * q / 100))]


def session(key: str, concurrency: int) -> aiohttp.ClientSession:
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    return aiohttp.ClientSession(
        headers=headers, connector=aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency),
        timeout=aiohttp.ClientTimeout(total=30))


async def closed(a: argparse.Namespace) -> dict[str, object]:
    body = a.body
    accepted = other = errors = 0
    lat: list[float] = []
    async with session(a.key, a.concurrency) as s:
        start = time.perf_counter()
        deadline = start + a.duration

        async def worker() -> None:
            nonlocal accepted, other, errors
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                try:
                    async with s.post(a.url, data=body) as r:
                        await r.read()
                        lat.append(time.perf_counter() - t0)
                        if r.status == 202:
                            accepted += 1
                        else:
                            other += 1
                except (aiohttp.ClientError, OSError, TimeoutError):
                    errors += 1

        await asyncio.gather(*(worker() for _ in range(a.concurrency)))
        duration = time.perf_counter() - start
    return {"accepted": accepted, "other": other, "errors": errors, "duration": duration,
            "p50_ms": pct(lat, 50) * 1000, "p99_ms": pct(lat, 99) * 1000}


async def rate(a: argparse.Namespace) -> dict[str, object]:
    pad = "x" * a.pad
    accepted = other = errors = sent = 0
    lat: list[float] = []
    late = 0.0
    tasks: set[asyncio.Task[None]] = set()
    async with session(a.key, 256) as s:

        async def one(i: int) -> None:
            nonlocal accepted, other, errors
            t0 = time.time()
            body = orjson.dumps({"topic": a.topic, "account": "bench",
                                 "data": {"i": i, "t": t0, "email": f"user{i}@example.com", "pad": pad}})
            try:
                async with s.post(a.url, data=body) as r:
                    await r.read()
                    lat.append(time.time() - t0)
                    if r.status in (202, 204):
                        accepted += 1
                    else:
                        other += 1
            except (aiohttp.ClientError, OSError, TimeoutError):
                errors += 1

        interval = 1.0 / a.rate
        start = time.perf_counter()
        total = int(a.rate * a.duration)
        for i in range(total):
            due = start + i * interval
            wait = due - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            else:
                late = max(late, -wait)
            t = asyncio.create_task(one(i))
            tasks.add(t)
            t.add_done_callback(tasks.discard)
            sent += 1
        await asyncio.gather(*tasks)
        duration = time.perf_counter() - start
    return {"sent": sent, "accepted": accepted, "other": other, "errors": errors,
            "duration": duration, "p50_ms": pct(lat, 50) * 1000, "p99_ms": pct(lat, 99) * 1000,
            "late_ms": late * 1000}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="mode", required=True)
    c = sub.add_parser("closed")
    c.add_argument("--body-file", required=True)
    c.add_argument("--concurrency", type=int, default=64)
    r = sub.add_parser("rate")
    r.add_argument("--topic", default="bench.a")
    r.add_argument("--rate", type=float, default=200)
    r.add_argument("--pad", type=int, default=160)
    for sp in (c, r):
        sp.add_argument("--url", required=True)
        sp.add_argument("--key", default="")
        sp.add_argument("--duration", type=float, default=10)
    a = p.parse_args()
    if a.mode == "closed":
        a.body = Path(a.body_file).read_bytes()
    out = uvloop.run(closed(a) if a.mode == "closed" else rate(a))
    sys.stdout.write(orjson.dumps(out).decode() + "\n")


if __name__ == "__main__":
    main()
