"""The request layer: what every request goes through around its handler. A request id on
every log line, the caller's key checked (and its principal cached), every error as a problem
document, the HTTP metrics and the access line; the 404/405 fallback route. add_routes puts it
around each of the API's routes."""

from __future__ import annotations

import itertools
import re
import secrets
import time
from collections.abc import Awaitable, Callable

import orjson
import structlog
from aiohttp import web

from gateway import api
from gateway.api.common import METRICS, PRINCIPAL, STORAGE
from gateway.api.health import PUBLIC
from gateway.auth import Principal, hash_key
from gateway.config import Config
from gateway.errors import (
    ApiError,
    BadRequest,
    ClientDisconnected,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
)
from gateway.logs import AccessWriter, access_writer, get_logger
from gateway.metrics import Metrics
from gateway.models import ApiKey

log = get_logger("gateway.http")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def problem(err: ApiError) -> web.Response:
    return web.Response(body=orjson.dumps(err.body()), status=err.status,
                        headers=err.headers(), content_type="application/problem+json")


def layered(handler: Handler, route: str, public: bool, metrics: Metrics,
            access: AccessWriter | None) -> Handler:
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
        key = None
        try:
            try:
                if request.version.major != 1:
                    # llhttp reads "HTTP/2.0" in an HTTP/1 head; it is not a request we speak.
                    raise BadRequest("the HTTP version is not 1.0 or 1.1")
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
            if access is not None:
                access(method, route, status, elapsed, rid, key)

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


def add_routes(app: web.Application, config: Config) -> None:
    """Every route of the API, each inside the layer, then the fallback."""
    access = access_writer(config.log.access)
    for table in api.routes():
        for d in table:
            assert isinstance(d, web.RouteDef)
            # The metrics' route label: the path pattern without its regexes, as aiohttp's
            # resource.canonical gives it.
            route = web.DynamicResource(d.path).canonical if "{" in d.path else d.path
            public = route in PUBLIC or (route == "/metrics" and config.security.metrics_public)
            web.RouteDef(d.method, d.path, layered(d.handler, route, public, app[METRICS],
                                                   access), d.kwargs).register(app.router)
    app.router.add_route("*", "/{tail:.*}", layered(unmatched, "unmatched", False, app[METRICS],
                                                    access), name="unmatched")


# Request ids this process makes: a random prefix and a counter, unique without a call to the
# system's random source per request.
_RID_PREFIX = secrets.token_hex(4)
_rid_counter = itertools.count()


def as_problem(request: web.Request, exc: Exception) -> web.StreamResponse:
    """Every error leaves as application/problem+json; nothing internal leaks out. An
    HTTPException below 400 (a redirect) is raised again for aiohttp to answer."""
    if isinstance(exc, ApiError):
        if isinstance(exc, ClientDisconnected):
            log.info("client_disconnected", path=request.path)
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
