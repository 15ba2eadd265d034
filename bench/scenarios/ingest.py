"""Ingest: POST /v1/events from 64 concurrent publishers for 10 s, single events and batches
of 100, one hook matching the topic.

The hook is paused in the measured runs, so delivery does not compete for the CPU with ingest;
one more run has it active (a receiver on 127.0.0.1 answers 204) and is reported beside them.
Baseline: bench/bareserver.py (a bare aiohttp handler that parses the same JSON with orjson
and answers 202), under the same load generator (wrk with bench/ingest.lua when installed,
else bench/loadgen.py), in its own process.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import orjson
from harness import (
    BENCH,
    LOCAL,
    PYTHON,
    Gateway,
    Profiler,
    event,
    free_port,
    receivers,
    run_json,
    spawn,
    stop,
    wait_http,
)
from report import Measure, Target

CONCURRENCY = 64
BATCH = 100
TARGETS = [
    Target("ingest single (hook paused)", "ratio", ">=", 0.5, "≥ 0.5 x bare handler"),
    Target("ingest batch 100 (hook paused)", "value", ">=", 50000, "≥ 50,000 events/s"),
]


async def load(url: str, key: str, body: Path, seconds: float, tool: str) -> dict[str, Any]:
    if tool == "wrk":
        args = ["wrk", "-t1", f"-c{CONCURRENCY}", f"-d{seconds:g}s", "--timeout", "10s",
                "-s", str(BENCH / "ingest.lua"), url]
        env = {"BENCH_BODY_FILE": str(body), "BENCH_KEY": key}
        return await run_json(args, timeout=seconds + 60, env=env)
    args = [PYTHON, str(BENCH / "loadgen.py"), "closed", "--url", url, "--key", key, "--body-file",
            str(body), "--concurrency", str(CONCURRENCY), "--duration", str(seconds)]
    return await run_json(args, timeout=seconds + 60)


def rate(res: dict[str, Any], per_request: int) -> float:
    if res["other"] or res["errors"]:
        print(f"  warning: {res['other']} non-202 answers, {res['errors']} errors")
    return float(res["accepted"] * per_request / res["duration"])


async def bare(bodies: dict[str, Path], seconds: float, tool: str) -> dict[str, dict[str, Any]]:
    port = free_port()
    proc = spawn([PYTHON, str(BENCH / "bareserver.py"), "--port", str(port)])
    try:
        await wait_http(f"http://{LOCAL}:{port}/readyz", 15, proc, "bare server")
        url = f"http://{LOCAL}:{port}/v1/events"
        return {k: await load(url, "", b, seconds, tool) for k, b in bodies.items()}
    finally:
        stop(proc)


async def gateway(body: Path, seconds: float, tool: str, active: bool, label: str,
                  recv: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    async with Gateway() as g:
        async with g.api() as api:
            hook = await api.create_hook(recv.url("0"), ["bench.a"])
            if not active:
                await api.set_status(hook, "paused")
        await recv.reset()
        prof = Profiler(g.pid, label)
        try:
            res = await load(f"{g.base}/v1/events", g.publisher_key, body, seconds, tool)
        finally:
            prof.stop()
        return res, await recv.stats()


async def run(opts: Any) -> list[Measure]:
    seconds = 3.0 if opts.quick else 10.0
    tool = opts.loadgen if opts.loadgen != "auto" else ("wrk" if shutil.which("wrk") else "python")
    tmp = Path(tempfile.mkdtemp(prefix="gwbench-ingest-"))
    try:
        single, batch = tmp / "single.json", tmp / "batch.json"
        single.write_bytes(orjson.dumps(event("bench.a", 1)))
        batch.write_bytes(orjson.dumps([event("bench.a", i) for i in range(BATCH)]))
        base = await bare({"single": single, "batch": batch}, seconds, tool)
        out: list[Measure] = []
        async with receivers({}) as (recv,):
            for label, body, per, active in (
                ("ingest single (hook paused)", single, 1, False),
                ("ingest batch 100 (hook paused)", batch, BATCH, False),
                ("ingest single (hook active)", single, 1, True),
            ):
                res, rstats = await gateway(body, seconds, tool, active, label, recv)
                b = base["batch" if per > 1 else "single"]
                extra = {"p50_ms": res["p50_ms"], "p99_ms": res["p99_ms"],
                         "bare_p50_ms": b["p50_ms"], "bare_p99_ms": b["p99_ms"]}
                if active:
                    extra["delivered/s"] = rstats["ok"] / seconds
                m = Measure(label, "events/s", rate(res, per), rate(b, per), extra, note=tool)
                print(m.line(opts.rep), flush=True)
                out.append(m)
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
