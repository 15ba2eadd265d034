"""The portal in a real browser: Debian's Chromium driven by Playwright through a real gateway
app (real HTTP, real SQLite, the real delivery loop) and real receivers. One browser for the
module; each test has its own browser context (cookies) and its own accounts."""

from __future__ import annotations

import os
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.api.common import CLOCK, STORAGE
from gateway.api.portal_sessions import new_token
from gateway.app import create_app
from gateway.auth import generate_key, hash_key
from gateway.models import DeliveryStatus, Role
from tests.conftest import Receiver, base_config, wait_until
from tests.test_handshake import closed_port

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
DESKTOP = {"width": 1280, "height": 860}

pytestmark = pytest.mark.asyncio(loop_scope="module")

playwright_api = pytest.importorskip("playwright.async_api")
if not Path(CHROMIUM).exists():
    if os.environ.get("CI"):
        raise RuntimeError(f"{CHROMIUM} is missing: .ci/run installs it")
    pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)", allow_module_level=True)


@dataclass
class Portal:
    server: TestServer
    app: web.Application
    http: aiohttp.ClientSession
    admin: str
    publisher: str
    receivers: list[Receiver] = field(default_factory=list)

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))

    async def api(self, method: str, path: str, key: str, json: Any = None) -> tuple[int, Any]:
        async with self.http.request(method, self.url(path), json=json,
                                     headers={"Authorization": f"Bearer {key}"}) as resp:
            return resp.status, await resp.json(content_type=None) if resp.content_length \
                else None

    async def link(self, account: str, ttl: int = 3600) -> str:
        status, body = await self.api("POST", "/v1/portal/sessions", self.admin,
                                      {"account": account, "ttl_seconds": ttl})
        assert status == 201, body
        return self.url(body["url"]) if body["url"].startswith("/") else str(body["url"])

    async def key(self, role: Role, account: str | None = None) -> str:
        key = generate_key()
        await self.app[STORAGE].create_key(role, account, hash_key(key), key[-4:],
                                           self.app[CLOCK].now())
        return key

    async def receiver(self) -> Switchable:
        r = Switchable()
        await r.start()
        self.receivers.append(r)
        return r

    async def publish(self, account: str, data: Any, topic: str = "contact.created") -> str:
        status, body = await self.api("POST", "/v1/events", self.publisher,
                                      {"topic": topic, "account": account, "data": data})
        assert status == 202, body
        return str(body["id"])

    async def deliveries(self, hook_id: str) -> list[Any]:
        items, _ = await self.app[STORAGE].list_deliveries(hook_id, None, 100, None)
        return items


class Switchable(Receiver):
    """A receiver that echoes the handshake and answers deliveries with `status` and `body`,
    changeable while it runs (a target that goes down and comes back)."""

    def __init__(self) -> None:
        super().__init__()
        self.status = 204
        self.body = b""

        async def respond(n: int, request: web.Request) -> tuple[int, dict[str, str], bytes]:
            secret = request.headers.get("X-Hook-Secret")
            if secret:
                return 200, {"X-Hook-Secret": secret}, b""
            return self.status, {}, self.body

        self.respond = respond


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def portal(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Portal]:
    cfg = base_config(tmp_path_factory.mktemp("portal"),
                      delivery={"retry_schedule_seconds": (0.05, 0.05)})
    app = create_app(cfg)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    http = aiohttp.ClientSession()
    p = Portal(server, app, http, "", "")
    p.admin = await p.key(Role.ADMIN)
    p.publisher = await p.key(Role.PUBLISHER)
    yield p
    for r in p.receivers:
        await r.stop()
    await http.close()
    await server.close()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def browser() -> AsyncIterator[Any]:
    async with playwright_api.async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield b
        await b.close()


@pytest_asyncio.fixture(loop_scope="module")
async def page(browser: Any) -> AsyncIterator[Any]:
    context = await browser.new_context(viewport=DESKTOP)
    context.set_default_timeout(10_000)
    pg = await context.new_page()
    # The pages have no script: a dialog would mean hostile data ran as markup.
    pg.on("dialog", lambda d: pytest.fail(f"a dialog opened: {d.message}"))
    yield pg
    await context.close()


async def sign_in_by_link(page: Any, portal: Portal, account: str) -> None:
    await page.goto(await portal.link(account))
    await page.get_by_role("button", name="Open the portal").click()
    await page.wait_for_url(portal.url("/portal/"))


async def create_hook(page: Any, receiver: Receiver, description: str) -> str:
    await page.get_by_role("link", name="New hook").click()
    await page.get_by_label("Target URL").fill(receiver.url + "/in")
    await page.get_by_label("Description").fill(description)
    await page.get_by_role("checkbox", name=re.compile("contact.created")).check()
    await page.get_by_role("button", name="Create hook").click()
    await page.get_by_role("heading", name="Hook created").wait_for()
    return str(await page.get_by_role("link", name=f"Go to {description}")
               .get_attribute("href")).rsplit("/", 1)[1]


async def wait_status(portal: Portal, hook_id: str, status: DeliveryStatus, n: int = 1) -> None:
    async def reached() -> bool:
        return sum(d.status is status for d in await portal.deliveries(hook_id)) >= n
    await wait_until(reached, 10, f"{n} {status.value} deliveries of {hook_id}")


async def test_a_subscriber_signs_in_by_link_and_manages_a_hook(portal: Portal, page: Any) -> None:
    receiver = await portal.receiver()
    await sign_in_by_link(page, portal, "acme")
    await page.get_by_text("Account acme").wait_for()

    hook_id = await create_hook(page, receiver, "CRM sync")
    status = page.get_by_role("status")
    assert "target answered 200" in await status.inner_text()
    secret = await page.locator("#secret").inner_text()
    assert secret.startswith("whsec_")
    assert len(receiver.handshakes) == 1
    await page.get_by_role("link", name="Go to CRM sync").click()

    # A delivery that works, then the target goes down: the failure and its attempts show.
    await portal.publish("acme", {"n": 1})
    await wait_status(portal, hook_id, DeliveryStatus.DELIVERED)
    receiver.status, receiver.body = 500, b"down for maintenance"
    await portal.publish("acme", {"n": 2})
    await wait_status(portal, hook_id, DeliveryStatus.FAILED)
    await page.goto(portal.url("/portal/"))
    await page.get_by_role("link", name="CRM sync").click()
    await page.wait_for_url(portal.url(f"/portal/hooks/{hook_id}"))
    rows = page.get_by_role("row")
    newest = rows.nth(1)  # newest first, below the header row
    assert "failed" in await newest.inner_text()
    assert "500" in await newest.inner_text()
    assert "delivered" in await rows.nth(2).inner_text()

    await newest.get_by_role("link").click()
    await page.get_by_role("heading", name="Attempts").wait_for()
    attempts = page.locator("ol.attempts > li")
    assert await attempts.count() == 3  # 1 + the two retries of the schedule
    assert "down for maintenance" in await attempts.first.inner_text()

    # The target is back: one click and the delivery turns delivered.
    receiver.status = 204
    await page.goto(portal.url(f"/portal/hooks/{hook_id}"))
    await page.get_by_role("row").nth(1).get_by_role("button", name="Retry").click()
    await page.get_by_text("will be tried again").wait_for()
    await wait_status(portal, hook_id, DeliveryStatus.DELIVERED, 2)
    await page.reload()
    assert "delivered" in await page.get_by_role("row").nth(1).inner_text()

    await page.get_by_role("button", name="Pause").click()
    await page.get_by_text("The hook is paused").wait_for()
    assert (await portal.app[STORAGE].get_hook(hook_id)).status.value == "paused"  # type: ignore[union-attr]
    await page.get_by_role("button", name="Resume").click()
    await page.get_by_text("active again").wait_for()
    assert (await portal.app[STORAGE].get_hook(hook_id)).status.value == "active"  # type: ignore[union-attr]

    await page.get_by_role("button", name="Rotate secret").click()
    new_secret = await page.locator("#secret").inner_text()
    assert new_secret.startswith("whsec_") and new_secret != secret
    assert (await portal.app[STORAGE].get_hook(hook_id)).secret == new_secret  # type: ignore[union-attr]

    await page.get_by_role("link", name="Back to CRM sync").click()
    await page.get_by_role("button", name="Delete").click()
    await page.get_by_text("The hook was deleted").wait_for()
    assert await page.get_by_role("link", name="CRM sync").count() == 0
    assert await portal.app[STORAGE].get_hook(hook_id) is None

    await page.get_by_role("button", name="Sign out").click()
    await page.get_by_role("heading", name="Sign in").wait_for()
    await page.goto(portal.url("/portal/"))
    await page.get_by_role("heading", name="Sign in").wait_for()


async def test_an_expired_link_is_a_clear_page(portal: Portal, page: Any) -> None:
    now = portal.app[CLOCK].now()
    token = new_token()
    await portal.app[STORAGE].create_portal_session(hash_key(token), "acme", now - 1, now - 3601)
    resp = await page.goto(portal.url(f"/portal/sign-in?token={token}"))
    assert resp.status == 410
    await page.get_by_role("heading", name="This link has expired").wait_for()
    assert await page.get_by_role("button", name="Open the portal").count() == 0
    resp = await page.goto(portal.url("/portal/sign-in?token=gwp_not-a-link"))
    assert resp.status == 404
    await page.get_by_role("heading", name="This link does not work").wait_for()
    await page.goto(portal.url("/portal/"))
    await page.get_by_role("heading", name="Sign in").wait_for()  # no session was made


async def test_another_accounts_hook_is_a_404_like_a_missing_one(portal: Portal, page: Any) -> None:
    receiver = await portal.receiver()
    other = await portal.key(Role.SUBSCRIBER, "globex")
    status, theirs = await portal.api("POST", "/v1/hooks", other, {
        "target_url": receiver.url + "/globex", "topics": ["contact.created"],
        "description": "Globex private"})
    assert status == 201, theirs
    await portal.publish("globex", {"secret": "globex data"})
    await wait_status(portal, theirs["id"], DeliveryStatus.DELIVERED)
    [delivery] = await portal.deliveries(theirs["id"])

    await sign_in_by_link(page, portal, "initech")
    assert await page.get_by_text("Globex private").count() == 0
    pages = {}
    for path in (f"/portal/hooks/{theirs['id']}", "/portal/hooks/hook_00000000000000000000000000",
                 f"/portal/deliveries/{delivery.id}", "/portal/deliveries/dlv_nothing"):
        resp = await page.goto(portal.url(path))
        pages[path] = (resp.status, await page.locator("main").inner_text())
    assert len(set(pages.values())) == 1, pages
    status, text = next(iter(pages.values()))
    assert status == 404 and "Not found" in text and "Globex" not in text

    # Acting on it by POST is the same 404, and changes nothing.
    await page.goto(portal.url("/portal/"))
    csrf = await page.locator("input[name=csrf]").first.get_attribute("value")
    resp = await page.request.post(portal.url(f"/portal/hooks/{theirs['id']}/delete"),
                                   form={"csrf": csrf}, headers={"Origin": portal.url("/")[:-1]})
    assert resp.status == 404
    assert await portal.app[STORAGE].get_hook(theirs["id"]) is not None


async def test_a_form_posted_from_another_origin_is_refused(portal: Portal, page: Any) -> None:
    receiver = await portal.receiver()
    await sign_in_by_link(page, portal, "umbrella")
    hook_id = await create_hook(page, receiver, "Target of the attack")

    # A page on another origin (another port of the same host: the same site, so even the
    # SameSite=Strict cookie goes along) with a form aimed at the portal.
    form = (f'<form method="post" action="{portal.url(f"/portal/hooks/{hook_id}/delete")}">'
            '<button type="submit">Win a prize</button></form>')

    async def lure(request: web.Request) -> web.Response:
        return web.Response(text=form, content_type="text/html")

    evil = web.Application()
    evil.router.add_get("/", lure)
    evil_server = TestServer(evil, host="127.0.0.1")
    await evil_server.start_server()
    try:
        await page.goto(str(evil_server.make_url("/")))
        await page.get_by_role("button", name="Win a prize").click()
        await page.get_by_role("heading", name="Refused").wait_for()
    finally:
        await evil_server.close()
    assert await portal.app[STORAGE].get_hook(hook_id) is not None

    # From the portal's own origin but without the form's token: refused too.
    resp = await page.request.post(portal.url(f"/portal/hooks/{hook_id}/delete"), form={},
                                   headers={"Origin": portal.url("/")[:-1]})
    assert resp.status == 403
    assert await portal.app[STORAGE].get_hook(hook_id) is not None

    # What the portal's pages send.
    resp = await page.goto(portal.url(f"/portal/hooks/{hook_id}"))
    csp = resp.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "unsafe-inline" not in csp
    [cookie] = [c for c in await page.context.cookies() if c["name"] == "gw_portal"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert await page.locator("script").count() == 0


async def test_hostile_data_is_shown_as_text(portal: Portal, page: Any) -> None:
    receiver = await portal.receiver()
    script = "<script>alert(1)</script>"
    quotes = "\"'><img src=x onerror=alert(2)>"
    await portal.api("PUT", "/v1/topics/contact.hostile", portal.admin,
                     {"description": f"{script} {quotes}"})
    sub = await portal.key(Role.SUBSCRIBER, "hostile")
    status, hook = await portal.api("POST", "/v1/hooks", sub, {
        "target_url": receiver.url + "/in?q=%3Cscript%3E", "topics": ["contact.hostile"],
        "description": f"{quotes} {script}"})
    assert status == 201, hook
    receiver.status, receiver.body = 500, f"{script}{quotes}".encode()
    big = "x" * 100_000
    await portal.publish("hostile", {"html": script, "q": quotes, "big": big},
                         topic="contact.hostile")
    await wait_status(portal, hook["id"], DeliveryStatus.FAILED)

    await sign_in_by_link(page, portal, "hostile")
    name = f"{quotes} {script}"
    await page.get_by_role("link", name=name).wait_for()
    await page.get_by_role("link", name="New hook").click()
    assert await page.get_by_text(f"{script} {quotes}").count() == 1  # the topic's description
    await page.go_back()
    await page.get_by_role("link", name=name).click()
    await page.get_by_role("heading", name=name).wait_for()
    await page.get_by_role("row").nth(1).get_by_role("link").click()
    excerpt = page.locator("ol.attempts pre").first
    assert await excerpt.inner_text() == f"{script}{quotes}"
    data = await page.locator("pre").last.inner_text()
    assert script in data and big[:1000] in data
    assert await page.locator("script, img").count() == 0


async def test_a_target_down_for_a_while_is_recovered_with_one_click(portal: Portal,
                                                                     page: Any) -> None:
    receiver = await portal.receiver()
    await sign_in_by_link(page, portal, "recovering")
    # A target that does not answer the handshake: no hook, the form says why and keeps what
    # was typed.
    await page.get_by_role("link", name="New hook").click()
    down = f"http://127.0.0.1:{closed_port()}/in"
    await page.get_by_label("Target URL").fill(down)
    await page.get_by_label("Description").fill("Orders")
    await page.get_by_role("checkbox", name=re.compile("contact.created")).check()
    await page.get_by_role("button", name="Create hook").click()
    alert = await page.get_by_role("alert").inner_text()
    assert "intent verification failed" in alert and "connection refused" in alert
    assert await page.get_by_label("Target URL").input_value() == down
    assert await page.get_by_role("checkbox", name=re.compile("contact.created")).is_checked()
    await page.get_by_role("link", name="Hooks").first.click()
    hook_id = await create_hook(page, receiver, "Orders")
    receiver.status, receiver.body = 503, b"maintenance"
    for n in range(3):
        await portal.publish("recovering", {"order": n})
    await wait_status(portal, hook_id, DeliveryStatus.FAILED, 3)

    # The failures show on the list (last error) and on the hook's page, by status.
    await page.goto(portal.url("/portal/"))
    card = page.locator("li.card", has=page.get_by_role("link", name="Orders"))
    assert "answered 503" in await card.inner_text()
    await page.get_by_role("link", name="Orders").click()
    await page.get_by_role("link", name="failed", exact=True).click()
    assert await page.get_by_role("button", name="Retry").count() == 3

    receiver.status = 204
    before = len(receiver.deliveries)
    await page.get_by_label("Failed since (UTC)").fill(
        time.strftime("%Y-%m-%dT%H:%M", time.gmtime(time.time() - 3600)))
    await page.get_by_role("button", name="Recover").click()
    await page.get_by_text("3 failed deliveries since that time").wait_for()
    await wait_status(portal, hook_id, DeliveryStatus.DELIVERED, 3)
    orders = [orjson.loads(r.body)["data"]["order"] for r in receiver.deliveries[before:]]
    assert orders == [0, 1, 2]  # in their original order

    await page.get_by_role("button", name="Send test event").click()
    await page.get_by_text("A test event was sent").wait_for()
    await wait_status(portal, hook_id, DeliveryStatus.DELIVERED, 4)
    assert orjson.loads(receiver.deliveries[-1].body)["type"] == "gateway.test"
    await page.reload()
    assert "gateway.test" in await page.get_by_role("row").nth(1).inner_text()

    await page.get_by_role("link", name="Events").click()
    await page.get_by_role("heading", name="Events").wait_for()
    topics = [(await li.locator("strong").inner_text())
              for li in await page.locator("ul.events > li").all()]
    # The three orders, the test, and the gateway's word that each order had failed for good.
    assert sorted(topics) == sorted(["contact.created"] * 3 + ["gateway.test"]
                                    + ["gateway.delivery.exhausted"] * 3)


async def test_an_operator_sees_every_account_and_what_is_failing(portal: Portal,
                                                                  page: Any) -> None:
    receiver = await portal.receiver()
    sub = await portal.key(Role.SUBSCRIBER, "northwind")
    status, hook = await portal.api("POST", "/v1/hooks", sub, {
        "target_url": receiver.url + "/nw", "topics": ["contact.created"],
        "description": "Northwind ERP"})
    assert status == 201, hook
    receiver.status = 500
    await portal.publish("northwind", {"n": 1})
    await wait_status(portal, hook["id"], DeliveryStatus.FAILED)

    await page.goto(portal.url("/portal/"))
    await page.get_by_label("Admin key").fill("gw_wrong")
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_role("alert").wait_for()
    await page.get_by_label("Admin key").fill(portal.admin)
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_role("heading", name="Operations").wait_for()
    # The hook failing now is listed with its account; every account is there.
    failing = page.locator("section", has=page.get_by_role("heading", name="Operations"))
    row = failing.get_by_role("row", name=re.compile("Northwind ERP"))
    assert "northwind" in await row.inner_text()
    assert await page.get_by_role("img", name=re.compile("Deliveries per minute")).count() == 1
    await page.get_by_role("link", name="northwind", exact=True).click()
    await page.get_by_role("heading", name="Hooks of northwind").wait_for()
    await page.get_by_role("link", name="Northwind ERP").first.click()
    await page.get_by_role("heading", name="Northwind ERP").wait_for()
    await page.get_by_role("button", name="Sign out").click()
    await page.get_by_role("heading", name="Sign in").wait_for()


async def tab_to(page: Any, name: str) -> None:
    """Press Tab until the control of that accessible name has the focus."""
    for _ in range(40):
        await page.keyboard.press("Tab")
        focused = await page.evaluate(
            "() => (document.activeElement.innerText || document.activeElement.value || '')"
            ".trim()")
        if focused == name:
            # The focus shows: an outline is drawn around the control.
            style = await page.evaluate("() => getComputedStyle(document.activeElement)"
                                        ".outlineStyle")
            assert style != "none", name
            return
    raise AssertionError(f"Tab never reached {name!r}")


async def test_the_keyboard_alone_signs_in_and_pauses_then_a_hook_is_edited(portal: Portal,
                                                                           page: Any) -> None:
    receiver = await portal.receiver()
    sub = await portal.key(Role.SUBSCRIBER, "keyboard")
    status, hook = await portal.api("POST", "/v1/hooks", sub, {
        "target_url": receiver.url + "/kb", "topics": ["contact.created"],
        "description": "Typed"})
    assert status == 201, hook
    await page.goto(await portal.link("keyboard"))
    await tab_to(page, "Open the portal")
    await page.keyboard.press("Enter")
    await page.wait_for_url(portal.url("/portal/"))
    await tab_to(page, "Typed")
    await page.keyboard.press("Enter")
    await page.wait_for_url(portal.url(f"/portal/hooks/{hook['id']}"))
    await tab_to(page, "Pause")
    await page.keyboard.press("Enter")
    await page.get_by_text("The hook is paused").wait_for()
    assert (await portal.app[STORAGE].get_hook(hook["id"])).status.value == "paused"  # type: ignore[union-attr]

    # Edit, through the same rules as PATCH /v1/hooks: a bad topic is refused, and says so.
    await page.get_by_text("Edit", exact=True).click()
    await page.get_by_label("Description").fill("Typed twice")
    await page.get_by_label("Topics (separated by spaces or commas)").fill("no.such.topic")
    await page.get_by_role("button", name="Save changes").click()
    assert "unknown topic 'no.such.topic'" in await page.get_by_role("alert").inner_text()
    assert (await portal.app[STORAGE].get_hook(hook["id"])).description == "Typed"  # type: ignore[union-attr]
    await page.get_by_label("Topics (separated by spaces or commas)").fill(
        "contact.created, contact.updated")
    await page.get_by_label("Description").fill("Typed twice")
    await page.get_by_role("button", name="Save changes").click()
    await page.get_by_role("heading", name="Typed twice").wait_for()
    changed = await portal.app[STORAGE].get_hook(hook["id"])
    assert changed is not None and changed.topics == ("contact.created", "contact.updated")
