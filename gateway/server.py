"""`gateway serve`: logging, the event loop (uvloop when installed) and the listening socket."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib

from aiohttp import web

from gateway import __version__
from gateway.app import create_app
from gateway.config import Config
from gateway.logs import configure, get_logger
from gateway.storage.connector import tune_interpreter


def _loop_factory() -> asyncio.AbstractEventLoop:
    try:
        # Imported by name: uvloop is optional (the `fast` extra), so mypy may not see it.
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


def serve(cfg: Config) -> None:
    configure(cfg.log.format, cfg.log.level)
    log = get_logger("gateway")
    app = create_app(cfg)

    tune_interpreter()  # the switch interval the database thread relies on
    # A delivery makes many short-lived containers (aiohttp's request and response objects,
    # rows, tuples); at the default 700 allocations between young-generation collections the
    # collector keeps tracing objects about to die anyway (callgrind: ~2 % of a delivery in
    # gc_collect_main and its visits). At 20,000 most are gone before it looks: deliveries
    # 706-707k → 668-678k instructions, single publish 453k → 451k (bench/instructions.py,
    # two A/Bs). The young generation then holds at most ~20,000 objects (a few MB).
    gc.set_threshold(20000, 20, 20)
    loop = _loop_factory()
    asyncio.set_event_loop(loop)
    main = loop.create_task(_run(app, cfg))
    try:
        loop.run_until_complete(main)
    except (web.GracefulExit, KeyboardInterrupt):
        pass
    finally:
        if not main.done():
            # SIGTERM/SIGINT: cancelling main runs its finally, the staged shutdown.
            main.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                loop.run_until_complete(main)
        rest = asyncio.all_tasks(loop)
        for task in rest:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*rest, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
        log.info("stopped")


async def _run(app: web.Application, cfg: Config) -> None:
    """web.run_app's sequence, except that a start-up failing part-way still unwinds what did
    start: run_app skips runner.cleanup() when setup() raises, which left the database open
    (its non-daemon thread kept the process alive) and SIGTERM swallowed by a closed loop."""
    runner = web.AppRunner(app, handle_signals=True, access_log=None,
                           shutdown_timeout=cfg.delivery.shutdown_grace_seconds)
    try:
        await runner.setup()
        site = web.TCPSite(runner, cfg.server.host, cfg.server.port, backlog=1024,
                           reuse_address=True)
        await site.start()
        log = get_logger("gateway")
        log.info("started", version=__version__, host=cfg.server.host, port=cfg.server.port,
                 database=_database(cfg), verify_intent=cfg.security.verify_intent,
                 allow_private_targets=cfg.security.allow_private_targets,
                 allow_http_targets=cfg.security.allow_http_targets)
        await asyncio.Event().wait()  # until SIGTERM/SIGINT raise GracefulExit
    finally:
        # The site stops accepting, requests in flight get the grace period, then the cleanup
        # contexts unwind in reverse (the delivery loop drains and hands back its claims).
        await runner.cleanup()


def _database(cfg: Config) -> str:
    """The database as the started line names it: the SQLite file, or the PostgreSQL URL
    without its password."""
    if not cfg.database.url:
        return cfg.database.path
    from gateway.storage.postgres.connector import redact

    return redact(cfg.database.url)
