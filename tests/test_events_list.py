"""GET /v1/events: newest first, filtered by topic, time and account, paged by cursor."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

import pytest

from gateway.models import iso
from tests.conftest import Gateway, Receiver

StartGateway = Callable[..., Awaitable[Gateway]]


async def listing(gw: Gateway, query: str = "", key: str | None = None) -> dict[str, Any]:
    status, body, _ = await gw.call("GET", f"/v1/events?{query}", key or gw.admin)
    assert status == 200, body
    return body  # type: ignore[no-any-return]


def at(ts: float) -> str:
    return quote(iso(ts) or "")


async def test_newest_first_with_counts_and_a_cursor(start_gateway: StartGateway,
                                                     receiver: Receiver) -> None:
    gw = await start_gateway(run_delivery_loop=False)
    await gw.hook(receiver)
    ids = []
    for i in range(5):
        ids.append((await gw.publish(data={"i": i}))["id"])
        gw.clock.advance(1)  # type: ignore[attr-defined]
    await gw.engine.run_until_idle()
    first = await listing(gw, "limit=2")
    assert [e["id"] for e in first["data"]] == ids[::-1][:2]
    e = first["data"][0]
    assert e["topic"] == "contact.created" and e["account"] == "acme" and e["data"] == {"i": 4}
    assert e["deliveries"] == {"pending": 0, "delivered": 1, "failed": 0, "cancelled": 0}
    # The same shape as GET /v1/events/{id}.
    _, one, _ = await gw.call("GET", f"/v1/events/{e['id']}", gw.admin)
    assert one == e
    seen = [x["id"] for x in first["data"]]
    cursor = first["next_cursor"]
    while cursor:
        page = await listing(gw, f"limit=2&cursor={cursor}")
        seen += [x["id"] for x in page["data"]]
        cursor = page["next_cursor"]
    assert seen == ids[::-1]


async def test_topic_time_and_account_filters(start_gateway: StartGateway) -> None:
    gw = await start_gateway(run_delivery_loop=False)
    t0 = gw.clock.now()
    a = await gw.publish("contact.created", "acme")
    gw.clock.advance(10)  # type: ignore[attr-defined]
    b = await gw.publish("contact.updated", "acme")
    gw.clock.advance(10)  # type: ignore[attr-defined]
    c = await gw.publish("contact.created", "globex")

    def ids(body: dict[str, Any]) -> list[str]:
        return [e["id"] for e in body["data"]]

    assert ids(await listing(gw)) == [c["id"], b["id"], a["id"]]
    assert ids(await listing(gw, "topic=contact.created")) == [c["id"], a["id"]]
    assert ids(await listing(gw, "account=acme")) == [b["id"], a["id"]]
    assert ids(await listing(gw, "account=acme&topic=contact.updated")) == [b["id"]]
    # since is inclusive, until exclusive.
    assert ids(await listing(gw, f"since={at(t0 + 10)}")) == [c["id"], b["id"]]
    assert ids(await listing(gw, f"until={at(t0 + 10)}")) == [a["id"]]
    assert ids(await listing(gw, f"since={at(t0 + 5)}&until={at(t0 + 20)}")) == [b["id"]]
    assert ids(await listing(gw, f"since={at(t0 + 21)}")) == []
    # An offset is a time like any other: the same instant an hour ahead.
    # (From the millisecond time the API shows, as a user would copy it.)
    plus_one = datetime.fromisoformat((iso(t0 + 10) or "").replace("Z", "+00:00")).astimezone(
        timezone(timedelta(hours=1)))
    assert plus_one.isoformat().endswith("+01:00")
    assert ids(await listing(gw, f"since={quote(plus_one.isoformat())}")) == [c["id"], b["id"]]
    # The publisher sees every account, like the admin.
    assert ids(await listing(gw, key=gw.publisher)) == [c["id"], b["id"], a["id"]]


async def test_subscribers_see_their_own_account_only(start_gateway: StartGateway) -> None:
    gw = await start_gateway(run_delivery_loop=False)
    mine = await gw.publish(account="acme")
    await gw.publish(account="globex")
    body = await listing(gw, key=gw.subscriber)
    assert [e["id"] for e in body["data"]] == [mine["id"]]
    assert [e["id"] for e in (await listing(gw, "account=acme", gw.subscriber))["data"]] == \
        [mine["id"]]
    status, out, _ = await gw.call("GET", "/v1/events?account=globex", gw.subscriber)
    assert status == 403, out
    assert (await listing(gw, key=gw.other))["data"][0]["account"] == "globex"


@pytest.mark.parametrize(("query", "field"), [
    ("since=yesterday", "since"),
    ("since=2026-12-04", "since"),
    ("since=2026-12-04T10:00:00", "since"),  # no offset
    ("since=2026-02-30T10:00:00Z", "since"),
    ("until=2026-12-04T25:00:00Z", "until"),
    ("until=1764806400", "until"),
    ("topic=Contact%20Created", "topic"),
    ("account=a%20b", "account"),
    ("limit=0", "limit"),
    ("cursor=nonsense", "cursor"),
])
async def test_bad_filters_are_422_naming_the_field(start_gateway: StartGateway, query: str,
                                                    field: str) -> None:
    gw = await start_gateway(run_delivery_loop=False)
    status, body, resp = await gw.call("GET", f"/v1/events?{query}", gw.admin)
    assert status == 422, body
    assert resp.content_type == "application/problem+json"
    assert body["errors"][0]["field"] == field


async def test_a_key_is_needed(start_gateway: StartGateway) -> None:
    gw = await start_gateway(run_delivery_loop=False)
    status, _, _ = await gw.call("GET", "/v1/events")
    assert status == 401
