"""What one attempt comes to, end to end: which answers deliver, when the next attempt is, what
counts toward the hook's failure streak, and that a manual retry is a single attempt. Real app,
real SQLite, real receivers on 127.0.0.1; the engine runs on a manual clock.

Each case here was added because a one-line mutant of the outcome classification or the retry
policy survived the rest of the suite (tools/mutate.py --module outcome, --module retry)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.api.common import CLOCK
from gateway.app import create_app
from gateway.clock import ManualClock
from gateway.models import Role
from tests.conftest import Gateway, Receiver, base_config, echo_handshake
from tests.test_delivery import deliveries, get_json, metric, script, the_delivery, ts

StartGateway = Callable[..., Awaitable[Gateway]]


def near(seconds: float) -> Any:
    return pytest.approx(seconds, abs=0.002)  # the API gives times to the millisecond


def answer_from_body() -> Callable[[int, web.Request], Awaitable[tuple[int, dict[str, str], bytes]]]:
    """Answer each delivery with the status code its event's data names."""
    async def respond(n: int, request: web.Request) -> tuple[int, dict[str, str], bytes]:
        hs = echo_handshake(request)
        if hs is not None:
            return 200, hs, b""
        code = orjson.loads(await request.read())["data"]["code"]
        return code, {}, b"{}" if code == 200 else b""

    return respond


# (the receiver's answer, the delivery's status after one attempt). Redirects are refused before
# there is an answer to classify (tests/test_delivery.py).
ANSWERS = [(200, "delivered"), (201, "delivered"), (202, "delivered"), (204, "delivered"),
           (299, "delivered"), (400, "pending"),
           (404, "pending"), (409, "pending"), (429, "pending"), (500, "pending"),
           (503, "pending")]


async def test_which_answers_deliver(start_gateway: StartGateway, receiver: Receiver) -> None:
    gw = await start_gateway(run_delivery_loop=False, delivery={
        "retry_schedule_seconds": (60,), "retry_jitter": 0})
    hook = await gw.hook(receiver)
    receiver.respond = answer_from_body()
    for code, _ in ANSWERS:
        await gw.publish(data={"code": code})
    await gw.engine.run_until_idle()
    got: dict[int, tuple[str, int, float | None]] = {}
    for d in await deliveries(gw, hook["id"]):
        full = await get_json(gw, f"/v1/deliveries/{d['id']}")
        [attempt] = full["attempt_log"]
        nxt = full["next_attempt_at"]
        got[attempt["status_code"]] = (full["status"], full["attempts"],
                                       None if nxt is None else ts(nxt) - gw.clock.now())
    assert got == {code: (status, 1, None if status == "delivered" else near(60))
                   for code, status in ANSWERS}


async def test_each_outcome_is_counted_under_its_own_name(start_gateway: StartGateway,
                                                        receiver: Receiver) -> None:
    gw = await start_gateway(run_delivery_loop=False, delivery={
        "retry_schedule_seconds": (60,), "retry_jitter": 0})
    await gw.hook(receiver)
    receiver.respond = answer_from_body()
    for code in (200, 500, 410):
        await gw.publish(data={"code": code})
        await gw.engine.run_until_idle()
    status, text, _ = await gw.call("GET", "/metrics", gw.admin)
    assert status == 200
    counts = {o: metric(text, "gateway_delivery_attempts_total", outcome=o)
              for o in ("delivered", "retry", "failed", "gone")}
    assert counts == {"delivered": 1, "retry": 1, "failed": 0, "gone": 1}


async def test_a_200_with_a_body_is_delivered_and_ends_the_streak(
        start_gateway: StartGateway, receiver: Receiver) -> None:
    gw = await start_gateway(run_delivery_loop=False, delivery={
        "retry_schedule_seconds": (60, 60), "retry_jitter": 0, "disable_after_failures": 2,
        "disable_after_seconds": 0})
    hook = await gw.hook(receiver)
    receiver.respond = script(500, (200, {"Content-Type": "application/json"}, b'{"ok":true}'),
                              500)
    for _ in range(3):
        await gw.publish()
        await gw.engine.run_until_idle()
    # Failure, success, failure: a streak of one, under the bound of two.
    got = await get_json(gw, f"/v1/hooks/{hook['id']}")
    assert (got["status"], got["consecutive_failures"]) == ("active", 1)
    statuses = sorted(d["status"] for d in await deliveries(gw, hook["id"]))
    assert statuses == ["delivered", "pending", "pending"]


async def test_a_delivery_that_used_up_its_retries_counts_toward_the_streak(
        start_gateway: StartGateway, receiver: Receiver) -> None:
    gw = await start_gateway(run_delivery_loop=False, delivery={
        "retry_schedule_seconds": (), "disable_after_failures": 2, "disable_after_seconds": 0})
    hook = await gw.hook(receiver)
    receiver.respond = script(default=500)
    await gw.publish()
    await gw.engine.run_until_idle()
    d = await the_delivery(gw, hook["id"])
    assert (d["status"], d["attempts"], d["next_attempt_at"]) == ("failed", 1, None)
    got = await get_json(gw, f"/v1/hooks/{hook['id']}")
    assert (got["status"], got["consecutive_failures"]) == ("active", 1)
    await gw.publish()
    await gw.engine.run_until_idle()
    got = await get_json(gw, f"/v1/hooks/{hook['id']}")
    assert (got["status"], got["consecutive_failures"]) == ("disabled", 2)


async def test_a_manual_retry_gets_no_automatic_retries(start_gateway: StartGateway,
                                                        receiver: Receiver) -> None:
    """A delivery that failed under a schedule with no retries, retried by hand after the
    schedule grew (a restart with a longer one, same database): one attempt, then failed,
    though the new schedule would have retried it."""
    before = await start_gateway(run_delivery_loop=False, delivery={"retry_schedule_seconds": ()})
    hook = await before.hook(receiver)
    receiver.respond = script(default=500)
    await before.publish()
    await before.engine.run_until_idle()
    d = await the_delivery(before, hook["id"])
    assert (d["status"], d["attempts"]) == ("failed", 1)

    after = await start_gateway(run_delivery_loop=False, delivery={
        "retry_schedule_seconds": (60, 60, 60), "retry_jitter": 0})
    status, body, _ = await after.call("POST", f"/v1/deliveries/{d['id']}/retry", after.subscriber)
    assert status == 202, body
    await after.engine.run_until_idle()
    assert len(receiver.deliveries) == 2
    d = await the_delivery(after, hook["id"])
    assert (d["status"], d["attempts"], d["next_attempt_at"]) == ("failed", 2, None)
    # An automatic failure under the new schedule is retried again.
    await after.publish()
    await after.engine.run_until_idle()
    pending = await deliveries(after, hook["id"], "&status=pending")
    assert len(pending) == 1 and pending[0]["attempts"] == 1


async def test_retry_after_counts_only_on_429_and_503(start_gateway: StartGateway,
                                                      receiver: Receiver) -> None:
    gw = await start_gateway(run_delivery_loop=False, delivery={
        "retry_schedule_seconds": (60,), "retry_jitter": 0})
    hook = await gw.hook(receiver)

    async def respond(n: int, request: web.Request) -> tuple[int, dict[str, str], bytes]:
        hs = echo_handshake(request)
        if hs is not None:
            return 200, hs, b""
        code = orjson.loads(await request.read())["data"]["code"]
        return code, {"Retry-After": "7"}, b""

    receiver.respond = respond
    codes = (429, 503, 500, 502, 404, 408)
    for code in codes:
        await gw.publish(data={"code": code})
    await gw.engine.run_until_idle()
    waits = {}
    for d in await deliveries(gw, hook["id"]):
        full = await get_json(gw, f"/v1/deliveries/{d['id']}")
        waits[full["attempt_log"][0]["status_code"]] = ts(full["next_attempt_at"]) - gw.clock.now()
    assert waits == {429: near(7), 503: near(7), 500: near(60),
                     502: near(60), 404: near(60), 408: near(60)}


class EdgeRandom:
    """A random source that always answers one end of the range it is asked for."""

    def __init__(self, high: bool) -> None:
        self.high = high
        self.calls: list[tuple[float, float]] = []

    def uniform(self, a: float, b: float) -> float:
        self.calls.append((a, b))
        return b if self.high else a


@pytest.fixture
async def gateway_with_random(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Gateway]]]:
    """A gateway built with create_app(rng=...): the random source behind retry jitter."""
    made: list[tuple[TestServer, aiohttp.ClientSession]] = []

    async def start(rng: Any, jitter: float) -> Gateway:
        cfg = base_config(tmp_path, delivery={"retry_schedule_seconds": (100, 100),
                                              "retry_jitter": jitter})
        app = create_app(cfg, clock=ManualClock(time.time()), rng=rng, run_delivery_loop=False)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        http = aiohttp.ClientSession()
        made.append((server, http))
        gw = Gateway(server, http, app, "", "", "", "", app[CLOCK])
        gw.admin = await gw.key(Role.ADMIN)
        gw.publisher = await gw.key(Role.PUBLISHER)
        gw.subscriber = await gw.key(Role.SUBSCRIBER, "acme")
        return gw

    yield start
    for server, http in reversed(made):
        await http.close()
        await server.close()


@pytest.mark.parametrize(("jitter", "high", "wait"), [
    (0.5, True, 150.0), (0.5, False, 50.0), (0.25, True, 125.0), (0.0, True, 100.0)])
async def test_the_configured_jitter_and_random_source_set_the_wait(
        gateway_with_random: Callable[..., Awaitable[Gateway]], receiver: Receiver,
        jitter: float, high: bool, wait: float) -> None:
    rng = EdgeRandom(high)
    gw = await gateway_with_random(rng, jitter)
    hook = await gw.hook(receiver)
    receiver.respond = script(default=500)
    await gw.publish()
    await gw.engine.run_until_idle()
    d = await the_delivery(gw, hook["id"])
    assert ts(d["next_attempt_at"]) - gw.clock.now() == pytest.approx(wait, abs=0.002)
    assert rng.calls == ([] if jitter == 0 else [(-jitter, jitter)])
