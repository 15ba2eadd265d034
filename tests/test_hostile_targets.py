"""Hostile targets on 127.0.0.1: raw asyncio servers that answer as an attacker would (a gzip
bomb, an endless body, a trickled head, a reset, a flood of 1xx, a redirect loop). The attempt
ends with what the target did; the answer is read only as far as the excerpt needs."""

from __future__ import annotations

import asyncio
import gzip
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from email.utils import formatdate
from typing import Any

import pytest

from tests.conftest import Gateway
from tests.test_delivery import the_delivery, ts

StartGateway = Callable[..., Awaitable[Gateway]]
Behaviour = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

INFLATED = b"[" + b"0," * 30_000_000 + b"0]"  # 60 MB of JSON ...
BOMB = gzip.compress(INFLATED, compresslevel=9)  # ... in about 60 KB


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    await reader.readexactly(length)
    return head


class HostileTarget:
    """A TCP server whose every connection runs `behaviour`; counts the requests it got."""

    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self.requests = 0
        self.server: asyncio.Server | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        try:
            await read_request(reader)
            self.requests += 1
            await self.behaviour(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the gateway hung up: what a hostile target hopes not to see
        finally:
            self.tasks.discard(task)
            writer.close()

    async def start(self) -> HostileTarget:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/hook"

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for t in list(self.tasks):
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.server.wait_closed()


@pytest.fixture
async def hostile() -> AsyncIterator[Callable[[Behaviour], Awaitable[HostileTarget]]]:
    made: list[HostileTarget] = []

    async def make(behaviour: Behaviour) -> HostileTarget:
        t = await HostileTarget(behaviour).start()
        made.append(t)
        return t

    yield make
    for t in made:
        await t.stop()


async def gzip_bomb_sized(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
                 b"Content-Length: %d\r\n\r\n" % len(BOMB) + BOMB)
    await writer.drain()
    await reader.read()  # keep the connection until the gateway is done with it


async def gzip_bomb_rotten(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A bomb whose second half is garbage: only a reader that inflates it all ever sees that
    (and then fails the attempt as a broken answer)."""
    body = BOMB[:len(BOMB) // 2] + b"\xde\xad" * (len(BOMB) // 4)
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n"
                 % len(body) + body)
    await writer.drain()
    await reader.read()


async def gzip_bomb_streamed(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 500 Oops\r\nContent-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n")
    for i in range(0, len(BOMB), 4096):
        part = BOMB[i:i + 4096]
        writer.write(b"%x\r\n%s\r\n" % (len(part), part))
        await writer.drain()
    writer.write(b"0\r\n\r\n")
    await writer.drain()
    await reader.read()


async def endless_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"%x\r\n%s\r\n" % (8192, b"e" * 8192)
    while True:  # until the gateway hangs up
        writer.write(chunk)
        await writer.drain()


async def trickled_head(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    head = b"HTTP/1.1 200 OK\r\nX-Slow: " + b"s" * 100_000
    for i in range(len(head)):
        writer.write(head[i:i + 1])
        await writer.drain()
        await asyncio.sleep(0.01)


async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    # SO_LINGER on, 0 s: close() sends a RST rather than a FIN.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def informational_flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n" * 100)
        await writer.drain()
        await asyncio.sleep(0)


def redirect_to(target: list[str]) -> Behaviour:
    async def behaviour(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 302 Found\r\nLocation: %s\r\nContent-Length: 0\r\n\r\n"
                     % target[0].encode())
        await writer.drain()

    return behaviour


async def deliver_to(gw: Gateway, url: str) -> dict[str, Any]:
    status, hook, _ = await gw.call("POST", "/v1/hooks", gw.subscriber, json={
        "target_url": url, "topics": ["contact.created"]})
    assert status == 201, hook
    await gw.publish()
    await gw.engine.run_until_idle()
    return await the_delivery(gw, hook["id"])


NO_HANDSHAKE = {"verify_intent": False, "allow_private_targets": True, "allow_http_targets": True}


@pytest.mark.parametrize(("behaviour", "status"), [(gzip_bomb_sized, 200),
                                                   (gzip_bomb_rotten, 200),
                                                   (gzip_bomb_streamed, 500)])
async def test_a_gzip_bomb_is_inflated_only_as_far_as_the_excerpt(
        start_gateway: StartGateway, hostile: Any, behaviour: Behaviour, status: int) -> None:
    gw = await start_gateway(run_delivery_loop=False, security=NO_HANDSHAKE)
    target = await hostile(behaviour)
    d = await deliver_to(gw, target.url)
    [attempt] = d["attempt_log"]
    assert attempt["status_code"] == status, attempt
    assert attempt["error"] is None
    assert attempt["response_excerpt"] == INFLATED[:1024].decode()


async def test_an_endless_body_is_read_only_as_far_as_the_excerpt(
        start_gateway: StartGateway, hostile: Any) -> None:
    """The attempt ends with the target's status (not a timeout: the body never ends) and
    the first KiB of what it sent."""
    gw = await start_gateway(run_delivery_loop=False, security=NO_HANDSHAKE,
                             delivery={"timeout_seconds": 5})
    target = await hostile(endless_body)
    d = await deliver_to(gw, target.url)
    [attempt] = d["attempt_log"]
    assert (attempt["status_code"], attempt["error"]) == (500, None), attempt
    assert attempt["response_excerpt"] == "e" * 1024
    assert d["status"] == "pending"


@pytest.mark.parametrize(("behaviour", "error"), [(trickled_head, "timeout"),
                                                  (informational_flood, "timeout"),
                                                  (reset, "connection reset")])
async def test_a_target_that_never_answers_properly_ends_in_an_error(
        start_gateway: StartGateway, hostile: Any, behaviour: Behaviour, error: str) -> None:
    """Meanwhile the gateway serves others: /healthz answers while the attempt is held."""
    gw = await start_gateway(run_delivery_loop=False, security=NO_HANDSHAKE,
                             delivery={"timeout_seconds": 1})
    target = await hostile(behaviour)
    status, hook, _ = await gw.call("POST", "/v1/hooks", gw.subscriber, json={
        "target_url": target.url, "topics": ["contact.created"]})
    assert status == 201, hook
    await gw.publish()
    run = asyncio.create_task(gw.engine.run_until_idle())
    while not run.done():
        assert (await gw.call("GET", "/healthz"))[0] == 200
        await asyncio.wait([run], timeout=0.05)
    await run
    d = await the_delivery(gw, hook["id"])
    [attempt] = d["attempt_log"]
    assert attempt["error"] == error, attempt
    assert attempt["status_code"] is None
    assert attempt["response_excerpt"] == ""
    assert target.requests == 1


async def test_a_redirect_loop_is_one_request_and_refused(start_gateway: StartGateway,
                                                          hostile: Any) -> None:
    gw = await start_gateway(run_delivery_loop=False, security=NO_HANDSHAKE)
    url: list[str] = []
    target = await hostile(redirect_to(url))
    url.append(target.url)  # to itself
    d = await deliver_to(gw, target.url)
    [attempt] = d["attempt_log"]
    assert attempt["error"] == "redirect refused"
    assert target.requests == 1


def past_date(now: float) -> str:
    return formatdate(now - 3600, usegmt=True)


@pytest.mark.parametrize("value", [lambda now: "0", lambda now: "-30", past_date,
                                   lambda now: formatdate(0, usegmt=True)])
async def test_a_retry_after_asking_for_no_wait_gets_the_schedules(
        start_gateway: StartGateway, hostile: Any, value: Callable[[float], str]) -> None:
    """Zero, negative or past: the schedule's next wait (here 60 s), not every retry at once."""
    gw = await start_gateway(run_delivery_loop=False, security=NO_HANDSHAKE, delivery={
        "retry_schedule_seconds": (60, 60, 60), "retry_jitter": 0})
    now = gw.clock.now()

    async def busy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 503 Busy\r\nRetry-After: %s\r\nContent-Length: 0\r\n\r\n"
                     % value(now).encode())
        await writer.drain()

    target = await hostile(busy)
    d = await deliver_to(gw, target.url)
    await gw.engine.run_until_idle()
    assert target.requests == 1
    assert d["status"] == "pending"
    assert ts(d["next_attempt_at"]) == pytest.approx(now + 60, abs=0.002)
