"""POST /v1/portal/sessions: sign-in links an admin makes for one account, stored hashed."""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from gateway.auth import hash_key
from gateway.storage import Storage
from tests.conftest import Gateway

StartGateway = Callable[..., Awaitable[Gateway]]


def token_of(url: str) -> str:
    [token] = parse_qs(urlsplit(url).query)["token"]
    return token


async def test_an_admin_makes_a_link_whose_token_is_stored_hashed(start_gateway: StartGateway
                                                                  ) -> None:
    gw = await start_gateway(run_delivery_loop=False)
    now = gw.clock.now()
    status, body, _ = await gw.call("POST", "/v1/portal/sessions", gw.admin,
                                    json={"account": "acme", "ttl_seconds": 600})
    assert status == 201, body
    assert set(body) == {"url", "expires_at"}
    assert body["url"].startswith("/portal/sign-in?token=")  # no public_url: relative
    expires = datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00")).timestamp()
    assert expires == pytest.approx(now + 600, abs=0.01)
    token = token_of(body["url"])
    found = await gw.storage.portal_session(hash_key(token))
    assert found is not None
    assert found[0] == "acme" and found[1] == pytest.approx(now + 600, abs=0.01)
    # Only the hash is on disk, and another token finds nothing.
    with sqlite3.connect(gw.storage.path) as db:
        stored = [bytes(r[0]) for r in db.execute("SELECT token_hash FROM portal_sessions")]
        raw = b"".join(bytes(r[0]) for r in db.execute("SELECT * FROM portal_sessions"))
    assert stored == [hash_key(token)] and token.encode() not in raw
    assert await gw.storage.portal_session(hash_key(token + "x")) is None
    # Each link is new.
    _, again, _ = await gw.call("POST", "/v1/portal/sessions", gw.admin, json={"account": "acme"})
    assert token_of(again["url"]) != token


async def test_the_link_is_absolute_with_a_public_url(start_gateway: StartGateway) -> None:
    gw = await start_gateway(run_delivery_loop=False,
                             server={"public_url": "https://hooks.example.com"})
    status, body, _ = await gw.call("POST", "/v1/portal/sessions", gw.admin,
                                    json={"account": "acme"})
    assert status == 201, body
    assert body["url"].startswith("https://hooks.example.com/portal/sign-in?token=gwp_")
    expires = datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00")).timestamp()
    assert expires == pytest.approx(gw.clock.now() + 3600, abs=0.01)  # the default


@pytest.mark.parametrize("who", ["publisher", "subscriber"])
async def test_only_admins_make_links(start_gateway: StartGateway, who: str) -> None:
    gw = await start_gateway(run_delivery_loop=False)
    status, body, _ = await gw.call("POST", "/v1/portal/sessions", getattr(gw, who),
                                    json={"account": "acme"})
    assert status == 403, body


@pytest.mark.parametrize(("body", "field"), [
    ({}, "account"),
    ({"account": "a b"}, "account"),
    ({"account": 7}, "account"),
    ({"account": "acme", "ttl_seconds": 0}, "ttl_seconds"),
    ({"account": "acme", "ttl_seconds": 604801}, "ttl_seconds"),
    ({"account": "acme", "ttl_seconds": "60"}, "ttl_seconds"),
    ({"account": "acme", "ttl_seconds": True}, "ttl_seconds"),
    ({"account": "acme", "role": "admin"}, "role"),
])
async def test_bad_bodies_are_422_naming_the_field(start_gateway: StartGateway,
                                                   body: dict[str, object], field: str) -> None:
    gw = await start_gateway(run_delivery_loop=False)
    status, out, resp = await gw.call("POST", "/v1/portal/sessions", gw.admin, json=body)
    assert status == 422, out
    assert resp.content_type == "application/problem+json"
    assert out["errors"][0]["field"] == field


async def test_the_pruner_forgets_expired_sessions_only(tmp_path: Path) -> None:
    storage = Storage(str(tmp_path / "g.db"))
    await storage.open()
    try:
        now = 1_900_000_000.0
        await storage.create_portal_session(hash_key("gwp_old"), "acme", now + 10, now)
        await storage.create_portal_session(hash_key("gwp_new"), "acme", now + 1000, now)
        for _ in range(100):  # one whole pass
            if not (await storage.prune(now + 11, keep_seconds=3600)).more:
                break
        assert await storage.portal_session(hash_key("gwp_old")) is None
        assert await storage.portal_session(hash_key("gwp_new")) == ("acme", now + 1000)
    finally:
        await storage.close()
