"""Soak: steady publishing and healthy deliveries, with hostile traffic on both sides at once.

Two runs of the same length on the same kind of gateway (default configuration, but
max_connections 256 and a 2 s header timeout, so the bounds are reached on this machine):

- quiet: events published at a steady rate to a hook whose receiver (bench/receiver.py)
  answers 204 at once; /healthz probed over a new connection every 50 ms.
- hostile: the same, and at the same time
  - hostile clients: slowloris connections sending a byte of a head every 0.5 s, idle
    connections opened past max_connections (each reopened when closed), malformed
    requests (bad framing, huge headers, gzip that is not gzip, JSON too deep);
  - hostile targets, three hooks fed 3 events/s (each retried twice, 2 s apart): a 60 KB
    gzip bomb of 60 MB, a target that never answers, one that resets the connection.

Figures: healthy deliveries/s (receiver arrivals over the run) hostile against quiet (target
≥ 0.9), /healthz p99 in each, and the gateway's RSS and open descriptors at the start of the
hostile run and 10 s after its clients stop (flat). Opt-in (long):
python bench/run.py soak [--soak-seconds S] --reps 1; default 600 s per run (--quick: 60).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gzip
import os
import random
import time
from pathlib import Path
from typing import Any

import aiohttp
from harness import BENCH, LOCAL, PYTHON, Gateway, receivers, spawn
from report import Measure, Target

TARGETS = [Target("soak healthy deliveries", "ratio", ">=", 0.9, "≥ 0.9 x the quiet run")]
RATE = 100  # healthy events/s
HOSTILE_RATE = 3  # events/s to the hostile targets' topic (one delivery to each of three)
SLOWLORIS = 60
MAX_CONNECTIONS = 256
IDLE = MAX_CONNECTIONS + 16  # idle keep-alive connections held open: the cap and past it
MALFORMED_PER_S = 20


@functools.cache
def _bomb() -> bytes:
    return gzip.compress(b"[" + b"0," * 30_000_000 + b"0]", compresslevel=9)


# -- hostile targets (in this process) ---------------------------------------------------------


async def _read_request(reader: asyncio.StreamReader) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            await reader.readexactly(int(line.split(b":", 1)[1]))


def _target(kind: str) -> Any:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await _read_request(reader)
                if kind == "bomb":
                    bomb = _bomb()
                    writer.write(b"HTTP/1.1 500 Boom\r\nContent-Encoding: gzip\r\n"
                                 b"Content-Length: %d\r\n\r\n" % len(bomb) + bomb)
                    await writer.drain()
                elif kind == "hang":
                    await reader.read()  # never answers; holds the connection until it goes
                    return
                else:  # reset
                    writer.transport.abort()
                    return
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    return serve


async def _listen(handler: Any, name: str, servers: list[asyncio.Server]) -> int:
    """Listen where `name` resolves (localhost: 127.0.0.1 and ::1, on one port)."""
    first = await asyncio.start_server(handler, "::1" if name == "[::1]" else LOCAL, 0)
    servers.append(first)
    port = int(first.sockets[0].getsockname()[1])
    if name == "localhost":
        with contextlib.suppress(OSError):
            servers.append(await asyncio.start_server(handler, "::1", port))
    return port


# -- hostile clients ---------------------------------------------------------------------------


async def _slowloris(port: int, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            _, writer = await asyncio.open_connection(LOCAL, port)
            with contextlib.suppress(ConnectionError):
                for c in b"GET /healthz HTTP/1.1\r\nHost: soak\r\nX-Slow: " + b"s" * 10_000:
                    if stop.is_set() or writer.transport.is_closing():
                        break
                    writer.write(bytes([c]))
                    await asyncio.sleep(0.5)
            writer.close()
        except OSError:
            await asyncio.sleep(0.5)


async def _idle(port: int, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection(LOCAL, port)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: soak\r\n\r\n")
            await reader.readuntil(b'"ok"}')
            try:
                await reader.read()  # held idle until the gateway closes it
            finally:
                writer.close()
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        await asyncio.sleep(1)  # then open another


MALFORMED = [
    b"GARBAGE / HTTP/1.1\r\nHost: soak\r\n\r\n",
    b"GET /healthz HTTP/9.9\r\nHost: soak\r\n\r\n",
    b"POST /v1/events HTTP/1.1\r\nHost: soak\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
    b"POST /v1/events HTTP/1.1\r\nHost: soak\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: soak\r\nX-Big: " + b"b" * 100_000 + b"\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(10_000)) + b"\r\n",
]


async def _malformed(port: int, key: str, stop: asyncio.Event) -> None:
    deep = b"[" * 300 + b"]" * 300
    authed = [
        b"POST /v1/events HTTP/1.1\r\nHost: soak\r\nAuthorization: Bearer %s\r\n"
        b"Content-Encoding: gzip\r\nContent-Length: 9\r\n\r\nnot gzip!" % key.encode(),
        b"POST /v1/events HTTP/1.1\r\nHost: soak\r\nAuthorization: Bearer %s\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (key.encode(), len(deep), deep),
    ]
    rng = random.Random(1)
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection(LOCAL, port)
            writer.write(rng.choice(MALFORMED + authed))
            async with asyncio.timeout(5):
                await reader.read()
            writer.close()
        except (OSError, TimeoutError):
            pass
        await asyncio.sleep(1 / MALFORMED_PER_S)


# -- the steady part ---------------------------------------------------------------------------


async def _publish(g: Gateway, topic: str, rate: float, stop: asyncio.Event,
                   parallel: int = 8) -> int:
    """Events at `rate` per second from `parallel` clients (a publish waits for its commit,
    tens of milliseconds on a busy disk: one client alone could not keep the rate)."""
    sent = 0

    async def client(api: Any, offset: float) -> None:
        nonlocal sent
        start = time.monotonic() + offset
        n = 0
        while not stop.is_set():
            due = start + n * parallel / rate
            if due > time.monotonic():
                await asyncio.sleep(due - time.monotonic())
            await api.call("POST", "/v1/events", {"topic": topic, "account": "bench",
                                                  "data": {"i": n, "pad": "x" * 160}},
                           expect=202)
            n += 1
            sent += 1

    async with g.api(g.publisher_key) as api:
        await asyncio.gather(*(client(api, i / rate) for i in range(parallel)))
    return sent


async def _probe(port: int, stop: asyncio.Event, out: list[float]) -> None:
    url = f"http://{LOCAL}:{port}/healthz"
    while not stop.is_set():
        t0 = time.perf_counter()
        try:
            # A new connection each time: what a load balancer's health check does.
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as s, \
                    s.get(url) as r:
                await r.read()
                ok = r.status == 200
        except (aiohttp.ClientError, TimeoutError):
            ok = False
        out.append(time.perf_counter() - t0 if ok else float("inf"))
        await asyncio.sleep(0.05)


def _proc(pid: int) -> tuple[float, int]:
    """(RSS in MB, open descriptors) of a process."""
    rss = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


def _p99(xs: list[float]) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(len(s) * 0.99))] if s else float("nan")


async def one_run(seconds: float, hostile: bool) -> dict[str, float]:
    targets: list[asyncio.Server] = []
    async with receivers({}) as (recv,):
        g = Gateway(topics=("bench.a", "bench.h"),
                    server={"max_connections": MAX_CONNECTIONS, "header_timeout_seconds": 2},
                    delivery={"timeout_seconds": 2, "retry_schedule_seconds": [2, 2, 2]})
        try:
            await g.start()
            async with g.api() as api:
                await api.create_hook(recv.url("0"), ["bench.a"])
                if hostile:
                    # Three host names, so the hostile targets share no per-host slots with
                    # the healthy one (127.0.0.1): localhost and ::1 are loopback too.
                    for kind, name in (("bomb", "localhost"), ("hang", "[::1]"),
                                       ("reset", "localhost")):
                        port = await _listen(_target(kind), name, targets)
                        await api.create_hook(f"http://{name}:{port}/{kind}", ["bench.h"])
            await recv.reset(0)
            stop = asyncio.Event()
            health: list[float] = []
            tasks = [asyncio.create_task(_probe(g.port, stop, health))]
            await asyncio.sleep(1)
            start_rss, start_fds = _proc(g.pid)
            publish = asyncio.create_task(_publish(g, "bench.a", RATE, stop))
            clients = None
            if hostile:
                _bomb()  # made before the clock starts
                tasks.append(asyncio.create_task(_publish(g, "bench.h", HOSTILE_RATE, stop)))
                # The hostile clients run in a process of their own: hundreds of connections
                # in this one would delay its /healthz probe and its publishers, and the
                # figures would measure this process rather than the gateway.
                clients = spawn([PYTHON, __file__, "--clients", str(g.port), g.admin_key],
                                env={"PYTHONPATH": str(BENCH)}, log=g.dir / "clients.log")
            t0 = time.time()
            before = (await recv.stats())["ok"]
            await asyncio.sleep(seconds)
            after = (await recv.stats())["ok"]
            elapsed = time.time() - t0
            stop.set()
            sent = await publish
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if clients is not None:
                clients.terminate()
                clients.wait(10)
            # The end: once the clients are gone and what they left has timed out (the hostile
            # targets' last attempts, 2 s; their retries, 2 s apart).
            await asyncio.sleep(10)
            end_rss, end_fds = _proc(g.pid)
            return {"rate": (after - before) / elapsed, "published": sent / elapsed,
                    "healthz_p99_ms": _p99(health) * 1000,
                    "healthz_failed": sum(1 for h in health if h == float("inf")),
                    "rss_start_mb": start_rss, "rss_end_mb": end_rss,
                    "fds_start": start_fds, "fds_end": end_fds}
        except Exception:
            print(g.tail(), flush=True)
            raise
        finally:
            for srv in targets:
                srv.close()
            g.cleanup()


async def run(opts: Any) -> list[Measure]:
    seconds = getattr(opts, "soak_seconds", 0) or (60 if opts.quick else 600)
    quiet = await one_run(seconds, hostile=False)
    print(f"  quiet:   {quiet}", flush=True)
    hostile = await one_run(seconds, hostile=True)
    print(f"  hostile: {hostile}", flush=True)
    m = Measure("soak healthy deliveries", "deliveries/s", hostile["rate"], quiet["rate"],
                {"healthz_p99_ms": hostile["healthz_p99_ms"],
                 "quiet_healthz_p99_ms": quiet["healthz_p99_ms"],
                 "healthz_failed": hostile["healthz_failed"],
                 "rss_mb": hostile["rss_start_mb"], "rss_end_mb": hostile["rss_end_mb"],
                 "fds": hostile["fds_start"], "fds_end": hostile["fds_end"]},
                note=f"{seconds:.0f} s per run")
    print(m.line(opts.rep), flush=True)
    return [m]


async def _clients(port: int, key: str) -> None:
    """The hostile clients alone, until this process is terminated."""
    stop = asyncio.Event()
    tasks = [asyncio.create_task(_slowloris(port, stop)) for _ in range(SLOWLORIS)]
    tasks += [asyncio.create_task(_idle(port, stop)) for _ in range(IDLE)]
    tasks.append(asyncio.create_task(_malformed(port, key, stop)))
    await asyncio.gather(*tasks)


if __name__ == "__main__":
    import sys

    if sys.argv[1:2] == ["--clients"]:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_clients(int(sys.argv[2]), sys.argv[3]))
