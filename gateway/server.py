"""`gateway serve`: logging, the event loop (uvloop when installed) and the listening socket."""

from __future__ import annotations

import asyncio

from aiohttp import web

from gateway import __version__
from gateway.app import create_app
from gateway.config import Config
from gateway.logs import configure, get_logger


def _loop_factory() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def serve(cfg: Config) -> None:
    configure(cfg.log.format, cfg.log.level)
    log = get_logger("gateway")
    app = create_app(cfg)

    async def announce(app: web.Application) -> None:
        log.info("started", version=__version__, host=cfg.server.host, port=cfg.server.port,
                 database=cfg.database.path, verify_intent=cfg.security.verify_intent,
                 allow_private_targets=cfg.security.allow_private_targets,
                 allow_http_targets=cfg.security.allow_http_targets)

    app.on_startup.append(announce)
    loop = _loop_factory()
    asyncio.set_event_loop(loop)
    try:
        # SIGTERM/SIGINT: the site stops accepting, requests in flight get the grace period,
        # then cleanup contexts unwind (the delivery loop drains and hands back its claims).
        web.run_app(app, host=cfg.server.host, port=cfg.server.port, print=None,
                    access_log=None, shutdown_timeout=cfg.delivery.shutdown_grace_seconds,
                    loop=loop, reuse_address=True, backlog=1024, handle_signals=True)
    finally:
        log.info("stopped")
