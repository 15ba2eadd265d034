"""The topic catalog: from config at start-up, listed to every key, created or updated by admins."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from tests.conftest import OPERATIONAL_TOPICS, TOPICS, Gateway

StartGateway = Callable[..., Awaitable[Gateway]]


@pytest.mark.parametrize("who", ["admin", "publisher", "subscriber", "other"])
async def test_every_key_reads_the_catalog_from_config(start_gateway: StartGateway,
                                                       who: str) -> None:
    gw = await start_gateway()
    status, body, resp = await gw.call("GET", "/v1/topics", getattr(gw, who))
    assert status == 200
    assert resp.content_type == "application/json"
    assert {t["name"] for t in body["data"]} == {*TOPICS, *OPERATIONAL_TOPICS}
    for t in body["data"]:
        if t["name"] in TOPICS:
            assert t == {"name": t["name"], "description": f"{t['name']} happened"}


async def test_put_creates_then_updates(start_gateway: StartGateway) -> None:
    gw = await start_gateway()
    status, body, _ = await gw.call("PUT", "/v1/topics/invoice.paid", gw.admin,
                                    json={"description": "An invoice was paid"})
    assert status == 201, body
    assert body == {"name": "invoice.paid", "description": "An invoice was paid"}
    status, body, _ = await gw.call("PUT", "/v1/topics/invoice.paid", gw.admin,
                                    json={"description": "Paid in full"})
    assert status == 200, body
    assert body["description"] == "Paid in full"
    _, listing, _ = await gw.call("GET", "/v1/topics", gw.subscriber)
    found = [t for t in listing["data"] if t["name"] == "invoice.paid"]
    assert found == [{"name": "invoice.paid", "description": "Paid in full"}]


async def test_a_new_topic_can_be_subscribed_to_at_once(start_gateway: StartGateway) -> None:
    gw = await start_gateway(security={"verify_intent": False, "allow_private_targets": True,
                                       "allow_http_targets": True})
    hook = {"target_url": "http://127.0.0.1:9/h", "topics": ["invoice.paid"]}
    status, body, _ = await gw.call("POST", "/v1/hooks", gw.subscriber, json=hook)
    assert status == 422
    assert body["errors"][0]["field"] == "topics[0]"
    assert (await gw.call("PUT", "/v1/topics/invoice.paid", gw.admin, json={}))[0] == 201
    status, body, _ = await gw.call("POST", "/v1/hooks", gw.subscriber, json=hook)
    assert status == 201, body


async def test_description_is_optional(start_gateway: StartGateway) -> None:
    gw = await start_gateway()
    status, body, _ = await gw.call("PUT", "/v1/topics/billing.refunded", gw.admin, json={})
    assert status == 201, body
    assert body == {"name": "billing.refunded", "description": ""}


@pytest.mark.parametrize("name", [
    "Contact.Created", "contact created", "contact..created", ".contact", "contact.", "contact.*",
    "*", "1contact.created", "contact-created", "contact.créé", "x" * 201,
    "contact.created%0A",
])
async def test_bad_names_are_422(start_gateway: StartGateway, name: str) -> None:
    gw = await start_gateway()
    status, body, resp = await gw.call("PUT", f"/v1/topics/{name}", gw.admin,
                                       json={"description": "x"})
    assert status == 422, (name, body)
    assert resp.content_type == "application/problem+json"
    assert body["errors"][0]["field"] == "name"
    _, listing, _ = await gw.call("GET", "/v1/topics", gw.admin)
    assert len(listing["data"]) == len(TOPICS) + len(OPERATIONAL_TOPICS)


@pytest.mark.parametrize("name", ["contact", "billing.tier_changed", "a.b_c.d2"])
async def test_good_names(start_gateway: StartGateway, name: str) -> None:
    gw = await start_gateway()
    status, body, _ = await gw.call("PUT", f"/v1/topics/{name}", gw.admin, json={})
    assert status in (200, 201), body
    assert body["name"] == name


@pytest.mark.parametrize(("payload", "field"), [
    ({"description": 5}, "description"),
    ({"description": "x" * 1001}, "description"),
    ({"name": "other.name"}, "name"),
    ([], "body"),
])
async def test_bad_bodies_are_422(start_gateway: StartGateway, payload: object,
                                  field: str) -> None:
    gw = await start_gateway()
    status, body, _ = await gw.call("PUT", "/v1/topics/a.b", gw.admin, json=payload)
    assert status == 422, body
    assert body["errors"][0]["field"] == field


@pytest.mark.parametrize("who", ["publisher", "subscriber", "other"])
async def test_only_admins_change_the_catalog(start_gateway: StartGateway, who: str) -> None:
    gw = await start_gateway()
    status, body, resp = await gw.call("PUT", "/v1/topics/contact.created", getattr(gw, who),
                                       json={"description": "hijacked"})
    assert status == 403, body
    assert resp.content_type == "application/problem+json"
    _, listing, _ = await gw.call("GET", "/v1/topics", gw.admin)
    assert all(t["description"] != "hijacked" for t in listing["data"])


async def test_config_topics_are_loaded_again_on_restart(start_gateway: StartGateway) -> None:
    gw = await start_gateway()
    assert (await gw.call("PUT", "/v1/topics/extra.topic", gw.admin, json={}))[0] == 201
    await gw.server.close()
    gw2 = await start_gateway()
    _, listing, _ = await gw2.call("GET", "/v1/topics", gw2.admin)
    names = {t["name"] for t in listing["data"]}
    assert names == {*TOPICS, *OPERATIONAL_TOPICS, "extra.topic"}
