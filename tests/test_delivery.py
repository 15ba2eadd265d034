"""The delivery engine end to end: real app, real SQLite, real receivers on 127.0.0.1.

Schedules run on a ManualClock with run_until_idle(), so nothing waits for real backoff; flow
tests use the background loop and wait on conditions."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from email.utils import formatdate
from typing import Any

import orjson
import pytest
from aiohttp import web
from standardwebhooks import Webhook

import gateway.storage.claims as claims_mod
from gateway import __version__
from tests.conftest import Gateway, Receiver, echo_handshake, wait_until

Answer = tuple[int, dict[str, str], bytes]
Respond = Callable[[int, web.Request], Awaitable[Answer]]


def script(*answers: int | Answer, default: int | Answer = 204) -> Respond:
    """Answer deliveries in turn from `answers`, then `default`; handshakes are echoed."""
    queue = list(answers)

    def full(a: int | Answer) -> Answer:
        return (a, {}, b"") if isinstance(a, int) else a

    async def respond(n: int, request: web.Request) -> Answer:
        hs = echo_handshake(request)
        if hs is not None:
            return 200, hs, b""
        return full(queue.pop(0) if queue else default)

    return respond


def hang_until(release: asyncio.Event) -> Respond:
    async def respond(n: int, request: web.Request) -> Answer:
        await release.wait()
        return 204, {}, b""

    return respond


def ts(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def body_of(r: Any) -> dict[str, Any]:
    return orjson.loads(r.body)  # type: ignore[no-any-return]


async def get_json(gw: Gateway, path: str, key: str | None = None, status: int = 200) -> Any:
    got, body, _ = await gw.call("GET", path, key or gw.admin)
    assert got == status, body
    return body


async def deliveries(gw: Gateway, hook_id: str, query: str = "") -> list[dict[str, Any]]:
    body = await get_json(gw, f"/v1/hooks/{hook_id}/deliveries?limit=500{query}")
    return body["data"]  # type: ignore[no-any-return]


async def the_delivery(gw: Gateway, hook_id: str) -> dict[str, Any]:
    """The hook's one delivery, with its attempt log."""
    items = await deliveries(gw, hook_id)
    assert len(items) == 1, items
    return await get_json(gw, f"/v1/deliveries/{items[0]['id']}")  # type: ignore[no-any-return]


def manual(gw: Gateway) -> Any:
    return gw.clock  # a ManualClock when the loop does not run in the background


# -- what the target receives -----------------------------------------------------------------


async def test_full_payload_headers_and_signature(start_gateway, receiver: Receiver) -> None:
    gw = await start_gateway()
    hook = await gw.hook(receiver, headers={"X-Custom": "crm", "X-Tenant": "acme-1"})
    published = await gw.publish(data={"id": 17, "email": "a@b.c"})
    await receiver.wait_for(1)
    got = receiver.deliveries[0]
    assert got.path == "/hook"
    assert got.headers["Content-Type"] == "application/json"
    assert got.headers["User-Agent"] == f"gateway/{__version__}"
    assert got.headers["X-Custom"] == "crm"
    assert got.headers["X-Tenant"] == "acme-1"
    assert got.headers["webhook-id"] == published["id"]
    assert abs(int(got.headers["webhook-timestamp"]) - time.time()) < 10
    payload = Webhook(hook["secret"]).verify(got.body, got.headers)
    event = await get_json(gw, f"/v1/events/{published['id']}")
    assert payload == {
        "id": published["id"], "type": "contact.created", "timestamp": event["created_at"],
        "account": "acme", "sequence": 1, "data": {"id": 17, "email": "a@b.c"},
    }


async def test_skinny_payload_points_at_the_resource(start_gateway, receiver: Receiver) -> None:
    gw = await start_gateway(server={"public_url": "https://hooks.example.com/base/"})
    hook = await gw.hook(receiver, payload="skinny")
    own = await gw.publish(data={"secret": "not sent"}, resource_url="https://crm.example/c/17")
    plain = await gw.publish(data={"secret": "not sent"})
    await receiver.wait_for(2)
    bodies = {r.headers["webhook-id"]: Webhook(hook["secret"]).verify(r.body, r.headers)
              for r in receiver.deliveries}
    for b in bodies.values():
        assert set(b) == {"id", "type", "timestamp", "account", "sequence", "resource_url"}
    assert bodies[own["id"]]["resource_url"] == "https://crm.example/c/17"
    assert bodies[plain["id"]]["resource_url"] == \
        f"https://hooks.example.com/base/v1/events/{plain['id']}"
    assert [bodies[own["id"]]["sequence"], bodies[plain["id"]]["sequence"]] == [1, 2]


async def test_rotated_secret_signs_with_both(start_gateway, receiver: Receiver) -> None:
    gw = await start_gateway()
    hook = await gw.hook(receiver)
    status, rotated, _ = await gw.call("POST", f"/v1/hooks/{hook['id']}/rotate-secret", gw.subscriber)
    assert status == 200, rotated
    assert rotated["secret"] != hook["secret"]
    await gw.publish()
    await receiver.wait_for(1)
    got = receiver.deliveries[0]
    assert len(got.headers["webhook-signature"].split(" ")) == 2
    assert Webhook(hook["secret"]).verify(got.body, got.headers)["sequence"] == 1
    assert Webhook(rotated["secret"]).verify(got.body, got.headers)["sequence"] == 1


# -- retries and the attempt log --------------------------------------------------------------


async def test_retries_keep_the_webhook_id_and_log_every_attempt(start_gateway,
                                                                 receiver: Receiver) -> None:
    gw = await start_gateway()
    hook = await gw.hook(receiver)
    receiver.respond = script((500, {}, b"boom"), (500, {}, b"boom again"), 204)
    published = await gw.publish()
    await receiver.wait_for(3)
    await wait_until(lambda: _status(gw, hook["id"], "delivered"), what="delivered")
    assert len(receiver.deliveries) == 3
    assert {r.headers["webhook-id"] for r in receiver.deliveries} == {published["id"]}
    for r in receiver.deliveries:  # every attempt is signed afresh and verifies
        Webhook(hook["secret"]).verify(r.body, r.headers)
    d = await the_delivery(gw, hook["id"])
    assert d["attempts"] == 3
    assert d["last_status_code"] == 204
    assert d["next_attempt_at"] is None
    log = d["attempt_log"]
    assert [a["status_code"] for a in log] == [500, 500, 204]
    assert [a["error"] for a in log] == [None, None, None]
    assert [a["response_excerpt"] for a in log] == ["boom", "boom again", ""]
    assert all(a["duration_ms"] >= 0 for a in log)
    assert [ts(a["at"]) for a in log] == sorted(ts(a["at"]) for a in log)


async def test_attempt_log_keeps_the_first_kib_of_the_answer(start_gateway,
                                                               receiver: Receiver) -> None:
    """Whether the answer comes with a Content-Length or streamed in small chunks."""
    gw = await start_gateway(run_delivery_loop=False)

    async def streamed(request: web.Request) -> web.StreamResponse:
        hs = echo_handshake(request)
        if hs is not None:
            return web.Response(status=200, headers=hs)
        resp = web.StreamResponse(status=500)
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for i in range(10):
            await resp.write(str(i).encode() * 300)
            await asyncio.sleep(0.005)  # let each chunk travel on its own
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_post("/hook", streamed)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        chunked_url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
        status, chunked_hook, _ = await gw.call("POST", "/v1/hooks", gw.subscriber, json={
            "target_url": chunked_url, "topics": ["contact.created"]})
        assert status == 201, chunked_hook
        sized_hook = await gw.hook(receiver)
        receiver.respond = script((500, {}, "é".encode() * 5000))
        await gw.publish()
        await gw.engine.run_until_idle()
    finally:
        await runner.cleanup()
    [chunked] = (await the_delivery(gw, chunked_hook["id"]))["attempt_log"]
    assert chunked["response_excerpt"] == "0" * 300 + "1" * 300 + "2" * 300 + "3" * 124
    [sized] = (await the_delivery(gw, sized_hook["id"]))["attempt_log"]
    assert sized["response_excerpt"] == "é" * 512


async def _status(gw: Gateway, hook_id: str, status: str) -> bool:
    items = await deliveries(gw, hook_id)
    return bool(items) and all(d["status"] == status for d in items)


def retry_after_seconds(now: float) -> str:
    return "120"


def retry_after_date(now: float) -> str:
    return formatdate(now + 300, usegmt=True)


@pytest.mark.parametrize(("code", "value", "cap", "expected"), [
    (429, retry_after_seconds, 3600, lambda now: now + 120),
    (503, retry_after_date, 3600, lambda now: float(int(now + 300))),
    (429, lambda now: "100000", 600, lambda now: now + 600),
])
async def test_retry_after_is_respected(start_gateway, receiver: Receiver, code: int,
                                        value: Callable[[float], str], cap: float,
                                        expected: Callable[[float], float]) -> None:
    gw = await start_gateway(run_delivery_loop=False, delivery={"max_retry_after_seconds": cap})
    hook = await gw.hook(receiver)
    now = gw.clock.now()
    receiver.respond = script((code, {"Retry-After": value(now)}, b""), 204)
    await gw.publish()
    await gw.engine.run_until_idle()
    d = await the_delivery(gw, hook["id"])
    assert d["status"] == "pending"
    assert d["attempt_log"][0]["status_code"] == code
    due = ts(d["next_attempt_at"])
    assert due == pytest.approx(expected(now), abs=0.002)
    # Nothing goes out before that moment, though the schedule's first wait is 0.05 s.
    await gw.engine.run_until_idle()
    manual(gw).advance(due - now - 1)
    await gw.engine.run_until_idle()
    assert len(receiver.deliveries) == 1
    manual(gw).advance(1.01)
    await gw.engine.run_until_idle()
    assert len(receiver.deliveries) == 2
    assert (await the_delivery(gw, hook["id"]))["status"] == "delivered"


async def test_unreadable_retry_after_falls_back_to_the_schedule(start_gateway,
                                                                 receiver: Receiver) -> None:
    gw = await start_gateway(run_delivery_loop=False)
    hook = await gw.hook(receiver)
    receiver.respond = script((429, {"Retry-After": "²"}, b""), 204)
    await gw.publish()
    await gw.engine.run_until_idle(timeout=5)
    assert len(receiver.deliveries) == 1
    d = await the_delivery(gw, hook["id"])
    assert [a["status_code"] for a in d["attempt_log"]] == [429]
    assert ts(d["next_attempt_at"]) - gw.clock.now() == pytest.approx(0.05, abs=0.01)


async def test_gone_removes_the_hook_and_fails_what_waited(start_gateway, receiver: Receiver) -> None:
    gw = await start_gateway(run_delivery_loop=False)
    hook = await gw.hook(receiver)
    receiver.respond = script(500, 410)
    first = await gw.publish()
    await gw.engine.run_until_idle()  # 500: first waits for its retry
    second = await gw.publish()
    await gw.engine.run_until_idle()  # 410 for the second
    assert len(receiver.deliveries) == 2
    assert (await get_json(gw, f"/v1/hooks/{hook['id']}"))["status"] == "removed"
    by_event = {d["event_id"]: d for d in await deliveries(gw, hook["id"])}
    assert by_event[first["id"]]["status"] == "failed"
    assert by_event[first["id"]]["attempts"] == 1
    assert by_event[second["id"]]["status"] == "failed"
    assert by_event[second["id"]]["last_status_code"] == 410
    manual(gw).advance(3600)
    await gw.engine.run_until_idle()
    assert len(receiver.deliveries) == 2
    assert (await gw.publish())["deliveries"] == 0


async def test_redirects_are_not_followed(start_gateway, make_receiver) -> None:
    gw = await start_gateway(run_delivery_loop=False)
    a, b = await make_receiver(), await make_receiver()
    hook = await gw.hook(a)
    a.respond = script((302, {"Location": b.url + "/hook"}, b"moved"))
    await gw.publish()
    await gw.engine.run_until_idle()
    assert len(a.deliveries) == 1
    assert b.requests == []
    d = await the_delivery(gw, hook["id"])
    assert d["status"] == "pending"
    [attempt] = d["attempt_log"]
    assert attempt["error"] == "redirect refused"
    assert attempt["status_code"] is None
    assert b.url in attempt["response_excerpt"]


async def test_attempts_to_a_host_reuse_its_connections(start_gateway, receiver: Receiver) -> None:
    """Each attempt hands its connection back to the pool when it is done, whatever the
    answer: twenty deliveries one at a time, with answers of several kinds (read whole, empty,
    retried), arrive over one connection."""
    gw = await start_gateway(run_delivery_loop=False, delivery={
        "max_in_flight": 1, "max_in_flight_per_host": 1, "retry_schedule_seconds": (3600,)})
    await gw.hook(receiver)
    receiver.respond = script(200, 204, 500, (200, {}, b"x" * 3000), default=204)
    for i in range(20):
        await gw.publish(data={"i": i})
    await gw.engine.run_until_idle()
    assert len(receiver.deliveries) == 20
    assert len({r.peer for r in receiver.deliveries}) == 1, {r.peer for r in receiver.deliveries}


async def test_timeout(start_gateway, receiver: Receiver) -> None:
    gw = await start_gateway(run_delivery_loop=False, delivery={"timeout_seconds": 0.3})
    hook = await gw.hook(receiver)
    receiver.respond = hang_until(asyncio.Event())
    await gw.publish()
    await gw.engine.run_until_idle()
    d = await the_delivery(gw, hook["id"])
    [attempt] = d["attempt_log"]
    assert attempt["error"] == "timeout"
    assert attempt["status_code"] is None
    assert 250 <= attempt["duration_ms"] < 2000
    assert d["status"] == "pending"


async def test_connection_refused(start_gateway) -> None:
    gw = await start_gateway(run_delivery_loop=False, security={"verify_intent": False})
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    status, hook, _ = await gw.call("POST", "/v1/hooks", gw.subscriber, json={
        "target_url": f"http://127.0.0.1:{port}/hook", "topics": ["contact.created"]})
    assert status == 201, hook
    await gw.publish()
    await gw.engine.run_until_idle()
    [attempt] = (await the_delivery(gw, hook["id"]))["attempt_log"]
    assert attempt["error"] == "connection refused"
    assert attempt["status_code"] is None


async def test_exhaustion_then_manual_retry(start_gateway, receiver: Receiver) -> None:
    gw = await start_gateway(run_delivery_loop=False)  # schedule: two retries
    hook = await gw.hook(receiver)
    receiver.respond = script(default=500)
    published = await gw.publish()
    for _ in range(5):
        await gw.engine.run_until_idle()
        manual(gw).advance(1)
    assert len(receiver.deliveries) == 3
    d = await the_delivery(gw, hook["id"])
    assert (d["status"], d["attempts"], d["next_attempt_at"]) == ("failed", 3, None)
    assert [a["status_code"] for a in d["attempt_log"]] == [500, 500, 500]

    # A manual retry is one more attempt, and a failed one fails again at once.
    status, body, _ = await gw.call("POST", f"/v1/deliveries/{d['id']}/retry", gw.subscriber)
    assert status == 202, body
    assert body["status"] == "pending"
    for _ in range(3):
        await gw.engine.run_until_idle()
        manual(gw).advance(1)
    assert len(receiver.deliveries) == 4
    assert (await the_delivery(gw, hook["id"]))["status"] == "failed"

    receiver.respond = script(204)
    status, body, _ = await gw.call("POST", f"/v1/deliveries/{d['id']}/retry", gw.subscriber)
    assert status == 202, body
    await gw.engine.run_until_idle()
    d = await the_delivery(gw, hook["id"])
    assert (d["status"], d["attempts"], d["last_status_code"]) == ("delivered", 5, 204)
    assert len(receiver.deliveries) == 5
    assert {r.headers["webhook-id"] for r in receiver.deliveries} == {published["id"]}
    # A delivered delivery is sent once more.
    status, body, _ = await gw.call("POST", f"/v1/deliveries/{d['id']}/retry", gw.subscriber)
    assert status == 202, body
    assert body["status"] == "pending"
    await gw.engine.run_until_idle()
    d = await the_delivery(gw, hook["id"])
    assert (d["status"], d["attempts"]) == ("delivered", 6)
    assert len(receiver.deliveries) == 6


async def test_retrying_a_pending_delivery_keeps_its_schedule(start_gateway,
                                                              receiver: Receiver) -> None:
    """'Try again now' on a delivery that still has retries left does not use them up."""
    gw = await start_gateway(run_delivery_loop=False,
                             delivery={"retry_schedule_seconds": (60, 60, 60), "retry_jitter": 0})
    hook = await gw.hook(receiver)
    receiver.respond = script(default=500)
    await gw.publish()
    await gw.engine.run_until_idle()
    [d] = await deliveries(gw, hook["id"])
    assert (d["status"], d["attempts"]) == ("pending", 1)
    status, body, _ = await gw.call("POST", f"/v1/deliveries/{d['id']}/retry", gw.subscriber)
    assert status == 202, body
    await gw.engine.run_until_idle()
    d = await the_delivery(gw, hook["id"])
    assert len(receiver.deliveries) == 2
    assert (d["status"], d["attempts"]) == ("pending", 2)
    assert ts(d["next_attempt_at"]) == pytest.approx(gw.clock.now() + 60, abs=0.002)
    for _ in range(3):
        manual(gw).advance(61)
        await gw.engine.run_until_idle()
    d = await the_delivery(gw, hook["id"])
    assert (d["status"], d["attempts"]) == ("failed", 4)


async def test_exhaustion_then_manual_retry_with_the_loop_running(start_gateway,
                                                                  receiver: Receiver) -> None:
    gw = await start_gateway()
    hook = await gw.hook(receiver)
    receiver.respond = script(default=500)
    await gw.publish()
    await wait_until(lambda: _status(gw, hook["id"], "failed"), what="failed")
    assert len(receiver.deliveries) == 3
    receiver.respond = script(204)
    [d] = await deliveries(gw, hook["id"])
    status, _, _ = await gw.call("POST", f"/v1/deliveries/{d['id']}/retry", gw.subscriber)
    assert status == 202
    await wait_until(lambda: _status(gw, hook["id"], "delivered"), what="delivered")
    assert len(receiver.deliveries) == 4


# -- hook states ------------------------------------------------------------------------------


async def test_auto_disable_then_reactivation(start_gateway, receiver: Receiver) -> None:
    gw = await start_gateway(run_delivery_loop=False, delivery={
        "disable_after_failures": 3, "disable_after_seconds": 0,
        "retry_schedule_seconds": (60, 60, 60, 60)})
    hook = await gw.hook(receiver)
    receiver.respond = script(default=500)
    for _ in range(3):
        await gw.publish()
    await gw.engine.run_until_idle()
    assert len(receiver.deliveries) == 3
    got = await get_json(gw, f"/v1/hooks/{hook['id']}")
    assert got["status"] == "disabled"
    # Later events still get their deliveries; they wait, nothing is sent.
    assert (await gw.publish())["deliveries"] == 1
    manual(gw).advance(3600)
    await gw.engine.run_until_idle()
    assert len(receiver.deliveries) == 3
    waiting = await deliveries(gw, hook["id"], "&status=pending")
    assert len(waiting) == 4
    receiver.respond = script(204)
    status, body, _ = await gw.call("PATCH", f"/v1/hooks/{hook['id']}", gw.subscriber,
                                    json={"status": "active"})
    assert status == 200, body
    assert body["status"] == "active"
    await gw.engine.run_until_idle()
    assert len(receiver.deliveries) == 7
    assert len(await deliveries(gw, hook["id"], "&status=delivered")) == 4


async def test_a_success_ends_the_failure_streak_of_every_hook_in_the_batch(
        start_gateway, make_receiver) -> None:
    """Attempts to several hooks are recorded together, and the hooks whose last attempt
    succeeded have their streaks reset together: two failures, a success, two failures is a
    streak of two, under the bound of three; one more failure disables each hook."""
    gw = await start_gateway(run_delivery_loop=False, delivery={
        "disable_after_failures": 3, "disable_after_seconds": 0,
        "retry_schedule_seconds": (3600, 3600, 3600, 3600)})
    receivers = [await make_receiver() for _ in range(3)]
    hooks = [await gw.hook(r) for r in receivers]

    async def round_of(status: int, events: int) -> None:
        for r in receivers:
            r.respond = script(default=status)
        for _ in range(events):
            await gw.publish()
        await gw.engine.run_until_idle()

    async def statuses() -> list[str]:
        return [(await get_json(gw, f"/v1/hooks/{h['id']}"))["status"] for h in hooks]

    await round_of(500, 2)
    await round_of(204, 1)
    await round_of(500, 2)
    assert await statuses() == ["active"] * 3
    await round_of(500, 1)
    assert await statuses() == ["disabled"] * 3
    assert [len(r.deliveries) for r in receivers] == [6, 6, 6]


async def test_disabling_needs_the_failure_span_too(start_gateway, receiver: Receiver) -> None:
    gw = await start_gateway(run_delivery_loop=False, delivery={
        "disable_after_failures": 2, "disable_after_seconds": 600,
        "retry_schedule_seconds": (300, 300, 300, 300), "retry_jitter": 0})
    hook = await gw.hook(receiver)
    receiver.respond = script(default=500)
    await gw.publish()
    await gw.publish()
    await gw.engine.run_until_idle()  # 2 failures, but within a moment
    assert (await get_json(gw, f"/v1/hooks/{hook['id']}"))["status"] == "active"
    manual(gw).advance(301)
    await gw.engine.run_until_idle()  # 4 failures over 301 s
    assert (await get_json(gw, f"/v1/hooks/{hook['id']}"))["status"] == "active"
    manual(gw).advance(301)
    await gw.engine.run_until_idle()  # 6 failures over 602 s
    assert len(receiver.deliveries) == 6
    assert (await get_json(gw, f"/v1/hooks/{hook['id']}"))["status"] == "disabled"


async def test_pause_keeps_deliveries_and_resume_sends_them(start_gateway,
                                                            receiver: Receiver) -> None:
    gw = await start_gateway(run_delivery_loop=False)
    hook = await gw.hook(receiver)
    status, body, _ = await gw.call("PATCH", f"/v1/hooks/{hook['id']}", gw.subscriber,
                                    json={"status": "paused"})
    assert (status, body["status"]) == (200, "paused")
    published = [await gw.publish(data={"i": i}) for i in range(3)]
    assert [p["deliveries"] for p in published] == [1, 1, 1]
    await gw.engine.run_until_idle()
    manual(gw).advance(3600)
    await gw.engine.run_until_idle()
    assert receiver.deliveries == []
    assert len(await deliveries(gw, hook["id"], "&status=pending")) == 3
    status, body, _ = await gw.call("PATCH", f"/v1/hooks/{hook['id']}", gw.subscriber,
                                    json={"status": "active"})
    assert (status, body["status"]) == (200, "active")
    await gw.engine.run_until_idle()
    assert sorted(body_of(r)["data"]["i"] for r in receiver.deliveries) == [0, 1, 2]


@pytest.mark.parametrize("change", ["pause", "delete", "gone"])
async def test_nothing_already_claimed_goes_out_after_pause_delete_or_gone(
        start_gateway, receiver: Receiver, change: str) -> None:
    """The engine claims ahead of free slots; what waits in memory is checked before it is sent."""
    gw = await start_gateway(run_delivery_loop=False, delivery={"max_in_flight_per_host": 1})
    hook = await gw.hook(receiver)
    release = asyncio.Event()

    async def respond(n: int, request: web.Request) -> Answer:
        await release.wait()
        return (410 if change == "gone" else 204), {}, b""

    receiver.respond = respond
    for i in range(3):
        await gw.publish(data={"i": i})
    ids = [d["id"] for d in await deliveries(gw, hook["id"])]
    run = asyncio.create_task(gw.engine.run_until_idle())
    await wait_until(lambda: receiver.in_flight == 1, what="the first attempt in flight")
    if change == "pause":
        status, _, _ = await gw.call("PATCH", f"/v1/hooks/{hook['id']}", gw.subscriber,
                                     json={"status": "paused"})
        assert status == 200
    elif change == "delete":
        status, _, _ = await gw.call("DELETE", f"/v1/hooks/{hook['id']}", gw.subscriber)
        assert status == 204
    release.set()
    await run
    assert len(receiver.deliveries) == 1
    statuses = sorted([(await get_json(gw, f"/v1/deliveries/{i}"))["status"] for i in ids])
    assert statuses == {"pause": ["delivered", "pending", "pending"],
                        # the one in flight was cancelled too: deleted before it was done
                        "delete": ["cancelled", "cancelled", "cancelled"],
                        "gone": ["failed", "failed", "failed"]}[change]
    if change == "pause":
        status, _, _ = await gw.call("PATCH", f"/v1/hooks/{hook['id']}", gw.subscriber,
                                     json={"status": "active"})
        assert status == 200
        await gw.engine.run_until_idle()
        assert sorted(body_of(r)["data"]["i"] for r in receiver.deliveries) == [0, 1, 2]


async def test_resume_with_the_loop_running(start_gateway, receiver: Receiver) -> None:
    gw = await start_gateway()
    hook = await gw.hook(receiver)
    await gw.call("PATCH", f"/v1/hooks/{hook['id']}", gw.subscriber, json={"status": "paused"})
    for i in range(3):
        await gw.publish(data={"i": i})
    assert len(await deliveries(gw, hook["id"], "&status=pending")) == 3
    await gw.call("PATCH", f"/v1/hooks/{hook['id']}", gw.subscriber, json={"status": "active"})
    await receiver.wait_for(3)
    await wait_until(lambda: _status(gw, hook["id"], "delivered"), what="delivered")


async def test_publishing_to_a_paused_hook_does_not_wake_the_delivery_loop(
        start_gateway, receiver: Receiver) -> None:
    """Deliveries held by a paused hook cannot be claimed, so publishing them must not cost the
    loop a claim transaction each; a publish with something due still wakes it at once."""
    gw = await start_gateway()
    held = await gw.hook(receiver)
    await gw.call("PATCH", f"/v1/hooks/{held['id']}", gw.subscriber, json={"status": "paused"})
    await gw.hook(receiver, topics=["contact.updated"])
    before = gw.storage.claim_transactions
    for i in range(20):
        await gw.publish(data={"i": i})
    # The loop takes wake-ups in order: once this one is delivered, any claim the twenty
    # publishes above caused has been made.
    await gw.publish(topic="contact.updated", data={"i": 20})
    await receiver.wait_for(1)
    claims = gw.storage.claim_transactions - before
    assert claims <= 3, f"{claims} claim transactions for 20 held deliveries and 1 due one"
    assert len(await deliveries(gw, held["id"], "&status=pending")) == 20
    await gw.call("PATCH", f"/v1/hooks/{held['id']}", gw.subscriber, json={"status": "active"})
    await receiver.wait_for(21)


@pytest.mark.parametrize("first_fails", [2, 99])
async def test_ordered_delivery_under_failure(start_gateway, receiver: Receiver,
                                              first_fails: int) -> None:
    """Event 1 fails twice then succeeds (or fails for good): 2..5 wait for it, then go in order."""
    # A long poll interval: the retries must be driven by their due time, not by polling.
    gw = await start_gateway(delivery={"retry_schedule_seconds": (0.05, 0.05, 0.05),
                                       "poll_interval_seconds": 30})
    hook = await gw.hook(receiver, ordered=True)
    answered: list[tuple[int, int]] = []

    async def respond(n: int, request: web.Request) -> Answer:
        seq = orjson.loads(await request.read())["sequence"]
        failures = sum(1 for s, code in answered if s == 1 and code == 500)
        code = 500 if seq == 1 and failures < first_fails else 204
        answered.append((seq, code))
        return code, {}, b""

    receiver.respond = respond
    for i in range(5):
        await gw.publish(data={"i": i})
    await wait_until(lambda: sum(1 for _, c in answered if c == 204) == (5 if first_fails < 4 else 4),
                     what="events 2..5 delivered")
    first_attempts = min(first_fails + 1, 4)  # 1 + len(schedule) at most
    assert [s for s, _ in answered] == [1] * first_attempts + [2, 3, 4, 5]
    assert receiver.max_in_flight == 1
    await wait_until(lambda: _none_pending(gw, hook["id"]), what="nothing pending")
    d1 = [d for d in await deliveries(gw, hook["id"]) if d["attempts"] > 1]
    assert [d["status"] for d in d1] == ["delivered" if first_fails < 4 else "failed"]


async def _none_pending(gw: Gateway, hook_id: str) -> bool:
    return not await deliveries(gw, hook_id, "&status=pending")


@pytest.mark.parametrize("wall", [1000, 2], ids=["in-time-order", "host-by-host"])
async def test_a_hung_host_uses_only_its_own_slots(start_gateway, make_receiver, wall: int,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # With a wall of 2, the hung host's 4 waiting rows send claims host by host (past them).
    monkeypatch.setattr(claims_mod, "CLAIM_WALL", wall)
    gw = await start_gateway(delivery={"max_in_flight_per_host": 2, "timeout_seconds": 20,
                                       "poll_interval_seconds": 30})
    a, b = await make_receiver(), await make_receiver()
    await gw.hook(a)  # host 127.0.0.1
    port = b.url.rsplit(":", 1)[1]
    status, hook_b, _ = await gw.call("POST", "/v1/hooks", gw.subscriber, json={
        "target_url": f"http://localhost:{port}/hook", "topics": ["contact.created"]})
    assert status == 201, hook_b
    release = asyncio.Event()
    a.respond = hang_until(release)
    for i in range(6):
        await gw.publish(data={"i": i})
    await b.wait_for(6)
    await wait_until(lambda: a.in_flight == 2, what="two attempts hanging at host A")
    assert len(a.deliveries) == 2
    # While A's slots are taken and its other deliveries are due, the loop must wait for a
    # wake-up rather than claim in a tight loop. This is a measuring window, not a sync.
    before = gw.storage.claim_transactions
    await asyncio.sleep(0.5)
    claims = gw.storage.claim_transactions - before
    assert claims <= 2, f"{claims} claim transactions in 0.5 s while blocked"
    assert len(a.deliveries) == 2
    # More work for B still flows at once while A hangs.
    await gw.publish(topic="contact.created", data={"i": 6})
    await b.wait_for(7)
    release.set()
    await a.wait_for(7)
    assert a.max_in_flight == 2
    assert b.max_in_flight <= 2
    assert (gw.storage.claims_by_host > 0) == (wall == 2)


async def test_address_refused_at_delivery_time(start_gateway, make_receiver) -> None:
    lax = await start_gateway(run_delivery_loop=False)
    r1, r2 = await make_receiver(), await make_receiver()
    h1 = await lax.hook(r1)
    port = r2.url.rsplit(":", 1)[1]
    status, h2, _ = await lax.call("POST", "/v1/hooks", lax.subscriber, json={
        "target_url": f"http://localhost:{port}/hook", "topics": ["contact.created"]})
    assert status == 201, h2
    strict = await start_gateway(run_delivery_loop=False, security={"allow_private_targets": False})
    assert (await strict.publish())["deliveries"] == 2
    await strict.engine.run_until_idle()
    assert r1.deliveries == [] and r2.deliveries == []
    for hook in (h1, h2):
        [attempt] = (await the_delivery(strict, hook["id"]))["attempt_log"]
        assert attempt["error"] == "address refused"
        assert attempt["status_code"] is None


# -- reading deliveries -----------------------------------------------------------------------


async def test_account_isolation(start_gateway, receiver: Receiver) -> None:
    gw = await start_gateway(run_delivery_loop=False)
    hook = await gw.hook(receiver)
    published = await gw.publish()
    await gw.engine.run_until_idle()
    [d] = await deliveries(gw, hook["id"])
    # (method, path, what the owning account gets: a delivered delivery is sent once more)
    paths = [("GET", f"/v1/deliveries/{d['id']}", 200),
             ("POST", f"/v1/deliveries/{d['id']}/retry", 202),
             ("GET", f"/v1/events/{published['id']}", 200),
             ("GET", f"/v1/hooks/{hook['id']}/deliveries", 200)]
    missing = {"GET /v1/deliveries": "/v1/deliveries/dlv_00000000000000000000000000",
               "POST /v1/deliveries": "/v1/deliveries/dlv_00000000000000000000000000/retry",
               "GET /v1/events": "/v1/events/evt_00000000000000000000000000",
               "GET /v1/hooks": "/v1/hooks/hook_00000000000000000000000000/deliveries"}
    for method, path, own in paths:
        status, body, _ = await gw.call(method, path, gw.other)
        assert status == 404, (method, path, body)
        prefix = f"{method} /v1/{path.split('/')[2]}"
        m_status, m_body, _ = await gw.call(method, missing[prefix], gw.other)
        assert (status, body["title"], body["detail"]) == (m_status, m_body["title"], m_body["detail"])
        status, body, _ = await gw.call(method, path, gw.subscriber)
        assert status == own, (method, path, body)
    status, _, _ = await gw.call("GET", f"/v1/events/{published['id']}", gw.publisher)
    assert status == 200
    status, _, _ = await gw.call("GET", f"/v1/deliveries/{d['id']}", gw.publisher)
    assert status == 403
    assert len(receiver.deliveries) == 1


async def test_list_newest_first_with_status_filter_and_cursor(start_gateway,
                                                               receiver: Receiver) -> None:
    gw = await start_gateway(run_delivery_loop=False)
    hook = await gw.hook(receiver)

    async def respond(n: int, request: web.Request) -> Answer:
        return (204 if orjson.loads(await request.read())["data"]["i"] % 2 == 0 else 500), {}, b""

    receiver.respond = respond
    events = []
    for i in range(5):
        events.append((await gw.publish(data={"i": i}))["id"])
        manual(gw).advance(1)
    await gw.engine.run_until_idle()
    everything = await deliveries(gw, hook["id"])
    assert [d["event_id"] for d in everything] == events[::-1]
    delivered = await deliveries(gw, hook["id"], "&status=delivered")
    assert [d["event_id"] for d in delivered] == [events[4], events[2], events[0]]
    pending = await deliveries(gw, hook["id"], "&status=pending")
    assert [d["event_id"] for d in pending] == [events[3], events[1]]
    assert await deliveries(gw, hook["id"], "&status=failed") == []
    status, body, _ = await gw.call("GET", f"/v1/hooks/{hook['id']}/deliveries?status=lost", gw.admin)
    assert status == 422, body

    pages, cursor = [], None
    while True:
        q = f"/v1/hooks/{hook['id']}/deliveries?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = await get_json(gw, q, gw.subscriber)
        assert set(page) == {"data", "next_cursor"}
        pages.append([d["id"] for d in page["data"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [i for p in pages for i in p] == [d["id"] for d in everything]
    page = await get_json(gw, f"/v1/hooks/{hook['id']}/deliveries?limit=1&status=pending")
    assert [d["event_id"] for d in page["data"]] == [events[3]]
    page = await get_json(gw, f"/v1/hooks/{hook['id']}/deliveries?limit=1&status=pending"
                              f"&cursor={page['next_cursor']}")
    assert [d["event_id"] for d in page["data"]] == [events[1]]
    assert page["next_cursor"] is None
    assert set(everything[0]) == {"id", "event_id", "hook_id", "topic", "status", "attempts",
                                  "next_attempt_at", "last_status_code", "created_at", "updated_at"}


async def test_newest_first_holds_within_one_batch(start_gateway, receiver: Receiver) -> None:
    """Events of one batch share a timestamp; the list still follows publish order."""
    gw = await start_gateway(run_delivery_loop=False)
    hook = await gw.hook(receiver)
    status, body, _ = await gw.call("POST", "/v1/events", gw.publisher, json=[
        {"topic": "contact.created", "account": "acme", "data": {"i": i}} for i in range(20)])
    assert status == 202, body
    listed = await deliveries(gw, hook["id"])
    assert [d["event_id"] for d in listed] == [d["id"] for d in body["data"]][::-1]


async def test_deleting_a_hook_cancels_its_pending_deliveries(start_gateway,
                                                              receiver: Receiver) -> None:
    gw = await start_gateway(run_delivery_loop=False)
    hook = await gw.hook(receiver)
    published = [await gw.publish() for _ in range(2)]
    ids = [d["id"] for d in await deliveries(gw, hook["id"])]
    status, _, _ = await gw.call("DELETE", f"/v1/hooks/{hook['id']}", gw.subscriber)
    assert status == 204
    await gw.engine.run_until_idle()
    assert receiver.deliveries == []
    for i in ids:
        d = await get_json(gw, f"/v1/deliveries/{i}", gw.subscriber)
        assert (d["status"], d["attempts"]) == ("cancelled", 0)
        status, body, _ = await gw.call("POST", f"/v1/deliveries/{i}/retry", gw.subscriber)
        assert status == 422, body
    for p in published:
        counts = (await get_json(gw, f"/v1/events/{p['id']}"))["deliveries"]
        assert counts == {"pending": 0, "delivered": 0, "failed": 0, "cancelled": 1}


def metric(text: str, name: str, **labels: str) -> float:
    want = name + ("{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else "")
    for line in text.splitlines():
        if line.startswith(want + " "):
            return float(line.split()[-1])
    return 0.0


async def test_metrics_count_attempts_and_final_statuses(start_gateway, make_receiver) -> None:
    gw = await start_gateway(run_delivery_loop=False)
    ok, bad = await make_receiver(), await make_receiver()
    await gw.hook(ok)
    await gw.hook(bad)
    bad.respond = script(default=500)
    for _ in range(2):
        await gw.publish()
    for _ in range(4):
        await gw.engine.run_until_idle()
        manual(gw).advance(1)
    assert (len(ok.deliveries), len(bad.deliveries)) == (2, 6)
    status, text, resp = await gw.call("GET", "/metrics", gw.admin)
    assert status == 200
    assert resp.headers["Content-Type"].startswith("text/plain")
    assert metric(text, "gateway_delivery_attempts_total", outcome="delivered") == 2
    assert metric(text, "gateway_delivery_attempts_total", outcome="retry") == 4
    assert metric(text, "gateway_delivery_attempts_total", outcome="failed") == 2
    assert metric(text, "gateway_deliveries_total", status="delivered") == 2
    assert metric(text, "gateway_deliveries_total", status="failed") == 2
    assert metric(text, "gateway_events_published_total") == 2
    status, _, _ = await gw.call("GET", "/metrics", gw.subscriber)
    assert status == 403
