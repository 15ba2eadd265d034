"""Retry storm: a receiver that answers 500 to half of all attempts, at random.

N deliveries are queued on one paused hook, then it is resumed; retry_schedule_seconds =
[0.05, 0.1, 0.2, 0.4], so each delivery gets at most 5 attempts and about 0.5^5 = 3 % end
failed. The clock runs from PATCH status=active until the API lists no pending delivery for
the hook. Then the API's delivered and failed lists are counted: every delivery must be in one
of them (no stuck rows), and the receiver's distinct 2xx deliveries must equal the API's
delivered count. Baseline, same run: the same N to a receiver that always answers 204.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from harness import Gateway, event, publish_all, receivers
from report import Measure, Target

LABEL = "retry storm (50% 500s)"
TARGETS = [Target(LABEL, "stuck", "<=", 0, "every delivery finishes (no stuck rows)")]
DELIVERY = {"retry_schedule_seconds": [0.05, 0.1, 0.2, 0.4], "max_in_flight": 64,
            "max_in_flight_per_host": 64}


async def once(n: int, recv: Any) -> dict[str, float]:
    async with Gateway(delivery=DELIVERY) as g:
        async with g.api() as api:
            hook = await api.create_hook(recv.url("0"), ["bench.a"])
            await api.set_status(hook, "paused")
            await publish_all(api, [event("bench.a", i) for i in range(n)])
            await recv.reset()
            t0 = time.time()
            await api.set_status(hook, "active")
            deadline = time.monotonic() + max(120, n / 20)
            while True:
                if await api.pending_empty(hook) or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.05)
            elapsed = time.time() - t0
            pending = await api.count(hook, "pending")
            delivered = await api.count(hook, "delivered")
            failed = await api.count(hook, "failed")
        st = await recv.stats()
        return {"rate": delivered / elapsed, "delivered": delivered, "failed": failed,
                "stuck": n - delivered - failed, "pending": pending, "attempts": st["attempts"],
                "receiver_mismatch": st["unique_ok"] - delivered, "seconds": elapsed}


async def run(opts: Any) -> list[Measure]:
    n = 2000 if opts.quick else 10000
    async with receivers({}, {"mode": "fail50"}) as (ok, flaky):
        healthy = await once(n, ok)
        storm = await once(n, flaky)
    extra = {k: storm[k] for k in ("stuck", "delivered", "failed", "attempts", "receiver_mismatch",
                                   "seconds")}
    extra["failed_pct"] = 100 * storm["failed"] / n
    extra["healthy_stuck"] = healthy["stuck"]
    m = Measure(LABEL, "delivered/s", storm["rate"], healthy["rate"], extra,
                note="baseline = same gateway, receiver always 204")
    print(m.line(opts.rep), flush=True)
    return [m]
