"""Serve an aiohttp app until SIGTERM/SIGINT: the shared tail of the bench's server processes."""

from __future__ import annotations

import asyncio
import signal

from aiohttp import web


async def serve_until_signalled(app: web.Application, host: str, port: int,
                                ready: str | None = None) -> None:
    """Listen on host:port, print `ready` (if given) once listening, and stop on a signal."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, host, port, backlog=1024, reuse_address=True).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if ready is not None:
        print(ready, flush=True)
    await stop.wait()
    await runner.cleanup()
