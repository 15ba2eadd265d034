"""Hooks (subscriptions) over HTTP: full CRUD, patterns, headers, pagination, secrets, isolation."""

from __future__ import annotations

import base64
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tests.conftest import Gateway, Receiver

StartGateway = Callable[..., Awaitable[Gateway]]
HOOK_FIELDS = {"id", "account", "target_url", "topics", "payload", "ordered", "description",
               "headers", "status", "created_at", "updated_at"}


def assert_secret(secret: str) -> None:
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret[len("whsec_"):], validate=True)) == 32


def assert_problem(status: int, body: Any, expected: int, field: str | None = None) -> None:
    assert status == expected, body
    assert set(body) >= {"type", "title", "status", "detail"}, body
    assert body["status"] == expected
    if field is not None:
        assert body["errors"][0]["field"] == field, body


async def test_create_answers_201_with_the_hook_and_its_secret(
        start_gateway: StartGateway, receiver: Receiver) -> None:
    gw = await start_gateway()
    before = time.time()
    status, body, resp = await gw.call("POST", "/v1/hooks", gw.subscriber, json={
        "target_url": receiver.url + "/hooks/contacts",
        "topics": ["contact.created", "contact.*"],
        "payload": "full", "ordered": False, "description": "CRM sync",
        "headers": {"X-Custom": "value"},
    })
    assert status == 201, body
    assert resp.content_type == "application/json"
    assert resp.headers["Location"] == f"/v1/hooks/{body['id']}"
    assert set(body) >= HOOK_FIELDS | {"secret"}
    assert body["id"].startswith("hook_")
    assert body["account"] == "acme"
    assert body["target_url"] == receiver.url + "/hooks/contacts"
    assert body["topics"] == ["contact.created", "contact.*"]
    assert (body["payload"], body["ordered"], body["description"]) == ("full", False, "CRM sync")
    assert body["headers"] == {"X-Custom": "value"}
    assert body["status"] == "active"
    assert body["created_at"].endswith("Z")
    assert body["created_at"][:4] == time.strftime("%Y", time.gmtime(before))
    assert_secret(body["secret"])
    assert len(receiver.handshakes) == 1


async def test_defaults(start_gateway: StartGateway, receiver: Receiver) -> None:
    gw = await start_gateway()
    hook = await gw.hook(receiver)
    assert (hook["payload"], hook["ordered"], hook["description"], hook["headers"]) == (
        "full", False, "", {})


async def test_each_hook_gets_its_own_secret(start_gateway: StartGateway,
                                             receiver: Receiver) -> None:
    gw = await start_gateway()
    a, b = await gw.hook(receiver), await gw.hook(receiver)
    assert a["id"] != b["id"]
    assert a["secret"] != b["secret"]


async def test_get_and_list_never_show_the_secret(start_gateway: StartGateway,
                                                  receiver: Receiver) -> None:
    gw = await start_gateway()
    hook = await gw.hook(receiver, description="mine", payload="skinny", ordered=True)
    status, body, resp = await gw.call("GET", f"/v1/hooks/{hook['id']}", gw.subscriber)
    assert status == 200
    assert "secret" not in body
    assert hook["secret"] not in await resp.text()
    expected = {k: v for k, v in hook.items() if k != "secret"}
    assert body == expected
    status, listing, resp = await gw.call("GET", "/v1/hooks", gw.subscriber)
    assert status == 200
    assert listing["data"] == [expected]
    assert listing["next_cursor"] is None
    assert hook["secret"] not in await resp.text()
    assert hook["secret"][6:] not in await resp.text()


async def test_zapier_event_subscribe_and_unsubscribe(start_gateway: StartGateway,
                                                      receiver: Receiver) -> None:
    gw = await start_gateway(security={"verify_intent": False, "allow_private_targets": True,
                                       "allow_http_targets": True})
    status, body, _ = await gw.call("POST", "/v1/hooks", gw.subscriber, json={
        "target_url": receiver.url + "/zap", "event": "contact.created"})
    assert status == 201, body
    assert body["id"]
    assert body["topics"] == ["contact.created"]
    assert receiver.requests == []
    status, out, _ = await gw.call("DELETE", f"/v1/hooks/{body['id']}", gw.subscriber)
    assert status == 204
    assert out is None
    assert (await gw.call("GET", f"/v1/hooks/{body['id']}", gw.subscriber))[0] == 404
    assert (await gw.call("GET", "/v1/hooks", gw.subscriber))[1]["data"] == []
    assert (await gw.call("DELETE", f"/v1/hooks/{body['id']}", gw.subscriber))[0] == 404


@pytest.mark.parametrize("topics", [
    ["contact.*"], ["*"], ["contact.created", "billing.tier_changed"], ["billing.*", "contact.*"],
])
async def test_topic_patterns(start_gateway: StartGateway, receiver: Receiver,
                              topics: list[str]) -> None:
    gw = await start_gateway()
    hook = await gw.hook(receiver, topics=topics)
    assert hook["topics"] == topics


async def test_duplicate_patterns_are_kept_once(start_gateway: StartGateway,
                                                receiver: Receiver) -> None:
    gw = await start_gateway()
    hook = await gw.hook(receiver, topics=["contact.created", "contact.created"])
    assert hook["topics"] == ["contact.created"]


@pytest.mark.parametrize(("fields", "field"), [
    ({"topics": ["contact.exploded"]}, "topics[0]"),
    ({"topics": ["contact.created", "nope.nope"]}, "topics[1]"),
    ({"topics": ["Contact.Created"]}, "topics[0]"),
    ({"topics": ["contact.*.x"]}, "topics[0]"),
    ({"topics": ["*.created"]}, "topics[0]"),
    ({"topics": ["contact*"]}, "topics[0]"),
    ({"topics": [5]}, "topics[0]"),
    ({"topics": []}, "topics"),
    ({"topics": "contact.created"}, "topics"),
    ({"topics": None}, "topics"),
    ({"topics": ["contact.created"], "event": "contact.created"}, "event"),
    ({"event": "contact.exploded"}, "event"),
    ({"event": ["contact.created"]}, "event"),
    ({"payload": "medium"}, "payload"),
    ({"payload": 1}, "payload"),
    ({"ordered": "yes"}, "ordered"),
    ({"ordered": 1}, "ordered"),
    ({"description": 5}, "description"),
    ({"description": "x" * 1001}, "description"),
    ({"target_url": 5}, "target_url"),
    ({"target_url": None}, "target_url"),
    ({"target_url": ""}, "target_url"),
    ({"target_url": "not a url"}, "target_url"),
    ({"target_url": "ftp://127.0.0.1/x"}, "target_url"),
    ({"target_url": "http://user:pw@127.0.0.1/x"}, "target_url"),
    ({"target_url": "http://127.0.0.1:8080/x#frag"}, "target_url"),
    ({"headers": ["X-A"]}, "headers"),
    ({"headers": {"X-A": 5}}, "headers.X-A"),
    ({"headers": {"X Bad": "v"}}, "headers.X Bad"),
    ({"headers": {"X-A": "a\r\nX-Injected: 1"}}, "headers.X-A"),
    ({"headers": {f"X-{i}": "v" for i in range(21)}}, "headers"),
    ({"headers": {"X-A\n": "v"}}, "headers.X-A\n"),
    ({"headers": {"X-A": "\x01"}}, "headers.X-A"),
    ({"headers": {"X-A": "a\x7f"}}, "headers.X-A"),
    ({"headers": {"X-A": "1", "x-a": "2"}}, "headers.x-a"),
    ({"topics": ["contact.*\n"]}, "topics[0]"),
    ({"topics": ["contact.created\n"]}, "topics[0]"),
    ({"status": "paused"}, "status"),
    ({"id": "hook_mine"}, "id"),
    ({"secret": "whsec_mine"}, "secret"),
])
async def test_create_validation_names_the_field(start_gateway: StartGateway, receiver: Receiver,
                                                 fields: dict[str, Any], field: str) -> None:
    gw = await start_gateway()
    body = {"target_url": receiver.url + "/h", "topics": ["contact.created"], **fields}
    body = {k: v for k, v in body.items() if not (k == "topics" and "event" in fields
                                                  and "topics" not in fields)}
    status, out, resp = await gw.call("POST", "/v1/hooks", gw.subscriber, json=body)
    assert_problem(status, out, 422, field)
    assert resp.content_type == "application/problem+json"
    assert field.split(".")[0].split("[")[0] in out["detail"]
    assert (await gw.call("GET", "/v1/hooks", gw.subscriber))[1]["data"] == []
    assert receiver.handshakes == []


async def test_target_url_and_topics_are_required(start_gateway: StartGateway,
                                                  receiver: Receiver) -> None:
    gw = await start_gateway()
    status, out, _ = await gw.call("POST", "/v1/hooks", gw.subscriber,
                                   json={"topics": ["contact.created"]})
    assert_problem(status, out, 422, "target_url")
    status, out, _ = await gw.call("POST", "/v1/hooks", gw.subscriber,
                                   json={"target_url": receiver.url})
    assert_problem(status, out, 422, "topics")


@pytest.mark.parametrize("name", [
    "Connection", "keep-alive", "Transfer-Encoding", "TE", "Trailer", "Upgrade", "Host",
    "Content-Length", "Content-Type", "Proxy-Authorization", "Proxy-Connection", "Proxy-Foo",
    "webhook-id", "Webhook-Signature", "WEBHOOK-TIMESTAMP", "X-Hook-Secret", "User-Agent",
])
async def test_reserved_headers_are_refused(start_gateway: StartGateway, receiver: Receiver,
                                            name: str) -> None:
    gw = await start_gateway()
    status, out, _ = await gw.call("POST", "/v1/hooks", gw.subscriber, json={
        "target_url": receiver.url, "topics": ["contact.created"],
        "headers": {"X-Fine": "1", name: "v"}})
    assert_problem(status, out, 422, f"headers.{name}")
    assert (await gw.call("GET", "/v1/hooks", gw.subscriber))[1]["data"] == []


async def test_custom_headers_are_kept(start_gateway: StartGateway, receiver: Receiver) -> None:
    gw = await start_gateway()
    headers = {"X-Custom": "value", "Authorization": "Bearer downstream", "X-Empty": ""}
    hook = await gw.hook(receiver, headers=headers)
    assert hook["headers"] == headers


async def test_patch_changes_fields(start_gateway: StartGateway, receiver: Receiver) -> None:
    gw = await start_gateway()
    hook = await gw.hook(receiver, headers={"X-A": "1"})
    changes = {"topics": ["*"], "payload": "skinny", "ordered": True, "description": "new",
               "headers": {"X-B": "2"}}
    status, body, _ = await gw.call("PATCH", f"/v1/hooks/{hook['id']}", gw.subscriber,
                                    json=changes)
    assert status == 200, body
    for k, v in changes.items():
        assert body[k] == v
    assert "secret" not in body
    assert body["target_url"] == hook["target_url"]
    assert body["created_at"] == hook["created_at"]
    assert body["updated_at"] >= hook["updated_at"]
    _, again, _ = await gw.call("GET", f"/v1/hooks/{hook['id']}", gw.subscriber)
    assert again == body
    # An unchanged target_url is not verified again.
    assert len(receiver.handshakes) == 1


async def test_patch_event_and_clearing_headers(start_gateway: StartGateway,
                                                receiver: Receiver) -> None:
    gw = await start_gateway()
    hook = await gw.hook(receiver, headers={"X-A": "1"})
    status, body, _ = await gw.call("PATCH", f"/v1/hooks/{hook['id']}", gw.subscriber,
                                    json={"event": "billing.tier_changed", "headers": {}})
    assert status == 200, body
    assert body["topics"] == ["billing.tier_changed"]
    assert body["headers"] == {}


async def test_empty_patch_changes_nothing(start_gateway: StartGateway, receiver: Receiver) -> None:
    gw = await start_gateway()
    hook = await gw.hook(receiver)
    status, body, _ = await gw.call("PATCH", f"/v1/hooks/{hook['id']}", gw.subscriber, json={})
    assert status == 200
    assert {k: body[k] for k in HOOK_FIELDS - {"updated_at"}} == {
        k: hook[k] for k in HOOK_FIELDS - {"updated_at"}}


async def test_pause_and_resume(start_gateway: StartGateway, receiver: Receiver) -> None:
    gw = await start_gateway()
    hook = await gw.hook(receiver)
    path = f"/v1/hooks/{hook['id']}"
    status, body, _ = await gw.call("PATCH", path, gw.subscriber, json={"status": "paused"})
    assert status == 200, body
    assert body["status"] == "paused"
    assert (await gw.call("GET", path, gw.subscriber))[1]["status"] == "paused"
    status, body, _ = await gw.call("PATCH", path, gw.subscriber, json={"status": "active"})
    assert status == 200, body
    assert body["status"] == "active"


@pytest.mark.parametrize(("fields", "field"), [
    ({"status": "disabled"}, "status"),
    ({"status": "removed"}, "status"),
    ({"status": "Paused"}, "status"),
    ({"status": 1}, "status"),
    ({"topics": []}, "topics"),
    ({"topics": ["nope.nope"]}, "topics[0]"),
    ({"payload": "none"}, "payload"),
    ({"ordered": None, "description": 3}, "description"),
    ({"headers": {"Connection": "close"}}, "headers.Connection"),
    ({"target_url": "gopher://127.0.0.1/"}, "target_url"),
    ({"target_url": None}, "target_url"),
    ({"target_url": 5}, "target_url"),
    ({"topics": None}, "topics"),
    ({"event": None}, "event"),
    ({"headers": "X-A: 1"}, "headers"),
    ({"account": "globex"}, "account"),
    ({"id": "hook_x"}, "id"),
    ({"secret": "whsec_x"}, "secret"),
])
async def test_patch_validation_changes_nothing(start_gateway: StartGateway, receiver: Receiver,
                                                fields: dict[str, Any], field: str) -> None:
    gw = await start_gateway()
    hook = await gw.hook(receiver)
    path = f"/v1/hooks/{hook['id']}"
    status, body, _ = await gw.call("PATCH", path, gw.subscriber,
                                    json={"description": "changed?", **fields})
    assert_problem(status, body, 422, field)
    _, again, _ = await gw.call("GET", path, gw.subscriber)
    assert again["description"] == ""
    assert again["status"] == "active"


async def test_pagination_walks_every_hook_once(start_gateway: StartGateway,
                                                receiver: Receiver) -> None:
    gw = await start_gateway(security={"verify_intent": False, "allow_private_targets": True,
                                       "allow_http_targets": True})
    made = [(await gw.hook(receiver, description=str(i)))["id"] for i in range(7)]
    await gw.hook(receiver, key=gw.other)  # another account's, never listed
    seen: list[str] = []
    pages = []
    cursor: str | None = None
    while True:
        path = "/v1/hooks?limit=3" + (f"&cursor={cursor}" if cursor else "")
        status, body, _ = await gw.call("GET", path, gw.subscriber)
        assert status == 200, body
        pages.append(len(body["data"]))
        seen.extend(h["id"] for h in body["data"])
        cursor = body["next_cursor"]
        if cursor is None:
            break
        assert isinstance(cursor, str) and cursor
        assert len(pages) < 10
    assert pages == [3, 3, 1]
    assert len(seen) == len(set(seen))
    assert sorted(seen) == sorted(made)
    # Default limit: everything on one page.
    status, body, _ = await gw.call("GET", "/v1/hooks", gw.subscriber)
    assert len(body["data"]) == 7 and body["next_cursor"] is None
    # An exact multiple of the limit ends with next_cursor null, not an empty page.
    status, body, _ = await gw.call("GET", "/v1/hooks?limit=7", gw.subscriber)
    assert len(body["data"]) == 7 and body["next_cursor"] is None


async def test_pagination_survives_a_deleted_hook(start_gateway: StartGateway,
                                                  receiver: Receiver) -> None:
    gw = await start_gateway(security={"verify_intent": False, "allow_private_targets": True,
                                       "allow_http_targets": True})
    made = [(await gw.hook(receiver))["id"] for _ in range(4)]
    _, first, _ = await gw.call("GET", "/v1/hooks?limit=2", gw.subscriber)
    await gw.call("DELETE", f"/v1/hooks/{first['data'][-1]['id']}", gw.subscriber)
    _, second, _ = await gw.call("GET", f"/v1/hooks?limit=2&cursor={first['next_cursor']}",
                                 gw.subscriber)
    assert [h["id"] for h in second["data"]] == made[2:]


@pytest.mark.parametrize(("query", "field"), [
    ("limit=0", "limit"), ("limit=501", "limit"), ("limit=-1", "limit"), ("limit=abc", "limit"),
    ("limit=2.5", "limit"), ("cursor=nonsense", "cursor"), ("cursor=%00%01", "cursor"),
    ("cursor=aG9va18x", "cursor"),  # base64 of "hook_1": decodes, but no cursor we gave out
    ("cursor=" + "A" * 2000, "cursor"), ("cursor=ключ", "cursor"),
])
async def test_bad_paging_parameters_are_422(start_gateway: StartGateway, query: str,
                                             field: str) -> None:
    gw = await start_gateway()
    status, body, _ = await gw.call("GET", f"/v1/hooks?{query}", gw.subscriber)
    assert_problem(status, body, 422, field)


async def test_limit_bounds_are_accepted(start_gateway: StartGateway) -> None:
    gw = await start_gateway()
    for limit in (1, 500):
        status, _, _ = await gw.call("GET", f"/v1/hooks?limit={limit}", gw.subscriber)
        assert status == 200


async def test_rotate_secret(start_gateway: StartGateway, receiver: Receiver) -> None:
    gw = await start_gateway()
    hook = await gw.hook(receiver)
    status, body, resp = await gw.call("POST", f"/v1/hooks/{hook['id']}/rotate-secret",
                                       gw.subscriber)
    assert status == 200, body
    assert resp.content_type == "application/json"
    assert set(body) == {"secret"}
    assert_secret(body["secret"])
    assert body["secret"] != hook["secret"]
    # The old secret is kept for about 24 hours so deliveries can be signed with both.
    stored = await gw.storage.get_hook(hook["id"])
    assert stored is not None
    now = gw.clock.now()
    assert stored.secret == body["secret"]
    assert stored.old_secret == hook["secret"]
    assert stored.old_secret_expires_at is not None
    assert abs(stored.old_secret_expires_at - (now + 24 * 3600)) < 60
    assert stored.secrets(now) == [body["secret"], hook["secret"]]
    assert stored.secrets(now + 24 * 3600 + 60) == [body["secret"]]
    # Still never shown on read.
    _, got, resp = await gw.call("GET", f"/v1/hooks/{hook['id']}", gw.subscriber)
    assert "secret" not in got
    assert body["secret"] not in await resp.text()
    status, again, _ = await gw.call("POST", f"/v1/hooks/{hook['id']}/rotate-secret", gw.admin)
    assert status == 200
    assert again["secret"] not in (hook["secret"], body["secret"])


async def test_admin_must_name_the_account(start_gateway: StartGateway,
                                           receiver: Receiver) -> None:
    gw = await start_gateway()
    body = {"target_url": receiver.url, "topics": ["contact.created"]}
    status, out, _ = await gw.call("POST", "/v1/hooks", gw.admin, json=body)
    assert_problem(status, out, 422, "account")
    for bad in ("", "a b", 5, "x" * 200, None, "acme\n", ["acme"]):
        status, out, _ = await gw.call("POST", "/v1/hooks", gw.admin, json={**body, "account": bad})
        assert_problem(status, out, 422, "account")
    assert receiver.handshakes == []
    status, out, _ = await gw.call("POST", "/v1/hooks", gw.admin, json={**body, "account": "acme"})
    assert status == 201, out
    assert out["account"] == "acme"
    # The account's subscriber sees it; the other account does not.
    assert (await gw.call("GET", f"/v1/hooks/{out['id']}", gw.subscriber))[0] == 200
    assert (await gw.call("GET", f"/v1/hooks/{out['id']}", gw.other))[0] == 404


async def test_admin_lists_every_account_or_one(start_gateway: StartGateway,
                                                receiver: Receiver) -> None:
    gw = await start_gateway()
    a = await gw.hook(receiver)
    g = await gw.hook(receiver, key=gw.other)
    _, every, _ = await gw.call("GET", "/v1/hooks", gw.admin)
    assert {h["id"] for h in every["data"]} == {a["id"], g["id"]}
    _, only, _ = await gw.call("GET", "/v1/hooks?account=globex", gw.admin)
    assert [h["id"] for h in only["data"]] == [g["id"]]
    # A subscriber's account filter cannot widen what it sees.
    _, mine, _ = await gw.call("GET", "/v1/hooks?account=globex", gw.subscriber)
    assert [h["id"] for h in mine["data"]] == [a["id"]]


async def test_subscriber_acts_only_for_its_own_account(start_gateway: StartGateway,
                                                        receiver: Receiver) -> None:
    gw = await start_gateway()
    body = {"target_url": receiver.url, "topics": ["contact.created"]}
    status, out, _ = await gw.call("POST", "/v1/hooks", gw.subscriber,
                                   json={**body, "account": "globex"})
    assert_problem(status, out, 403)
    assert receiver.handshakes == []
    status, out, _ = await gw.call("POST", "/v1/hooks", gw.subscriber,
                                   json={**body, "account": "acme"})
    assert status == 201, out


async def test_publishers_cannot_manage_hooks(start_gateway: StartGateway,
                                              receiver: Receiver) -> None:
    gw = await start_gateway()
    hook = await gw.hook(receiver)
    path = f"/v1/hooks/{hook['id']}"
    for method, p, payload in [("GET", "/v1/hooks", None),
                               ("POST", "/v1/hooks", {"target_url": receiver.url,
                                                      "topics": ["*"], "account": "acme"}),
                               ("GET", path, None), ("PATCH", path, {"status": "paused"}),
                               ("DELETE", path, None), ("POST", f"{path}/rotate-secret", None),
                               ("GET", f"{path}/deliveries", None)]:
        status, out, _ = await gw.call(method, p, gw.publisher, json=payload)
        assert_problem(status, out, 403)
    assert (await gw.call("GET", path, gw.subscriber))[1]["status"] == "active"


async def test_another_accounts_hook_is_404_on_every_endpoint(
        start_gateway: StartGateway, receiver: Receiver) -> None:
    gw = await start_gateway()
    hook = await gw.hook(receiver)
    path = f"/v1/hooks/{hook['id']}"
    missing = "/v1/hooks/hook_00000000000000000000000000"
    calls = [("GET", "", None), ("PATCH", "", {"status": "paused", "description": "pwned"}),
             ("PATCH", "", {"target_url": receiver.url + "/evil"}),
             ("DELETE", "", None), ("POST", "/rotate-secret", None),
             ("GET", "/deliveries", None), ("GET", "/deliveries?status=failed", None)]
    for method, suffix, payload in calls:
        status, out, resp = await gw.call(method, path + suffix, gw.other, json=payload)
        assert_problem(status, out, 404)
        assert resp.content_type == "application/problem+json"
        # Exactly like a missing one: the same answer, nothing to tell them apart.
        status2, out2, _ = await gw.call(method, missing + suffix, gw.other, json=payload)
        assert (status2, out2) == (status, out), (method, suffix)
    _, listing, _ = await gw.call("GET", "/v1/hooks", gw.other)
    assert listing["data"] == []
    _, listing, _ = await gw.call("GET", "/v1/hooks?account=acme", gw.other)
    assert listing["data"] == []
    # Nothing changed: not paused, not edited, not deleted, not rotated, no new handshake.
    _, after, _ = await gw.call("GET", path, gw.subscriber)
    assert {k: after[k] for k in HOOK_FIELDS} == {k: hook[k] for k in HOOK_FIELDS}
    stored = await gw.storage.get_hook(hook["id"])
    assert stored is not None and stored.secret == hook["secret"]
    assert len(receiver.handshakes) == 1


async def test_unknown_hook_is_404(start_gateway: StartGateway) -> None:
    gw = await start_gateway()
    for method in ("GET", "PATCH", "DELETE"):
        status, out, _ = await gw.call(method, "/v1/hooks/hook_nope", gw.admin,
                                       json={} if method == "PATCH" else None)
        assert_problem(status, out, 404)
    status, out, _ = await gw.call("POST", "/v1/hooks/hook_nope/rotate-secret", gw.admin)
    assert_problem(status, out, 404)


async def test_deleted_hook_is_gone_everywhere(start_gateway: StartGateway,
                                               receiver: Receiver) -> None:
    gw = await start_gateway()
    hook = await gw.hook(receiver)
    path = f"/v1/hooks/{hook['id']}"
    assert (await gw.call("DELETE", path, gw.subscriber))[0] == 204
    for method, suffix, payload in [("GET", "", None), ("PATCH", "", {"status": "active"}),
                                    ("POST", "/rotate-secret", None), ("GET", "/deliveries", None),
                                    ("DELETE", "", None)]:
        status, out, _ = await gw.call(method, path + suffix, gw.subscriber, json=payload)
        assert_problem(status, out, 404)


async def test_another_accounts_deliveries_and_events_are_404(start_gateway: StartGateway,
                                                              receiver: Receiver) -> None:
    gw = await start_gateway()
    hook = await gw.hook(receiver)
    published = await gw.publish(data={"id": 1})
    await receiver.wait_for(1)
    status, listing, _ = await gw.call("GET", f"/v1/hooks/{hook['id']}/deliveries", gw.subscriber)
    assert status == 200
    [delivery] = listing["data"]
    cases = [("GET", f"/v1/deliveries/{delivery['id']}", "/v1/deliveries/dlv_nope"),
             ("POST", f"/v1/deliveries/{delivery['id']}/retry", "/v1/deliveries/dlv_nope/retry"),
             ("GET", f"/v1/events/{published['id']}", "/v1/events/evt_nope")]
    for method, path, missing in cases:
        status, out, _ = await gw.call(method, path, gw.other)
        assert_problem(status, out, 404)
        assert (await gw.call(method, missing, gw.other))[1] == out
    # The owner sees both.
    assert (await gw.call("GET", cases[0][1], gw.subscriber))[0] == 200
    assert (await gw.call("GET", cases[2][1], gw.subscriber))[0] == 200
