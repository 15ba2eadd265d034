"""Instructions per request and per delivery, counted by valgrind (callgrind): the gateway and
its bare baseline, in the same run.

Wall-clock ratios on a shared machine move by 10-20 % from one run to the next; instruction
counts do not (the same code counts the same within about 1 % for requests, about 3 % for
deliveries, whose batching depends on timing), so a change of a few percent shows here when
the scenarios cannot see it. Instructions are not time: system calls and cache misses are not
in them, and the database thread's work is. Not a target; a tool for A/Bs and for the table.

- single, batch: `gateway serve` under callgrind, counting only while a client sends N
  single events (or N batches of 100) to POST /v1/events, 16 at a time, one hook paused;
  baseline bench/bareserver.py under callgrind, same client, same bodies.
- delivery: N events queued for one paused hook; counting starts once the hook is resumed
  and stops when the receiver has them all and every attempt is recorded; baseline
  bench/bareclient.py sending N and 2N requests, the difference divided by N (its start-up
  is in both and cancels out).

Run: python bench/instructions.py [single batch delivery] [--tree DIR ...] [--n N] [--hooks H]
     [--log default|quiet]
     (--tree: a source tree put first on PYTHONPATH, e.g. a `git worktree` of another
     commit, to compare trees in one run; default: the installed gateway)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import uvloop
from harness import (
    BENCH,
    PYTHON,
    Gateway,
    _children,
    event,
    free_port,
    kill_all,
    publish_all,
    receivers,
    wait_all,
    wait_http,
)

CONCURRENCY = 16
# --log: the gateway as shipped (level info, an access line per request), or "quiet", the
# configuration every count before this option was made with (/work/baseline-instructions.txt
# among them): level warning, access log off.
LOGS: dict[str, dict[str, Any]] = {"default": {}, "quiet": {"level": "warning", "access": False}}
LOG: dict[str, Any] = {}


def total(out: Path) -> int:
    """Instructions in a callgrind output (the largest of its parts' totals)."""
    best = 0
    for f in out.parent.glob(out.name + "*"):
        for line in f.read_text(errors="replace").splitlines():
            if line.startswith(("summary:", "totals:")):
                best = max(best, int(line.split()[1]))
    return best


class Counted:
    """A process under callgrind that counts only between on() and off()."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.out = log.parent / "callgrind.out"
        with log.open("ab") as f:
            # cwd elsewhere: `python -m gateway` must import the tree on PYTHONPATH, not ./gateway
            self.proc = subprocess.Popen(
                ["valgrind", "--tool=callgrind", "--instr-atstart=no",
                 f"--callgrind-out-file={self.out}", *args],
                stdout=f, stderr=f, stdin=subprocess.DEVNULL, env={**os.environ, **env},
                cwd=tempfile.gettempdir())
        _children.append(self.proc)

    def _control(self, *args: str) -> None:
        subprocess.run(["callgrind_control", *args, str(self.proc.pid)], capture_output=True,
                       check=True, timeout=60)

    def on(self) -> None:
        self._control("-i", "on")

    def off(self) -> int:
        self._control("-i", "off")
        self._control("-d")
        return total(self.out)


async def post_n(url: str, key: str, body: bytes, n: int) -> None:
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    todo = iter(range(n))
    async with aiohttp.ClientSession(headers=headers) as s:
        async def worker() -> None:
            for _ in todo:
                async with s.post(url, data=body) as r:
                    await r.read()
                    if r.status != 202:
                        raise RuntimeError(f"{url} answered {r.status}")
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))


def bodies(kind: str) -> tuple[bytes, int]:
    if kind == "batch":
        return orjson.dumps([event("bench.a", i) for i in range(100)]), 100
    return orjson.dumps(event("bench.a", 1)), 1


async def counted_gateway(g: Gateway, tree: str | None) -> Counted:
    """`gateway serve` for g under callgrind (from `tree` if given), once it answers."""
    g.make_keys()
    env = {"PYTHONPATH": tree} if tree else {}
    c = Counted([PYTHON, "-m", "gateway", "serve", "--config", str(g.config)], env, g.log)
    g.proc = c.proc
    await wait_http(f"{g.base}/readyz", 300, c.proc, "gateway under valgrind")
    return c


async def ingest_gateway(kind: str, tree: str | None, n: int, recv: Any) -> float:
    body, per = bodies(kind)
    g = Gateway(log=LOG)
    try:
        c = await counted_gateway(g, tree)
        async with g.api() as api:
            hook = await api.create_hook(recv.url("0"), ["bench.a"])
            await api.set_status(hook, "paused")
        url = f"{g.base}/v1/events"
        await post_n(url, g.publisher_key, body, max(10, n // 10))  # warm-up, not counted
        c.on()
        await post_n(url, g.publisher_key, body, n)
        return c.off() / (n * per)
    finally:
        g.cleanup()


async def ingest_bare(kind: str, n: int) -> float:
    body, per = bodies(kind)
    work = Path(tempfile.mkdtemp(prefix="gwbench-"))
    port = free_port()
    c = Counted([PYTHON, str(BENCH / "bareserver.py"), "--port", str(port)], {},
                work / "bare.log")
    try:
        await wait_http(f"http://127.0.0.1:{port}/readyz", 300, c.proc, "bare server")
        url = f"http://127.0.0.1:{port}/v1/events"
        await post_n(url, "x", body, max(10, n // 10))
        c.on()
        await post_n(url, "x", body, n)
        return c.off() / (n * per)
    finally:
        with contextlib.suppress(ProcessLookupError):
            c.proc.kill()
        c.proc.wait(30)
        shutil.rmtree(work, ignore_errors=True)


async def delivery_gateway(tree: str | None, n: int, recv: Any, hooks: int = 1) -> float:
    """n deliveries to one hook; or, with hooks > 1, n // hooks events each delivered to every
    hook (one path each on the same receiver), counted from before the first hook is resumed:
    the resumes are in the count, the same in every tree."""
    g = Gateway(delivery={"max_in_flight": 64, "max_in_flight_per_host": 64}, log=LOG)
    try:
        c = await counted_gateway(g, tree)
        async with g.api() as api:
            ids = [await api.create_hook(recv.url(str(h)), ["bench.a"]) for h in range(hooks)]
            for hook in ids:
                await api.set_status(hook, "paused")
            await publish_all(api, [event("bench.a", i) for i in range(n // hooks)])
            await recv.reset(n // hooks * hooks)
            if hooks > 1:
                c.on()
            for hook in ids:
                await api.set_status(hook, "active")
            if hooks == 1:
                c.on()  # (after the resume's own update of the n rows)
            await wait_all([recv], 900)
            waiting = list(ids)
            while waiting:  # every attempt recorded: polled, the gateway is another process
                if await api.pending_empty(waiting[-1]):
                    waiting.pop()
                else:
                    await asyncio.sleep(0.2)
            return c.off() / (n // hooks * hooks)
    finally:
        g.cleanup()


async def delivery_bare(n: int, recv: Any) -> float:
    counts = []
    for m in (n, 2 * n):
        work = Path(tempfile.mkdtemp(prefix="gwbench-"))
        try:
            await recv.reset(m)
            out = work / "callgrind.out"
            proc = await asyncio.create_subprocess_exec(
                "valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", PYTHON,
                str(BENCH / "bareclient.py"), "--urls", recv.url("0"), "--n", str(m),
                "--concurrency", "64", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            await asyncio.wait_for(proc.wait(), 1800)
            await wait_all([recv], 60)
            counts.append(total(out))
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return (counts[1] - counts[0]) / n


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("cases", nargs="*", default=["single", "batch", "delivery"],
                   choices=["single", "batch", "delivery"])
    p.add_argument("--tree", action="append", default=[],
                   help="a gateway source tree to count (repeatable); default: the installed one")
    p.add_argument("--n", type=int, default=0, help="requests or deliveries (default per case)")
    p.add_argument("--hooks", type=int, default=1,
                   help="delivery: spread the deliveries over this many hooks (each event to all)")
    p.add_argument("--log", choices=sorted(LOGS), default="default",
                   help="the gateway's logging: as shipped (default) or quiet (warning, no "
                        "access line: how counts were made before)")
    a = p.parse_args()
    LOG.update(LOGS[a.log])
    if not shutil.which("valgrind") or not shutil.which("callgrind_control"):
        sys.exit("valgrind (callgrind) is not installed: apt install valgrind")
    trees: list[str | None] = list(a.tree) or [None]
    async with receivers({}) as (recv,):
        for case in a.cases:
            if case == "delivery":
                n = a.n or 3000
                bare = await delivery_bare(n, recv)
                unit = "delivery"
            else:
                n = a.n or (1000 if case == "single" else 150)
                bare = await ingest_bare(case, n)
                unit = "event"
            print(f"{case:9s} bare            {bare:>11,.0f} instructions/{unit}", flush=True)
            for tree in trees:
                if case == "delivery":
                    gw = await delivery_gateway(tree, n, recv, a.hooks)
                else:
                    gw = await ingest_gateway(case, tree, n, recv)
                print(f"{case:9s} {tree or 'gateway':15s} {gw:>11,.0f} instructions/{unit}"
                      f"  ratio bare/gateway {bare / gw:.2f}", flush=True)


if __name__ == "__main__":
    try:
        uvloop.run(main())
    finally:
        kill_all()
