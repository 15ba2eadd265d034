"""create_app(config): the one place the service is wired together."""

from __future__ import annotations

import random
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial

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
    STORAGE,
)
from gateway.api.health import PUBLIC
from gateway.auth import Principal, hash_key
from gateway.clock import Clock, SystemClock
from gateway.config import Config
from gateway.delivery import DeliveryEngine
from gateway.dispatch import USER_AGENT, Dispatcher
from gateway.errors import ApiError, MethodNotAllowed, NotFound, PayloadTooLarge, Unauthorized
from gateway.logs import get_logger
from gateway.metrics import Metrics
from gateway.retry import Random
from gateway.storage import Storage
from gateway.targets import PolicyResolver, TargetPolicy

log = get_logger("gateway.http")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def problem(err: ApiError) -> web.Response:
    return web.Response(body=orjson.dumps(err.body()), status=err.status,
                        content_type="application/problem+json")


@web.middleware
async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The three layers every request goes through, outermost first: observe, problems,
    authenticate. One aiohttp middleware that calls them, not three: aiohttp wraps each
    middleware it runs; on a minimal app three cost 10-30 % more CPU per request than one.
    (In the gateway the gain is within the noise: 222 → 208 µs of loop per publish.)"""
    return await observe(request, partial(problems, handler=partial(authenticate, handler=handler)))


async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Request id on every log line, an access line, and the HTTP metrics."""
    rid = request.headers.get("X-Request-Id", "")
    if not REQUEST_ID.match(rid):
        rid = secrets.token_hex(8)
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=rid)
    start = time.perf_counter()
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    status = 500
    try:
        resp = await handler(request)
        status = resp.status
        resp.headers["X-Request-Id"] = rid
        return resp
    finally:
        elapsed = time.perf_counter() - start
        # Unknown methods are one label: a client must not grow the metrics without bound.
        method = request.method if request.method in KNOWN_METHODS else "OTHER"
        request.app[METRICS].observe_request(method, route, status, elapsed)
        if request.app[CONFIG].log.access:
            log.info("request", method=method, route=route, status=status,
                     ms=round(elapsed * 1000, 2))


async def problems(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error leaves as application/problem+json; nothing internal leaks out."""
    try:
        return await handler(request)
    except ApiError as err:
        return problem(err)
    except web.HTTPRequestEntityTooLarge:
        return problem(PayloadTooLarge("request body is over the limit"))
    except web.HTTPNotFound:
        return problem(NotFound(f"no route for {request.path}"))
    except web.HTTPMethodNotAllowed as exc:
        resp = problem(MethodNotAllowed(f"{request.method} is not allowed on {request.path}"))
        resp.headers["Allow"] = ", ".join(sorted(exc.allowed_methods))
        return resp
    except web.HTTPException as exc:
        if exc.status >= 400:
            generic = ApiError(exc.reason)
            generic.status = exc.status  # type: ignore[misc]
            return problem(generic)
        raise
    except Exception:
        log.exception("unhandled_error", path=request.path)
        return problem(ApiError("internal error; the request id is in the X-Request-Id header"))


async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    header = request.headers.get("Authorization")
    public = request.path in PUBLIC or (
        request.path == "/metrics" and request.app[CONFIG].security.metrics_public)
    if header is None:
        if not public:
            raise Unauthorized("missing API key: send Authorization: Bearer <key>")
        return await handler(request)
    scheme, _, token = header.partition(" ")
    token = token.strip()
    # Keys are ASCII; a header with other bytes arrives surrogate-escaped and cannot be hashed.
    if scheme.lower() != "bearer" or not token or len(token) > 200 or not token.isascii():
        if public:
            return await handler(request)
        raise Unauthorized("the Authorization header must be: Bearer <key>")
    key = await request.app[STORAGE].key_by_hash(hash_key(token))
    if key is None:
        if public:
            return await handler(request)
        raise Unauthorized("unknown or revoked API key")
    request[PRINCIPAL] = Principal(key)
    structlog.contextvars.bind_contextvars(key_id=key.id)
    return await handler(request)


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
    app = web.Application(middlewares=[middleware],
                          client_max_size=config.server.max_body_bytes)
    app[CONFIG] = config
    app[CLOCK] = clock or SystemClock()
    app[METRICS] = Metrics()
    app[POLICY] = TargetPolicy(allow_http=config.security.allow_http_targets,
                               allow_private=config.security.allow_private_targets)
    for table in api.routes():
        app.router.add_routes(table)

    async def storage_ctx(app: web.Application) -> AsyncIterator[None]:
        storage = Storage(config.database.path, synchronous=config.database.synchronous,
                          idempotency_ttl=config.server.idempotency_ttl_seconds)
        await storage.open()
        try:
            if config.topics:
                await storage.put_topics([(t.name, t.description) for t in config.topics],
                                         app[CLOCK].now())
        except BaseException:
            await storage.close()  # its thread would otherwise keep the failed process alive
            raise
        app[STORAGE] = storage
        yield
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
        await engine.start(background=run_delivery_loop)
        app[ENGINE] = engine
        yield
        await engine.stop()

    # Torn down in reverse: the loop stops before the client session and the database close.
    app.cleanup_ctx.extend([storage_ctx, client_ctx, delivery_ctx])
    return app
