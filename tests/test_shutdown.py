"""Stopping and refusing to start, against a real `gateway serve`: SIGTERM drains attempts in
flight and exits 0; a bad config or a newer database exits 1 with a clear message."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import sqlite3
import time
from collections import Counter
from pathlib import Path

import pytest
from aiohttp import web

from tests.conftest import Receiver, echo_handshake, wait_until
from tests.process import (
    TOPIC,
    ServeProcess,
    clean_env,
    connection_refused,
    count_deliveries,
    create_key,
    free_port,
    run_gateway,
    write_config,
)

EVENTS = 5
PER_HOST = 2  # fewer slots than events: some are in flight at SIGTERM, the rest still queued
MARGIN = 5.0  # start-up of the interpreter and the unwinding after the grace period


class SlowReceiver:
    """Holds each delivery for `hold` seconds (simulated slow work) and counts webhook-ids."""

    def __init__(self, receiver: Receiver, hold: float) -> None:
        self.hold = hold
        self.arrived: Counter[str] = Counter()
        receiver.respond = self.respond

    async def respond(self, _n: int, request: web.Request) -> tuple[int, dict[str, str], bytes]:
        echo = echo_handshake(request)
        if echo is not None:
            return 200, echo, b""
        self.arrived[request.headers["webhook-id"]] += 1
        await asyncio.sleep(self.hold)
        return 204, {}, b""


@pytest.mark.parametrize(("hold", "grace"), [(1.0, 3.0), (30.0, 0.5)],
                         ids=["finish-within-grace", "hand-back-after-grace"])
async def test_sigterm_drains_then_exits_zero(tmp_path: Path, receiver: Receiver, hold: float,
                                              grace: float) -> None:
    slow = SlowReceiver(receiver, hold)
    port = free_port()
    config = write_config(tmp_path, port,
                          delivery={"shutdown_grace_seconds": grace,
                                    "max_in_flight_per_host": PER_HOST},
                          log={"level": "info"})
    publisher = await create_key(config, "publisher")
    subscriber = await create_key(config, "subscriber", "acme")
    gw = ServeProcess(config, port)
    try:
        await gw.start()
        status, hook = await gw.call("POST", "/v1/hooks", subscriber,
                                     {"target_url": receiver.url + "/hook", "topics": [TOPIC]})
        assert status == 201, hook
        ids = set()
        for n in range(EVENTS):
            status, out = await gw.call("POST", "/v1/events", publisher,
                                        {"topic": TOPIC, "account": "acme", "data": {"n": n}})
            assert status == 202, out
            ids.add(out["id"])
        await wait_until(lambda: receiver.in_flight >= 1, 10, "a delivery in flight")
        in_flight = receiver.in_flight
        assert gw.proc is not None
        gw.proc.send_signal(signal.SIGTERM)
        sent = time.monotonic()

        # It stops taking connections at once, while the attempts in flight still drain.
        await wait_until(lambda: connection_refused(port), grace + MARGIN, "the listener to close")
        refused_while_draining = gw.returncode is None
        assert await gw.wait_exit(grace + MARGIN) == 0, gw.log_text()
        took = time.monotonic() - sent
        assert await connection_refused(port)
        stopped = [e for e in gw.log_events() if e.get("event") == "delivery_stopped"]
        assert len(stopped) == 1, gw.log_text()
        assert "Traceback" not in gw.log_text()
        first_run = Counter(slow.arrived)

        slow.hold = 0.0
        await gw.start()
        await wait_until(lambda: ids <= set(slow.arrived), 20, "every event after the restart")

        async def nothing_pending() -> bool:
            return await count_deliveries(gw, subscriber, hook["id"], "pending") == 0

        await wait_until(nothing_pending, 20, "no pending deliveries")
        assert await count_deliveries(gw, subscriber, hook["id"], "delivered") == EVENTS
        duplicates = sum(n - 1 for n in slow.arrived.values())
        print(f"\nSIGTERM with {in_flight} in flight (hold {hold}s, grace {grace}s): exit 0 after "
              f"{took:.2f}s, {stopped[0]}, duplicates after restart: {duplicates}")
        if hold < grace:
            # The attempts in flight finished and were recorded: nothing is sent twice.
            assert refused_while_draining
            assert stopped[0]["finished_in_grace"] >= 1
            assert duplicates == 0
            assert took < hold + MARGIN
        else:
            # Cut off at the end of the grace period and handed back: retried after the restart.
            assert stopped[0]["finished_in_grace"] == 0
            assert stopped[0]["handed_back"] >= len(first_run)
            assert all(slow.arrived[i] >= 2 for i in first_run)
            assert took < grace + MARGIN
    finally:
        await gw.close()


@pytest.mark.parametrize(("server_extra", "other", "env", "named"), [
    ("prot = 8080", "", {}, "server.prot"),
    ("", "[delivery]\nretry_schedule = [1, 2]", {}, "delivery.retry_schedule"),
    ("", "[servers]\nport = 8080", {}, "servers"),
    ("", "", {"GATEWAY_DELIVERY_MAX_IN_FLIGHT": "lots"}, "GATEWAY_DELIVERY_MAX_IN_FLIGHT"),
], ids=["unknown-key", "unknown-delivery-key", "unknown-section", "bad-env-override"])
async def test_bad_config_exits_nonzero_naming_the_key(tmp_path: Path, server_extra: str, other: str,
                                                      env: dict[str, str], named: str) -> None:
    port = free_port()
    db = tmp_path / "gateway.db"
    config = tmp_path / "config.toml"
    config.write_text(f"[server]\nport = {port}\n{server_extra}\n\n"
                      f"[database]\npath = {json.dumps(str(db))}\n\n{other}\n")
    rc, _, err = await run_gateway("serve", "--config", str(config), cwd=tmp_path,
                                   env=clean_env(**env))
    assert rc != 0
    assert named in err, err
    assert "Traceback" not in err
    assert not db.exists(), "a bad config must not get as far as opening the database"
    assert await connection_refused(port)


async def test_newer_database_schema_refused(tmp_path: Path) -> None:
    db = tmp_path / "gateway.db"
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA user_version = 99")
    conn.close()
    port = free_port()
    config = write_config(tmp_path, port)
    rc, _, err = await run_gateway("serve", "--config", str(config), cwd=tmp_path, timeout=15)
    assert rc == 1, err
    assert "schema version 99" in err and "newer" in err, err
    assert "Traceback" not in err, err
    assert await connection_refused(port)


async def test_a_start_up_failing_after_the_database_opened_exits(tmp_path: Path) -> None:
    """The port is taken, so start-up fails after storage opened: what did start is unwound
    and the process exits (it used to hang on the open database's thread, ignoring SIGTERM).
    (A database locked by another writer no longer fails start-up: the gateway starts and
    serves reads, see test_storage_unwritable.py.)"""
    port = free_port()
    config = write_config(tmp_path, port, topics=())
    await create_key(config, "admin")  # creates the database, in WAL mode
    taken = socket.socket()
    try:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        rc, _, err = await run_gateway("serve", "--config", str(config), cwd=tmp_path, timeout=20)
    finally:
        taken.close()
    assert rc == 1, err
    assert "address already in use" in err.lower() or "errno 98" in err.lower(), err


async def test_requests_and_attempts_in_flight_share_one_grace_period(
        tmp_path: Path, receiver: Receiver) -> None:
    """SIGTERM with both a request and a delivery attempt outlasting the grace period: they
    wait out the same grace period side by side, so the process exits after about one of
    them, not two (the attempts' grace used to start only once the requests' had ended)."""
    grace = 3.0
    SlowReceiver(receiver, 60.0)
    port = free_port()
    config = write_config(tmp_path, port, delivery={"shutdown_grace_seconds": grace,
                                                    "timeout_seconds": 30},
                          log={"level": "info"})
    publisher = await create_key(config, "publisher")
    subscriber = await create_key(config, "subscriber", "acme")
    gw = ServeProcess(config, port)
    writer = None
    try:
        await gw.start()
        status, hook = await gw.call("POST", "/v1/hooks", subscriber,
                                     {"target_url": receiver.url + "/hook", "topics": [TOPIC]})
        assert status == 201, hook
        status, out = await gw.call("POST", "/v1/events", publisher,
                                    {"topic": TOPIC, "account": "acme", "data": {}})
        assert status == 202, out
        await wait_until(lambda: receiver.in_flight >= 1, 10, "a delivery in flight")
        # A publish whose body never finishes arriving: its handler waits on the body.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
                     f"{publisher}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n"
                     f"\r\n{{".encode())
        await writer.drain()
        # Answered after the bytes above were read (one event loop, data handled in order).
        status, _ = await gw.call("GET", "/v1/topics", publisher)
        assert status == 200
        assert gw.proc is not None
        gw.proc.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        assert await gw.wait_exit(2 * grace + MARGIN) == 0, gw.log_text()
        took = time.monotonic() - sent
        stopped = [e for e in gw.log_events() if e.get("event") == "delivery_stopped"]
        assert len(stopped) == 1 and stopped[0]["handed_back"] == 1, gw.log_text()
        assert await reader.read() == b""  # the unfinished request was cut off, not answered
        print(f"\nSIGTERM with a request and an attempt in flight, grace {grace}s: exit after "
              f"{took:.2f}s")
        assert grace <= took < grace + 1.5, f"{took:.2f}s"
    finally:
        if writer is not None:
            writer.close()
        await gw.close()
