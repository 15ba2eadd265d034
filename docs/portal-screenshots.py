"""Remake docs/portal-*.png: the README walkthrough continued in the portal, in Chromium.

    python docs/portal-screenshots.py [OUT_DIR]

Starts `gateway serve` and contrib/receiver.py on free ports of 127.0.0.1 in a temporary
folder, subscribes, publishes, stops the receiver while three events fail, starts it again and
recovers them from the portal, taking each page at a desktop and a phone width. Needs the test
extra (Playwright) and /usr/bin/chromium."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from playwright.async_api import async_playwright

ROOT = Path(__file__).resolve().parent.parent
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
DESKTOP = {"width": 1200, "height": 800}
PHONE = {"width": 390, "height": 844}
CONFIG = """
[server]
port = {port}
[database]
path = "{dir}/gateway.db"
[security]
allow_private_targets = true
allow_http_targets = true
[delivery]
retry_schedule_seconds = [1, 2]
[log]
format = "console"
[[topics]]
name = "contact.created"
description = "A contact was created"
[[topics]]
name = "contact.updated"
description = "A contact's details changed"
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def call(base: str, path: str, key: str, body: Any) -> Any:
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(),
                                 headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def wait_for(port: int) -> None:
    deadline = time.monotonic() + 15
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


async def shot(page: Any, out: Path, name: str, phone: bool = True) -> None:
    await page.screenshot(path=str(out / f"portal-{name}.png"), full_page=True)
    if phone:
        await page.set_viewport_size(PHONE)
        await page.screenshot(path=str(out / f"portal-{name}-phone.png"), full_page=True)
        await page.set_viewport_size(DESKTOP)


async def pages(base: str, keys: dict[str, str], target: str,
                receiver: list[subprocess.Popen[bytes]], start_receiver: Any, out: Path) -> None:
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                           args=ARGS)
        page = await (await browser.new_context(viewport=DESKTOP)).new_page()
        link = call(base, "/v1/portal/sessions", keys["admin"], {"account": "acme"})["url"]
        await page.goto(base + link)
        await page.get_by_role("button", name="Open the portal").click()
        await page.get_by_role("link", name="New hook").click()
        await page.get_by_label("Target URL").fill(f"{target}/hooks/contacts")
        await page.get_by_label("Description").fill("CRM sync")
        await page.get_by_role("checkbox", name="contact.created").check()
        await page.get_by_role("checkbox", name="contact.updated").check()
        await shot(page, out, "new-hook", phone=False)
        await page.get_by_role("button", name="Create hook").click()
        await shot(page, out, "created", phone=False)
        await page.get_by_role("link", name="Go to CRM sync").click()

        call(base, "/v1/events", keys["publisher"],
             {"topic": "contact.created", "account": "acme", "data": {"id": 17}})
        receiver[0].terminate()  # the customer's endpoint goes down for a while
        receiver[0].wait()
        for n in range(18, 21):
            call(base, "/v1/events", keys["publisher"],
                 {"topic": "contact.updated", "account": "acme",
                  "data": {"id": n, "email": f"c{n}@example.com"}})
        await asyncio.sleep(6)  # 1 + 2 retries, 1 s and 2 s apart, then failed
        await page.goto(base + "/portal/")
        await shot(page, out, "hooks")
        await page.get_by_role("link", name="CRM sync").click()
        await shot(page, out, "hook")
        await page.get_by_role("row").nth(1).get_by_role("link").click()
        await shot(page, out, "delivery")

        receiver[0] = start_receiver()  # back up
        await page.get_by_role("link", name="CRM sync").click()
        await page.get_by_role("button", name="Recover").click()
        await page.get_by_role("status").wait_for()
        await asyncio.sleep(2)
        await page.reload()
        await shot(page, out, "recovered", phone=False)

        await page.get_by_role("button", name="Sign out").click()
        await page.get_by_label("Admin key").fill(keys["admin"])
        await page.get_by_role("button", name="Sign in").click()
        await shot(page, out, "operator")
        await browser.close()


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "docs").resolve()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        port, rport = free_port(), free_port()
        config = Path(tmp) / "gateway.toml"
        config.write_text(CONFIG.format(port=port, dir=tmp))
        base = f"http://127.0.0.1:{port}"
        keys = {role: subprocess.run(
            [sys.executable, "-m", "gateway", "keys", "create", "--role", role,
             "--config", str(config)], check=True, capture_output=True, text=True).stdout.strip()
            for role in ("admin", "publisher")}
        gateway = subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--config",
                                    str(config)], stderr=subprocess.DEVNULL)

        def start_receiver() -> subprocess.Popen[bytes]:
            p = subprocess.Popen([sys.executable, str(ROOT / "contrib" / "receiver.py"),
                                  "--port", str(rport)], stdout=subprocess.DEVNULL)
            wait_for(rport)
            return p

        receiver = [start_receiver()]
        try:
            wait_for(port)
            asyncio.run(pages(base, keys, f"http://127.0.0.1:{rport}", receiver, start_receiver,
                              out))
        finally:
            for p in (receiver[0], gateway):
                p.terminate()
                p.wait()
    print(f"screenshots in {out}")


if __name__ == "__main__":
    main()
