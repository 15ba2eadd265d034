"""Several real `gateway serve` processes on one PostgreSQL database: the work is shared, each
event is delivered once per hook, ordered hooks stay ordered across processes, a process killed
mid-storm loses nothing and its claims come back after the lease, and a key revoked through one
process is refused by the others."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from aiohttp import web

from tests.conftest import Receiver, echo_handshake, wait_until
from tests.process import TOPIC, ServeProcess, count_deliveries, create_key, free_port, write_config

PROCESSES = 3
MAX_IN_FLIGHT = 32


class Recorder:
    """Answers the handshake, then records each delivery: its event id, sequence and the order
    of arrival; how many were in flight at once; and which were unanswered."""

    def __init__(self, receiver: Receiver, work: float = 0.0) -> None:
        self.arrived: Counter[str] = Counter()
        self.sequences: list[int] = []
        self.holding: set[str] = set()
        self.in_flight = self.max_in_flight = 0
        self.work = work
        receiver.respond = self.respond

    async def respond(self, _n: int, request: web.Request) -> tuple[int, dict[str, str], bytes]:
        echo = echo_handshake(request)
        if echo is not None:
            return 200, echo, b""
        body = orjson.loads(await request.read())
        event_id = request.headers["webhook-id"]
        self.arrived[event_id] += 1
        self.sequences.append(body["sequence"])
        self.holding.add(event_id)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            # Keeps attempts in flight (and, for an ordered hook, gives a second process every
            # chance to send the next one too early, if it could).
            await asyncio.sleep(self.work)
        finally:
            self.in_flight -= 1
            self.holding.discard(event_id)
        return 204, {}, b""

    def duplicates(self) -> int:
        return sum(n - 1 for n in self.arrived.values())


async def start_processes(tmp_path: Path, url: str, lease: float = 60) -> tuple[list[ServeProcess],
                                                                              dict[str, str]]:
    procs = []
    for i in range(PROCESSES):
        home = tmp_path / f"p{i}"
        home.mkdir()
        port = free_port()
        config = write_config(home, port, database={"url": url},
                              delivery={"claim_lease_seconds": lease,
                                        "max_in_flight": MAX_IN_FLIGHT})
        procs.append(ServeProcess(config, port))
    config = procs[0].config
    keys = {"admin": await create_key(config, "admin"),
            "publisher": await create_key(config, "publisher"),
            "subscriber": await create_key(config, "subscriber", "acme")}
    await asyncio.gather(*(p.start() for p in procs))  # all three migrate at once
    return procs, keys


async def close_all(procs: list[ServeProcess]) -> None:
    await asyncio.gather(*(p.close() for p in procs))


async def make_hook(gw: ServeProcess, key: str, receiver: Receiver, **fields: Any) -> str:
    status, hook = await gw.call("POST", "/v1/hooks", key, {
        "target_url": receiver.url + "/hook", "topics": [TOPIC], **fields})
    assert status == 201, hook
    return str(hook["id"])


async def publish_everywhere(procs: list[ServeProcess], key: str, batches: int,
                             size: int) -> list[str]:
    """`batches` batches of `size` events, each process taking its turn, all at once."""
    async def one(b: int) -> list[str]:
        gw = procs[b % len(procs)]
        events = [{"topic": TOPIC, "account": "acme", "data": {"b": b, "i": i}} for i in range(size)]
        status, body = await gw.call("POST", "/v1/events", key, events)
        assert status == 202, body
        return [e["id"] for e in body["data"]]

    return [i for ids in await asyncio.gather(*(one(b) for b in range(batches))) for i in ids]


async def deliveries_by_process(procs: list[ServeProcess], admin: str) -> list[float]:
    """Each process's count of final deliveries, from its own /metrics."""
    out = []
    for gw in procs:
        assert gw.http is not None
        async with gw.http.get(gw.base_url + "/metrics",
                               headers={"Authorization": f"Bearer {admin}"}) as resp:
            text = await resp.text()
        out.append(sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                       if line.startswith("gateway_deliveries_total{")))
    return out


async def test_three_processes_deliver_each_event_once_per_hook_and_ordered_in_order(
        tmp_path: Path, pg_url: str, make_receiver: Any) -> None:
    plain_rx, ordered_rx = await make_receiver(), await make_receiver()
    plain, ordered = Recorder(plain_rx, work=0.002), Recorder(ordered_rx, work=0.002)
    procs, keys = await start_processes(tmp_path, pg_url)
    try:
        sub = keys["subscriber"]
        plain_id = await make_hook(procs[0], sub, plain_rx)
        ordered_id = await make_hook(procs[1], sub, ordered_rx, ordered=True)
        ids = await publish_everywhere(procs, keys["publisher"], batches=30, size=10)
        assert len(set(ids)) == 300

        await wait_until(lambda: len(plain.arrived) == 300 and len(ordered.arrived) == 300, 90,
                         "every event at both receivers")
        for gw, hook in ((procs[2], plain_id), (procs[0], ordered_id)):
            assert await count_deliveries(gw, sub, hook, "delivered") == 300
        assert set(plain.arrived) == set(ordered.arrived) == set(ids)
        # Once per hook: no process killed, so no duplicate at all.
        assert plain.duplicates() == 0 and ordered.duplicates() == 0
        # Sequence numbers from publishers in three processes: gap-free and each used once.
        assert sorted(plain.sequences) == list(range(1, 301))
        # The ordered hook: one in flight at a time across all processes, in publish order.
        assert ordered.max_in_flight == 1
        assert ordered.sequences == list(range(1, 301))
        # The work was shared: more than one process delivered.
        shares = await deliveries_by_process(procs, keys["admin"])
        assert sum(shares) == 600 and sum(1 for s in shares if s > 0) >= 2, shares
    finally:
        await close_all(procs)


async def test_a_process_killed_mid_storm_loses_nothing_and_its_claims_come_back_after_the_lease(
        tmp_path: Path, pg_url: str, receiver: Receiver) -> None:
    rx = Recorder(receiver, work=0.005)
    # Short, so the test is quick; long enough that a live process, renewing every third of
    # it, keeps its claims on a loaded machine.
    lease = 5.0
    procs, keys = await start_processes(tmp_path, pg_url, lease=lease)
    try:
        await make_hook(procs[0], keys["subscriber"], receiver)
        ids = set(await publish_everywhere(procs, keys["publisher"], batches=60, size=10))
        await wait_until(lambda: len(rx.arrived) >= 100 and rx.holding, 60,
                         "a sixth of the events delivered, some in flight")
        assert await procs[0].kill() == -signal.SIGKILL
        assert len(rx.arrived) < len(ids), "everything arrived before the kill: nothing tested"
        # What the dead process held: rows under a lease that is not renewed any more.
        conn = await asyncpg.connect(pg_url)
        try:
            held = await conn.fetch(
                "SELECT id, event_id, claimed_by FROM deliveries WHERE status = 'pending' "
                "AND claimed_until > EXTRACT(EPOCH FROM clock_timestamp())")
        finally:
            await conn.close()

        await wait_until(lambda: set(rx.arrived) == ids, 90, "every event after the kill")
        conn = await asyncpg.connect(pg_url)
        try:
            async def all_recorded() -> bool:
                return not await conn.fetchval(
                    "SELECT COUNT(*) FROM deliveries WHERE status <> 'delivered'")

            # Arrived is not recorded yet: wait for the records too.
            await wait_until(all_recorded, 60, "every delivery recorded as delivered")
            owners = {r["claimed_by"] for r in held}
            still = await conn.fetchval(
                "SELECT COUNT(*) FROM deliveries WHERE id = ANY($1::text[]) AND status <> 'delivered'",
                [r["id"] for r in held])
        finally:
            await conn.close()
        print(f"\nkill mid-storm: {len(held)} rows under lease at the kill ({len(owners)} "
              f"processes), {rx.duplicates()} duplicates after it")
        assert still == 0
        # The dead process's rows came back (the kill test would hang without leases).
        assert len(owners) >= 1
        # Duplicates only of what was claimed when the kill landed (the dead process's rows
        # among them), never of anything else.
        twice = {e for e, n in rx.arrived.items() if n > 1}
        assert twice <= {r["event_id"] for r in held}, twice
    finally:
        await close_all(procs)


async def test_a_key_revoked_through_one_process_is_refused_by_the_others(
        tmp_path: Path, pg_url: str) -> None:
    procs, keys = await start_processes(tmp_path, pg_url)
    try:
        doomed = keys["publisher"]
        for gw in procs:  # each process now holds the key in memory
            assert (await gw.call("GET", "/v1/topics", doomed))[0] == 200
        status, listed = await procs[0].call("GET", "/v1/keys", keys["admin"])
        assert status == 200, listed
        key_id = next(k["id"] for k in listed["data"] if k["role"] == "publisher")
        status, body = await procs[0].call("DELETE", f"/v1/keys/{key_id}", keys["admin"])
        assert status == 204, body
        for gw in procs:  # the very next request, in every process
            status, body = await gw.call("GET", "/v1/topics", doomed)
            assert status == 401, body
        # The others' keys still work everywhere.
        for gw in procs:
            assert (await gw.call("GET", "/v1/topics", keys["subscriber"]))[0] == 200
    finally:
        await close_all(procs)
