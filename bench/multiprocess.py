"""Several gateway processes on one PostgreSQL database, beside one process on SQLite, in one run.

For each setup (SQLite x1, PostgreSQL x1, x2, x3) on a fresh database:
  ingest      single-event POSTs for --seconds, one closed-loop load generator per process
              (CONCURRENCY connections each), to a paused hook (each event stores one delivery);
              events accepted per second
  deliveries  --events events waiting for that hook, then the hook resumed: deliveries per
              second until the receiver has them all (every process claims and sends)
and, during each, the CPU seconds per wall second of the PostgreSQL server (the postmaster and
every backend), of the gateway processes and of the whole machine.

The PostgreSQL server is a throwaway cluster (tests/pg.py) with durable settings (fsync on,
synchronous_commit on), started on this machine: it shares the cores with the gateways, the
load generators and the receiver. Run:

    python bench/multiprocess.py [--events 20000] [--seconds 8] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.pg: the cluster

from harness import ACCOUNT, BENCH, PYTHON, Gateway, Receiver, run_json

from tests import pg

CONCURRENCY = 32
TICK = os.sysconf("SC_CLK_TCK")


def _cpu_of(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICK


def _children(ppid: int) -> list[int]:
    out = [ppid]
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                fields = Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == ppid:
                out.append(int(d))
    return out


def _machine_cpu() -> float:
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    idle = int(fields[3]) + int(fields[4])
    return (sum(map(int, fields[:8])) - idle) / TICK


class CpuWindow:
    """CPU seconds used by the database server, the gateways and the machine over a window."""

    def __init__(self, db_pid: int | None, gateway_pids: list[int]) -> None:
        self.db_pid, self.gw = db_pid, gateway_pids

    def _db(self) -> float:
        return _cpu_of(_children(self.db_pid)) if self.db_pid else 0.0

    def __enter__(self) -> CpuWindow:
        # Backends come and go; the pools keep theirs for the window, so per-pid deltas hold.
        self.t0, self.db0, self.gw0, self.m0 = time.time(), self._db(), _cpu_of(self.gw), \
            _machine_cpu()
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.time() - self.t0
        self.wall = wall
        self.db = (self._db() - self.db0) / wall
        self.gateways = (_cpu_of(self.gw) - self.gw0) / wall
        self.machine = (_machine_cpu() - self.m0) / wall


def _postmaster(c: pg.Cluster) -> int:
    return int((c.data / "postmaster.pid").read_text().split()[0])


async def _call(g: Gateway, method: str, path: str, body: Any, expect: int) -> Any:
    async with g.api() as api:
        return await api.call(method, path, body, expect=expect)


async def run_setup(label: str, n: int, url: str, recv: Receiver, events: int, seconds: float,
                    db_pid: int | None, tmp: Path) -> dict[str, Any]:
    database = {"url": url} if url else {}
    procs = [Gateway(delivery={"max_in_flight": 256, "max_in_flight_per_host": 256},
                     database=database, workdir=Path(tempfile.mkdtemp(dir=tmp)))
             for _ in range(n)]
    try:
        procs[0].make_keys()
        for g in procs[1:]:
            g.admin_key, g.publisher_key = procs[0].admin_key, procs[0].publisher_key
            if not url:
                raise ValueError("SQLite runs one process")
        await asyncio.gather(*(g.start() for g in procs))
        hook = await _call(procs[0], "POST", "/v1/hooks", {
            "account": ACCOUNT, "target_url": recv.url("mp"), "topics": ["bench.a"]}, 201)
        await _call(procs[0], "PATCH", f"/v1/hooks/{hook['id']}", {"status": "paused"}, 200)

        # Ingest: every process takes single events from its own load generator.
        body = tmp / "event.json"
        body.write_bytes(orjson.dumps({"topic": "bench.a", "account": ACCOUNT,
                                       "data": {"n": 1, "text": "x" * 200}}))
        with CpuWindow(db_pid, [g.pid for g in procs]) as ingest_cpu:
            loads = await asyncio.gather(*(run_json(
                [PYTHON, str(BENCH / "loadgen.py"), "closed", "--url", f"{g.base}/v1/events",
                 "--key", g.publisher_key, "--body-file", str(body),
                 "--concurrency", str(CONCURRENCY), "--duration", str(seconds)],
                timeout=seconds + 60) for g in procs))
        accepted = sum(r["accepted"] for r in loads)
        ingest = accepted / max(r["duration"] for r in loads)

        # Deliveries: a backlog waiting for the paused hook, then resumed.
        batch = [{"topic": "bench.a", "account": ACCOUNT, "data": {"i": i}} for i in range(500)]
        for i in range(max(0, events - accepted) // 500 + 1):
            await _call(procs[i % n], "POST", "/v1/events", batch, 202)
        backlog = accepted + (max(0, events - accepted) // 500 + 1) * 500
        await recv.reset(target=backlog)
        with CpuWindow(db_pid, [g.pid for g in procs]) as deliver_cpu:
            resumed = time.time()
            await _call(procs[0], "PATCH", f"/v1/hooks/{hook['id']}", {"status": "active"}, 200)
            st = await recv.wait(timeout=600)
        if st["target_at"] is None:
            raise RuntimeError(f"{label}: {st['ok']} of {backlog} deliveries arrived")
        deliveries = backlog / (st["target_at"] - resumed)
        return {"setup": label, "processes": n, "ingest_events_s": round(ingest),
                "deliveries_s": round(deliveries), "backlog": backlog,
                "ingest_db_cpu": round(ingest_cpu.db, 2),
                "ingest_gateway_cpu": round(ingest_cpu.gateways, 2),
                "ingest_machine_cpu": round(ingest_cpu.machine, 2),
                "deliver_db_cpu": round(deliver_cpu.db, 2),
                "deliver_gateway_cpu": round(deliver_cpu.gateways, 2),
                "deliver_machine_cpu": round(deliver_cpu.machine, 2)}
    finally:
        for g in procs:
            g.cleanup()


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=20000)
    ap.add_argument("--seconds", type=float, default=8)
    ap.add_argument("--json", type=Path)
    opts = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="gwbench-mp-"))
    results = []
    with pg.cluster(durable=True) as c:
        dbs = pg.Databases(c)
        db_pid = _postmaster(c)
        recv = await Receiver().start()
        try:
            results.append(await run_setup("sqlite x1", 1, "", recv, opts.events, opts.seconds,
                                           None, tmp))
            for n in (1, 2, 3):
                url = await asyncio.to_thread(dbs.fresh)
                results.append(await run_setup(f"postgresql x{n}", n, url, recv, opts.events,
                                               opts.seconds, db_pid, tmp))
        finally:
            recv.stop()
    cores = os.cpu_count()
    print(f"\n{cores} cores; load average now {os.getloadavg()[0]:.1f} (other work shares them)")
    print(f"{'setup':<16}{'ingest ev/s':>12}{'deliveries/s':>14}   cpu (cores) ingest: db / gw "
          "/ all    deliver: db / gw / all")
    for r in results:
        print(f"{r['setup']:<16}{r['ingest_events_s']:>12,}{r['deliveries_s']:>14,}   "
              f"{r['ingest_db_cpu']:>17.2f} / {r['ingest_gateway_cpu']:.2f} / "
              f"{r['ingest_machine_cpu']:.2f}    {r['deliver_db_cpu']:>12.2f} / "
              f"{r['deliver_gateway_cpu']:.2f} / {r['deliver_machine_cpu']:.2f}")
    if opts.json:
        opts.json.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))


if __name__ == "__main__":
    asyncio.run(main())
