"""Isolation: what a host that never answers costs a healthy one.

Two receivers: a healthy one reached as 127.0.0.1 and one reached as `localhost` that accepts
the request and never answers (the attempt times out after timeout_seconds = 2). Two hooks, one
topic each; N events for each are published while both hooks are paused (so both runs hold
the same database). Then:

- alone: only the healthy hook is resumed;
- with the dead host: the dead host's hook is resumed first and given 0.5 s to fill its slots,
  then the healthy hook is resumed.

The clock runs from the healthy hook's PATCH status=active to its N-th arrival. Figure: its
deliveries/s with the dead host divided by its deliveries/s alone, each from a fresh gateway in
the same repetition. Delivery bounds: max_in_flight = 64, max_in_flight_per_host = 32, so the
dead host can hold half of the global bound.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from harness import Gateway, Profiler, event, publish_all, receivers, wait_all
from report import Measure, Target

LABEL = "isolation (healthy with dead host / alone)"
TARGETS = [Target(LABEL, "ratio", ">=", 0.9, "≥ 0.9")]
DELIVERY = {"timeout_seconds": 2, "max_in_flight": 64, "max_in_flight_per_host": 32}


async def once(n: int, healthy: Any, dead: Any, with_dead: bool) -> float:
    async with Gateway(delivery=DELIVERY, topics=("bench.a", "bench.b")) as g:
        async with g.api() as api:
            ok_hook = await api.create_hook(healthy.url("ok"), ["bench.a"])
            dead_hook = await api.create_hook(dead.url("dead"), ["bench.b"])
            for h in (ok_hook, dead_hook):
                await api.set_status(h, "paused")
            evs = [event("bench.a" if i % 2 == 0 else "bench.b", i) for i in range(2 * n)]
            await publish_all(api, evs)
            await healthy.reset(n)
            await dead.reset()
            if with_dead:
                await api.set_status(dead_hook, "active")
                await asyncio.sleep(0.5)
            prof = Profiler(g.pid, f"isolation {'with dead host' if with_dead else 'alone'}")
            try:
                t0 = time.time()
                await api.set_status(ok_hook, "active")
                (st,) = await wait_all([healthy], max(120, n / 50))
            finally:
                prof.stop()
            if with_dead and (await dead.stats())["attempts"] == 0:
                raise RuntimeError("the dead host was never tried")
        return n / (st["target_at"] - t0)


async def run(opts: Any) -> list[Measure]:
    n = 4000 if opts.quick else 20000
    async with receivers({}, {"mode": "hang", "name": "localhost"}) as (healthy, dead):
        alone = await once(n, healthy, dead, with_dead=False)
        mixed = await once(n, healthy, dead, with_dead=True)
        dead_attempts = (await dead.stats())["attempts"]
    m = Measure(LABEL, "deliveries/s", mixed, alone, {"dead_attempts": dead_attempts},
                note="baseline = healthy alone")
    print(m.line(opts.rep), flush=True)
    return [m]
