"""Delivery throughput: 20,000 deliveries already queued, receivers that answer 204 at once.

Baseline: bench/bareclient.py against the same receivers, same body size, one HMAC per
request, at each of CONCURRENCIES; the best one is the baseline, and the gateway runs with
max_in_flight = max_in_flight_per_host = that concurrency (every receiver is on 127.0.0.1, one
host name, so the per-host bound is the whole bound).

- 1 hook: the hook is paused, 20,000 events are published through POST /v1/events in batches
  of 1000, the clock starts when PATCH status=active is sent and stops when the receiver has
  counted 20,000.
- 10 hooks on 10 receivers, 1,000 hooks on 4 receivers: hooks and events are written with the
  storage layer's own verbs (bench/seed.py) before `gateway serve` starts, so everything is
  queued before the loop runs; the clock runs from the first arrival to the last.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from harness import (
    BENCH,
    PYTHON,
    Gateway,
    Profiler,
    event,
    publish_all,
    receivers,
    run_json,
    wait_all,
)
from report import Measure, Target

CONCURRENCIES = (8, 32, 64, 128)
VARIANTS = (("throughput 1 hook", 1, 1), ("throughput 10 hooks/10 receivers", 10, 10),
            ("throughput 1000 hooks/4 receivers", 1000, 4))
TARGETS = [Target(label, "ratio", ">=", 0.7, "≥ 0.7 x bare client") for label, _, _ in VARIANTS]


async def bare(recvs: list[Any], urls: list[str], n: int, concurrency: int) -> float:
    for r in recvs:
        await r.reset(n // len(recvs))
    out = await run_json([PYTHON, str(BENCH / "bareclient.py"), "--urls", ",".join(urls), "--n",
                          str(n), "--concurrency", str(concurrency), "--secrets", str(len(urls))],
                         timeout=300)
    stats = await wait_all(recvs, 60)
    if out["errors"]:
        raise RuntimeError(f"bare client had {out['errors']} errors")
    return n / (max(s["target_at"] for s in stats) - out["start"])


async def one_hook(g: Gateway, recv: Any, n: int, label: str) -> dict[str, float]:
    async with g.api() as api:
        hook = await api.create_hook(recv.url("0"), ["bench.a"])
        await api.set_status(hook, "paused")
        await publish_all(api, [event("bench.a", i) for i in range(n)])
        await recv.reset(n)
        prof = Profiler(g.pid, label)
        if prof.proc is not None:
            await asyncio.sleep(1.0)  # let py-spy attach before the clock starts
        try:
            t0 = time.time()
            await api.set_status(hook, "active")
            (st,) = await wait_all([recv], max(120, n / 100))
        finally:
            prof.stop()
        while True:
            if await api.pending_empty(hook):
                break
            await asyncio.sleep(0.02)
        recorded = time.time()
    return {"rate": n / (st["target_at"] - t0), "span_rate": n / (st["target_at"] - st["first"]),
            "recorded_s": recorded - st["target_at"]}


async def many_hooks(g: Gateway, recvs: list[Any], urls: list[str], n: int,
                     hooks: int) -> dict[str, float]:
    await run_json([PYTHON, str(BENCH / "seed.py"), "--db", str(g.db), "--urls", ",".join(urls),
                    "--hooks", str(hooks), "--events", str(n // hooks), "--per-call", "1000"],
                   timeout=600)
    for r in recvs:
        await r.reset(n // len(recvs))
    await g.start()
    stats = await wait_all(recvs, max(120, n / 100))
    first = min(s["first"] for s in stats)
    return {"rate": n / (max(s["target_at"] for s in stats) - first)}


async def run(opts: Any) -> list[Measure]:
    n = 2000 if opts.quick else 20000
    out: list[Measure] = []
    for label, hooks, nrecv in VARIANTS:
        async with receivers(*({} for _ in range(nrecv))) as recvs:
            urls = [recvs[h % nrecv].url(str(h)) for h in range(hooks)]
            # The bare client sends request i to urls[i % len], so shares match the gateway's.
            sweep = {c: await bare(recvs, urls, n, c) for c in CONCURRENCIES}
            best = max(sweep, key=lambda c: sweep[c])
            g = Gateway(delivery={"max_in_flight": best, "max_in_flight_per_host": best})
            try:
                if hooks == 1:
                    await g.start()
                    res = await one_hook(g, recvs[0], n, label)
                else:
                    g.make_keys()
                    res = await many_hooks(g, recvs, [r.url("m") for r in recvs], n, hooks)
            except Exception:
                print(g.tail(), flush=True)
                raise
            finally:
                g.cleanup()
        extra = {f"bare@{c}": v for c, v in sweep.items()}
        extra.update({k: v for k, v in res.items() if k != "rate"})
        out.append(Measure(label, "deliveries/s", res["rate"], sweep[best], extra,
                           note=f"in-flight {best}"))
        print(out[-1].line(opts.rep), flush=True)
    return out
