"""One HTTP attempt as a typed pipeline: build the request → check the target → send → classify."""

from __future__ import annotations

import asyncio
import errno
import functools
import time
import zlib
from typing import Any, NamedTuple

import aiohttp
import orjson
from yarl import URL

from gateway import __version__
from gateway.clock import Clock
from gateway.config import DeliveryConfig
from gateway.models import Attempt, DueDelivery, PayloadMode, iso
from gateway.outcome import classify
from gateway.retry import Random
from gateway.signing import signature_header
from gateway.storage import AttemptResult
from gateway.targets import TargetPolicy, TargetRefused, check_url_syntax, refusal_of

USER_AGENT = f"gateway/{__version__}"
READ_LIMIT = 64 * 1024  # read at most this much of an answer, so the connection can be reused
URL_CACHE = 1024  # target URLs kept checked and parsed (see Dispatcher._target)


class OutboundRequest(NamedTuple):  # made per attempt: cheaper than a frozen dataclass
    url: str
    headers: dict[str, str]
    body: bytes


class Response(NamedTuple):  # made per attempt: cheaper than a frozen dataclass
    """What came back: a status (the target answered) or an error (it did not)."""

    status_code: int | None
    error: str | None
    duration_ms: float
    excerpt: str
    retry_after: str | None = None
    detail: str | None = None  # for logs only: never shown to subscribers


@functools.lru_cache(maxsize=4096)  # every delivery of one event shares its timestamp
def _event_time(ts: float) -> str | None:
    return iso(ts)


def build_body(d: DueDelivery, events_base: str) -> bytes:
    body: dict[str, object] = {
        "id": d.event_id,
        "type": d.topic,
        "timestamp": _event_time(d.event_created_at),
        "account": d.account,
        "sequence": d.sequence,
    }
    if d.payload is PayloadMode.SKINNY:
        body["resource_url"] = d.resource_url or f"{events_base}/v1/events/{d.event_id}"
    else:
        # The data was serialised once at publish; splice it in rather than parse it again.
        body["data"] = orjson.Fragment(d.data_json)
    return orjson.dumps(body)


def build_request(d: DueDelivery, timestamp: int, events_base: str) -> OutboundRequest:
    body = build_body(d, events_base)
    headers = dict(d.headers)
    headers.update({
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": d.event_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(d.secrets, d.event_id, timestamp, body),
    })
    return OutboundRequest(d.target_url, headers, body)


def describe_error(exc: BaseException) -> tuple[str, str]:
    """(error as the attempt log shows it, detail for the operator's log)."""
    if refusal_of(exc) is not None:
        return "address refused", str(refusal_of(exc))
    if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
        return "timeout", type(exc).__name__
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return f"dns: {exc.os_error.strerror or 'lookup failed'}", str(exc)
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return "tls: certificate not valid", str(exc)
    if isinstance(exc, aiohttp.ClientSSLError):
        return "tls: handshake failed", str(exc)
    if isinstance(exc, aiohttp.ClientConnectorError):
        if isinstance(exc.os_error, ConnectionRefusedError):
            return "connection refused", str(exc)
        return f"connection failed: {exc.os_error.strerror or type(exc.os_error).__name__}", str(exc)
    if isinstance(exc, aiohttp.ServerDisconnectedError | ConnectionResetError):
        return "connection reset", str(exc)
    if isinstance(exc, aiohttp.ClientOSError) and exc.errno in (errno.ECONNRESET, errno.EPIPE):
        return "connection reset", str(exc)  # (a RST while the request was being written)
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "connection reset", str(exc)
    if isinstance(exc, aiohttp.InvalidURL):
        return "address refused", str(exc)
    return f"error: {type(exc).__name__}", str(exc)


async def read_excerpt(resp: aiohttp.ClientResponse, limit: int) -> str:
    """The first `limit` bytes of the answer's body, decoded; what a target sends past that is
    not read (beyond READ_LIMIT) or not inflated. A gzip bomb (60 MB from 61 KB) costs one
    inflate call with max_length set; an endless body costs READ_LIMIT bytes at most; both then
    close the connection (an answer read whole goes back to the pool)."""
    encoding = resp.headers.get("Content-Encoding")
    inflate = _inflater(encoding) if encoding else None
    if inflate is False:
        return ""  # an encoding the excerpt does not read: nothing of the body is
    if resp.content_length is not None and resp.content_length <= READ_LIMIT:
        raw = await resp.read()  # (small: read whole so the connection can be reused)
        if inflate is None:
            return raw[:limit].decode("utf-8", "replace")
        return _inflate(inflate, raw, limit).decode("utf-8", "replace")
    # read(n) returns what one chunk brought; a streamed answer needs a loop.
    out = b""
    taken = 0
    while len(out) < limit and taken < READ_LIMIT:
        part = await resp.content.read(min(READ_LIMIT - taken, 16384 if inflate else limit - len(out)))
        if not part:
            break
        taken += len(part)
        out += part if inflate is None else _inflate(inflate, part, limit - len(out))
    return out[:limit].decode("utf-8", "replace")


def _inflater(encoding: str) -> Any:
    """A decompressor for gzip or deflate (zlib-wrapped or raw); False for an encoding the
    excerpt does not read (it is then left empty); None for identity."""
    e = encoding.strip().lower()
    if e in ("", "identity"):
        return None
    if e in ("gzip", "x-gzip", "deflate"):
        return zlib.decompressobj(wbits=47)  # 32 + 15: a gzip or a zlib header, detected
    return False


def _inflate(inflater: Any, data: bytes, room: int) -> bytes:
    if room <= 0:
        return b""
    try:
        # max_length: however far the data would inflate, no more than the room comes out.
        out: bytes = inflater.decompress(data, room)
        return out
    except zlib.error:
        return b""


class Dispatcher:
    """Makes attempts. The session's resolver is a PolicyResolver, so a name is checked in the
    very lookup the connection uses; literal addresses, which skip the resolver, are checked here."""

    def __init__(self, session: aiohttp.ClientSession, policy: TargetPolicy, cfg: DeliveryConfig,
                 clock: Clock, rng: Random, events_base: str) -> None:
        self._session = session
        self._policy = policy
        self._cfg = cfg
        self._clock = clock
        self._rng = rng
        self._events_base = events_base.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=cfg.timeout_seconds)
        # Target URL → parsed (allowed) or why it is refused.
        self._targets: dict[str, URL | str] = {}

    def _target(self, url: str) -> URL | str:
        hit = self._targets.get(url)
        if hit is None:
            try:
                hit = check_url_syntax(url, self._policy)
            except TargetRefused as exc:
                hit = exc.reason
            # Checking and parsing cost ~4 µs, and a parsed URL ~540 bytes: 10,000 of them
            # grew the process by 6 MB over a run across 100,000 hooks. Up to URL_CACHE
            # (~0.6 MB), then start again.
            if len(self._targets) >= URL_CACHE:
                self._targets.clear()
            self._targets[url] = hit
        return hit

    async def _post(self, url: URL, req: OutboundRequest) -> aiohttp.ClientResponse:
        """POST one request on the session's connector (its pool, its PolicyResolver, TLS) and
        return the response with its status and headers read. What ClientSession.request does
        for this call, without its general machinery: redirects (refused here anyway), cookies
        (none kept), default headers (every header is given), proxies and tracing (none), its
        own timer (the whole attempt runs under one asyncio.timeout). That machinery is a fifth
        of a bare client's CPU: one making 20,000 POSTs used 123 µs a request through
        session.post, 98 µs this way; a delivery 682,109 → 620,851
        instructions (bench/instructions.py). ClientRequest's and the connector's signatures
        are aiohttp 3.x's (pyproject.toml keeps aiohttp below 4); every delivery test runs
        through here."""
        connector = self._session.connector
        assert connector is not None
        creq = aiohttp.ClientRequest(
            "POST", url, headers=req.headers, data=req.body,
            loop=asyncio.get_running_loop(), session=self._session,
            response_class=aiohttp.ClientResponse, traces=[])
        conn = await connector.connect(creq, [], self._timeout)
        assert conn.protocol is not None
        # (ClientSession's own values for these.)
        # (ClientSession's own values for these, but auto_decompress: an answer is inflated
        # only as far as its excerpt needs, by read_excerpt.)
        conn.protocol.set_response_params(read_until_eof=True, auto_decompress=False,
                                          read_bufsize=2**16, max_line_size=8190,
                                          max_field_size=8190)
        try:
            resp = await creq.send(conn)
            try:
                await resp.start(conn)
            except BaseException:
                resp.close()
                raise
        except BaseException:
            conn.close()
            raise
        return resp

    async def send(self, req: OutboundRequest) -> Response:
        url = self._target(req.url)
        if isinstance(url, str):
            return Response(None, "address refused", 0.0, "", detail=url)
        start = time.perf_counter()
        try:
            async with asyncio.timeout(self._cfg.timeout_seconds), \
                    await self._post(url, req) as resp:
                excerpt = await read_excerpt(resp, self._cfg.response_excerpt_bytes)
                elapsed = (time.perf_counter() - start) * 1000
                if 300 <= resp.status < 400:
                    where = resp.headers.get("Location", "")
                    return Response(None, "redirect refused", elapsed,
                                    f"{resp.status} Location: {where}"[:1024], detail=str(resp.status))
                return Response(resp.status, None, elapsed, excerpt,
                                retry_after=resp.headers.get("Retry-After"))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            elapsed = (time.perf_counter() - start) * 1000
            error, detail = describe_error(exc)
            return Response(None, error, elapsed, "", detail=detail)

    def classify(self, d: DueDelivery, resp: Response, at: float) -> AttemptResult:
        attempt = Attempt(at, resp.status_code, resp.error, resp.duration_ms, resp.excerpt)
        c = self._cfg
        outcome, delay = classify(resp.status_code, resp.retry_after, at, d.attempts + 1,
                                  c.retry_schedule_seconds, manual=d.manual,
                                  max_retry_after=c.max_retry_after_seconds,
                                  jitter=c.retry_jitter, rng=self._rng)
        return AttemptResult(d.id, d.hook_id, attempt, outcome,
                             None if delay is None else at + delay)

    async def attempt(self, d: DueDelivery) -> tuple[AttemptResult, Response]:
        at = self._clock.now()
        req = build_request(d, int(at), self._events_base)
        resp = await self.send(req)
        return self.classify(d, resp, at), resp
