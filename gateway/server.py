"""`gateway serve`: logging, the event loop (uvloop when installed) and the listening socket."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import resource

from aiohttp import web

from gateway import __version__
from gateway.api.common import METRICS
from gateway.app import create_app
from gateway.config import Config
from gateway.connections import ConnectionStats, GatewayRunner, Limits
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
    _raise_descriptor_limit(cfg)
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


def make_runner(app: web.Application, cfg: Config) -> GatewayRunner:
    """The runner `gateway serve` uses: aiohttp's, with the connection bounds of
    gateway/connections.py and their figures in /metrics."""
    stats = ConnectionStats()
    app[METRICS].watch_connections(stats)
    s = cfg.server
    limits = Limits(s.max_connections, s.keep_alive_seconds, s.header_timeout_seconds)
    return GatewayRunner(app, limits=limits, stats=stats, handle_signals=True, access_log=None,
                         shutdown_timeout=cfg.delivery.shutdown_grace_seconds)


def _raise_descriptor_limit(cfg: Config) -> None:
    """Lift the soft limit on open descriptors to the hard one: max_connections, the database
    and the delivery loop's connections all need one, and the usual soft limit (1,024) is
    below what the defaults can use. Past the limit accept() fails and the listener stops
    serving anyone, /healthz included; say so at start rather than then."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or hard > soft):
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    need = cfg.server.max_connections + cfg.delivery.max_in_flight + 64
    if soft != resource.RLIM_INFINITY and soft < need:
        get_logger("gateway").warning(
            "descriptor_limit_low", limit=soft, needed=need,
            hint="raise `ulimit -n`, or lower server.max_connections or delivery.max_in_flight")


async def _run(app: web.Application, cfg: Config) -> None:
    """web.run_app's sequence, except that a start-up failing part-way still unwinds what did
    start: run_app skips runner.cleanup() when setup() raises, which left the database open
    (its non-daemon thread kept the process alive) and SIGTERM swallowed by a closed loop."""
    runner = make_runner(app, cfg)
    try:
        await runner.setup()
        site = web.TCPSite(runner, cfg.server.host, cfg.server.port, backlog=1024,
                           reuse_address=True)
        await site.start()
        log = get_logger("gateway")
        log.info("started", version=__version__, host=cfg.server.host, port=cfg.server.port,
                 database=cfg.database.path, verify_intent=cfg.security.verify_intent,
                 allow_private_targets=cfg.security.allow_private_targets,
                 allow_http_targets=cfg.security.allow_http_targets)
        await asyncio.Event().wait()  # until SIGTERM/SIGINT raise GracefulExit
    finally:
        # The site stops accepting, requests in flight get the grace period, then the cleanup
        # contexts unwind in reverse (the delivery loop drains and hands back its claims).
        await runner.cleanup()
