"""Backlog and memory: 100,000 hooks and 1,000,000 pending deliveries (opt-in: long).

The database is loaded once per invocation with the storage layer's own verbs
(bench/seed.py: Storage.create_hook, Storage.publish; one event on a topic every hook matches
fans out to 100,000 deliveries, so 10 events make 1,000,000) while no server runs, and copied
for each repetition. Then `gateway serve` starts on it and delivers to 4 receivers for a steady
run (--backlog-seconds, default 300 s; --quick: 10,000 hooks, 100,000 deliveries, 30 s).
Figures: peak RSS (VmHWM) of the gateway process, RSS at the first delivery, half-way and at
the end, time from spawning the server to the first delivery arriving, deliveries/s.
Baseline, same run: the RSS of an idle gateway on an empty database.
Delivery bounds: max_in_flight = max_in_flight_per_host = 64 (all receivers are 127.0.0.1).
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from harness import BENCH, PYTHON, SETTINGS, Gateway, free_port, receivers, rss_mb, run_json
from report import Measure, Target

DELIVERY = {"max_in_flight": 64, "max_in_flight_per_host": 64}
RECEIVERS = 4
_seeded: dict[tuple[int, int], tuple[Path, list[int], dict[str, Any]]] = {}


def label(quick: bool) -> str:
    return "backlog 100k deliveries (quick)" if quick else "backlog 1M deliveries"


TARGETS = [t for q in (False, True) for t in (
    Target(label(q), "value", "<=", 200, "peak RSS ≤ 200 MB"),
    Target(label(q), "growth_pct", "<=", 10, "RSS flat: end ≤ start + 10 %"),
)]


async def template(hooks: int, events: int) -> tuple[Path, list[int], dict[str, Any]]:
    key = (hooks, events)
    if key not in _seeded:
        d = Path(tempfile.mkdtemp(prefix="gwbench-backlog-", dir=SETTINGS.tmp))
        ports = [free_port() for _ in range(RECEIVERS)]
        urls = ",".join(f"http://127.0.0.1:{p}/h" for p in ports)
        print(f"  seeding {hooks:,} hooks x {events} events into {d} …", flush=True)
        info = await run_json([PYTHON, str(BENCH / "seed.py"), "--db", str(d / "gateway.db"),
                               "--urls", urls, "--hooks", str(hooks), "--events", str(events)],
                              timeout=3600)
        info["db_mb"] = (d / "gateway.db").stat().st_size / 1e6
        print(f"  seeded: {info}", flush=True)
        _seeded[key] = (d, ports, info)
    return _seeded[key]


def cleanup() -> None:
    if not SETTINGS.keep:
        for d, _, _ in _seeded.values():
            shutil.rmtree(d, ignore_errors=True)
    _seeded.clear()


async def idle_rss() -> float:
    g = Gateway(delivery=DELIVERY)
    try:
        await g.start()
        await asyncio.sleep(2.0)
        return rss_mb(g.pid).get("VmRSS", float("nan"))
    finally:
        g.cleanup()


async def run(opts: Any) -> list[Measure]:
    hooks, events = (10000, 10) if opts.quick else (100000, 10)
    seconds = opts.backlog_seconds or (30.0 if opts.quick else 300.0)
    tpl, ports, info = await template(hooks, events)
    total = int(info["deliveries"])
    async with receivers(*({"port": p} for p in ports)) as recvs:
        idle = await idle_rss()
        g = Gateway(delivery=DELIVERY)
        try:
            shutil.copy(tpl / "gateway.db", g.db)
            g.make_keys()
            t_spawn = time.time()
            await g.start()
            ready = time.time() - t_spawn
            samples: list[tuple[float, float, int]] = []
            first: float | None = None
            while True:
                await asyncio.sleep(1.0)
                mem = rss_mb(g.pid)
                stats = await asyncio.gather(*(r.stats() for r in recvs))
                now, delivered = time.time(), sum(s["ok"] for s in stats)
                samples.append((now, mem["VmRSS"], delivered))
                if first is None and delivered:
                    first = min(s["first"] for s in stats if s["first"] is not None)
                if first is None and now - t_spawn > 300:
                    raise RuntimeError("no delivery arrived within 300 s of start")
                if first is not None and (now - first >= seconds or delivered >= total):
                    break
            peak = rss_mb(g.pid)["VmHWM"]
        except Exception:
            print(g.tail())
            raise
        finally:
            g.cleanup()
    assert first is not None
    steady = [s for s in samples if s[0] >= first] or samples[-1:]
    start, end = steady[0][1], steady[-1][1]
    mid = min(steady, key=lambda s: abs(s[0] - (first + (steady[-1][0] - first) / 2)))[1]
    m = Measure(label(opts.quick), "MB peak RSS", peak, idle, {
        "rss_start_mb": start, "rss_mid_mb": mid, "rss_end_mb": end,
        "growth_pct": 100 * (end - start) / start, "first_delivery_s": first - t_spawn,
        "ready_s": ready, "deliveries/s": steady[-1][2] / (steady[-1][0] - first),
        "delivered": steady[-1][2], "seconds": steady[-1][0] - first,
    }, note=f"{hooks:,} hooks, {total:,} deliveries; baseline = idle gateway RSS")
    print(m.line(opts.rep), flush=True)
    return [m]
