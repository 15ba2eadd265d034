"""Publishing on PostgreSQL (group commit; sequence numbers from the account's counter row,
locked in the publishing transaction) and reading events."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from typing import Any

import orjson

from gateway.models import Event, new_monotonic_ids
from gateway.routing import RouteIndex
from gateway.storage import rows
from gateway.storage.events import GROUP_EVENTS
from gateway.storage.postgres.connector import Q
from gateway.storage.postgres.memory import PgMemory
from gateway.storage.values import NewEvent, Published


class EventStore:
    def __init__(self, memory: PgMemory, idempotency_ttl: float) -> None:
        self._mem = memory
        self._db = memory.db
        self._idem_ttl = idempotency_ttl
        self._pending: list[tuple[list[NewEvent], float, asyncio.Future[list[Published]]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self.publish_commits = 0  # fewer than publish calls when group commit works

    async def close(self) -> None:
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)

    async def publish(self, events: list[NewEvent], now: float) -> list[Published]:
        """Store events and their deliveries atomically; durable when this returns. Calls that
        arrive while a commit runs share the next one (group commit), as on SQLite."""
        fut: asyncio.Future[list[Published]] = asyncio.get_running_loop().create_future()
        self._pending.append((events, now, fut))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_publishes())
        return await fut

    async def _flush_publishes(self) -> None:
        while self._pending:
            take, count = 0, 0
            for evs, _, _ in self._pending:
                if take and count + len(evs) > GROUP_EVENTS:
                    break
                take += 1
                count += len(evs)
            batch = self._pending[:take]
            del self._pending[:take]
            try:
                results = await self._publish_tx(batch)
                self.publish_commits += 1
            except Exception as exc:
                # One bad request must not sink its neighbours: retry each on its own.
                if len(batch) == 1:
                    if not batch[0][2].done():
                        batch[0][2].set_exception(exc)
                    continue
                for item in batch:
                    try:
                        alone = await self._publish_tx([item])
                        self.publish_commits += 1
                        if not item[2].done():
                            item[2].set_result(alone[0])
                    except Exception as one_exc:
                        if not item[2].done():
                            item[2].set_exception(one_exc)
                continue
            for (_, _, fut), res in zip(batch, results, strict=True):
                if not fut.done():
                    fut.set_result(res)

    async def _publish_tx(self, batch: list[tuple[list[NewEvent], float, Any]]
                          ) -> list[list[Published]]:
        flat = [ev for events, _, _ in batch for ev in events]
        latest = max(now for _, now, _ in batch)
        accounts = sorted({ev.account for ev in flat})
        wanted = [(ev.account, ev.idempotency_key) for ev in flat if ev.idempotency_key is not None]
        async with self._db.tx() as c:
            seqs: dict[str, int] = {}
            indexes: dict[str, RouteIndex] = {}
            start: dict[str, int] | None = None
            if wanted:
                # Replays take no number, and which are replays is known only once the
                # account is locked: lock, read the keys, count, then move the counter on.
                await c.execute(Q["accounts_ensure"], accounts, latest)
                locked = await c.fetch(Q["accounts_lock"], accounts)
                for row in locked:
                    seqs[row[0]] = row[1]
                start = dict(seqs)
            else:
                counts = Counter(ev.account for ev in flat)
                locked = await c.fetch(Q["accounts_take"], accounts,
                                       [counts[a] for a in accounts], latest)
                for row in locked:
                    seqs[row[0]] = row[1] - counts[row[0]]
            for row in locked:
                indexes[row[0]] = await self._mem.index_for(c, row[0], row[2])
            prior: dict[tuple[str, str], Published] = {}
            if wanted:
                oldest = min(now for _, now, _ in batch) - self._idem_ttl
                for a, k, resp in await c.fetch(Q["idempotency_get"], [w[0] for w in wanted],
                                                [w[1] for w in wanted], oldest):
                    d = orjson.loads(resp)
                    prior[(a, k)] = Published(d["id"], d["deliveries"], replayed=True)
            fanout = [indexes[ev.account].match(ev.topic) for ev in flat]
            eids = iter(new_monotonic_ids("evt", len(flat), latest))
            dids = iter(new_monotonic_ids("dlv", sum(map(len, fanout)), latest))
            ev_cols: list[list[Any]] = [[] for _ in range(7)]
            dl_cols: list[list[Any]] = [[] for _ in range(8)]
            idem_cols: list[list[Any]] = [[] for _ in range(4)]
            results: list[list[Published]] = []
            any_due = False
            i = 0
            for events, now, _ in batch:
                out: list[Published] = []
                for ev in events:
                    matches = fanout[i]
                    i += 1
                    ikey = ev.idempotency_key
                    if ikey is not None:
                        seen = prior.get((ev.account, ikey))
                        if seen is not None:
                            out.append(Published(seen.id, seen.deliveries, replayed=True))
                            continue
                    seq = seqs[ev.account] + 1
                    seqs[ev.account] = seq
                    eid = next(eids)
                    for col, v in zip(ev_cols, (eid, ev.account, ev.topic, seq, ev.data_json,
                                                ev.resource_url, now), strict=True):
                        col.append(v)
                    for hook_id, held, host, _account in matches:
                        for col, dv in zip(dl_cols, (next(dids), eid, hook_id, ev.account,
                                                     ev.topic, seq, int(held), host), strict=True):
                            col.append(dv)
                    due = indexes[ev.account].due(ev.topic)
                    any_due = any_due or due > 0
                    pub = Published(eid, len(matches), False, due)
                    if ikey is not None:
                        prior[(ev.account, ikey)] = Published(eid, len(matches), replayed=True)
                        for col, iv in zip(idem_cols, (ev.account, ikey,
                                                       orjson.dumps(pub.public()), now), strict=True):
                            col.append(iv)
                    out.append(pub)
                results.append(out)
            if ev_cols[0]:
                await c.execute(Q["publish_rows"], *ev_cols, *dl_cols[:7], latest, dl_cols[7],
                                self._mem.notice("due") if any_due else None)
            if idem_cols[0]:
                await c.execute(Q["idempotency_put"], *idem_cols)
            if start is not None:
                moved = [a for a in accounts if seqs[a] != start[a]]
                if moved:
                    await c.execute(Q["accounts_set_sequence"], moved, [seqs[a] for a in moved])
        return results

    async def get_event(self, event_id: str) -> tuple[Event, dict[str, int]] | None:
        r = await self._db.fetchrow("event_get", event_id)
        if r is None:
            return None
        event = rows.event(r)
        counts = {row[0]: row[1] for row in await self._db.fetch("event_delivery_counts", event_id)}
        return event, counts

    async def delivery_counts(self, event_ids: Sequence[str]) -> dict[str, dict[str, int]]:
        """Each event's delivery counts by status, as get_event gives them (statuses with
        none left out)."""
        counts: dict[str, dict[str, int]] = {e: {} for e in event_ids}
        if event_ids:
            for eid, status, n in await self._db.fetch("event_list_counts", list(event_ids)):
                counts[eid][status] = int(n)
        return counts

    async def purge_idempotency(self, now: float) -> None:
        await self._db.execute("idempotency_purge", now - self._idem_ttl)

    async def list_events(self, account: str | None, topic: str | None, since: float | None,
                          until: float | None, limit: int,
                          cursor: str | None) -> tuple[list[Event], str | None]:
        """Events newest first, optionally of one account, one topic, created at or after
        `since` and before `until`; `cursor` is the last id of the page before."""
        found = await self._db.fetch("event_list", cursor or "~", account, topic, since, until,
                                     limit + 1)
        items = [rows.event(r) for r in found[:limit]]
        return items, (items[-1].id if len(found) > limit else None)
