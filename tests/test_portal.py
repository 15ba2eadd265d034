"""The portal over plain HTTP: sign-in, sessions and their cookies, CSRF and origin checks, the
headers every page sends, and error pages (the browser tests click through the rest)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDictProxy

from gateway.clock import ManualClock
from gateway.portal import stats
from tests.conftest import Gateway, wait_until

StartGateway = Callable[..., Awaitable[Gateway]]
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture
async def browser() -> AsyncIterator[aiohttp.ClientSession]:
    """A client that keeps cookies, as a browser does (unsafe: the host is an IP address)."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        yield s


def origin(gw: Gateway) -> str:
    return gw.url("/")[:-1]


async def get(b: aiohttp.ClientSession, gw: Gateway, path: str
              ) -> tuple[int, str, CIMultiDictProxy[str]]:
    async with b.get(gw.url(path), allow_redirects=False) as resp:
        return resp.status, await resp.text(), resp.headers


async def post(b: aiohttp.ClientSession, gw: Gateway, path: str, form: dict[str, str],
               headers: dict[str, str] | None = None
               ) -> tuple[int, str, CIMultiDictProxy[str]]:
    h = {"Origin": origin(gw), "Sec-Fetch-Site": "same-origin", **(headers or {})}
    async with b.post(gw.url(path), data=form, headers=h, allow_redirects=False) as resp:
        return resp.status, await resp.text(), resp.headers


async def token_of(b: aiohttp.ClientSession, gw: Gateway, path: str) -> str:
    status, html, _ = await get(b, gw, path)
    assert status == 200, html
    m = CSRF.search(html)
    assert m, html
    return m.group(1)


async def sign_in(b: aiohttp.ClientSession, gw: Gateway, key: str
                  ) -> tuple[int, str, CIMultiDictProxy[str]]:
    csrf = await token_of(b, gw, "/portal/sign-in")
    return await post(b, gw, "/portal/sign-in", {"csrf": csrf, "key": key})


async def open_link(b: aiohttp.ClientSession, gw: Gateway, account: str, ttl: int = 3600) -> str:
    status, body, _ = await gw.call("POST", "/v1/portal/sessions", gw.admin,
                                    json={"account": account, "ttl_seconds": ttl})
    assert status == 201, body
    path = body["url"]
    assert path.startswith("/portal/sign-in?token=")
    csrf = await token_of(b, gw, path)
    status, html, headers = await post(b, gw, "/portal/sign-in",
                                       {"csrf": csrf, "token": path.split("=", 1)[1]})
    assert (status, headers.get("Location")) == (303, "/portal/"), html
    return str(path)


async def test_an_admin_key_signs_in_and_the_cookie_holds_a_session_token_not_the_key(
        start_gateway: StartGateway, browser: aiohttp.ClientSession) -> None:
    gw = await start_gateway()
    status, _, headers = await sign_in(browser, gw, gw.admin)
    assert (status, headers["Location"]) == (303, "/portal/")
    cookie = next(c for c in headers.getall("Set-Cookie") if c.startswith("gw_portal="))
    value = cookie.split(";")[0].split("=", 1)[1]
    assert gw.admin not in cookie and len(value) >= 40
    attrs = {a.strip().lower() for a in cookie.split(";")[1:]}
    assert {"httponly", "samesite=strict", "path=/portal/"} <= attrs
    assert "secure" not in attrs  # public_url is not https
    status, html, _ = await get(browser, gw, "/portal/")
    assert status == 200 and "Operations" in html and "Sign out" in html


@pytest.mark.parametrize("which", ["publisher", "subscriber", "unknown", "empty"])
async def test_only_an_admin_key_signs_in_and_every_refusal_reads_the_same(
        start_gateway: StartGateway, browser: aiohttp.ClientSession, which: str) -> None:
    gw = await start_gateway()
    key = {"publisher": gw.publisher, "subscriber": gw.subscriber,
           "unknown": "gw_" + "x" * 43, "empty": ""}[which]
    status, html, headers = await sign_in(browser, gw, key)
    assert status == 401
    assert "That is not a valid admin key" in html
    assert not any(c.startswith("gw_portal=") for c in headers.getall("Set-Cookie", []))
    status, _, headers = await get(browser, gw, "/portal/")
    assert (status, headers["Location"]) == (303, "/portal/sign-in")


async def test_the_cookie_is_secure_when_public_url_is_https(
        start_gateway: StartGateway) -> None:
    gw = await start_gateway(server={"public_url": "https://hooks.example.com"})
    # (A TLS proxy in front would make this origin secure; the test client is told so, or it
    # would not send Secure cookies back over plain HTTP.)
    jar = aiohttp.CookieJar(unsafe=True, treat_as_secure_origin=[origin(gw)])
    async with aiohttp.ClientSession(cookie_jar=jar) as browser:
        csrf = await token_of(browser, gw, "/portal/sign-in")
        # The origin a browser names is the public one.
        status, _, headers = await post(browser, gw, "/portal/sign-in",
                                        {"csrf": csrf, "key": gw.admin},
                                        {"Origin": "https://hooks.example.com"})
        assert status == 303
        cookie = next(c for c in headers.getall("Set-Cookie") if c.startswith("gw_portal="))
        assert "secure" in {a.strip().lower() for a in cookie.split(";")}
        status, _, _ = await post(browser, gw, "/portal/sign-in", {"csrf": csrf, "key": gw.admin})
        assert status == 403  # this process's own address is not the public origin
    status, body, _ = await gw.call("POST", "/v1/portal/sessions", gw.admin,
                                    json={"account": "acme"})
    assert status == 201 and body["url"].startswith("https://hooks.example.com/portal/")


@pytest.mark.parametrize(("headers", "token"), [
    ({"Origin": "http://evil.example"}, True),
    ({"Origin": "null"}, True),
    ({"Sec-Fetch-Site": "cross-site"}, True),
    ({"Sec-Fetch-Site": "same-site"}, True),  # another port or subdomain of this host
    ({}, False),  # the right origin, no token
])
async def test_a_post_from_elsewhere_or_without_its_token_changes_nothing(
        start_gateway: StartGateway, browser: aiohttp.ClientSession, receiver: Any,
        headers: dict[str, str], token: bool) -> None:
    gw = await start_gateway()
    hook = await gw.hook(receiver)
    await sign_in(browser, gw, gw.admin)
    csrf = await token_of(browser, gw, f"/portal/hooks/{hook['id']}")
    form = {"csrf": csrf} if token else {}
    status, html, _ = await post(browser, gw, f"/portal/hooks/{hook['id']}/pause", form, headers)
    assert status == 403 and "Refused" in html
    assert (await gw.storage.get_hook(hook["id"])).status.value == "active"  # type: ignore[union-attr]
    # The same form from the portal itself, with its token, works.
    status, _, _ = await post(browser, gw, f"/portal/hooks/{hook['id']}/pause", {"csrf": csrf})
    assert status == 303
    assert (await gw.storage.get_hook(hook["id"])).status.value == "paused"  # type: ignore[union-attr]


async def test_a_revoked_admin_key_ends_its_sessions(
        start_gateway: StartGateway, browser: aiohttp.ClientSession) -> None:
    gw = await start_gateway()
    await sign_in(browser, gw, gw.admin)
    assert (await get(browser, gw, "/portal/"))[0] == 200
    [admin_key] = [k for k in await gw.storage.list_keys() if k.role.value == "admin"]
    status, _, _ = await gw.call("DELETE", f"/v1/keys/{admin_key.id}", gw.admin)
    assert status == 204
    status, _, headers = await get(browser, gw, "/portal/")
    assert (status, headers["Location"]) == (303, "/portal/sign-in")


async def test_a_link_session_ends_when_the_link_expires(
        start_gateway: StartGateway, browser: aiohttp.ClientSession) -> None:
    clock = ManualClock(1_800_000_000.0)
    gw = await start_gateway(clock=clock, run_delivery_loop=False)
    path = await open_link(browser, gw, "acme", ttl=600)
    status, html, _ = await get(browser, gw, "/portal/")
    assert status == 200 and "Account <strong>acme</strong>" in html and "Operations" not in html
    clock.advance(601)
    status, _, headers = await get(browser, gw, "/portal/")
    assert (status, headers["Location"]) == (303, "/portal/sign-in")
    status, html, _ = await get(browser, gw, path)
    assert status == 410 and "This link has expired" in html
    csrf = CSRF.search(html)
    assert csrf is None  # nothing to press


async def test_pages_send_a_csp_without_inline_script_and_unknown_paths_are_html_404s(
        start_gateway: StartGateway, browser: aiohttp.ClientSession) -> None:
    gw = await start_gateway()
    await open_link(browser, gw, "acme")
    for path in ("/portal/", "/portal/hooks/new", "/portal/no-such-page",
                 "/portal/hooks/hook_missing", "/portal/sign-in"):
        status, html, headers = await get(browser, gw, path)
        csp = headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp and "script-src 'none'" in csp, path
        assert "unsafe-inline" not in csp
        assert headers["X-Frame-Options"] == "DENY"
        if status != 303:  # (the sign-in page, with a session, sends the visitor on)
            assert headers["Content-Type"].startswith("text/html"), path
        assert "<script" not in html
        if "hook_missing" in path or "no-such" in path:
            assert status == 404 and "Not found" in html


async def test_portal_links_are_made_by_admins_only(start_gateway: StartGateway) -> None:
    gw = await start_gateway()
    for key in (gw.subscriber, gw.publisher):
        status, body, _ = await gw.call("POST", "/v1/portal/sessions", key,
                                        json={"account": "acme"})
        assert status == 403, body
    status, body, _ = await gw.call("POST", "/v1/portal/sessions", gw.admin,
                                    json={"account": "acme", "ttl_seconds": "1h"})
    assert status == 422 and body["errors"][0]["field"] == "ttl_seconds"


async def test_the_views_count_what_happened_to_each_hook(start_gateway: StartGateway,
                                                          make_receiver: Any) -> None:
    """The charts' numbers: attempts per hour delivered against failed, the last error, the
    backlog per callback host, the hooks failing, every account."""
    gw = await start_gateway()
    good, bad = await make_receiver(), await make_receiver()

    async def fail(n: int, request: Any) -> tuple[int, dict[str, str], bytes]:
        secret = request.headers.get("X-Hook-Secret")
        return (200, {"X-Hook-Secret": secret}, b"") if secret else (500, {}, b"no")
    bad.respond = fail
    ok_hook, bad_hook = await gw.hook(good), await gw.hook(bad)
    await gw.publish()
    await gw.publish()

    async def settled() -> bool:
        final = 0
        for h in (ok_hook, bad_hook):
            items, _ = await gw.storage.list_deliveries(h["id"], None, 10, None)
            final += sum(d.status.value in ("delivered", "failed") for d in items)
        return final == 4
    await wait_until(settled, 10, "four final deliveries")

    now = gw.clock.now()
    health = await stats.hook_health(gw.storage, [ok_hook["id"], bad_hook["id"]], now)
    assert (health[ok_hook["id"]].total_ok, health[ok_hook["id"]].total_failed) == (2, 0)
    # Two deliveries of three attempts each (the test schedule retries twice), all 500.
    assert (health[bad_hook["id"]].total_ok, health[bad_hook["id"]].total_failed) == (0, 6)
    assert health[bad_hook["id"]].failed[-1] == 6  # all in the hour that holds now
    errors = await stats.last_errors(gw.storage, [ok_hook["id"], bad_hook["id"]], now)
    assert list(errors) == [bad_hook["id"]] and errors[bad_hook["id"]].text() == "answered 500"
    minute = await stats.per_minute(gw.storage, now)
    assert (minute.total_ok, minute.total_failed) == (2, 6)
    assert [h.id for h in await stats.troubled_hooks(gw.storage)] == [bad_hook["id"]]
    assert ("acme", 2) in await stats.accounts(gw.storage)
    assert await stats.backlog_by_host(gw.storage, now) == []  # nothing waits


async def test_the_backlog_is_counted_per_callback_host(start_gateway: StartGateway,
                                                        make_receiver: Any) -> None:
    gw = await start_gateway(run_delivery_loop=False)
    one, two = await make_receiver(), await make_receiver("127.0.0.2")
    await gw.hook(one)
    await gw.hook(one)
    paused = await gw.hook(two)
    await gw.call("PATCH", f"/v1/hooks/{paused['id']}", gw.subscriber, json={"status": "paused"})
    for _ in range(3):
        await gw.publish()
    # 127.0.0.1: two hooks, three events; 127.0.0.2's hook is paused, so nothing of it is due
    # to be sent (its deliveries wait, held).
    assert await stats.backlog_by_host(gw.storage, gw.clock.now()) == [
        stats.HostBacklog("127.0.0.1", 6, 6)]
    assert await stats.backlog_by_host(gw.storage, gw.clock.now() - 3600) == [
        stats.HostBacklog("127.0.0.1", 6, 0)]
