"""create_app(config): the one place the service is wired together."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator

import aiohttp
import orjson
from aiohttp import web

from gateway import portal
from gateway.api.common import CLIENT, CLOCK, CONFIG, LOOP, METRICS, POLICY, PRUNER, STORAGE
from gateway.clock import Clock, SystemClock
from gateway.config import Config
from gateway.delivery import DeliveryEngine
from gateway.dispatch import USER_AGENT, Dispatcher
from gateway.errors import DatabaseUnavailable
from gateway.logs import get_logger
from gateway.metrics import Metrics
from gateway.pruner import Pruner
from gateway.request_layer import add_routes
from gateway.retry import Random
from gateway.storage import Storage
from gateway.storage.connector import RECOVERY_EVERY
from gateway.targets import PolicyResolver, TargetPolicy

# The engine itself, for the wiring and for tests (run_until_idle); handlers reach the loop
# only through LOOP's protocol.
ENGINE: web.AppKey[DeliveryEngine] = web.AppKey("engine")
PURGE_EVERY = 3600.0  # idempotency keys outlive their window only until the next sweep

log = get_logger("gateway")


async def purge_idempotency_keys(storage: Storage, clock: Clock, every: float = PURGE_EVERY
                                 ) -> None:
    """Forever: delete idempotency keys past their window, now and then every `every`
    seconds. A failed sweep is logged and tried again at the next."""
    while True:
        try:
            await storage.purge_idempotency(clock.now())
        except DatabaseUnavailable:
            pass  # (storage logs the change once; the next sweep tries again)
        except Exception as exc:
            log.warning("idempotency_purge_failed", error=str(exc))
        await asyncio.sleep(every)


async def _declare_topics(storage: Storage, topics: list[tuple[str, str]], clock: Clock) -> None:
    """The config file's topics into the catalog, tried until the database can write."""
    while True:
        await asyncio.sleep(RECOVERY_EVERY)
        with contextlib.suppress(DatabaseUnavailable):
            await storage.put_topics(topics, clock.now())
            return


def _local_base(config: Config) -> str:
    """Where skinny payloads point when server.public_url is unset: this process as it listens.
    Only right for receivers on the same network; production sets public_url."""
    host = config.server.host
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1" if host == "0.0.0.0" else "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{config.server.port}"


def create_app(config: Config, *, clock: Clock | None = None, rng: Random | None = None,
               run_delivery_loop: bool = True) -> web.Application:
    """The whole service. With run_delivery_loop=False the engine is built but only runs when
    a test calls run_until_idle()."""
    app = web.Application(client_max_size=config.server.max_body_bytes)
    app[CONFIG] = config
    app[CLOCK] = clock or SystemClock()
    app[METRICS] = Metrics()
    app[POLICY] = TargetPolicy(allow_http=config.security.allow_http_targets,
                               allow_private=config.security.allow_private_targets)
    portal.setup(app)  # before the API's routes, whose last one takes every other path
    add_routes(app, config)

    async def storage_ctx(app: web.Application) -> AsyncIterator[None]:
        storage = Storage(config.database.path, synchronous=config.database.synchronous,
                          idempotency_ttl=config.server.idempotency_ttl_seconds,
                          busy_timeout=config.database.busy_timeout_seconds)
        await storage.open()
        declaring: asyncio.Task[None] | None = None
        topics = [(t.name, t.description) for t in config.topics]
        try:
            if topics:
                await storage.put_topics(topics, app[CLOCK].now())
        except DatabaseUnavailable:
            # It starts anyway, serving reads; the topics go in once it can write.
            declaring = asyncio.create_task(_declare_topics(storage, topics, app[CLOCK]))
        except BaseException:
            await storage.close()  # its thread would otherwise keep the failed process alive
            raise
        app[STORAGE] = storage
        app[METRICS].watch_database(config.database.path, lambda: storage.writable)
        yield
        if declaring is not None and not declaring.done():
            declaring.cancel()
            await asyncio.gather(declaring, return_exceptions=True)
        await storage.close()

    async def client_ctx(app: web.Application) -> AsyncIterator[None]:
        d = config.delivery
        connector = aiohttp.TCPConnector(
            resolver=PolicyResolver(app[POLICY]), limit=d.max_in_flight,
            limit_per_host=d.max_in_flight_per_host, ttl_dns_cache=10,
            enable_cleanup_closed=False,
        )
        session = aiohttp.ClientSession(
            connector=connector, headers={"User-Agent": USER_AGENT},
            json_serialize=lambda o: orjson.dumps(o).decode(), auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(), trust_env=False,
        )
        app[CLIENT] = session
        yield
        await session.close()

    async def delivery_ctx(app: web.Application) -> AsyncIterator[None]:
        base = config.server.public_url or _local_base(config)
        dispatcher = Dispatcher(app[CLIENT], app[POLICY], config.delivery, app[CLOCK],
                                rng or random.Random(), base)
        engine = DeliveryEngine(app[STORAGE], dispatcher, config.delivery, app[METRICS],
                                app[CLOCK])
        await engine.start(background=run_delivery_loop)
        app[ENGINE] = engine
        app[LOOP] = engine
        yield
        await engine.stop()

    async def pruner_ctx(app: web.Application) -> AsyncIterator[None]:
        pruner = Pruner(app[STORAGE], config.retention, app[METRICS], app[CLOCK])
        if run_delivery_loop:
            pruner.start()
        app[PRUNER] = pruner
        yield
        await pruner.stop()

    async def begin_stop(app: web.Application) -> None:
        # on_shutdown runs before the server waits out the requests in flight (see
        # DeliveryEngine.begin_stop); the cleanup above then waits for that same stop.
        if ENGINE in app:
            app[ENGINE].begin_stop()

    async def purge_ctx(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(purge_idempotency_keys(app[STORAGE], app[CLOCK]),
                                   name="gateway-idempotency-purge")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    # Torn down in reverse: the loop stops before the client session and the database close.
    app.cleanup_ctx.extend([storage_ctx, purge_ctx, client_ctx, delivery_ctx, pruner_ctx])
    app.on_shutdown.append(begin_stop)
    return app
