"""A benchmark receiver: a tiny aiohttp server (uvloop) in its own process.

Every POST outside /_bench/ is a delivery. Modes: `ok` answers 204 at once, `fail50` answers
500 to half the attempts at random, `hang` never answers. The orchestrator reads the counts
through the control endpoints:

    POST /_bench/reset?target=N   zero the counts; remember when the N-th 2xx arrives
    GET  /_bench/stats            counts and arrival times (time.time() of this machine)
    GET  /_bench/wait?timeout=S   like stats, but first waits until the target was reached
    GET  /_bench/latencies        arrival - data.t of each 2xx delivery (--latency only)

Run: python bench/receiver.py --port 9001 [--mode ok|fail50|hang] [--latency]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import time

import orjson
import uvloop
from aiohttp import web
from serving import serve_until_signalled


class State:
    def __init__(self) -> None:
        self.reset(0)

    def reset(self, target: int) -> None:
        self.attempts = 0
        self.ok = 0
        self.failed = 0
        self.first: float | None = None
        self.last: float | None = None
        self.target = target
        self.target_at: float | None = None
        self.reached = asyncio.Event()
        self.unique: set[str] = set()
        self.latencies: list[float] = []
        self.bytes = 0

    def stats(self) -> dict[str, object]:
        return {"attempts": self.attempts, "ok": self.ok, "failed": self.failed,
                "unique_ok": len(self.unique), "first": self.first, "last": self.last,
                "target": self.target, "target_at": self.target_at, "bytes": self.bytes}


def make_app(mode: str, latency: bool, seed: int | None) -> web.Application:
    st = State()
    rng = random.Random(seed)

    async def deliver(request: web.Request) -> web.StreamResponse:
        now = time.time()
        st.attempts += 1
        if st.first is None:
            st.first = now
        st.last = now
        body = await request.read()
        st.bytes += len(body)
        if mode == "hang":
            await asyncio.sleep(3600)
        if mode == "fail50" and rng.random() < 0.5:
            st.failed += 1
            return web.Response(status=500)
        st.ok += 1
        st.unique.add(f"{request.path} {request.headers.get('webhook-id', '')}")
        if latency:
            st.latencies.append(now - orjson.loads(body)["data"]["t"])
        if st.ok == st.target:
            st.target_at = now
            st.reached.set()
        return web.Response(status=204)

    async def reset(request: web.Request) -> web.Response:
        st.reset(int(request.query.get("target", "0")))
        return web.json_response({"ok": True})

    async def stats(request: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(st.stats()), content_type="application/json")

    async def wait(request: web.Request) -> web.Response:
        timeout = float(request.query.get("timeout", "60"))
        if st.target > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(st.reached.wait(), timeout)
        return web.Response(body=orjson.dumps(st.stats()), content_type="application/json")

    async def latencies(request: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(st.latencies), content_type="application/json")

    app = web.Application(client_max_size=4 * 1024 * 1024)
    app.router.add_post("/_bench/reset", reset)
    app.router.add_get("/_bench/stats", stats)
    app.router.add_get("/_bench/wait", wait)
    app.router.add_get("/_bench/latencies", latencies)
    app.router.add_route("POST", "/{tail:.*}", deliver)
    return app


async def serve(args: argparse.Namespace) -> None:
    await serve_until_signalled(make_app(args.mode, args.latency, args.seed), args.host, args.port,
                                ready=f"ready {args.port}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--mode", choices=("ok", "fail50", "hang"), default="ok")
    p.add_argument("--latency", action="store_true", help="record arrival - data.t per delivery")
    p.add_argument("--seed", type=int, default=None)
    uvloop.run(serve(p.parse_args()))


if __name__ == "__main__":
    main()
