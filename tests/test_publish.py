"""Publishing through the real app: durable 202s, sequences, routing, batches, idempotency,
limits, and group commit."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.conftest import Gateway, Receiver

pytestmark = pytest.mark.backends  # on SQLite and on PostgreSQL

EVENT_FIELDS = {"id", "topic", "account", "sequence", "data", "resource_url", "created_at",
                "deliveries"}


def event(topic: str = "contact.created", account: str = "acme", **fields: Any) -> dict[str, Any]:
    return {"topic": topic, "account": account, "data": {"n": 1}, **fields}


async def get_event(gw: Gateway, event_id: str, key: str | None = None) -> dict[str, Any]:
    status, body, _ = await gw.call("GET", f"/v1/events/{event_id}", key or gw.publisher)
    assert status == 200, body
    return body  # type: ignore[no-any-return]


async def deliveries_of(gw: Gateway, hook_id: str) -> list[dict[str, Any]]:
    status, body, _ = await gw.call("GET", f"/v1/hooks/{hook_id}/deliveries?limit=500", gw.admin)
    assert status == 200, body
    return body["data"]  # type: ignore[no-any-return]


async def test_single_publish_is_stored_with_its_deliveries(start_gateway, make_receiver) -> None:
    gw = await start_gateway(run_delivery_loop=False)
    r1, r2, r3 = await make_receiver(), await make_receiver(), await make_receiver()
    await gw.hook(r1, topics=["contact.created"])
    await gw.hook(r2, topics=["contact.*"])
    await gw.hook(r3, topics=["billing.tier_changed"])
    status, body, _ = await gw.call("POST", "/v1/events", gw.publisher, json=event(
        data={"id": 17, "email": "a@b.c"}, resource_url="https://api.example.com/contacts/17"))
    assert status == 202, body
    assert set(body) == {"id", "deliveries"}
    assert body["id"].startswith("evt_")
    assert body["deliveries"] == 2

    got = await get_event(gw, body["id"])
    assert set(got) == EVENT_FIELDS
    assert got["id"] == body["id"]
    assert got["topic"] == "contact.created"
    assert got["account"] == "acme"
    assert got["sequence"] == 1
    assert got["data"] == {"id": 17, "email": "a@b.c"}
    assert got["resource_url"] == "https://api.example.com/contacts/17"
    assert got["created_at"].endswith("Z")
    assert got["deliveries"] == {"pending": 2, "delivered": 0, "failed": 0, "cancelled": 0}

    await gw.engine.run_until_idle()
    assert len(r1.deliveries) == len(r2.deliveries) == 1
    assert r3.deliveries == []
    got = await get_event(gw, body["id"])
    assert got["deliveries"] == {"pending": 0, "delivered": 2, "failed": 0, "cancelled": 0}


async def test_batch_answers_one_entry_per_event_in_order(start_gateway, receiver: Receiver) -> None:
    gw = await start_gateway(run_delivery_loop=False)
    await gw.hook(receiver, topics=["contact.*"])
    batch = [event("contact.created", data={"i": 0}), event("billing.tier_changed", data={"i": 1}),
             event("contact.deleted", data={"i": 2})]
    status, body, _ = await gw.call("POST", "/v1/events", gw.publisher, json=batch)
    assert status == 202, body
    assert set(body) == {"data"}
    assert [set(d) for d in body["data"]] == [{"id", "deliveries"}] * 3
    assert [d["deliveries"] for d in body["data"]] == [1, 0, 1]
    assert len({d["id"] for d in body["data"]}) == 3
    stored = [await get_event(gw, d["id"]) for d in body["data"]]
    assert [e["sequence"] for e in stored] == [1, 2, 3]
    assert [e["data"] for e in stored] == [{"i": 0}, {"i": 1}, {"i": 2}]
    assert [e["topic"] for e in stored] == ["contact.created", "billing.tier_changed",
                                            "contact.deleted"]


async def test_sequence_grows_by_one_per_account_independently(start_gateway) -> None:
    gw = await start_gateway(run_delivery_loop=False)
    order = ["acme", "acme", "globex", "acme", "globex", "initech", "globex"]
    seqs: dict[str, list[int]] = {}
    for account in order:
        out = await gw.publish(account=account)
        seqs.setdefault(account, []).append((await get_event(gw, out["id"]))["sequence"])
    # A batch spanning accounts continues each account's own count.
    _, body, _ = await gw.call("POST", "/v1/events", gw.publisher,
                               json=[event(account="globex"), event(account="acme")])
    for d, account in zip(body["data"], ["globex", "acme"], strict=True):
        seqs[account].append((await get_event(gw, d["id"]))["sequence"])
    assert seqs == {"acme": [1, 2, 3, 4], "globex": [1, 2, 3, 4], "initech": [1]}


async def test_events_reach_only_their_accounts_hooks(start_gateway, make_receiver) -> None:
    gw = await start_gateway(run_delivery_loop=False)
    acme_r, globex_r = await make_receiver(), await make_receiver()
    acme_hook = await gw.hook(acme_r)
    globex_hook = await gw.hook(globex_r, key=gw.other)
    assert globex_hook["account"] == "globex"
    out = await gw.publish(account="acme", data={"who": "acme"})
    assert out["deliveries"] == 1
    await gw.engine.run_until_idle()
    assert len(acme_r.deliveries) == 1
    assert globex_r.deliveries == []
    assert await deliveries_of(gw, globex_hook["id"]) == []
    assert [d["event_id"] for d in await deliveries_of(gw, acme_hook["id"])] == [out["id"]]
    # And the other way round.
    out2 = await gw.publish(account="globex", data={"who": "globex"})
    await gw.engine.run_until_idle()
    assert len(acme_r.deliveries) == 1
    assert [r.headers["webhook-id"] for r in globex_r.deliveries] == [out2["id"]]


@pytest.mark.parametrize(("bad", "field"), [
    ({"topic": "contact.nope", "account": "acme", "data": {}}, "[3].topic"),
    ({"topic": "contact.created", "data": {}}, "[3].account"),
    ({"topic": "contact.created", "account": "acme", "resource_url": "ftp://x"}, "[3].resource_url"),
    ({"topic": "contact.created", "account": "acme", "colour": "red"}, "[3].colour"),
    ("not an object", "[3].body"),
])
async def test_batch_is_atomic(start_gateway, receiver: Receiver, bad: Any, field: str) -> None:
    gw = await start_gateway(run_delivery_loop=False)
    hook = await gw.hook(receiver)
    batch: list[Any] = [event(data={"i": i}) for i in range(6)]
    batch[3] = bad
    status, body, resp = await gw.call("POST", "/v1/events", gw.publisher, json=batch)
    assert status == 422, body
    assert resp.content_type == "application/problem+json"
    assert [e["field"] for e in body["errors"]] == [field]
    assert "[3]" in body["detail"]
    # Nothing of the batch was stored: no deliveries, and the sequence did not move.
    assert await deliveries_of(gw, hook["id"]) == []
    out = await gw.publish()
    assert (await get_event(gw, out["id"]))["sequence"] == 1
    assert len(await deliveries_of(gw, hook["id"])) == 1


async def test_batch_limits(start_gateway) -> None:
    gw = await start_gateway(run_delivery_loop=False, server={"max_batch_events": 5})
    status, body, _ = await gw.call("POST", "/v1/events", gw.publisher, json=[])
    assert status == 422, body
    status, body, _ = await gw.call("POST", "/v1/events", gw.publisher, json=[event()] * 6)
    assert status == 413, body
    assert "5" in body["detail"]
    status, body, _ = await gw.call("POST", "/v1/events", gw.publisher, json=[event()] * 5)
    assert status == 202, body
    assert len(body["data"]) == 5


async def test_refusals(start_gateway) -> None:
    gw = await start_gateway(run_delivery_loop=False, server={"max_body_bytes": 4096})
    status, body, _ = await gw.call("POST", "/v1/events", gw.publisher,
                                    json=event("contact.exploded"))
    assert status == 422, body
    assert body["errors"][0]["field"] == "topic"
    assert "contact.exploded" in body["detail"]
    status, body, _ = await gw.call("POST", "/v1/events", gw.publisher,
                                    json=event(data={"blob": "x" * 5000}))
    assert status == 413, body
    status, body, _ = await gw.call("POST", "/v1/events", gw.publisher, data=b"{not json")
    assert status == 400, body
    status, body, _ = await gw.call("POST", "/v1/events", gw.subscriber, json=event())
    assert status == 403, body
    status, body, _ = await gw.call("POST", "/v1/events", None, json=event())
    assert status == 401, body
    # None of those stored anything.
    out = await gw.publish()
    assert (await get_event(gw, out["id"]))["sequence"] == 1


@pytest.mark.parametrize("how", ["body", "header"])
async def test_idempotency_returns_the_first_answer(start_gateway, receiver: Receiver,
                                                    how: str) -> None:
    gw = await start_gateway(run_delivery_loop=False)
    hook = await gw.hook(receiver)

    async def publish(data: dict[str, Any]) -> dict[str, Any]:
        if how == "body":
            status, body, _ = await gw.call("POST", "/v1/events", gw.publisher,
                                            json=event(data=data, idempotency_key="crm-17"))
        else:
            status, body, _ = await gw.call("POST", "/v1/events", gw.publisher, json=event(data=data),
                                            headers={"Idempotency-Key": "crm-17"})
        assert status == 202, body
        return body  # type: ignore[no-any-return]

    first = await publish({"v": 1})
    await gw.hook(receiver, topics=["contact.*"])  # would change the fan-out of a new event
    second = await publish({"v": 2})
    assert second == first
    assert (await get_event(gw, first["id"]))["data"] == {"v": 1}
    await gw.engine.run_until_idle()
    assert len(receiver.deliveries) == 1
    assert len(await deliveries_of(gw, hook["id"])) == 1
    # The replay did not take a sequence number either.
    out = await gw.publish()
    assert (await get_event(gw, out["id"]))["sequence"] == 2


async def test_idempotency_keys_are_per_account_and_expire(start_gateway) -> None:
    gw = await start_gateway(run_delivery_loop=False)
    a = await gw.publish(account="acme", idempotency_key="k1")
    g = await gw.publish(account="globex", idempotency_key="k1")
    assert a["id"] != g["id"]
    assert (await get_event(gw, g["id"]))["sequence"] == 1
    assert await gw.publish(account="acme", idempotency_key="k1") == a
    gw.clock.advance(23 * 3600)  # type: ignore[attr-defined]
    assert await gw.publish(account="acme", idempotency_key="k1") == a
    gw.clock.advance(3600 + 1)  # type: ignore[attr-defined]
    again = await gw.publish(account="acme", idempotency_key="k1")
    assert again["id"] != a["id"]
    assert (await get_event(gw, again["id"]))["sequence"] == 2


async def test_idempotency_inside_a_batch_and_on_replay(start_gateway) -> None:
    gw = await start_gateway(run_delivery_loop=False)
    batch = [event(idempotency_key="a"), event(idempotency_key="b"), event(idempotency_key="a")]
    status, first, _ = await gw.call("POST", "/v1/events", gw.publisher, json=batch)
    assert status == 202, first
    ids = [d["id"] for d in first["data"]]
    assert ids[0] == ids[2] != ids[1]
    status, second, _ = await gw.call("POST", "/v1/events", gw.publisher, json=batch)
    assert status == 202, second
    assert second == first
    out = await gw.publish()
    assert (await get_event(gw, out["id"]))["sequence"] == 3


async def test_group_commit(start_gateway, receiver: Receiver) -> None:
    gw = await start_gateway(run_delivery_loop=False)
    await gw.hook(receiver)
    before = gw.storage.publish_commits
    answers = await asyncio.gather(*[
        gw.call("POST", "/v1/events", gw.publisher, json=event(data={"i": i})) for i in range(200)
    ])
    assert [status for status, _, _ in answers] == [202] * 200
    ids = [body["id"] for _, body, _ in answers]
    assert all(body["deliveries"] == 1 for _, body, _ in answers)
    assert len(set(ids)) == 200
    events = await asyncio.gather(*[get_event(gw, i) for i in ids])
    assert sorted(e["sequence"] for e in events) == list(range(1, 201))
    # Every answer came after its own data was durable, yet many shared one transaction.
    commits = gw.storage.publish_commits - before
    assert 1 <= commits < 200, commits
    # Each event's data is its own, whatever transaction carried it.
    assert sorted(e["data"]["i"] for e in events) == list(range(200))
