"""Deliveries on PostgreSQL: reading and retrying them, and the delivery loop's verbs. Claims
are leases: a row claimed by a process is its own until claim_lease_seconds after its last
renewal; a live process renews its claims, so those of one that died come back by themselves
and no process ever resets another's."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

import orjson

from gateway import health
from gateway.logs import get_logger
from gateway.models import Attempt, Delivery, DeliveryStatus, DueDelivery, HookStatus, PayloadMode
from gateway.storage import rows
from gateway.storage.postgres.connector import Conn, Q, rowcount
from gateway.storage.postgres.memory import PgMemory
from gateway.storage.values import AttemptResult, Claim, Claimed, RecordSummary

log = get_logger("gateway.storage.postgres")
_PAYLOAD = {m.value: m for m in PayloadMode}


def _delivery(r: Any) -> Delivery:
    return rows.delivery(r)


class DeliveryStore:
    def __init__(self, memory: PgMemory, lease: float) -> None:
        self._mem = memory
        self._db = memory.db
        self._lease = lease
        self._renewer: asyncio.Task[None] | None = None
        self.claim_transactions = 0
        self.claims_by_host = 0  # (SQLite's path past a wall of full hosts; none here)

    def start(self) -> None:
        self._renewer = asyncio.get_running_loop().create_task(self._renew_claims())

    async def close(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
            self._renewer = None

    async def get_delivery(self, delivery_id: str) -> tuple[Delivery, list[Attempt]] | None:
        row = await self._db.fetchrow("delivery_get", delivery_id)
        if row is None:
            return None
        attempts = [rows.attempt(r) for r in await self._db.fetch("delivery_attempts", delivery_id)]
        return _delivery(row), attempts

    async def list_deliveries(self, hook_id: str, status: DeliveryStatus | None, limit: int,
                              before: str | None) -> tuple[list[Delivery], str | None]:
        st = status.value if status else None
        rows = await self._db.fetch("delivery_list", hook_id, before or "~", st, limit + 1)
        items = [_delivery(r) for r in rows[:limit]]
        return items, (items[-1].id if len(rows) > limit else None)

    async def pending_count(self) -> int:
        """Deliveries still pending, due or not, for the metrics."""
        return int(await self._db.fetchval("pending_count"))

    async def retry_delivery(self, delivery_id: str, now: float) -> Delivery | None:
        async with self._db.tx() as c:
            await c.execute(Q["delivery_retry"], now, now, delivery_id)
            row = await c.fetchrow(Q["delivery_get"], delivery_id)
            await self._mem.announce(c, "due")
        return _delivery(row) if row else None

    async def reset_claims(self) -> int:
        """Nothing to reset: another process's claims are its own until their lease runs out,
        and those of a process that died come back by themselves."""
        return 0

    async def release_claims(self, ids: Sequence[str]) -> None:
        if ids:
            await self._db.execute("claims_release", list(ids), self._mem.owner)
            self._mem.held.difference_update(ids)

    async def _renew_claims(self) -> None:
        """Keep this process's leases running while it works on them (an attempt may wait
        longer than a lease for room on its host, and a slow one may take a while)."""
        while True:
            await asyncio.sleep(self._lease / 3)
            if not self._mem.held:
                continue
            try:
                await self._db.execute("claims_renew", list(self._mem.held), self._mem.owner, self._lease)
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
            await c.execute(Q["claim_mark"], ids, self._lease, self._mem.owner)
            self._mem.held.update(ids)
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
        policy = health.HealthPolicy(disable_after_failures, disable_after_seconds)
        async with self._db.tx() as c:
            await c.execute(Q["delivery_record"], [r.delivery_id for r in results],
                            [r.attempt.status_code for r in results],
                            [r.next_attempt_at if r.next_attempt_at is not None else now
                             for r in results],
                            [r.status.value for r in results], now, self._mem.owner,
                            [r.attempt.at for r in results], [r.attempt.error for r in results],
                            [r.attempt.duration_ms for r in results],
                            [r.attempt.response_excerpt for r in results])
            for r in results:
                if r.status is not DeliveryStatus.PENDING:
                    summary.final[r.status.value] = summary.final.get(r.status.value, 0) + 1
            await self._apply_health(c, results, now, policy, summary)
            if then_claim is not None:
                summary.claimed = await self._claim_tx(c, then_claim)
        self._mem.held.difference_update(r.delivery_id for r in results)
        return summary

    async def _apply_health(self, c: Conn, results: Sequence[AttemptResult], now: float,
                            policy: health.HealthPolicy, summary: RecordSummary) -> None:
        """Each hook's streak judged by gateway.health, and its verdict written. The hooks
        whose verdict needs their stored streak are locked first, in id order: two processes
        recording for the same hooks wait for each other, never deadlock."""
        by_hook: dict[str, list[AttemptResult]] = {}
        for r in results:
            by_hook.setdefault(r.hook_id, []).append(r)
        streaks = {h: health.streak(rs) for h, rs in by_hook.items()}
        ok = [h for h, s in streaks.items() if not health.needs_state(s)]
        judged = sorted(h for h, s in streaks.items() if health.needs_state(s))
        if judged:
            for st in await c.fetch(Q["hooks_lock"], judged):
                hook_id = st[0]
                v = health.judge(streaks[hook_id],
                                 health.HookState(HookStatus(st[3]), st[1], st[2]), now, policy)
                if v.action is health.Action.REMOVE:
                    await c.execute(Q["hook_set_status"], HookStatus.REMOVED.value, now, hook_id)
                    n = rowcount(await c.execute(Q["hook_fail_deliveries"], now, hook_id))
                    summary.final["failed"] = summary.final.get("failed", 0) + n
                    summary.removed_hooks.append(hook_id)
                    await self._mem.hooks_changed(c, st[4])
                elif v.action is health.Action.RESET:
                    ok.append(hook_id)
                elif v.action in (health.Action.COUNT, health.Action.DISABLE):
                    await c.execute(Q["hook_failures"], v.failures, v.failing_since, hook_id)
                    if v.action is health.Action.DISABLE:
                        await c.execute(Q["hook_set_status"], HookStatus.DISABLED.value, now,
                                        hook_id)
                        await c.execute(Q["hook_set_held"], 1, hook_id)
                        summary.disabled_hooks.append(hook_id)
                        await self._mem.hooks_changed(c, st[4])
        if ok:
            await c.execute(Q["hook_success"], sorted(ok))
