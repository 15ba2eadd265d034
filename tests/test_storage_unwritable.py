"""A database that cannot write: a lock held by another process, a full disk (a real small
tmpfs), a read-only file (an immutable file on a loop-mounted ext4 image). Every request that
must write answers 503 with Retry-After, nothing is half-stored, /readyz says so, one log line
per change, and the gateway recovers by itself; it starts on a full disk and exits 0 on SIGTERM.
Real `gateway serve` processes, real files."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import Receiver, wait_until
from tests.process import ServeProcess, create_key, free_port, write_config

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


def need_root(what: str) -> None:
    if os.geteuid() != 0:
        pytest.skip(f"needs root to {what}")


def sh(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=False)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs of the test's own, unmounted afterwards."""
    need_root("mount a small tmpfs (a disk that fills up)")
    mnt = tmp_path / "disk"
    mnt.mkdir()
    done = sh("mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt))
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        sh("umount", "-l", str(mnt))


@pytest.fixture
def ext4_disk(tmp_path: Path) -> Iterator[Path]:
    """A loop-mounted ext4 image (immutable files need ext4; root ignores file modes)."""
    need_root("loop-mount an ext4 image (an immutable, read-only file)")
    if not (shutil.which("mkfs.ext4") and shutil.which("chattr")):
        pytest.skip("needs mkfs.ext4 and chattr")
    image, mnt = tmp_path / "disk.img", tmp_path / "ext4"
    mnt.mkdir()
    with image.open("wb") as f:
        f.truncate(16 * 1024 * 1024)
    if sh("mkfs.ext4", "-q", str(image)).returncode != 0:
        pytest.skip("mkfs.ext4 failed")
    done = sh("mount", "-o", "loop", str(image), str(mnt))
    if done.returncode != 0:
        pytest.skip(f"cannot loop-mount an image here: {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        for f in mnt.iterdir():
            sh("chattr", "-i", str(f))
        sh("umount", "-l", str(mnt))


def fill(disk: Path) -> Path:
    """Fill the filesystem with one file until it is full."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for size in (65536, 4096, 512):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * size)
    finally:
        os.close(fd)
    return filler


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


class Api:
    """Requests to a gateway, each under a deadline: a write that cannot be stored must be
    answered in bounded time, never hang."""

    def __init__(self, http: aiohttp.ClientSession, port: int) -> None:
        self.http, self.base = http, f"http://127.0.0.1:{port}"

    async def __call__(self, method: str, path: str, key: str | None = None,
                       json: Any = None) -> tuple[int, Any, aiohttp.ClientResponse]:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        async with asyncio.timeout(15):
            async with self.http.request(method, self.base + path, json=json,
                                         headers=headers) as resp:
                body = await resp.json(content_type=None) if await resp.read() else None
                return resp.status, body, resp


def assert_unavailable(status: int, body: Any, resp: aiohttp.ClientResponse) -> None:
    assert status == 503, body
    assert resp.headers["Content-Type"].startswith("application/problem+json")
    assert int(resp.headers["Retry-After"]) > 0
    assert body["status"] == 503 and body["type"].endswith("/unavailable")
    assert "database" in body["detail"]


async def setup(tmp_path: Path, db: Path, receiver: Receiver, http: aiohttp.ClientSession,
                **database: Any) -> tuple[ServeProcess, Api, dict[str, str], str]:
    port = free_port()
    config = write_config(tmp_path, port, database={"path": str(db), **database},
                          security={"verify_intent": False},
                          retention={"prune_interval_seconds": 0.2},
                          log={"level": "info", "access": False})
    keys = {role: await create_key(config, role, "acme" if role == "subscriber" else None)
            for role in ("admin", "publisher", "subscriber")}
    gw = ServeProcess(config, port)
    await gw.start()
    api = Api(http, port)
    status, hook, _ = await api("POST", "/v1/hooks", keys["subscriber"],
                                {"target_url": receiver.url + "/hook", "topics": ["contact.*"]})
    assert status == 201, hook
    return gw, api, keys, hook["id"]


def event(i: int, pad: int = 0) -> dict[str, Any]:
    return {"topic": "contact.created", "account": "acme", "data": {"i": i, "pad": "x" * pad}}


def state_lines(gw: ServeProcess, run: int = -1) -> list[str]:
    return [e["event"] for e in gw.log_events(run)
            if e.get("event") in ("database_unwritable", "database_writable")]


async def readyz(api: Api) -> int:
    return (await api("GET", "/readyz"))[0]


async def ready_is(api: Api, status: int) -> bool:
    with contextlib.suppress(aiohttp.ClientError):
        return await readyz(api) == status
    return False


async def delivered_ids(receiver: Receiver) -> set[str]:
    return {r.headers["webhook-id"] for r in receiver.deliveries}


async def stop_exits_0(gw: ServeProcess) -> None:
    assert gw.proc is not None
    gw.proc.send_signal(signal.SIGTERM)
    assert await gw.wait_exit(30) == 0, gw.log_text()


async def test_a_lock_held_by_another_process(tmp_path: Path, receiver: Receiver,
                                              http: aiohttp.ClientSession) -> None:
    db = tmp_path / "gateway.db"
    gw, api, keys, _ = await setup(tmp_path, db, receiver, http, busy_timeout_seconds=0.5)
    holder = None
    try:
        first = (await api("POST", "/v1/events", keys["publisher"], event(1)))[1]
        await wait_until(lambda: len(receiver.deliveries) >= 1, 15, "the first delivery")
        holder = await asyncio.create_subprocess_exec(
            sys.executable, "-c",
            "import sqlite3, sys\n"
            f"c = sqlite3.connect({str(db)!r}, isolation_level=None)\n"
            "c.execute('BEGIN IMMEDIATE'); print('held', flush=True); sys.stdin.read()",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        assert holder.stdout is not None and holder.stdin is not None
        assert (await holder.stdout.readline()).strip() == b"held"

        assert_unavailable(*await api("POST", "/v1/events", keys["publisher"], event(2)))
        assert_unavailable(*await api("POST", "/v1/events", keys["publisher"],
                                      [event(3), event(4)]))
        assert_unavailable(*await api("POST", "/v1/keys", keys["admin"], {"role": "publisher"}))
        assert_unavailable(*await api("PUT", "/v1/topics/contact.updated", keys["admin"],
                                      {"description": "x"}))
        assert await readyz(api) == 503
        # Reads go on.
        assert (await api("GET", f"/v1/events/{first['id']}", keys["publisher"]))[0] == 200
        assert (await api("GET", "/v1/hooks", keys["subscriber"]))[0] == 200

        holder.stdin.close()
        await holder.wait()
        await wait_until(lambda: ready_is(api, 200), 15, "/readyz 200 once the lock is gone")
        status, out, _ = await api("POST", "/v1/events", keys["publisher"], event(5))
        assert status == 202, out
        await wait_until(lambda: len(receiver.deliveries) >= 2, 15, "delivery to resume")
        assert await delivered_ids(receiver) == {first["id"], out["id"]}
        # Nothing half-stored: no key made, no topic.
        status, listed, _ = await api("GET", "/v1/keys", keys["admin"])
        assert status == 200 and len(listed["data"]) == 3
        _, topics, _ = await api("GET", "/v1/topics", keys["admin"])
        assert "contact.updated" not in {t["name"] for t in topics["data"]}
        await stop_exits_0(gw)
        assert state_lines(gw) == ["database_unwritable", "database_writable"], gw.log_text()
        assert "Traceback" not in gw.log_text()
    finally:
        if holder is not None and holder.returncode is None:
            holder.kill()
            await holder.wait()
        await gw.close()


async def test_a_full_disk_then_a_restart_on_it_then_space_again(
        tmp_path: Path, small_disk: Path, receiver: Receiver,
        http: aiohttp.ClientSession) -> None:
    db = small_disk / "gateway.db"
    gw, api, keys, _ = await setup(tmp_path, db, receiver, http)
    try:
        accepted: list[str] = []
        filler = fill(small_disk)
        answers = set()
        for i in range(200):
            status, out, resp = await api("POST", "/v1/events", keys["publisher"], event(i, 2000))
            answers.add(status)
            if status == 202:
                accepted.append(out["id"])
            else:
                assert_unavailable(status, out, resp)
                break
        assert answers <= {202, 503} and 503 in answers, answers
        assert_unavailable(*await api("POST", "/v1/keys", keys["admin"], {"role": "publisher"}))
        assert await readyz(api) == 503
        # Everything answered 202 is there.
        for eid in accepted:
            assert (await api("GET", f"/v1/events/{eid}", keys["publisher"]))[0] == 200

        # SIGTERM on a full disk exits 0; it starts again on that disk and serves reads.
        await stop_exits_0(gw)
        assert state_lines(gw) == ["database_unwritable"], gw.log_text()
        gw.runs += 1
        log = gw.config.parent / f"serve-{gw.runs}.log"
        gw.logs.append(log)
        with log.open("wb") as fh:
            gw.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "gateway", "serve", "--config", str(gw.config),
                cwd=gw.config.parent, env=gw.env, stdin=asyncio.subprocess.DEVNULL,
                stdout=fh, stderr=fh)

        async def healthy() -> bool:
            assert gw.proc is not None
            if gw.proc.returncode is not None:
                raise AssertionError(f"it exited on a full disk:\n{gw.log_text()}")
            with contextlib.suppress(aiohttp.ClientError):
                return (await api("GET", "/healthz"))[0] == 200
            return False

        await wait_until(healthy, 20, "the gateway to start on a full disk")
        assert (await api("GET", "/v1/hooks", keys["subscriber"]))[0] == 200
        for eid in accepted[:3]:
            assert (await api("GET", f"/v1/events/{eid}", keys["publisher"]))[0] == 200
        assert_unavailable(*await api("POST", "/v1/events", keys["publisher"], event(900)))
        assert await readyz(api) == 503

        # A little space is enough: the log goes back into the database and is cut down.
        with filler.open("r+b") as f:
            f.truncate(max(0, filler.stat().st_size - 1024 * 1024))
        await wait_until(lambda: ready_is(api, 200), 20, "/readyz 200 once there is space")
        status, out, _ = await api("POST", "/v1/events", keys["publisher"], event(901))
        assert status == 202, out
        accepted.append(out["id"])
        await wait_until(lambda: len({r.headers["webhook-id"] for r in receiver.deliveries})
                         >= len(accepted), 30, "every accepted event delivered")
        assert await delivered_ids(receiver) == set(accepted)
        status, listed, _ = await api("GET", "/v1/keys", keys["admin"])
        assert len(listed["data"]) == 3  # the key answered 503 was not made
        await stop_exits_0(gw)
        assert state_lines(gw) == ["database_unwritable", "database_writable"], gw.log_text()
        assert "Traceback" not in gw.log_text(0) + gw.log_text()
    finally:
        await gw.close()


async def test_a_read_only_file(tmp_path: Path, ext4_disk: Path, receiver: Receiver,
                                http: aiohttp.ClientSession) -> None:
    db = ext4_disk / "gateway.db"
    gw, api, keys, hook_id = await setup(tmp_path, db, receiver, http)
    try:
        first = (await api("POST", "/v1/events", keys["publisher"], event(1)))[1]
        await stop_exits_0(gw)
        assert sh("chattr", "+i", str(db)).returncode == 0  # not even root may write it now

        gw.runs += 1
        log = gw.config.parent / f"serve-{gw.runs}.log"
        gw.logs.append(log)
        with log.open("wb") as fh:
            gw.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "gateway", "serve", "--config", str(gw.config),
                cwd=gw.config.parent, env=gw.env, stdin=asyncio.subprocess.DEVNULL,
                stdout=fh, stderr=fh)

        async def healthy() -> bool:
            assert gw.proc is not None
            if gw.proc.returncode is not None:
                raise AssertionError(f"it exited on a read-only file:\n{gw.log_text()}")
            with contextlib.suppress(aiohttp.ClientError):
                return (await api("GET", "/healthz"))[0] == 200
            return False

        await wait_until(healthy, 20, "the gateway to start on a read-only file")
        assert (await api("GET", f"/v1/hooks/{hook_id}", keys["subscriber"]))[0] == 200
        assert (await api("GET", f"/v1/events/{first['id']}", keys["publisher"]))[0] == 200
        assert_unavailable(*await api("POST", "/v1/events", keys["publisher"], event(2)))
        assert_unavailable(*await api("DELETE", f"/v1/hooks/{hook_id}", keys["subscriber"]))
        await wait_until(lambda: ready_is(api, 503), 10, "/readyz 503 on a read-only file")

        assert sh("chattr", "-i", str(db)).returncode == 0
        # (SQLite opened the file read-only: it takes writes again after a restart.)
        await stop_exits_0(gw)
        assert "Traceback" not in gw.log_text()
        assert state_lines(gw) == ["database_unwritable"], gw.log_text()
        await gw.start()
        status, out, _ = await api("POST", "/v1/events", keys["publisher"], event(3))
        assert status == 202, out
    finally:
        await gw.close()
