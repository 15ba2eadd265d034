"""The PostgreSQL backend: the storage verbs of gateway.storage over asyncpg, for several
gateway processes sharing one database."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import orjson

from gateway.errors import StorageError
from gateway.logs import get_logger
from gateway.models import (
    ApiKey,
    Attempt,
    Delivery,
    DeliveryStatus,
    DueDelivery,
    Event,
    Hook,
    HookStatus,
    PayloadMode,
    Role,
    Topic,
    new_id,
    new_monotonic_ids,
)
from gateway.pg.connector import Conn, PgConnector, Q, migrate, notify, rowcount
from gateway.storage import (
    GROUP_EVENTS,
    AttemptResult,
    Claim,
    Claimed,
    NewEvent,
    Published,
    RecordSummary,
    _HookIndex,
    _Route,
)
from gateway.storage import _delivery_from_row as _delivery_row
from gateway.storage import _hook_from_row as _hook_row
from gateway.storage import _key_from_row as _key_row

log = get_logger("gateway.pg")

_PAYLOAD = {m.value: m for m in PayloadMode}
KEYS_MAX = 10000  # keys kept in memory; only keys that exist are kept


# asyncpg's Record reads by position and by name, as the rows these were written for.
def _key(r: Any) -> ApiKey:
    return _key_row(r)


def _hook(r: Any) -> Hook:
    return _hook_row(r)


def _delivery(r: Any) -> Delivery:
    return _delivery_row(r)


class PgStorage:
    """Storage on PostgreSQL. Claims are leases: a row claimed by a process is its own until
    `claim_lease_seconds` after its last renewal, and a process renews its claims while it is
    alive, so the claims of one that died come back by themselves and no process ever resets
    another's. Keys and topics are kept in memory and dropped on a notification from whichever
    process changed them; publishing routes by an index per account checked against the
    account's hooks_version, read in the statement that takes its sequence numbers."""

    def __init__(self, url: str, *, idempotency_ttl: float = 86400, claim_lease: float = 60,
                 pool_size: int = 10) -> None:
        self.url = url
        self._db = PgConnector(url, max_size=pool_size)
        self._idem_ttl = idempotency_ttl
        self._lease = claim_lease
        self._owner = uuid.uuid4().hex  # this process's name on its claims
        self._topics: frozenset[str] | None = None
        self._keys: dict[bytes, ApiKey] = {}
        self._keys_epoch = 0  # bumped on every key notification: a read across one is not kept
        # account → (its hooks_version when read, the routing index)
        self._hook_index: dict[str, tuple[int, _HookIndex]] = {}
        self._pending: list[tuple[list[NewEvent], float, asyncio.Future[list[Published]]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._held: set[str] = set()  # rows this process has claimed and not recorded yet
        self._renewer: asyncio.Task[None] | None = None
        self._waker: Callable[[], None] = lambda: None
        self.publish_commits = 0
        self.claim_transactions = 0
        self.claims_by_host = 0

    # -- lifecycle -----------------------------------------------------------------------------

    async def open(self, *, max_version: int | None = None) -> None:
        await migrate(self.url, max_version)
        await self._db.open(self._notice, self._lost)
        self._renewer = asyncio.get_running_loop().create_task(self._renew_claims())

    async def close(self) -> None:
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
            self._renewer = None
        await self._db.close()

    async def schema_version(self) -> int:
        return int(await self._db.pool.fetchval("SELECT MAX(version) FROM schema_migrations"))

    async def ping(self) -> bool:
        return bool(await self._db.pool.fetchval("SELECT 1") == 1)

    def set_waker(self, wake: Callable[[], None]) -> None:
        """Called when another process (or this one) published or resumed something due."""
        self._waker = wake

    async def _announce(self, c: Conn, what: str) -> None:
        """Tell the other processes, on commit: `what` changed ("due": new work is due)."""
        await notify(c, f"{what} {self._owner}")

    def _notice(self, payload: str) -> None:
        what, _, sender = payload.partition(" ")
        if sender == self._owner:
            # This process acted on its own change already (and a wake-up coming back late
            # would only cost a claim transaction).
            return
        if what == "due":
            self._waker()
            return
        if what in ("keys", "*"):
            self._keys.clear()
            self._keys_epoch += 1
        if what in ("topics", "*"):
            self._topics = None
        if what == "*":
            self._hook_index.clear()
            self._waker()

    def _lost(self) -> None:
        # Notifications may be missed until the listener is back: nothing cached is trusted.
        self._notice("*")

    # -- accounts and keys ---------------------------------------------------------------------

    async def create_key(self, role: Role, account: str | None, key_hash: bytes, last4: str,
                         now: float) -> ApiKey:
        key_id = new_id("key", now)
        async with self._db.tx() as c:
            if account is not None:
                await c.execute(Q["accounts_ensure"], [account], now)
            await c.execute(Q["key_insert"], key_id, key_hash, role.value, account, last4, now)
            await self._announce(c, "keys")
        return ApiKey(key_id, role, account, now, None, last4)

    async def list_keys(self) -> list[ApiKey]:
        return [_key(r) for r in await self._db.fetch("key_list")]

    async def revoke_key(self, key_id: str, now: float) -> ApiKey | None:
        async with self._db.tx() as c:
            await c.execute(Q["key_revoke"], now, key_id)
            row = await c.fetchrow(Q["key_by_id"], key_id)
            await self._announce(c, "keys")
        self._notice("keys")  # this process at once, not when its own notification comes back
        return _key(row) if row else None

    def cached_key(self, key_hash: bytes) -> ApiKey | None:
        """The key if this process holds it; None: ask fetch_key. Nothing is held while the
        listener is down (a revocation would go unheard)."""
        return self._keys.get(key_hash) if self._db.listening else None

    async def key_by_hash(self, key_hash: bytes) -> ApiKey | None:
        hit = self.cached_key(key_hash)
        return hit if hit is not None else await self.fetch_key(key_hash)

    async def fetch_key(self, key_hash: bytes) -> ApiKey | None:
        epoch = self._keys_epoch
        for row in await self._db.fetch("key_by_hash", key_hash):
            if hmac.compare_digest(bytes(row["hash"]), key_hash):
                key = _key(row)
                if epoch == self._keys_epoch and self._db.listening and len(self._keys) < KEYS_MAX:
                    self._keys[key_hash] = key
                return key
        return None

    # -- topics --------------------------------------------------------------------------------

    async def put_topics(self, topics: Iterable[tuple[str, str]], now: float) -> list[bool]:
        items = list(topics)
        async with self._db.tx() as c:
            created = [bool(await c.fetchval(Q["topic_upsert"], name, description, now))
                       for name, description in items]
            await self._announce(c, "topics")
        self._topics = None
        return created

    async def list_topics(self) -> list[Topic]:
        return [Topic(r[0], r[1]) for r in await self._db.fetch("topic_list")]

    def known_topics(self) -> frozenset[str] | None:
        return self._topics if self._db.listening else None

    async def topic_names(self) -> frozenset[str]:
        known = self.known_topics()
        if known is not None:
            return known
        names = frozenset(t.name for t in await self.list_topics())
        if self._db.listening:
            self._topics = names
        return names

    # -- hooks ---------------------------------------------------------------------------------

    async def _hooks_changed(self, c: Conn, account: str) -> None:
        await c.execute(Q["account_hooks_changed"], account)
        self._hook_index.pop(account, None)

    async def create_hook(self, *, account: str, target_url: str, host: str, topics: Sequence[str],
                          payload: PayloadMode, ordered: bool, description: str,
                          headers: dict[str, str], secret: str, now: float,
                          hook_id: str | None = None) -> Hook:
        hid = hook_id or new_id("hook", now)
        async with self._db.tx() as c:
            await c.execute(Q["accounts_ensure"], [account], now)
            await c.execute(Q["hook_insert"], hid, account, target_url, host,
                            orjson.dumps(list(topics)).decode(), payload.value, int(ordered),
                            description, orjson.dumps(headers).decode(), secret, now, now)
            await self._hooks_changed(c, account)
            row = await c.fetchrow(Q["hook_get"], hid)
        return _hook(row)

    async def get_hook(self, hook_id: str) -> Hook | None:
        row = await self._db.fetchrow("hook_get", hook_id)
        return _hook(row) if row else None

    async def list_hooks(self, account: str | None, limit: int,
                         after: str = "") -> tuple[list[Hook], str | None]:
        if account is None:
            rows = await self._db.fetch("hook_list_all", after, limit + 1)
        else:
            rows = await self._db.fetch("hook_list_account", account, after, limit + 1)
        hooks = [_hook(r) for r in rows[:limit]]
        return hooks, (hooks[-1].id if len(rows) > limit else None)

    async def update_hook(self, hook_id: str, changes: dict[str, Any], now: float) -> Hook | None:
        sets: list[str] = []
        params: list[Any] = []
        for k, v in changes.items():
            if k == "status":
                continue
            if k in ("topics", "headers"):
                v = orjson.dumps(v).decode()
            elif k == "ordered":
                v = int(v)
            elif k == "payload":
                v = PayloadMode(v).value
            params.append(v)
            sets.append(f"{k} = ${len(params)}")
        new_status: HookStatus | None = changes.get("status")
        async with self._db.tx() as c:
            row = await c.fetchrow(Q["hook_get_locked"], hook_id)
            if row is None:
                return None
            if sets:
                n = len(params)
                await c.execute(f"UPDATE hooks SET {', '.join(sets)}, updated_at = ${n + 1} "
                                f"WHERE id = ${n + 2}", *params, now, hook_id)
            old = HookStatus(row["status"])
            if new_status is not None and new_status is not old:
                await c.execute(Q["hook_set_status"], new_status.value, now, hook_id)
                if new_status is HookStatus.ACTIVE:
                    await c.execute(Q["hook_success"], [hook_id])
                    if old is HookStatus.DISABLED:
                        await c.execute(Q["hook_resume_deliveries"], now, now, hook_id)
                    else:
                        await c.execute(Q["hook_set_held"], 0, hook_id)
                    await self._announce(c, "due")
                else:
                    await c.execute(Q["hook_set_held"], 1, hook_id)
            await self._hooks_changed(c, row["account"])
            out = await c.fetchrow(Q["hook_get"], hook_id)
        return _hook(out)

    async def delete_hook(self, hook_id: str, now: float) -> bool:
        async with self._db.tx() as c:
            row = await c.fetchrow(Q["hook_get_locked"], hook_id)
            if row is None:
                return False
            await c.execute(Q["hook_delete"], now, now, hook_id)
            await c.execute(Q["hook_cancel_deliveries"], now, hook_id)
            await self._hooks_changed(c, row["account"])
        return True

    async def rotate_secret(self, hook_id: str, secret: str, old_expires_at: float,
                            now: float) -> Hook | None:
        # Claims read the secret with each row (never kept in memory): nothing to invalidate.
        async with self._db.tx() as c:
            await c.execute(Q["hook_rotate"], old_expires_at, secret, now, hook_id)
            row = await c.fetchrow(Q["hook_get"], hook_id)
        return _hook(row) if row else None

    async def _index_for(self, c: Conn, account: str, version: int) -> _HookIndex:
        held = self._hook_index.get(account)
        if held is not None and held[0] == version:
            return held[1]
        idx = _HookIndex()
        for row in await c.fetch(Q["hook_index_account"], account):
            idx.add(_Route(row[0], row[2] != HookStatus.ACTIVE.value, row[3]), orjson.loads(row[1]))
        self._hook_index[account] = (version, idx)
        return idx

    # -- publishing ----------------------------------------------------------------------------

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
            await c.execute(Q["accounts_ensure"], accounts, latest)
            seqs: dict[str, int] = {}
            indexes: dict[str, _HookIndex] = {}
            for row in await c.fetch(Q["accounts_lock"], accounts):
                seqs[row[0]] = row[1]
                indexes[row[0]] = await self._index_for(c, row[0], row[2])
            start = dict(seqs)
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
                    for hook_id, held, host in matches:
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
                await c.execute(Q["event_insert"], *ev_cols)
            if dl_cols[0]:
                await c.execute(Q["delivery_insert"], *dl_cols[:7], latest, dl_cols[7])
            if idem_cols[0]:
                await c.execute(Q["idempotency_put"], *idem_cols)
            moved = [a for a in accounts if seqs[a] != start[a]]
            if moved:
                await c.execute(Q["accounts_set_sequence"], moved, [seqs[a] for a in moved])
            if any_due:
                await self._announce(c, "due")
        return results

    async def get_event(self, event_id: str) -> tuple[Event, dict[str, int]] | None:
        r = await self._db.fetchrow("event_get", event_id)
        if r is None:
            return None
        event = Event(r[0], r[1], r[2], r[3], bytes(r[4]), r[5], r[6])
        counts = {row[0]: row[1] for row in await self._db.fetch("event_delivery_counts", event_id)}
        return event, counts

    async def purge_idempotency(self, now: float) -> None:
        await self._db.execute("idempotency_purge", now - self._idem_ttl)

    # -- deliveries ----------------------------------------------------------------------------

    async def get_delivery(self, delivery_id: str) -> tuple[Delivery, list[Attempt]] | None:
        row = await self._db.fetchrow("delivery_get", delivery_id)
        if row is None:
            return None
        attempts = [Attempt(r[0], r[1], r[2], r[3], r[4])
                    for r in await self._db.fetch("delivery_attempts", delivery_id)]
        return _delivery(row), attempts

    async def list_deliveries(self, hook_id: str, status: DeliveryStatus | None, limit: int,
                              before: str | None) -> tuple[list[Delivery], str | None]:
        st = status.value if status else None
        rows = await self._db.fetch("delivery_list", hook_id, before or "~", st, limit + 1)
        items = [_delivery(r) for r in rows[:limit]]
        return items, (items[-1].id if len(rows) > limit else None)

    async def retry_delivery(self, delivery_id: str, now: float) -> Delivery | None:
        async with self._db.tx() as c:
            await c.execute(Q["delivery_retry"], now, now, delivery_id)
            row = await c.fetchrow(Q["delivery_get"], delivery_id)
            await self._announce(c, "due")
        return _delivery(row) if row else None

    async def reset_claims(self) -> int:
        """Nothing to reset: another process's claims are its own until their lease runs out,
        and those of a process that died come back by themselves."""
        return 0

    async def release_claims(self, ids: Sequence[str]) -> None:
        if ids:
            await self._db.execute("claims_release", list(ids), self._owner)
            self._held.difference_update(ids)

    async def _renew_claims(self) -> None:
        """Keep this process's leases running while it works on them (an attempt may wait
        longer than a lease for room on its host, and a slow one may take a while)."""
        while True:
            await asyncio.sleep(self._lease / 3)
            if not self._held:
                continue
            try:
                await self._db.execute("claims_renew", list(self._held), self._owner, self._lease)
            except Exception as exc:  # the next round tries again; the lease has room for it
                log.warning("claims_renew_failed", error=str(exc))

    async def _claim_tx(self, c: Conn, claim: Claim) -> Claimed:
        now, limit = claim.now, claim.limit
        rows = await c.fetch(Q["claim_candidates"], now, sorted(claim.full_hosts), limit)
        taken: list[DueDelivery] = []
        room: dict[str, int] = {}
        # Rows of a host with less room than the limit are passed over here, not in SQL (their
        # locks end with this transaction).
        for r in rows:
            host: str = r[8]
            left = room.get(host)
            if left is None:
                left = claim.host_room.get(host, claim.default_room)
            if left <= 0:
                room[host] = 0
                continue
            room[host] = left - 1
            expires: float | None = r[17]
            secrets = (r[15], r[16]) if r[16] and expires and now < expires else (r[15],)
            taken.append(DueDelivery(
                id=r[0], event_id=r[1], hook_id=r[2], account=r[3], topic=r[4],
                sequence=r[5], attempts=r[6], manual=bool(r[7]), target_url=r[12],
                host=host, payload=_PAYLOAD[r[13]], headers=orjson.loads(r[14]), secrets=secrets,
                data_json=bytes(r[9]), resource_url=r[10], event_created_at=r[11],
                ordered=bool(r[18]),
            ))
            if len(taken) >= limit:
                break
        if taken:
            ids = [d.id for d in taken]
            await c.execute(Q["claim_mark"], ids, self._lease, self._owner)
            self._held.update(ids)
        self.claim_transactions += 1
        return Claimed(taken, exhausted=len(rows) < limit)

    async def claim_due(self, claim: Claim) -> Claimed:
        """Claim up to claim.limit due deliveries, at most the room left for each host."""
        async with self._db.tx() as c:
            return await self._claim_tx(c, claim)

    async def next_due_at(self, after: float) -> float | None:
        v = await self._db.fetchval("next_due", after)
        return float(v) if v is not None else None

    async def due_backlog(self, now: float) -> int:
        return int(await self._db.fetchval("due_backlog", now))

    async def record_attempts(self, results: Sequence[AttemptResult], now: float, *,
                              disable_after_failures: int, disable_after_seconds: float,
                              then_claim: Claim | None = None) -> RecordSummary:
        """Append attempts, move each delivery on, keep each hook's failure streak; then claim
        the next rows in the same transaction."""
        summary = RecordSummary()
        async with self._db.tx() as c:
            await c.execute(Q["attempt_insert"], [r.delivery_id for r in results],
                            [r.attempt.at for r in results],
                            [r.attempt.status_code for r in results],
                            [r.attempt.error for r in results],
                            [r.attempt.duration_ms for r in results],
                            [r.attempt.response_excerpt for r in results])
            await c.execute(Q["delivery_record"], [r.delivery_id for r in results],
                            [r.attempt.status_code for r in results],
                            [r.next_attempt_at if r.next_attempt_at is not None else now
                             for r in results],
                            [r.status.value for r in results], now, self._owner)
            for r in results:
                if r.status is not DeliveryStatus.PENDING:
                    summary.final[r.status.value] = summary.final.get(r.status.value, 0) + 1
            await self._streaks(c, results, now, summary, disable_after_failures,
                                disable_after_seconds)
            if then_claim is not None:
                summary.claimed = await self._claim_tx(c, then_claim)
        self._held.difference_update(r.delivery_id for r in results)
        return summary

    async def _streaks(self, c: Conn, results: Sequence[AttemptResult], now: float,
                       summary: RecordSummary, disable_after_failures: int,
                       disable_after_seconds: float) -> None:
        streaks: dict[str, list[AttemptResult]] = {}
        for r in results:
            streaks.setdefault(r.hook_id, []).append(r)
        ok: list[str] = []
        failing: dict[str, tuple[int, list[AttemptResult]]] = {}
        gone: list[str] = []
        for hook_id, rs in streaks.items():
            if any(r.gone for r in rs):
                gone.append(hook_id)
                continue
            last_ok = max((i for i, r in enumerate(rs) if not r.hook_failed), default=-1)
            if last_ok == len(rs) - 1:
                ok.append(hook_id)
            else:
                failing[hook_id] = (last_ok, rs[last_ok + 1:])
        if gone or failing:
            state = {row[0]: row for row in await c.fetch(Q["hooks_lock"],
                                                          sorted([*gone, *failing]))}
        for hook_id in gone:
            st = state.get(hook_id)
            if st is not None and st["status"] != HookStatus.REMOVED.value:
                await c.execute(Q["hook_set_status"], HookStatus.REMOVED.value, now, hook_id)
                n = rowcount(await c.execute(Q["hook_fail_deliveries"], now, hook_id))
                summary.final["failed"] = summary.final.get("failed", 0) + n
                summary.removed_hooks.append(hook_id)
                await self._hooks_changed(c, st["account"])
        for hook_id, (last_ok, fails) in failing.items():
            st = state.get(hook_id)
            if st is None:
                continue
            if last_ok >= 0:
                count, since = len(fails), fails[0].attempt.at
            else:
                count = st["consecutive_failures"] + len(fails)
                since = st["failing_since"] if st["failing_since"] is not None \
                    else fails[0].attempt.at
            await c.execute(Q["hook_failures"], count, since, hook_id)
            if (st["status"] == HookStatus.ACTIVE.value and count >= disable_after_failures
                    and now - since >= disable_after_seconds):
                await c.execute(Q["hook_set_status"], HookStatus.DISABLED.value, now, hook_id)
                await c.execute(Q["hook_set_held"], 1, hook_id)
                summary.disabled_hooks.append(hook_id)
                await self._hooks_changed(c, st["account"])
        if ok:
            await c.execute(Q["hook_success"], sorted(ok))


def backend_name(storage: object) -> str:
    return "postgresql" if isinstance(storage, PgStorage) else "sqlite"


__all__ = ["PgStorage", "StorageError", "backend_name"]
