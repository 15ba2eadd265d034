"""Shared fixtures: a real gateway app over real HTTP, real receivers, real SQLite in tmp_path."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.api.common import CLOCK, STORAGE
from gateway.app import ENGINE, create_app
from gateway.auth import generate_key, hash_key
from gateway.clock import Clock, ManualClock
from gateway.config import Config, TopicConfig, load_config, with_overrides
from gateway.delivery import DeliveryEngine
from gateway.models import Role
from gateway.storage import Storage

TOPICS = ("contact.created", "contact.updated", "contact.deleted", "billing.tier_changed")
# Always in the catalog, whatever the config says (API.md, "Operational events").
OPERATIONAL_TOPICS = ("gateway.hook.disabled", "gateway.hook.removed",
                      "gateway.delivery.exhausted", "gateway.test")


async def wait_until(predicate: Callable[[], Any], timeout: float = 10.0,
                     what: str = "condition") -> None:
    """Poll a condition with a deadline: synchronisation on state, not on elapsed time."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.01)


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    peer: tuple[str, int] | None = None  # the sender's address and port: one per connection


@dataclass
class Receiver:
    """A real aiohttp server on 127.0.0.1 that records what it gets and answers as told.

    `respond(request_number, request)` returns (status, headers, body) or awaits forever to
    simulate a hung target. By default it echoes the handshake and answers 204."""

    url: str = ""
    requests: list[Received] = field(default_factory=list)
    respond: Callable[[int, web.Request], Awaitable[tuple[int, dict[str, str], bytes]]] | None = None
    in_flight: int = 0
    max_in_flight: int = 0
    _runner: web.AppRunner | None = None
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def deliveries(self) -> list[Received]:
        return [r for r in self.requests if "X-Hook-Secret" not in r.headers]

    @property
    def handshakes(self) -> list[Received]:
        return [r for r in self.requests if "X-Hook-Secret" in r.headers]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        peer = request.transport.get_extra_info("peername") if request.transport else None
        self.requests.append(Received(request.path, dict(request.headers), body, time.time(),
                                      tuple(peer[:2]) if peer else None))
        self._arrived.set()
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if "X-Hook-Secret" in request.headers and self.respond is None:
                return web.Response(status=200,
                                    headers={"X-Hook-Secret": request.headers["X-Hook-Secret"]})
            if self.respond is None:
                return web.Response(status=204)
            status, headers, out = await self.respond(len(self.requests), request)
            return web.Response(status=status, headers=headers, body=out)
        finally:
            self.in_flight -= 1

    async def start(self, host: str = "127.0.0.1") -> Receiver:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None,
                                     shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://{host}:{port}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def wait_for(self, n: int, timeout: float = 10.0) -> None:
        await wait_until(lambda: len(self.deliveries) >= n, timeout,
                         f"{n} deliveries at {self.url} (got {len(self.deliveries)})")


def echo_handshake(request: web.Request) -> dict[str, str] | None:
    secret = request.headers.get("X-Hook-Secret")
    return {"X-Hook-Secret": secret} if secret else None


@dataclass
class Gateway:
    """A running gateway app reached over real HTTP, with one key per role."""

    server: TestServer
    http: aiohttp.ClientSession
    app: web.Application
    admin: str
    publisher: str
    subscriber: str  # account "acme"
    other: str  # subscriber of account "globex"
    clock: Clock

    @property
    def storage(self) -> Storage:
        return self.app[STORAGE]

    @property
    def engine(self) -> DeliveryEngine:
        return self.app[ENGINE]

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))

    async def call(self, method: str, path: str, key: str | None = None, json: Any = None,
                   data: bytes | str | None = None,
                   headers: dict[str, str] | None = None) -> tuple[int, Any, aiohttp.ClientResponse]:
        h = dict(headers or {})
        if key is not None:
            h["Authorization"] = f"Bearer {key}"
        kwargs: dict[str, Any] = {"headers": h}
        if json is not None:
            kwargs["json"] = json
        if data is not None:
            kwargs["data"] = data
        async with self.http.request(method, self.url(path), **kwargs) as resp:
            raw = await resp.read()
            body: Any = None
            if raw and resp.content_type in ("application/json", "application/problem+json"):
                body = await resp.json(content_type=None)
            elif raw:
                body = raw.decode()
            return resp.status, body, resp

    async def key(self, role: Role, account: str | None = None) -> str:
        key = generate_key()
        await self.storage.create_key(role, account, hash_key(key), key[-4:], self.clock.now())
        return key

    async def hook(self, receiver: Receiver, key: str | None = None, **fields: Any) -> dict[str, Any]:
        body = {"target_url": receiver.url + "/hook", "topics": ["contact.created"], **fields}
        status, out, _ = await self.call("POST", "/v1/hooks", key or self.subscriber, json=body)
        assert status == 201, out
        return out  # type: ignore[no-any-return]

    async def publish(self, topic: str = "contact.created", account: str = "acme",
                      data: Any = None, **fields: Any) -> dict[str, Any]:
        body = {"topic": topic, "account": account, "data": data or {"n": 1}, **fields}
        status, out, _ = await self.call("POST", "/v1/events", self.publisher, json=body)
        assert status == 202, out
        return out  # type: ignore[no-any-return]


def base_config(tmp_path: Path, **sections: dict[str, Any]) -> Config:
    cfg = load_config(None, env={})
    cfg = with_overrides(
        cfg,
        database={"path": str(tmp_path / "gateway.db"), "synchronous": "normal"},
        security={"allow_private_targets": True, "allow_http_targets": True,
                  "handshake_timeout_seconds": 2},
        delivery={"timeout_seconds": 2, "retry_schedule_seconds": (0.05, 0.05),
                  "poll_interval_seconds": 0.2, "shutdown_grace_seconds": 1},
        log={"access": False},
    )
    if sections:
        cfg = with_overrides(cfg, **sections)
    return dataclasses.replace(cfg, topics=tuple(TopicConfig(t, f"{t} happened") for t in TOPICS))


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = await Receiver().start()
    yield r
    await r.stop()


@pytest.fixture
async def make_receiver() -> AsyncIterator[Callable[..., Awaitable[Receiver]]]:
    made: list[Receiver] = []

    async def make(host: str = "127.0.0.1") -> Receiver:
        r = await Receiver().start(host)
        made.append(r)
        return r

    yield make
    for r in made:
        await r.stop()


@pytest.fixture
async def start_gateway(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Gateway]]]:
    """start_gateway(config=None, clock=None, run_delivery_loop=True, **sections) → Gateway."""
    started: list[tuple[TestServer, aiohttp.ClientSession]] = []

    async def start(config: Config | None = None, *, clock: Clock | None = None,
                    run_delivery_loop: bool = True, **sections: dict[str, Any]) -> Gateway:
        cfg = config or base_config(tmp_path, **sections)
        if clock is None and not run_delivery_loop:
            clock = ManualClock(time.time())
        app = create_app(cfg, clock=clock, run_delivery_loop=run_delivery_loop)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        http = aiohttp.ClientSession()
        started.append((server, http))
        gw = Gateway(server, http, app, "", "", "", "", app[CLOCK])
        gw.admin = await gw.key(Role.ADMIN)
        gw.publisher = await gw.key(Role.PUBLISHER)
        gw.subscriber = await gw.key(Role.SUBSCRIBER, "acme")
        gw.other = await gw.key(Role.SUBSCRIBER, "globex")
        return gw

    yield start
    for server, http in reversed(started):
        await http.close()
        await server.close()
