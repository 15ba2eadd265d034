"""Latency: a steady 200 events/s for 20 s (open loop, bench/loadgen.py rate), one active hook,
a receiver that answers at once. Each event's data carries its publish time.time(); the
receiver records arrival - publish (same machine, same clock). Gateway delivery settings are
the defaults.

Baseline, same run: the same load generator POSTs the same bodies straight to the receiver,
which is the floor this machine's HTTP stack sets.
"""

from __future__ import annotations

from typing import Any

from harness import BENCH, PYTHON, Gateway, percentile, receivers, run_json
from report import Measure, Target

RATE = 200
LABEL = "latency 200 events/s"
TARGETS = [Target(LABEL, "value", "<=", 5.0, "p50 ≤ 5 ms"),
           Target(LABEL, "p99_ms", "<=", 25.0, "p99 ≤ 25 ms")]


async def drive(url: str, key: str, seconds: float, recv: Any) -> tuple[list[float], dict[str, Any]]:
    n = int(RATE * seconds)
    await recv.reset(n)
    res = await run_json([PYTHON, str(BENCH / "loadgen.py"), "rate", "--url", url, "--key", key,
                          "--rate", str(RATE), "--duration", str(seconds)], timeout=seconds + 120)
    st = await recv.wait(60)
    if st["target_at"] is None:
        raise RuntimeError(f"receiver got {st['ok']} of {n} deliveries")
    return [v * 1000 for v in await recv.latencies()], res


async def run(opts: Any) -> list[Measure]:
    seconds = 5.0 if opts.quick else 20.0
    async with receivers({"latency": True}) as (recv,):
        direct, _ = await drive(recv.url("direct"), "", seconds, recv)
        async with Gateway() as g:
            async with g.api() as api:
                await api.create_hook(recv.url("0"), ["bench.a"])
            lat, pub = await drive(f"{g.base}/v1/events", g.publisher_key, seconds, recv)
    m = Measure(LABEL, "ms p50", percentile(lat, 50), percentile(direct, 50), {
        "p95_ms": percentile(lat, 95), "p99_ms": percentile(lat, 99), "max_ms": max(lat),
        "direct_p99_ms": percentile(direct, 99), "publish_p50_ms": pub["p50_ms"],
        "publish_p99_ms": pub["p99_ms"]}, ratio_shown=False)
    print(m.line(opts.rep), flush=True)
    return [m]
