"""Retention: delivery throughput while the pruner works through a large backlog of old rows,
and the database's size over a steady run (opt-in: a few minutes).

1. With and without the pruner: a database seeded (bench/seed_retention.py) with OLD old final
   deliveries, their attempts and events, made two hours ago, and FRESH deliveries due now to
   one receiver. `gateway serve` starts on a copy of it and delivers the fresh ones, once with
   retention.keep_seconds = 3600 (the pruner deletes the whole old backlog meanwhile, from its
   first pass at start-up) and once with keep_seconds far longer (the pruner finds nothing).
   Figure: deliveries/s with the pruner; baseline: without it (each the mean of two runs,
   interleaved A B A B); target ≥ 0.9. Also how many rows the pruner had deleted when the last
   fresh delivery arrived.
2. Steady state: keep_seconds = 30, prune_interval_seconds = 5, events published at a constant
   rate to one receiver for STEADY seconds; the database file and its WAL sampled every 5 s.
   Figure: the largest size in the second half of the run over the largest in the first half
   after the warm-up (keep + 2 intervals): ≤ 1.1 means the file stopped growing.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from harness import (
    BENCH,
    PYTHON,
    SETTINGS,
    Api,
    Gateway,
    event,
    free_port,
    receivers,
    run_json,
    wait_all,
)
from report import Measure, Target

DELIVERY = {"max_in_flight": 64, "max_in_flight_per_host": 64}
LABEL, STEADY_LABEL = "delivery while pruning", "db size, steady state"
TARGETS = [
    Target(LABEL, "ratio", ">=", 0.9, "pruning >= 0.9x delivery throughput"),
    Target(STEADY_LABEL, "value", "<=", 1.1, "file and WAL stop growing"),
]
_seeded: dict[tuple[int, int], tuple[Path, int]] = {}


def with_retention(g: Gateway, keep: float, interval: float) -> None:
    g.config.write_text(g.config.read_text()
                        + f"\n[retention]\nkeep_seconds = {keep}\nprune_interval_seconds = {interval}\n")


async def template(old: int, fresh: int) -> tuple[Path, int]:
    if (old, fresh) not in _seeded:
        d = Path(tempfile.mkdtemp(prefix="gwbench-retention-", dir=SETTINGS.tmp))
        port = free_port()
        print(f"  seeding {old:,} old delivered rows and {fresh:,} due ones into {d} …", flush=True)
        info = await run_json([PYTHON, str(BENCH / "seed_retention.py"), "--db",
                               str(d / "gateway.db"), "--url", f"http://127.0.0.1:{port}/h/a",
                               "--old", str(old), "--fresh", str(fresh)], timeout=1800)
        print(f"  seeded: {info}", flush=True)
        _seeded[(old, fresh)] = (d, port)
    return _seeded[(old, fresh)]


def cleanup() -> None:
    if not SETTINGS.keep:
        for d, _ in _seeded.values():
            shutil.rmtree(d, ignore_errors=True)
    _seeded.clear()


async def pruned(g: Gateway) -> float:
    async with aiohttp.ClientSession() as s, s.get(
            f"{g.base}/metrics", headers={"Authorization": f"Bearer {g.admin_key}"}) as r:
        text = await r.text()
    return sum(float(ln.split()[-1]) for ln in text.splitlines()
               if ln.startswith("gateway_pruned_rows_total{"))


async def deliver_fresh(tpl: Path, port: int, fresh: int, keep: float) -> tuple[float, float]:
    """Deliveries/s of the fresh rows, and rows pruned by the time the last one arrived."""
    async with receivers({"port": port}) as (recv,):
        await recv.reset(target=fresh)
        g = Gateway(delivery=DELIVERY)
        with_retention(g, keep, 60)
        try:
            shutil.copy(tpl / "gateway.db", g.db)
            g.make_keys()
            await g.start()
            st = (await wait_all([recv], 600))[0]
            rows = await pruned(g)
        except Exception:
            print(g.tail())
            raise
        finally:
            g.cleanup()
    return fresh / max(st["target_at"] - st["first"], 1e-9), rows


async def steady(seconds: float, rate: float) -> tuple[float, dict[str, float]]:
    keep, interval = 30.0, 5.0
    async with receivers({}) as (recv,):
        g = Gateway(delivery=DELIVERY)
        with_retention(g, keep, interval)
        samples: list[tuple[float, int, int]] = []
        try:
            await g.start()
            async with Api(g.base, g.admin_key) as api:
                await api.create_hook(recv.url("a"), ["bench.a"])
                started = time.time()
                sent = 0
                while (now := time.time()) - started < seconds:
                    due = int((now - started) * rate) - sent
                    if due > 0:
                        await api.publish([event("bench.a", sent + i) for i in range(due)])
                        sent += due
                    if not samples or now - started - samples[-1][0] >= 5:
                        wal = Path(f"{g.db}-wal")
                        samples.append((now - started, os.stat(g.db).st_size,
                                        wal.stat().st_size if wal.exists() else 0))  # noqa: ASYNC240
                    await asyncio.sleep(0.05)
            rows = await pruned(g)
        except Exception:
            print(g.tail())
            raise
        finally:
            g.cleanup()
    warm = keep + 2 * interval
    half = warm + (seconds - warm) / 2
    first = max((d + w for t, d, w in samples if warm <= t < half), default=0)
    second = max((d + w for t, d, w in samples if t >= half), default=0)
    for t, d, w in samples[::3]:
        print(f"    t={t:5.0f}s  db {d / 1e6:6.2f} MB  wal {w / 1e6:6.2f} MB", flush=True)
    return second / max(first, 1), {"events": sent, "pruned_rows": rows,
                                     "first_half_mb": first / 1e6, "second_half_mb": second / 1e6,
                                     "events/s": rate}


async def run(opts: Any) -> list[Measure]:
    old, fresh = (50000, 10000) if opts.quick else (200000, 20000)
    tpl, port = await template(old, fresh)
    # Interleaved, twice each: on a shared machine one run against the next varies by ±25 %.
    without, with_, rows = [], [], 0.0
    for _ in range(2):
        without.append((await deliver_fresh(tpl, port, fresh, keep=1e9))[0])
        rate, rows = await deliver_fresh(tpl, port, fresh, keep=3600)
        with_.append(rate)
    m = Measure(LABEL, "deliveries/s", sum(with_) / 2, sum(without) / 2,
                {"pruned_rows_meanwhile": rows, "with_min": min(with_),
                 "with_max": max(with_), "without_min": min(without),
                 "without_max": max(without)},
                note=f"{old:,} old delivered rows pruned meanwhile; baseline = pruner idle")
    print(m.line(opts.rep), flush=True)
    seconds = opts.backlog_seconds or (90.0 if opts.quick else 300.0)
    ratio, extra = await steady(seconds, rate=200.0)
    s = Measure(STEADY_LABEL, "x (2nd half max / 1st half max)", ratio, None, extra,
                note="keep_seconds 30, 200 events/s, file + WAL")
    print(s.line(opts.rep), flush=True)
    return [m, s]
