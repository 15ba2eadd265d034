"""API keys over HTTP: create (shown once), list (never the key), revoke, and who gets 401/403."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from gateway.auth import hash_key
from tests import pg
from tests.conftest import Gateway

pytestmark = pytest.mark.backends  # on SQLite and on PostgreSQL

StartGateway = Callable[..., Awaitable[Gateway]]


def database_bytes(tmp_path: Path) -> bytes:
    """The database file with its WAL and shared-memory files, as they are on disk (on
    PostgreSQL: the database's files and the server's write-ahead log)."""
    if pg.ACTIVE["url"]:
        return pg.on_disk(pg.ACTIVE["url"])
    files = sorted(tmp_path.glob("gateway.db*"))
    assert any(p.name == "gateway.db" for p in files)
    return b"".join(p.read_bytes() for p in files)


async def raw_request(gw: Gateway, head: bytes) -> bytes:
    """Send raw request bytes (headers aiohttp's client would refuse to write) and read the answer."""
    assert gw.server.host == "127.0.0.1"
    reader, writer = await asyncio.open_connection(gw.server.host, gw.server.port)
    try:
        writer.write(head)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
        await writer.wait_closed()


async def test_create_key_answers_201_with_the_key(start_gateway: StartGateway) -> None:
    gw = await start_gateway()
    status, body, resp = await gw.call("POST", "/v1/keys", gw.admin,
                                       json={"role": "subscriber", "account": "acme"})
    assert status == 201, body
    assert resp.content_type == "application/json"
    assert set(body) >= {"id", "key", "role", "account"}
    assert body["role"] == "subscriber"
    assert body["account"] == "acme"
    assert body["id"].startswith("key_")
    assert body["key"].startswith("gw_") and len(body["key"]) >= 43
    # The new key works at once, for its account.
    status, listing, _ = await gw.call("GET", "/v1/hooks", body["key"])
    assert status == 200 and listing["data"] == []


@pytest.mark.parametrize("role", ["admin", "publisher"])
async def test_create_keys_of_each_role(start_gateway: StartGateway, role: str) -> None:
    gw = await start_gateway()
    status, body, _ = await gw.call("POST", "/v1/keys", gw.admin, json={"role": role})
    assert status == 201, body
    assert body["role"] == role
    assert body["account"] is None
    status, _, _ = await gw.call("GET", "/v1/keys", body["key"])
    assert status == (200 if role == "admin" else 403)


async def test_subscriber_key_for_a_new_account_creates_the_account(
        start_gateway: StartGateway) -> None:
    gw = await start_gateway()
    status, body, _ = await gw.call("POST", "/v1/keys", gw.admin,
                                    json={"role": "subscriber", "account": "initech"})
    assert status == 201, body
    status, hooks, _ = await gw.call("GET", "/v1/hooks", body["key"])
    assert status == 200 and hooks["data"] == []


@pytest.mark.parametrize(("payload", "field"), [
    ({"role": "subscriber"}, "account"),
    ({"role": "root"}, "role"),
    ({}, "role"),
    ({"role": ["admin"]}, "role"),
    ({"role": "subscriber", "account": ""}, "account"),
    ({"role": "subscriber", "account": "a b"}, "account"),
    ({"role": "subscriber", "account": 5}, "account"),
    ({"role": "subscriber", "account": "x" * 129}, "account"),
    ({"role": "subscriber", "account": "acme\n"}, "account"),
    ({"role": "admin", "scopes": ["*"]}, "scopes"),
    ({"role": "publisher", "account": "acme"}, "account"),
    ({"role": "admin", "account": "acme"}, "account"),
])
async def test_create_key_validation(start_gateway: StartGateway, payload: dict[str, object],
                                     field: str) -> None:
    gw = await start_gateway()
    before = len(await gw.storage.list_keys())
    status, body, resp = await gw.call("POST", "/v1/keys", gw.admin, json=payload)
    assert status == 422, body
    assert resp.content_type == "application/problem+json"
    assert body["errors"][0]["field"] == field
    assert len(await gw.storage.list_keys()) == before


async def test_list_keys_never_includes_the_key(start_gateway: StartGateway) -> None:
    gw = await start_gateway()
    _, created, _ = await gw.call("POST", "/v1/keys", gw.admin,
                                  json={"role": "subscriber", "account": "acme"})
    status, body, resp = await gw.call("GET", "/v1/keys", gw.admin)
    assert status == 200
    raw = await resp.text()
    for key in (created["key"], gw.admin, gw.publisher, gw.subscriber, gw.other):
        assert key not in raw
        assert key[3:] not in raw
    assert len(body["data"]) == 5
    for item in body["data"]:
        assert "key" not in item
        assert set(item) >= {"id", "role", "account", "created_at", "revoked_at"}
    mine = next(k for k in body["data"] if k["id"] == created["id"])
    assert (mine["role"], mine["account"], mine["revoked_at"]) == ("subscriber", "acme", None)


async def test_keys_are_stored_only_as_a_hash(start_gateway: StartGateway, tmp_path: Path) -> None:
    gw = await start_gateway()
    _, created, _ = await gw.call("POST", "/v1/keys", gw.admin, json={"role": "publisher"})
    data = await asyncio.to_thread(database_bytes, tmp_path)
    # The rows are in these bytes (the hash is), so the key's absence means something.
    assert hash_key(created["key"]) in data
    for key in (created["key"], gw.admin, gw.subscriber):
        assert key.encode() not in data
        assert key[3:].encode() not in data
        assert key[3:24].encode() not in data


async def test_revocation_takes_effect_on_the_next_request(start_gateway: StartGateway) -> None:
    gw = await start_gateway()
    _, created, _ = await gw.call("POST", "/v1/keys", gw.admin, json={"role": "publisher"})
    assert (await gw.call("GET", "/v1/topics", created["key"]))[0] == 200
    status, body, _ = await gw.call("DELETE", f"/v1/keys/{created['id']}", gw.admin)
    assert status == 204, body
    assert body is None
    status, body, resp = await gw.call("GET", "/v1/topics", created["key"])
    assert status == 401
    assert resp.content_type == "application/problem+json"
    assert created["key"] not in str(body)
    _, listing, _ = await gw.call("GET", "/v1/keys", gw.admin)
    mine = next(k for k in listing["data"] if k["id"] == created["id"])
    assert mine["revoked_at"] is not None
    # The others still work.
    assert (await gw.call("GET", "/v1/topics", gw.publisher))[0] == 200


async def test_an_admin_can_revoke_its_own_key(start_gateway: StartGateway) -> None:
    gw = await start_gateway()
    _, created, _ = await gw.call("POST", "/v1/keys", gw.admin, json={"role": "admin"})
    status, _, _ = await gw.call("DELETE", f"/v1/keys/{created['id']}", created["key"])
    assert status == 204
    assert (await gw.call("GET", "/v1/keys", created["key"]))[0] == 401


async def test_revoking_an_unknown_key_is_404(start_gateway: StartGateway) -> None:
    gw = await start_gateway()
    status, body, resp = await gw.call("DELETE", "/v1/keys/key_00000000000000000000000000",
                                       gw.admin)
    assert status == 404
    assert resp.content_type == "application/problem+json"
    assert body["status"] == 404


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/v1/keys"), ("POST", "/v1/keys"), ("DELETE", "/v1/keys/key_x"),
    ("GET", "/v1/topics"), ("PUT", "/v1/topics/a.b"), ("GET", "/v1/hooks"), ("POST", "/v1/hooks"),
    ("GET", "/v1/hooks/hook_x"), ("PATCH", "/v1/hooks/hook_x"), ("DELETE", "/v1/hooks/hook_x"),
    ("POST", "/v1/hooks/hook_x/rotate-secret"), ("GET", "/v1/hooks/hook_x/deliveries"),
    ("POST", "/v1/events"), ("GET", "/v1/events/evt_x"), ("GET", "/v1/deliveries/d_x"),
    ("POST", "/v1/deliveries/d_x/retry"), ("GET", "/metrics"),
])
async def test_every_endpoint_needs_a_key(start_gateway: StartGateway, method: str,
                                          path: str) -> None:
    gw = await start_gateway()
    status, body, resp = await gw.call(method, path, json={"role": "admin"} if method != "GET"
                                       else None)
    assert status == 401, (method, path, body)
    assert resp.content_type == "application/problem+json"
    assert set(body) >= {"type", "title", "status", "detail"}
    status, _, _ = await gw.call(method, path, "gw_" + "A" * 43)
    assert status == 401


@pytest.mark.parametrize("header", [
    "gw_abc",  # no scheme
    "Basic dXNlcjpwYXNz",
    "Bearer",
    "Bearer ",
    "Token gw_abc",
    "Bearer " + "A" * 500,
])
async def test_malformed_authorization_is_401(start_gateway: StartGateway, header: str) -> None:
    gw = await start_gateway()
    status, body, resp = await gw.call("GET", "/v1/keys", headers={"Authorization": header})
    assert status == 401, body
    assert resp.content_type == "application/problem+json"
    assert "Bearer" in body["detail"] or "key" in body["detail"]


async def test_the_bearer_scheme_is_case_insensitive(start_gateway: StartGateway) -> None:
    gw = await start_gateway()
    status, _, _ = await gw.call("GET", "/v1/keys", headers={"Authorization": f"bearer {gw.admin}"})
    assert status == 200


async def test_a_non_ascii_key_is_401_not_500(start_gateway: StartGateway) -> None:
    gw = await start_gateway()
    for key in (b"gw_\xff\xfe", "gw_ключ".encode()):
        answer = await raw_request(gw, b"GET /v1/keys HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                       b"Authorization: Bearer " + key + b"\r\n"
                                       b"Connection: close\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 401 "), answer[:200]
        assert b"application/problem+json" in answer


@pytest.mark.parametrize("who", ["publisher", "subscriber", "other"])
async def test_keys_endpoints_are_admin_only(start_gateway: StartGateway, who: str) -> None:
    gw = await start_gateway()
    key = getattr(gw, who)
    for method, path, payload in [("GET", "/v1/keys", None),
                                  ("POST", "/v1/keys", {"role": "admin"}),
                                  ("DELETE", f"/v1/keys/{(await gw.storage.list_keys())[0].id}",
                                   None)]:
        status, body, resp = await gw.call(method, path, key, json=payload)
        assert status == 403, (who, method, body)
        assert resp.content_type == "application/problem+json"
    # Nothing was created or revoked.
    keys = await gw.storage.list_keys()
    assert len(keys) == 4
    assert all(k.revoked_at is None for k in keys)
