"""Replay and recovery: POST /v1/hooks/{id}/recover, retry of a delivered delivery, and
POST /v1/hooks/{id}/test. Real app, real receivers, real SQLite; schedules on a ManualClock."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import pytest
from aiohttp import web
from standardwebhooks import Webhook

import gateway.storage.recovery as recovery_mod
from gateway.models import iso
from tests.conftest import Gateway, Receiver, echo_handshake

StartGateway = Callable[..., Awaitable[Gateway]]
Answer = tuple[int, dict[str, str], bytes]


def answering(codes: dict[str, int], default: int = 204) -> Callable[..., Awaitable[Answer]]:
    """Echo handshakes; answer a delivery by the "tag" in its event data, else `default`."""
    async def respond(n: int, request: web.Request) -> Answer:
        hs = echo_handshake(request)
        if hs is not None:
            return 200, hs, b""
        tag = (orjson.loads(await request.read()).get("data") or {}).get("tag")
        return codes.get(tag, codes.get("*", default)), {}, b""

    return respond


async def settle(gw: Gateway, rounds: int = 6) -> None:
    """Run every attempt the schedule (0.05 s, twice) allows."""
    for _ in range(rounds):
        await gw.engine.run_until_idle()
        gw.clock.advance(1)  # type: ignore[attr-defined]


async def deliveries(gw: Gateway, hook_id: str) -> dict[str, dict[str, Any]]:
    """The hook's deliveries by their event's tag."""
    status, body, _ = await gw.call("GET", f"/v1/hooks/{hook_id}/deliveries?limit=500", gw.admin)
    assert status == 200, body
    out = {}
    for d in body["data"]:
        _, event, _ = await gw.call("GET", f"/v1/events/{d['event_id']}", gw.admin)
        out[event["data"]["tag"]] = d
    return out


def tags(receiver: Receiver) -> list[str]:
    return [orjson.loads(r.body)["data"]["tag"] for r in receiver.deliveries]


async def recover(gw: Gateway, hook_id: str, key: str | None = None, **body: Any
                  ) -> tuple[int, Any]:
    status, out, _ = await gw.call("POST", f"/v1/hooks/{hook_id}/recover", key or gw.subscriber,
                                   json=body)
    return status, out


async def test_failed_deliveries_since_a_time_get_a_fresh_set_of_retries(
        start_gateway: StartGateway, receiver: Receiver) -> None:
    gw = await start_gateway(run_delivery_loop=False)  # schedule: 2 retries, 3 attempts
    hook = await gw.hook(receiver)
    receiver.respond = answering({"*": 500})
    t0 = gw.clock.now()
    for i, tag in enumerate(["a", "b", "c"]):
        await gw.publish(data={"tag": tag})
        gw.clock.advance(10 if i < 2 else 0)  # type: ignore[attr-defined]
    await settle(gw)
    assert {t: (d["status"], d["attempts"]) for t, d in (await deliveries(gw, hook["id"])).items()} \
        == {"a": ("failed", 3), "b": ("failed", 3), "c": ("failed", 3)}

    # Still failing: each recovered delivery gets the whole schedule again (3 attempts), not
    # a single manual attempt; "a" was created before `since` and stays as it was.
    status, body = await recover(gw, hook["id"], since=iso(t0 + 10))
    assert (status, body) == (202, {"deliveries": 2})
    assert {t: d["status"] for t, d in (await deliveries(gw, hook["id"])).items()} == \
        {"a": "failed", "b": "pending", "c": "pending"}
    await settle(gw)
    got = await deliveries(gw, hook["id"])
    assert {t: (d["status"], d["attempts"]) for t, d in got.items()} == \
        {"a": ("failed", 3), "b": ("failed", 6), "c": ("failed", 6)}
    _, b, _ = await gw.call("GET", f"/v1/deliveries/{got['b']['id']}", gw.subscriber)
    assert [a["status_code"] for a in b["attempt_log"]] == [500] * 6  # the log keeps all

    # Back up: a recovery in [since, until) delivers them.
    receiver.respond = answering({})
    before = len(receiver.deliveries)
    status, body = await recover(gw, hook["id"], since=iso(t0), until=iso(t0 + 20))
    assert (status, body) == (202, {"deliveries": 2})
    await settle(gw)
    assert tags(receiver)[before:] == ["a", "b"]
    assert {t: (d["status"], d["attempts"]) for t, d in (await deliveries(gw, hook["id"])).items()} \
        == {"a": ("delivered", 4), "b": ("delivered", 7), "c": ("failed", 6)}
    # Nothing left to recover in that window.
    assert await recover(gw, hook["id"], since=iso(t0), until=iso(t0 + 20)) == \
        (202, {"deliveries": 0})


@pytest.mark.parametrize("batch", [1000, 2])
async def test_recovered_deliveries_go_out_in_their_original_order(
        start_gateway: StartGateway, receiver: Receiver, monkeypatch: pytest.MonkeyPatch,
        batch: int) -> None:
    monkeypatch.setattr(recovery_mod, "RECOVER_BATCH", batch)
    gw = await start_gateway(run_delivery_loop=False, delivery={"max_in_flight_per_host": 1})
    hook = await gw.hook(receiver)
    receiver.respond = answering({"*": 500})
    t0 = gw.clock.now()
    order = [f"e{i}" for i in range(7)]
    for tag in order:
        await gw.publish(data={"tag": tag})
    await settle(gw)
    receiver.respond = answering({})
    before = len(receiver.deliveries)
    assert await recover(gw, hook["id"], since=iso(t0)) == (202, {"deliveries": 7})
    await settle(gw)
    assert tags(receiver)[before:] == order


async def test_an_ordered_hook_gets_them_in_sequence(start_gateway: StartGateway,
                                                     receiver: Receiver) -> None:
    gw = await start_gateway(run_delivery_loop=False)
    hook = await gw.hook(receiver, ordered=True)
    receiver.respond = answering({"*": 500})
    t0 = gw.clock.now()
    for tag in ["a", "b", "c", "d"]:
        await gw.publish(data={"tag": tag})
    await settle(gw, rounds=16)
    assert {d["status"] for d in (await deliveries(gw, hook["id"])).values()} == {"failed"}
    receiver.respond = answering({})
    receiver.max_in_flight = 0
    before = len(receiver.deliveries)
    assert await recover(gw, hook["id"], since=iso(t0)) == (202, {"deliveries": 4})
    await settle(gw)
    received = [orjson.loads(r.body) for r in receiver.deliveries[before:]]
    assert [r["data"]["tag"] for r in received] == ["a", "b", "c", "d"]
    assert [r["sequence"] for r in received] == [1, 2, 3, 4]
    assert receiver.max_in_flight == 1


async def test_named_statuses_and_a_paused_hook(start_gateway: StartGateway,
                                                receiver: Receiver) -> None:
    gw = await start_gateway(run_delivery_loop=False)
    hook = await gw.hook(receiver)
    receiver.respond = answering({"bad": 500})
    t0 = gw.clock.now()
    await gw.publish(data={"tag": "ok"})
    await gw.publish(data={"tag": "bad"})
    await settle(gw)
    receiver.respond = answering({})
    # Delivered ones are sent again when named; failed ones only when named too.
    before = len(receiver.deliveries)
    assert await recover(gw, hook["id"], since=iso(t0), statuses=["delivered"]) == \
        (202, {"deliveries": 1})
    await settle(gw)
    assert tags(receiver)[before:] == ["ok"]
    # A paused hook's recovered deliveries wait for it to resume.
    status, _, _ = await gw.call("PATCH", f"/v1/hooks/{hook['id']}", gw.subscriber,
                                 json={"status": "paused"})
    assert status == 200
    before = len(receiver.deliveries)
    assert await recover(gw, hook["id"], since=iso(t0), statuses=["failed", "delivered"]) == \
        (202, {"deliveries": 2})
    await settle(gw)
    assert len(receiver.deliveries) == before
    status, _, _ = await gw.call("PATCH", f"/v1/hooks/{hook['id']}", gw.subscriber,
                                 json={"status": "active"})
    assert status == 200
    await settle(gw)
    assert sorted(tags(receiver)[before:]) == ["bad", "ok"]


@pytest.mark.parametrize(("body", "field"), [
    ({}, "since"),
    ({"since": "yesterday"}, "since"),
    ({"since": "2026-12-04T10:00:00"}, "since"),
    ({"since": 1764842400}, "since"),
    ({"since": "2026-12-04T10:00:00Z", "until": "2026-12-04"}, "until"),
    ({"since": "2026-12-04T10:00:00Z", "until": "2026-12-04T09:00:00Z"}, "until"),
    ({"since": "2026-12-04T10:00:00Z", "statuses": ["lost"]}, "statuses[0]"),
    ({"since": "2026-12-04T10:00:00Z", "statuses": ["failed", "pending"]}, "statuses[1]"),
    ({"since": "2026-12-04T10:00:00Z", "statuses": []}, "statuses"),
    ({"since": "2026-12-04T10:00:00Z", "statuses": "failed"}, "statuses"),
    ({"since": "2026-12-04T10:00:00Z", "status": "failed"}, "status"),
])
async def test_bad_recover_bodies_are_422_naming_the_field(
        start_gateway: StartGateway, receiver: Receiver, body: dict[str, Any], field: str) -> None:
    gw = await start_gateway(run_delivery_loop=False)
    hook = await gw.hook(receiver)
    status, out, resp = await gw.call("POST", f"/v1/hooks/{hook['id']}/recover", gw.subscriber,
                                      json=body)
    assert status == 422, out
    assert resp.content_type == "application/problem+json"
    assert out["errors"][0]["field"] == field


async def test_another_accounts_hook_is_404_like_a_missing_one(start_gateway: StartGateway,
                                                              receiver: Receiver) -> None:
    gw = await start_gateway(run_delivery_loop=False)
    hook = await gw.hook(receiver)
    missing = "hook_00000000000000000000000000"
    for path, body in (("recover", {"since": "2026-12-04T10:00:00Z"}), ("test", None)):
        theirs = await gw.call("POST", f"/v1/hooks/{hook['id']}/{path}", gw.other, json=body)
        nothing = await gw.call("POST", f"/v1/hooks/{missing}/{path}", gw.other, json=body)
        assert theirs[0] == nothing[0] == 404, (path, theirs[1])
        assert theirs[1] == nothing[1]
        # ...and a publisher may not.
        assert (await gw.call("POST", f"/v1/hooks/{hook['id']}/{path}", gw.publisher,
                              json=body))[0] == 403
    assert receiver.deliveries == []


async def test_a_test_event_goes_to_that_hook_alone(start_gateway: StartGateway,
                                                   make_receiver: Callable[..., Awaitable[Receiver]]
                                                   ) -> None:
    gw = await start_gateway(run_delivery_loop=False)
    r1, r2 = await make_receiver(), await make_receiver()
    hook = await gw.hook(r1)  # subscribed to contact.created only
    watcher = await gw.hook(r2, topics=["gateway.*"])
    status, body, _ = await gw.call("POST", f"/v1/hooks/{hook['id']}/test", gw.subscriber)
    assert status == 202, body
    assert set(body) == {"id", "deliveries"} and body["deliveries"] == 1
    assert body["id"].startswith("evt_")
    await settle(gw, rounds=2)
    [got] = r1.deliveries
    payload = Webhook(hook["secret"]).verify(got.body, got.headers)
    assert payload["type"] == "gateway.test" and payload["id"] == body["id"]
    assert payload["account"] == "acme"
    assert set(payload["data"]) == {"hook_id", "message"}
    assert payload["data"]["hook_id"] == hook["id"] and payload["data"]["message"]
    assert r2.deliveries == []  # gateway.* elsewhere does not get another hook's test
    # In the hook's delivery log like any other.
    _, log, _ = await gw.call("GET", f"/v1/hooks/{hook['id']}/deliveries", gw.subscriber)
    assert [(d["topic"], d["status"], d["event_id"]) for d in log["data"]] == \
        [("gateway.test", "delivered", body["id"])]
    _, none, _ = await gw.call("GET", f"/v1/hooks/{watcher['id']}/deliveries", gw.subscriber)
    assert none["data"] == []
    # The event is the account's: listed, and readable.
    _, events, _ = await gw.call("GET", "/v1/events?topic=gateway.test", gw.subscriber)
    assert [e["id"] for e in events["data"]] == [body["id"]]
