"""Events and publishing: an event and its deliveries stored in one durable commit, shared by
the requests that arrive while the previous commit runs (group commit)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from functools import partial
from typing import Any

import orjson

from gateway.errors import DatabaseUnavailable
from gateway.models import Event, first_id_at, new_monotonic_ids
from gateway.storage import rows
from gateway.storage.connector import SqliteConnector, Tail, execute_rows
from gateway.storage.hooks import HookMemory
from gateway.storage.queries import Q
from gateway.storage.values import NewEvent, Published

# A commit takes whole requests up to GROUP_EVENTS events, and one with more rows (events and
# deliveries) than INLINE_ROWS, a wide fan-out, leaves its inserts to the database thread:
# slower there, but the loop is never held for much more than 0.1 s (16,000 rows on the loop:
# 93-101 ms measured).
GROUP_EVENTS = 4096
INLINE_ROWS = 16384

_Request = tuple[list[NewEvent], float, "asyncio.Future[list[Published]]"]


class EventStore:
    def __init__(self, db: SqliteConnector, memory: HookMemory, idempotency_ttl: float) -> None:
        self._db = db
        self._mem = memory
        self._idem_ttl = idempotency_ttl
        self._pending: list[_Request] = []
        self._flusher: asyncio.Task[None] | None = None
        # Publishing transactions committed: fewer than publish calls when group commit works.
        self.publish_commits = 0

    async def close(self) -> None:
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)

    async def publish(self, events: list[NewEvent], now: float) -> list[Published]:
        """Store events and their deliveries atomically; durable when this returns.

        Calls that arrive while a commit is running wait and share the next one (group commit):
        under load many requests cost one transaction and one fsync, not one each."""
        fut: asyncio.Future[list[Published]] = asyncio.get_running_loop().create_future()
        self._pending.append((events, now, fut))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        return await fut

    async def _flush(self) -> None:
        while self._pending:
            # One commit takes whole requests up to GROUP_EVENTS events (at least one request),
            # so a commit's statements on the loop stay short; the rest go in the next.
            take, events = 0, 0
            for events_, _, _ in self._pending:
                if take and events + len(events_) > GROUP_EVENTS:
                    break
                take += 1
                events += len(events_)
            batch = self._pending[:take]
            del self._pending[:take]
            try:
                results = await self._db.tx_split(partial(self._publish_tx, batch=batch))
                self.publish_commits += 1
                # Counted here, on the loop: _publish_tx may run in the database thread.
                self._db.count_rows(sum(len(ps) + sum(p.deliveries for p in ps)
                                        for ps in results))
            except Exception as exc:
                # One bad request must not sink its neighbours: retry each on its own. When
                # the database cannot write, none would succeed: all are answered at once.
                if len(batch) == 1 or isinstance(exc, DatabaseUnavailable):
                    for _, _, fut in batch:
                        if not fut.done():
                            fut.set_exception(exc)
                    continue
                for item in batch:
                    try:
                        alone = await self._db.tx_split(partial(self._publish_tx, batch=[item]))
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

    def _publish_tx(self, c: sqlite3.Connection, batch: list[_Request]
                    ) -> tuple[list[list[Published]], Tail | None]:
        seqs: dict[str, int] = {}
        fresh_keys: dict[tuple[str, str], Published] = {}
        ev_rows: list[tuple[Any, ...]] = []
        dl_rows: list[tuple[Any, ...]] = []
        idem_rows: list[tuple[Any, ...]] = []
        results: list[list[Published]] = []
        # Ids for every event and every match, made in two runs (replays leave gaps, harmless).
        flat = [ev for events, _, _ in batch for ev in events]
        index_for = self._mem.index_for
        indexes = [index_for(c, ev.account) for ev in flat]
        fanout = [index.match(ev.topic) for index, ev in zip(indexes, flat, strict=True)]
        latest = max(now for _, now, _ in batch)
        eids = iter(new_monotonic_ids("evt", len(fanout), latest))
        dids = iter(new_monotonic_ids("dlv", sum(map(len, fanout)), latest))
        matched = iter(zip(indexes, fanout, strict=True))
        for events, now, _ in batch:
            out: list[Published] = []
            for ev in events:
                index, matches = next(matched)
                if ev.idempotency_key is not None:
                    k = (ev.account, ev.idempotency_key)
                    prior = fresh_keys.get(k)
                    if prior is None:
                        row = c.execute(Q["idempotency_get"], (ev.account, ev.idempotency_key,
                                                               now - self._idem_ttl)).fetchone()
                        if row is not None:
                            d = orjson.loads(row[0])
                            prior = Published(d["id"], d["deliveries"], replayed=True)
                    if prior is not None:
                        out.append(Published(prior.id, prior.deliveries, replayed=True))
                        continue
                seq = seqs.get(ev.account)
                if seq is None:
                    c.execute(Q["account_ensure"], (ev.account, now))
                    seq = c.execute(Q["sequence_get"], (ev.account,)).fetchone()[0]
                seq += 1
                seqs[ev.account] = seq
                eid = next(eids)
                ev_rows.append((eid, ev.account, ev.topic, seq, ev.data_json, ev.resource_url, now))
                for hook_id, held, host, hook_account in matches:
                    dl_rows.append((next(dids), eid, hook_id, hook_account, ev.topic, seq,
                                    int(held), now, now, now, host))
                pub = Published(eid, len(matches), False, index.due(ev.topic))
                if ev.idempotency_key is not None:
                    fresh_keys[(ev.account, ev.idempotency_key)] = pub
                    idem_rows.append((ev.account, ev.idempotency_key, orjson.dumps(pub.public()),
                                      now))
                out.append(pub)
            results.append(out)

        def insert(c: sqlite3.Connection) -> None:
            for name, rs in (("event_insert", ev_rows), ("delivery_insert", dl_rows),
                             ("idempotency_put", idem_rows)):
                execute_rows(c, name, rs)
            c.executemany(Q["sequence_set"], [(s, a) for a, s in seqs.items()])

        if len(ev_rows) + len(dl_rows) < INLINE_ROWS:
            insert(c)
            return results, None
        return results, insert

    async def get_event(self, event_id: str) -> tuple[Event, dict[str, int]] | None:
        found = await self._db.read(Q["event_get"], (event_id,))
        if not found:
            return None
        counts = {r[0]: r[1]
                  for r in await self._db.read(Q["event_delivery_counts"], (event_id, event_id))}
        return rows.event(found[0]), counts

    async def list_events(self, account: str | None, topic: str | None, since: float | None,
                          until: float | None, limit: int,
                          cursor: str | None) -> tuple[list[Event], str | None]:
        """Events newest first, optionally of one account, one topic, created at or after
        `since` and before `until`; `cursor` is the last id of the page before."""
        lowest = first_id_at("evt", since) if since is not None else ""
        params = (cursor or "~", lowest, topic, topic, since, since, until, until, limit + 1)
        if account is None:
            found = await self._db.read(Q["event_list"], params)
        else:
            found = await self._db.read(Q["event_list_account"], (account, *params))
        items = [rows.event(r) for r in found[:limit]]
        return items, (items[-1].id if len(found) > limit else None)

    async def delivery_counts(self, event_ids: Sequence[str]) -> dict[str, dict[str, int]]:
        """Each event's delivery counts by status, as get_event gives them (statuses with
        none left out)."""
        counts: dict[str, dict[str, int]] = {e: {} for e in event_ids}
        if event_ids:
            for eid, status, n in await self._db.read(
                    Q["event_list_counts"], (orjson.dumps(list(event_ids)).decode(),)):
                counts[eid][status] = n
        return counts

    async def purge_idempotency(self, now: float) -> None:
        await self._db.tx(lambda c: c.execute(Q["idempotency_purge"], (now - self._idem_ttl,)))
