"""Client connections: aiohttp's server with bounds, and malformed requests answered as problems.

aiohttp's RequestHandler (one per connection) parses the request head and answers a framing
error itself, in text/plain that quotes the offending bytes, after logging a traceback; it
keeps an idle connection 3,630 s and has no header-read timeout; its Server keeps any number
of connections. Here a Server subclass makes a RequestHandler subclass that:

- answers every framing error (bad method or version, bad or repeated Content-Length, broken
  chunking, an oversized or excess header, an unreadable Content-Encoding) with a 4xx
  problem document naming the problem in our words, never the request's bytes, and one log
  line without a traceback;
- closes a connection that has not sent a whole request head within header_timeout (a
  slowloris holds nothing for long), with a 408 problem: a sweep over the connections a few
  times per timeout, rather than a timer made and cancelled on every request;
- and, past max_connections, closes the connections idle the longest first (those between
  requests, then those still trickling a head), so a new client (a /healthz probe) is
  served while others hold every connection, and a busy client keeps its own; a log line
  and a metric say so.

The subclasses read three of RequestHandler's attributes (`_request_in_progress`, `_messages`,
`_loop`) and Server's `_connections`; tests/test_hostile.py drives each path, so an aiohttp that
renames them fails there.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

import orjson
from aiohttp import web
from aiohttp.http_exceptions import (
    BadHttpMessage,
    BadHttpMethod,
    BadStatusLine,
    ContentEncodingError,
    ContentLengthError,
    DecompressSizeError,
    HttpProcessingError,
    InvalidHeader,
    InvalidURLError,
    LineTooLong,
    TransferEncodingError,
)
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from gateway.errors import (
    ApiError,
    BadRequest,
    HeadersTooLarge,
    MethodNotAllowed,
    PayloadTooLarge,
    RequestTimeout,
    UnsupportedMediaType,
)
from gateway.logs import get_logger

log = get_logger("gateway.http")

MAX_FIELD = 8190  # one request line or header field, bytes (aiohttp's default)
MAX_HEADERS = 128  # header fields in one request head (aiohttp's default)

# llhttp's reasons, which aiohttp puts first in its message before quoting the input: fixed text
# of the parser's, safe to repeat, as the fuzzer in tests/test_hostile.py checks. Anything not
# listed gets its class's sentence.
_REASONS = {
    "Invalid character in Content-Length": "the Content-Length header is not a number",
    "Duplicate Content-Length": "the Content-Length header is repeated",
    "Content-Length can't be present with Transfer-Encoding":
        "Content-Length and Transfer-Encoding are both present",
    "Invalid character in chunk size": "a chunk size of the chunked body is not valid",
    "Invalid character in chunk extensions": "a chunk extension of the chunked body is not valid",
    "Invalid method encountered": "the request line's method is not an HTTP method",
    "Invalid HTTP version": "the HTTP version is not 1.0 or 1.1",
    "Invalid header token": "a header name has characters headers may not have",
    "Invalid header value char": "a header value has characters headers may not have",
    "Invalid Transfer-Encoding header value": "the Transfer-Encoding header is not valid",
    "Request has invalid `Transfer-Encoding`": "the Transfer-Encoding header is not valid",
    "Too many headers received": f"the request has more than {MAX_HEADERS} header fields",
    "Missing expected CR after header value": "a header line does not end in CRLF",
    "Missing expected LF after header value": "a header line does not end in CRLF",
}


def malformed(exc: BaseException | None) -> ApiError:
    """The problem to answer for a request aiohttp's parser refused (pure; table-tested)."""
    if isinstance(exc, LineTooLong):
        return HeadersTooLarge(f"the request line or a header field is over {MAX_FIELD} bytes")
    if isinstance(exc, DecompressSizeError):
        return PayloadTooLarge("the request body inflates past the limit")
    if isinstance(exc, ContentEncodingError):
        if "Please install" in exc.message:  # (an encoding aiohttp knows but cannot decode here)
            return UnsupportedMediaType("the Content-Encoding is not one this server reads "
                                        "(gzip, deflate, identity)")
        return BadRequest("the request body is not valid for its Content-Encoding")
    if isinstance(exc, ContentLengthError):
        return BadRequest("the request body is shorter than its Content-Length")
    if isinstance(exc, TransferEncodingError):
        return BadRequest("the chunked request body is malformed or cut short")
    message = exc.message if isinstance(exc, HttpProcessingError) else ""
    # (llhttp's messages: "<reason>:\n\n  <the input>", BadStatusLine's "Bad status line:\n  …")
    for part in message.split(":\n")[:2]:
        reason = _REASONS.get(part.strip())
        if reason is not None:
            if part.strip() == "Too many headers received":
                return HeadersTooLarge(reason)
            return BadRequest(reason)
    if isinstance(exc, BadHttpMethod):
        return BadRequest("the request line's method is not an HTTP method")
    if isinstance(exc, BadStatusLine):
        return BadRequest("the request line is not an HTTP/1.x request line")
    if isinstance(exc, InvalidURLError):
        return BadRequest("the request target is not a valid URL")
    if isinstance(exc, InvalidHeader):
        return BadRequest("a header is not valid")
    if isinstance(exc, BadHttpMessage):
        return BadRequest("the request is not valid HTTP/1.1")
    return BadRequest("the request could not be read")


def problem_bytes(err: ApiError) -> bytes:
    """A whole HTTP/1.1 response carrying err, for a connection with no request object."""
    body = orjson.dumps(err.body())
    return (f"HTTP/1.1 {err.status} {err.title}\r\nContent-Type: application/problem+json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body


class Limits(NamedTuple):
    max_connections: int
    keep_alive_seconds: float
    header_timeout_seconds: float


class ConnectionStats:
    """What the connection bounds did, for /metrics."""

    __slots__ = ("header_timeouts", "malformed", "open", "shed")

    def __init__(self) -> None:
        self.open: Callable[[], int] = lambda: 0
        self.shed = 0
        self.header_timeouts = 0
        self.malformed = 0


_TIMEOUT_RESPONSE = problem_bytes(RequestTimeout("no whole request head arrived in time"))


_data_received = RequestHandler.data_received


class GatewayProtocol(RequestHandler):
    """One client connection (see the module docstring)."""

    __slots__ = ("_gw_server", "_head_since", "last_head")

    def __init__(self, manager: GatewayServer, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._gw_server = manager
        # When the head being received began (loop time); None between requests and while
        # one is handled. GatewayServer's sweep closes the connection once it is too old: a
        # timer per request would cost a timer handle made and cancelled on every request.
        self._head_since: float | None = None
        self.last_head = 0.0  # when the last request head began: how long it has been idle

    # -- the header-read timeout -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._head_since = self.last_head = self._loop.time()
        super().connection_made(transport)

    def data_received(self, data: bytes) -> None:
        # A head starts: the first bytes after the last request (or on a new connection) that
        # are not the body of a request being handled.
        if self._head_since is None and not self._request_in_progress and not self._messages:
            self._head_since = self.last_head = self._loop.time()
        _data_received(self, data)  # (RequestHandler's: no super() object per chunk)
        if self._head_since is not None and (self._messages or self._request_in_progress):
            self._head_since = None

    def head_overdue(self, now: float, timeout: float) -> bool:
        since = self._head_since
        return (since is not None and now - since >= timeout and self.transport is not None
                and not self._request_in_progress and not self._messages)

    def head_timed_out(self) -> None:
        self._head_since = None
        self._gw_server.stats.header_timeouts += 1
        assert self.transport is not None
        log.info("header_timeout", peer=_peer(self.transport),
                 seconds=self._gw_server.limits.header_timeout_seconds)
        self.transport.write(_TIMEOUT_RESPONSE)
        self.force_close()

    @property
    def idle(self) -> bool:
        """Between requests: nothing received since the last answer."""
        return (self._head_since is None and not self._request_in_progress
                and not self._messages)

    @property
    def busy(self) -> bool:
        """A request is being handled or waits to be."""
        return bool(self._request_in_progress or self._messages)

    # -- malformed requests ----------------------------------------------------------------------

    def log_exception(self, *args: Any, **kwargs: Any) -> None:
        """aiohttp's tracebacks, as one line. What reaches here is the connection's, not a
        handler's (the request layer answers those): most often a body that went bad, which
        aiohttp meets again reading the rest of it away after the answer."""
        exc = kwargs.get("exc_info")
        if isinstance(exc, web.RequestPayloadError | ConnectionError):
            # The body's fault was answered (and logged) by the request that read it, or the
            # client left; aiohttp closes the connection either way.
            return
        # args[0] is aiohttp's own sentence ("Unhandled exception"), never the request's bytes.
        log.error("connection_error", message=str(args[0]) if args else "",
                  error=type(exc).__name__ if exc is not None else None)

    def handle_error(self, request: BaseRequest, status: int = 500,
                     exc: BaseException | None = None, message: str | None = None
                     ) -> web.StreamResponse:
        """What aiohttp calls for a request its parser refused (and, defensively, for a handler
        error that escaped the request layer): a problem document, one log line."""
        if isinstance(exc, HttpProcessingError):
            err = malformed(exc)
            self._gw_server.stats.malformed += 1
            log.info("malformed_request", status=err.status, problem=err.detail,
                     peer=request.remote)
        elif status == 504:
            err = ApiError("the request took too long")
            log.warning("request_timeout", path=request.path)
        else:
            err = ApiError("internal error")
            log.error("unhandled_error", path=request.path, error=type(exc).__name__)
        if request.writer.output_size > 0:
            # Part of an answer is out already: the connection cannot carry another one.
            raise ConnectionError("the answer had started when the error came")
        resp = web.Response(body=orjson.dumps(err.body()), status=err.status,
                            content_type="application/problem+json")
        resp.force_close()
        return resp


def _peer(transport: asyncio.BaseTransport) -> str | None:
    peer = transport.get_extra_info("peername")
    return peer[0] if isinstance(peer, tuple) and peer else None


def _last_head(h: GatewayProtocol) -> float:
    return h.last_head


class GatewayServer(web.Server):
    """aiohttp's Server making GatewayProtocol connections, at most max_connections of them."""

    def __init__(self, handler: Any, *, request_factory: Any, limits: Limits,
                 stats: ConnectionStats, loop: asyncio.AbstractEventLoop, **kwargs: Any) -> None:
        # (What is left in kwargs goes to each RequestHandler, as in web.Server.)
        kwargs.update(keepalive_timeout=limits.keep_alive_seconds, max_line_size=MAX_FIELD,
                      max_field_size=MAX_FIELD, max_headers=MAX_HEADERS)
        super().__init__(handler, request_factory=request_factory, loop=loop, **kwargs)
        self.limits = limits
        self.stats = stats
        stats.open = lambda: len(self._connections)
        self._protocol_loop = loop
        self._protocol_kwargs = kwargs
        self._last_warning = float("-inf")
        self._shed_since_warning = 0
        # The header-timeout sweep: a few times per timeout, over every connection.
        self._sweep_every = min(1.0, limits.header_timeout_seconds / 4)
        self._sweep: asyncio.TimerHandle | None = None

    def _sweep_heads(self) -> None:
        self._sweep = None
        now = self._protocol_loop.time()
        timeout = self.limits.header_timeout_seconds
        for h in list(self._connections):
            if isinstance(h, GatewayProtocol) and h.head_overdue(now, timeout):
                h.head_timed_out()
        if self._connections:
            self._sweep = self._protocol_loop.call_later(self._sweep_every, self._sweep_heads)

    def pre_shutdown(self) -> None:
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        super().pre_shutdown()

    def __call__(self) -> RequestHandler:
        return GatewayProtocol(self, loop=self._protocol_loop, **self._protocol_kwargs)

    def connection_made(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        if self._sweep is None:
            self._sweep = self._protocol_loop.call_later(self._sweep_every, self._sweep_heads)
        over = len(self._connections) - self.limits.max_connections
        if over > 0:
            self._shed(handler, over)

    def _shed(self, newcomer: RequestHandler, count: int) -> None:
        """Close `count` connections: those idle the longest (between requests, by when their
        last request began), then ones still sending a head, longest first; only when every
        other one is busy with a request, the newcomer. A client that keeps its connection
        busy (a publisher) is never the one to go while others sit idle."""
        others = [h for h in self._connections
                  if h is not newcomer and isinstance(h, GatewayProtocol)]
        victims: list[RequestHandler] = []
        for tier in ([h for h in others if h.idle],
                     [h for h in others if not h.idle and not h.busy]):
            if len(victims) < count:
                chosen: list[GatewayProtocol] = heapq.nsmallest(count - len(victims), tier,
                                                                key=_last_head)
                victims.extend(chosen)
        if len(victims) < count:
            victims.append(newcomer)
        for h in victims:
            h.force_close()
        self.stats.shed += len(victims)
        self._shed_since_warning += len(victims)
        now = time.monotonic()
        if now - self._last_warning >= 1.0:  # one line a second at most, however many closed
            log.warning("connection_limit_reached", max_connections=self.limits.max_connections,
                        closed=self._shed_since_warning)
            self._last_warning = now
            self._shed_since_warning = 0


class GatewayRunner(web.AppRunner):
    """AppRunner serving the app through GatewayServer."""

    def __init__(self, app: web.Application, *, limits: Limits, stats: ConnectionStats,
                 **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._limits = limits
        self._stats = stats

    async def _make_server(self) -> web.Server:
        # AppRunner's own server carries the app's handler and request factory (and the
        # app's startup has run); the same, in GatewayServer.
        base = await super()._make_server()
        kwargs = dict(self._kwargs)
        kwargs["debug"] = False
        handle = base.request_handler

        def route(request: BaseRequest) -> Awaitable[web.StreamResponse]:
            # A CONNECT's target is an authority, not a path: aiohttp's router would answer it
            # a text/plain 404 outside the request layer. (A function, not a coroutine: the
            # other requests pay one call, not a frame.)
            if request.method == "CONNECT":
                return _refuse_connect()
            return handle(request)

        return GatewayServer(route, request_factory=base.request_factory,
                             limits=self._limits, stats=self._stats,
                             loop=asyncio.get_running_loop(), **kwargs)


async def _refuse_connect() -> web.StreamResponse:
    err = MethodNotAllowed("CONNECT is not answered here: this is not a proxy")
    log.info("malformed_request", status=err.status, problem=err.detail)
    resp = web.Response(body=orjson.dumps(err.body()), status=err.status,
                        content_type="application/problem+json",
                        headers={"Allow": "GET, HEAD, POST, PUT, PATCH, DELETE"})
    resp.force_close()  # (what follows a CONNECT head is not HTTP to us: close, as framing errors do)
    return resp
