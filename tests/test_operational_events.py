"""Operational events: gateway.hook.disabled, gateway.hook.removed, gateway.delivery.exhausted
(gateway.test is in test_recovery.py). Published in the hook's account in the transaction that
records the change, delivered like any event, never to the hook they are about, never matched
by `*`; admin hooks of account "*" get every account's."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import orjson
from aiohttp import web
from standardwebhooks import Webhook

from tests.conftest import Gateway, Receiver, echo_handshake

StartGateway = Callable[..., Awaitable[Gateway]]
MakeReceiver = Callable[..., Awaitable[Receiver]]
Answer = tuple[int, dict[str, str], bytes]


def always(code: int) -> Callable[..., Awaitable[Answer]]:
    async def respond(n: int, request: web.Request) -> Answer:
        hs = echo_handshake(request)
        return (200, hs, b"") if hs is not None else (code, {}, b"")

    return respond


async def settle(gw: Gateway, rounds: int = 6) -> None:
    for _ in range(rounds):
        await gw.engine.run_until_idle()
        gw.clock.advance(1)  # type: ignore[attr-defined]


def received(r: Receiver, secret: str | None = None) -> list[dict[str, Any]]:
    """What a receiver got, each body checked against the hook's signature when given."""
    out = []
    for got in r.deliveries:
        out.append(Webhook(secret).verify(got.body, got.headers) if secret
                   else orjson.loads(got.body))
    return out


def operational(r: Receiver, secret: str | None = None) -> list[dict[str, Any]]:
    return [p for p in received(r, secret) if p["type"].startswith("gateway.")]


async def log_topics(gw: Gateway, hook_id: str) -> list[str]:
    status, body, _ = await gw.call("GET", f"/v1/hooks/{hook_id}/deliveries?limit=500", gw.admin)
    assert status == 200, body
    return [d["topic"] for d in body["data"]]


async def test_exhausted_goes_to_the_watchers_never_to_the_hook_it_is_about(
        start_gateway: StartGateway, make_receiver: MakeReceiver) -> None:
    gw = await start_gateway(run_delivery_loop=False)  # 3 attempts
    failing, watching, everything = await make_receiver(), await make_receiver(), \
        await make_receiver()
    # The failing hook also subscribes to the topic: it must not hear about itself.
    bad = await gw.hook(failing, topics=["contact.created", "gateway.delivery.exhausted"])
    watcher = await gw.hook(watching, topics=["gateway.*"])
    star = await gw.hook(everything, topics=["*"])
    elsewhere = await gw.hook(await make_receiver(), key=gw.other, topics=["gateway.*"])
    failing.respond = always(500)
    published = await gw.publish(data={"n": 1})
    await settle(gw)
    [d] = [x for x in (await gw.call("GET", f"/v1/hooks/{bad['id']}/deliveries", gw.admin))[1]
           ["data"]]
    assert (d["status"], d["attempts"]) == ("failed", 3)

    [news] = operational(watching, watcher["secret"])  # signed like any delivery
    assert news["type"] == "gateway.delivery.exhausted" and news["account"] == "acme"
    assert news["data"] == {
        "delivery_id": d["id"], "hook_id": bad["id"], "event_id": published["id"],
        "topic": "contact.created", "attempts": 3, "last_status_code": 500, "last_error": None}
    assert "gateway.delivery.exhausted" not in await log_topics(gw, bad["id"])
    assert len(failing.deliveries) == 3  # only the event's attempts
    # `*` takes the contact event, not the gateway's news; another account hears nothing.
    assert [p["type"] for p in received(everything, star["secret"])] == ["contact.created"]
    assert await log_topics(gw, elsewhere["id"]) == []
    # The event is listed in the account like any other.
    _, events, _ = await gw.call("GET", "/v1/events?topic=gateway.delivery.exhausted",
                                 gw.subscriber)
    assert [e["id"] for e in events["data"]] == [news["id"]]
    assert events["data"][0]["deliveries"]["delivered"] == 1


async def test_exhausted_names_the_error_when_nothing_answered(start_gateway: StartGateway,
                                                               make_receiver: MakeReceiver
                                                               ) -> None:
    gw = await start_gateway(run_delivery_loop=False)
    doomed = await make_receiver()
    await gw.hook(doomed)
    watching = await make_receiver()
    await gw.hook(watching, topics=["gateway.delivery.exhausted"])
    await doomed.stop()  # its port now refuses connections
    await gw.publish()
    await settle(gw)
    [news] = operational(watching)
    assert news["data"]["last_status_code"] is None
    assert news["data"]["last_error"] == "connection refused"


async def test_disabled_is_announced_and_retried_like_any_event(start_gateway: StartGateway,
                                                                make_receiver: MakeReceiver
                                                                ) -> None:
    gw = await start_gateway(run_delivery_loop=False, delivery={
        "disable_after_failures": 2, "disable_after_seconds": 0,
        "retry_schedule_seconds": (60, 60)})
    failing, watching = await make_receiver(), await make_receiver()
    bad = await gw.hook(failing, topics=["contact.created", "gateway.*"])
    watcher = await gw.hook(watching, topics=["gateway.hook.disabled"])
    failing.respond = always(500)
    answers = iter([503, 204])

    async def flaky(n: int, request: web.Request) -> Answer:
        hs = echo_handshake(request)
        return (200, hs, b"") if hs is not None else (next(answers), {}, b"")

    watching.respond = flaky
    first_failure = gw.clock.now()
    await gw.publish()
    await gw.publish()
    await gw.engine.run_until_idle()
    _, hook, _ = await gw.call("GET", f"/v1/hooks/{bad['id']}", gw.admin)
    assert hook["status"] == "disabled"
    # Its first attempt answered 503; the retry (60 s on, give or take the jitter) delivers it,
    # same event id.
    gw.clock.advance(70)  # type: ignore[attr-defined]
    await gw.engine.run_until_idle()
    payloads = received(watching)
    assert [p["type"] for p in payloads] == ["gateway.hook.disabled"] * 2
    assert payloads[0]["id"] == payloads[1]["id"]
    news = payloads[1]
    assert news["data"] == {"hook_id": bad["id"], "target_url": bad["target_url"],
                            "failing_since": news["data"]["failing_since"], "failures": 2}
    since = news["data"]["failing_since"]
    assert isinstance(since, str) and since.endswith("Z")
    assert abs(datetime.fromisoformat(since.replace("Z", "+00:00")).timestamp()
               - first_failure) < 1
    _, log, _ = await gw.call("GET", f"/v1/hooks/{watcher['id']}/deliveries", gw.admin)
    [d] = log["data"]
    assert (d["status"], d["attempts"]) == ("delivered", 2)
    assert "gateway.hook.disabled" not in await log_topics(gw, bad["id"])


async def test_gone_is_announced(start_gateway: StartGateway, make_receiver: MakeReceiver) -> None:
    gw = await start_gateway(run_delivery_loop=False)
    leaving, watching = await make_receiver(), await make_receiver()
    gone = await gw.hook(leaving)
    await gw.hook(watching, topics=["gateway.hook.removed"])
    leaving.respond = always(410)
    await gw.publish()
    await settle(gw)
    [news] = operational(watching)
    assert news["type"] == "gateway.hook.removed"
    assert news["data"] == {"hook_id": gone["id"], "target_url": gone["target_url"]}
    # The gone delivery is not "exhausted" (its retries were not used up).
    assert len(received(watching)) == 1


async def test_an_admin_hook_of_every_account(start_gateway: StartGateway,
                                              make_receiver: MakeReceiver) -> None:
    gw = await start_gateway(run_delivery_loop=False)
    ops = await make_receiver()
    status, admin_hook, _ = await gw.call("POST", "/v1/hooks", gw.admin, json={
        # (contact.created too: its deliveries of an account's events must not show there.)
        "target_url": ops.url + "/ops", "topics": ["gateway.*", "contact.created"],
        "account": "*"})
    assert status == 201, admin_hook
    assert admin_hook["account"] == "*"
    acme_bad, globex_bad = await make_receiver(), await make_receiver()
    a = await gw.hook(acme_bad)
    g = await gw.hook(globex_bad, key=gw.other)
    acme_bad.respond = globex_bad.respond = always(500)
    await gw.publish(account="acme")
    await gw.publish(account="globex")
    await settle(gw)
    got = received(ops, admin_hook["secret"])
    assert sorted((p["type"], p["account"]) for p in got) == [
        ("contact.created", "acme"), ("contact.created", "globex"),
        ("gateway.delivery.exhausted", "acme"), ("gateway.delivery.exhausted", "globex")]
    assert {p["data"].get("hook_id") for p in got if p["type"].startswith("gateway.")} == \
        {a["id"], g["id"]}
    # An event's delivery counts are its account's: the admin hook's are not among them.
    for key in (gw.subscriber, gw.admin):
        _, listed, _ = await gw.call("GET", "/v1/events?account=acme&topic=contact.created", key)
        [e] = listed["data"]
        _, one, _ = await gw.call("GET", f"/v1/events/{e['id']}", key)
        assert e["deliveries"] == one["deliveries"] == {
            "pending": 0, "delivered": 0, "failed": 1, "cancelled": 0}
    # Subscribers neither see it nor its deliveries, nor make one.
    for key in (gw.subscriber, gw.other):
        assert (await gw.call("GET", f"/v1/hooks/{admin_hook['id']}", key))[0] == 404
        assert (await gw.call("GET", f"/v1/hooks/{admin_hook['id']}/deliveries", key))[0] == 404
        _, theirs, _ = await gw.call("GET", "/v1/hooks", key)
        assert admin_hook["id"] not in [h["id"] for h in theirs["data"]]
    _, log, _ = await gw.call("GET", f"/v1/hooks/{admin_hook['id']}/deliveries", gw.admin)
    for d in log["data"]:
        for key in (gw.subscriber, gw.other):
            assert (await gw.call("GET", f"/v1/deliveries/{d['id']}", key))[0] == 404
    status, body, _ = await gw.call("POST", "/v1/hooks", gw.subscriber, json={
        "target_url": ops.url + "/x", "topics": ["gateway.*"], "account": "*"})
    assert status == 403, body


async def test_publishers_cannot_publish_the_gateways_own_topics(start_gateway: StartGateway,
                                                                 receiver: Receiver) -> None:
    gw = await start_gateway(run_delivery_loop=False)
    await gw.hook(receiver, topics=["gateway.*"])
    for body in ({"topic": "gateway.hook.disabled", "account": "acme", "data": {}},
                 [{"topic": "contact.created", "account": "acme"},
                  {"topic": "gateway.test", "account": "acme"}]):
        status, out, _ = await gw.call("POST", "/v1/events", gw.publisher, json=body)
        assert status == 422, out
        assert out["errors"][0]["field"] in ("topic", "[1].topic")
    _, events, _ = await gw.call("GET", "/v1/events", gw.admin)
    assert events["data"] == []
