"""create_app(config): the one place the service is wired together."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import orjson
import structlog
from aiohttp import web

from gateway import api
from gateway.api.common import (
    CLIENT,
    CLOCK,
    CONFIG,
    ENGINE,
    METRICS,
    POLICY,
    PRINCIPAL,
    PRUNER,
    STORAGE,
)
from gateway.api.health import PUBLIC
from gateway.auth import Principal, hash_key
from gateway.clock import Clock, SystemClock
from gateway.config import Config
from gateway.delivery import DeliveryEngine
from gateway.dispatch import USER_AGENT, Dispatcher
from gateway.errors import (
    ApiError,
    DatabaseUnavailable,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
)
from gateway.logs import get_logger
from gateway.metrics import Metrics
from gateway.models import ApiKey
from gateway.pruner import Pruner
from gateway.retry import Random
from gateway.storage.backend import Backend
from gateway.storage.connector import RECOVERY_EVERY
from gateway.storage.factory import make_storage
from gateway.targets import PolicyResolver, TargetPolicy

log = get_logger("gateway.http")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def problem(err: ApiError) -> web.Response:
    return web.Response(body=orjson.dumps(err.body()), status=err.status,
                        headers=err.headers(), content_type="application/problem+json")


def layered(handler: Handler, route: str, public: bool, metrics: Metrics, access: bool
            ) -> Handler:
    """A route's handler inside what every request goes through: a request id on every log
    line, the caller's key checked, every error as a problem document, the HTTP metrics and
    the access line. One coroutine a request, made when the route is added: run as aiohttp
    middlewares, which aiohttp builds and walks per request, these cost 19,000 instructions of
    a 265,000-instruction GET /healthz (callgrind, bench/README.md), and as three nested
    coroutines (with the metrics and the config looked up per request) another 9,000 of a
    444,000-instruction publish."""

    async def run(request: web.Request) -> web.StreamResponse:
        rid = request.headers.get("X-Request-Id", "")
        if not rid or not REQUEST_ID.match(rid):
            rid = f"{_RID_PREFIX}{next(_rid_counter):08x}"
        start = time.perf_counter()
        status = 500
        try:
            try:
                key = None
                key_hash = bearer(request, public)
                if key_hash is not None:
                    storage = request.app[STORAGE]
                    # (No coroutine for a key held in memory, the common case.)
                    key = admit(request, key_hash, public, storage.cached_key(key_hash)
                                or await storage.fetch_key(key_hash))
                # Each request runs in its own task, in a copy of its connection's context,
                # where nothing is bound: what one request binds never reaches the next.
                if key is None:
                    structlog.contextvars.bind_contextvars(request_id=rid)
                else:
                    structlog.contextvars.bind_contextvars(request_id=rid, key_id=key)
                resp = await handler(request)
            except Exception as exc:
                structlog.contextvars.bind_contextvars(request_id=rid)
                resp = as_problem(request, exc)
            status = resp.status
            resp.headers["X-Request-Id"] = rid
            return resp
        finally:
            elapsed = time.perf_counter() - start
            # Unknown methods are one label: a client must not grow the metrics without bound.
            method = request.method if request.method in KNOWN_METHODS else "OTHER"
            metrics.observe_request(method, route, status, elapsed)
            if access:
                log.info("request", method=method, route=route, status=status,
                         ms=round(elapsed * 1000, 2))

    return run


async def unmatched(request: web.Request) -> web.StreamResponse:
    """The last route, any path and any method: what aiohttp answers when nothing matches (404,
    or 405 with the methods the path allows), raised inside the layers so that it leaves as a
    problem document, and after authentication, like every other route."""
    allowed: set[str] = set()
    for resource in request.app.router.resources():
        if resource is not request.match_info.route.resource:
            match, methods = await resource.resolve(request)
            if match is None:
                allowed |= methods
    if allowed:
        raise web.HTTPMethodNotAllowed(request.method, allowed)
    raise web.HTTPNotFound()


def _add_routes(app: web.Application, config: Config) -> None:
    for table in api.routes():
        for d in table:
            assert isinstance(d, web.RouteDef)
            # The metrics' route label: the path pattern without its regexes, as aiohttp's
            # resource.canonical gives it.
            route = web.DynamicResource(d.path).canonical if "{" in d.path else d.path
            public = route in PUBLIC or (route == "/metrics" and config.security.metrics_public)
            web.RouteDef(d.method, d.path, layered(d.handler, route, public, app[METRICS],
                                                   config.log.access), d.kwargs).register(app.router)
    app.router.add_route("*", "/{tail:.*}", layered(unmatched, "unmatched", False, app[METRICS],
                                                    config.log.access), name="unmatched")


# Request ids this process makes: a random prefix and a counter, unique without a call to the
# system's random source per request.
_RID_PREFIX = secrets.token_hex(4)
_rid_counter = itertools.count()


def as_problem(request: web.Request, exc: Exception) -> web.StreamResponse:
    """Every error leaves as application/problem+json; nothing internal leaks out. An
    HTTPException below 400 (a redirect) is raised again for aiohttp to answer."""
    if isinstance(exc, ApiError):
        return problem(exc)
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return problem(PayloadTooLarge("request body is over the limit"))
    if isinstance(exc, web.HTTPNotFound):
        return problem(NotFound(f"no route for {request.path}"))
    if isinstance(exc, web.HTTPMethodNotAllowed):
        resp = problem(MethodNotAllowed(f"{request.method} is not allowed on {request.path}"))
        resp.headers["Allow"] = ", ".join(sorted(exc.allowed_methods))
        return resp
    if isinstance(exc, web.HTTPException):
        if exc.status >= 400:
            generic = ApiError(exc.reason)
            generic.status = exc.status  # type: ignore[misc]
            return problem(generic)
        raise exc
    log.exception("unhandled_error", path=request.path)  # (called while handling exc)
    return problem(ApiError("internal error; the request id is in the X-Request-Id header"))


_PRINCIPALS: dict[bytes, Principal] = {}  # by key hash, while the storage holds that key


def bearer(request: web.Request, public: bool) -> bytes | None:
    """The hash of the request's bearer key; None for a public route without a usable one."""
    header = request.headers.get("Authorization")
    if header is None:
        if not public:
            raise Unauthorized("missing API key: send Authorization: Bearer <key>")
        return None
    scheme, _, token = header.partition(" ")
    token = token.strip()
    # Keys are ASCII; a header with other bytes arrives surrogate-escaped and cannot be hashed.
    if scheme.lower() != "bearer" or not token or len(token) > 200 or not token.isascii():
        if public:
            return None
        raise Unauthorized("the Authorization header must be: Bearer <key>")
    return hash_key(token)


def admit(request: web.Request, key_hash: bytes, public: bool, key: ApiKey | None) -> str | None:
    """The key's id, set as the request's principal; None for a public route without a valid
    key."""
    if key is None:
        if public:
            return None
        raise Unauthorized("unknown or revoked API key")
    p = _PRINCIPALS.get(key_hash)
    if p is None or p.key is not key:
        if len(_PRINCIPALS) >= 10000:
            _PRINCIPALS.clear()
        p = _PRINCIPALS[key_hash] = Principal(key)
    request[PRINCIPAL] = p
    return key.id


def _local_base(config: Config) -> str:
    """Where skinny payloads point when server.public_url is unset: this process as it listens.
    Only right for receivers on the same network; production sets public_url."""
    host = config.server.host
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1" if host == "0.0.0.0" else "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{config.server.port}"


async def _declare_topics(storage: Backend, topics: list[tuple[str, str]], clock: Clock) -> None:
    """The config file's topics into the catalog, tried until the database can write."""
    while True:
        await asyncio.sleep(RECOVERY_EVERY)
        with contextlib.suppress(DatabaseUnavailable):
            await storage.put_topics(topics, clock.now())
            return


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
    _add_routes(app, config)

    async def storage_ctx(app: web.Application) -> AsyncIterator[None]:
        storage = make_storage(config)
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
            json_serialize=lambda o: orjson.dumps(o).decode(), auto_decompress=True,
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
        # Another process's publish (PostgreSQL) wakes this loop as this process's own does.
        storage = app[STORAGE]
        if hasattr(storage, "set_waker"):
            storage.set_waker(engine.wake)
        await engine.start(background=run_delivery_loop)
        app[ENGINE] = engine
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

    # Torn down in reverse: the loop stops before the client session and the database close.
    app.cleanup_ctx.extend([storage_ctx, client_ctx, delivery_ctx, pruner_ctx])
    app.on_shutdown.append(begin_stop)
    return app
