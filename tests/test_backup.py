"""`gateway backup DEST` while a real gateway serves and publishing goes on: the copy opens and
holds every hook and every event accepted before it began, and nothing else is left behind."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import stat
from pathlib import Path

from tests.conftest import Receiver, wait_until
from tests.process import ServeProcess, create_key, free_port, run_gateway, write_config


async def test_a_backup_while_publishing(tmp_path: Path, receiver: Receiver) -> None:
    port = free_port()
    config = write_config(tmp_path, port, security={"verify_intent": False})
    publisher = await create_key(config, "publisher")
    subscriber = await create_key(config, "subscriber", "acme")
    gw = await ServeProcess(config, port).start()
    publishing: asyncio.Task[None] | None = None
    try:
        hooks = []
        for i in range(3):
            status, hook = await gw.call("POST", "/v1/hooks", subscriber, {
                "target_url": f"{receiver.url}/h{i}", "topics": ["contact.*"]})
            assert status == 201, hook
            hooks.append(hook["id"])
        await gw.call("PATCH", f"/v1/hooks/{hooks[0]}", subscriber, {"status": "paused"})
        before: list[str] = []
        pad = "x" * 1500
        for b in range(10):  # a few MiB, so that the copy takes many steps
            status, out = await gw.call("POST", "/v1/events", publisher, [
                {"topic": "contact.created", "account": "acme", "data": {"b": b, "i": i, "p": pad}}
                for i in range(100)])
            assert status == 202, out
            before += [e["id"] for e in out["data"]]
        during: list[str] = []

        async def publish_on() -> None:
            i = 0
            while True:
                status, out = await gw.call("POST", "/v1/events", publisher, {
                    "topic": "contact.created", "account": "acme", "data": {"during": i}})
                assert status == 202, out
                during.append(out["id"])
                i += 1

        publishing = asyncio.create_task(publish_on())
        await wait_until(lambda: len(during) >= 5, 15, "publishing to be under way")
        dest = tmp_path / "copy.db"
        rc, out, err = await run_gateway("backup", str(dest), "--config", str(config),
                                         cwd=tmp_path, timeout=60)
        n_during = len(during)
        assert rc == 0, err
        # Not a terminal: one line, no progress bar.
        assert len(out.splitlines()) == 1 and out.startswith(f"backup: {dest}"), out
        assert "\r" not in err
        publishing.cancel()
        await asyncio.gather(publishing, return_exceptions=True)
        assert n_during > 5  # publishing went on while the copy was made

        with contextlib.closing(sqlite3.connect(dest)) as db:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            assert {r[0] for r in db.execute("SELECT id FROM hooks")} == set(hooks)
            copied = {r[0] for r in db.execute("SELECT id FROM events")}
            # Every event accepted before the copy began; the rest of it, events that were
            # accepted (no half-made one).
            assert set(before) <= copied
            assert copied <= set(before) | set(during)
            # Each copied event has its deliveries with it (one consistent moment).
            assert db.execute(
                "SELECT COUNT(*) FROM events e WHERE (SELECT COUNT(*) FROM deliveries d "
                "WHERE d.event_id = e.id) != 3").fetchone()[0] == 0
        assert f"{len(copied):,} events" in out and "3 hooks" in out
        assert stat.S_IMODE(dest.stat().st_mode) == 0o600
        assert sorted(p.name for p in tmp_path.iterdir()  # noqa: ASYNC240
                      if p.name.startswith("copy")) == ["copy.db"]

        # A second backup to the same name is refused, and leaves the first alone.
        rc, _, err = await run_gateway("backup", str(dest), "--config", str(config),
                                       cwd=tmp_path)
        assert rc == 1 and "exists" in err
    finally:
        if publishing is not None:
            publishing.cancel()
            await asyncio.gather(publishing, return_exceptions=True)
        await gw.close()
