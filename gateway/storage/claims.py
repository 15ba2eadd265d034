"""The delivery loop's verbs: claim due deliveries, record attempts (and the hook health they
imply, decided by gateway.health), hand claims back."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import orjson

from gateway import health
from gateway.models import DeliveryStatus, HookStatus, iso
from gateway.outcome import Outcome
from gateway.storage import operational, rows
from gateway.storage.connector import SqliteConnector, execute_rows
from gateway.storage.hooks import HookMemory
from gateway.storage.queries import Q
from gateway.storage.values import AttemptResult, Claim, Claimed, RecordSummary

# Due rows of hosts at their bound that a claim in time order may walk past before it goes
# host by host instead: walking past one costs ~0.3 µs, going by host a few index seeks a host.
CLAIM_WALL = 1000
PENDING = DeliveryStatus.PENDING.value


class ClaimStore:
    def __init__(self, db: SqliteConnector, memory: HookMemory) -> None:
        self._db = db
        self._mem = memory
        # Claiming transactions run: an idle or blocked delivery loop must not keep adding to it.
        self.claim_transactions = 0
        self.claims_by_host = 0  # claims that went host by host past a wall of full hosts' rows

    async def reset_claims(self) -> int:
        return await self._db.tx(lambda c: c.execute(Q["claims_reset"]).rowcount, relaxed=True)

    async def release_claims(self, ids: Sequence[str]) -> None:
        if ids:
            await self._db.tx(lambda c: c.executemany(Q["claims_release"], [(i,) for i in ids]),
                              relaxed=True)

    def _candidates(self, c: sqlite3.Connection, name: str, params: tuple[Any, ...]) -> list[Any]:
        if self._db.on_loop():
            return c.execute(Q[name], params).fetchall()
        return orjson.loads(c.execute(Q[f"{name}_json"], params).fetchone()[0])  # type: ignore[no-any-return]

    def _behind_wall(self, c: sqlite3.Connection, full_hosts: Sequence[str], now: float) -> bool:
        """Whether the hosts at their bound hold CLAIM_WALL or more due rows between them."""
        left = CLAIM_WALL
        for host in full_hosts:
            left -= c.execute(Q["due_of_host"], (host, now, left)).fetchone()[0]
            if left <= 0:
                return True
        return False

    def _candidates_by_host(self, c: sqlite3.Connection, claim: Claim,
                            full_hosts: Sequence[str]) -> list[Any]:
        """The claim host by host, hosts with the oldest due row first: none of the full hosts'
        rows is read, however many there are. Costs an index seek or two for every host with
        rows in the due index, which is why it is kept for when a wall stands in the way."""
        now, limit = claim.now, claim.limit
        skip = set(full_hosts)
        hosts = sorted(((first, host) for host, first in c.execute(Q["due_hosts"])
                        if first <= now and host not in skip))
        found: list[Any] = []
        for _, host in hosts:
            want = min(limit - len(found), claim.host_room.get(host, claim.default_room))
            if want > 0:
                found += self._candidates(c, "claim_candidates_of_host", (now, host, want))
            if len(found) >= limit:
                break
        return found

    def _claim_tx(self, c: sqlite3.Connection, claim: Claim) -> Claimed:
        now, limit = claim.now, claim.limit
        full_hosts = sorted(claim.full_hosts)
        found: list[Any]
        if full_hosts and self._behind_wall(c, full_hosts, now):
            found = self._candidates_by_host(c, claim, full_hosts)
            self.claims_by_host += 1
        else:
            found = self._candidates(c, "claim_candidates",
                                     (now, orjson.dumps(full_hosts).decode(), limit))
        # (The claim's join with hooks and this read are one transaction: every row's hook is
        # there.)
        cfgs = self._mem.configs(c, {r[2] for r in found})
        taken = rows.due_deliveries(found, cfgs, claim.host_room, claim.default_room, limit, now)
        if taken:
            execute_rows(c, "claim_mark", [(d.id,) for d in taken])
        self.claim_transactions += 1
        return Claimed(taken, exhausted=len(found) < limit)

    async def claim_due(self, claim: Claim) -> Claimed:
        """Claim up to claim.limit due deliveries, at most the room left for each host."""
        return await self._db.tx(lambda c: self._claim_tx(c, claim), relaxed=True)

    async def next_due_at(self, after: float) -> float | None:
        """When the next unclaimed row falls due, strictly after `after`."""
        found = await self._db.read(Q["next_due"], (after,))
        return found[0][0] if found else None

    async def due_backlog(self, now: float) -> int:
        found = await self._db.read(Q["due_backlog"], (now,))
        return int(found[0][0])

    def _apply_health(self, c: sqlite3.Connection, results: Sequence[AttemptResult],
                      now: float, policy: health.HealthPolicy, summary: RecordSummary,
                      ops: list[operational.OperationalEvent]) -> None:
        """Each hook's streak judged by gateway.health, and its verdict written (and announced,
        in ops)."""
        by_hook: dict[str, list[AttemptResult]] = {}
        for r in results:
            by_hook.setdefault(r.hook_id, []).append(r)
        ok: list[tuple[str]] = []  # hooks whose streak ends in a success: one statement
        for hook_id, rs in by_hook.items():
            s = health.streak(rs)
            if not health.needs_state(s):
                ok.append((hook_id,))
                continue
            st = c.execute(Q["hook_failure_state"], (hook_id,)).fetchone()
            if st is None:
                continue
            v = health.judge(s, health.HookState(HookStatus(st[2]), st[0], st[1]), now, policy)
            if v.action is health.Action.REMOVE:
                c.execute(Q["hook_set_status"], (HookStatus.REMOVED.value, now, hook_id))
                n = c.execute(Q["hook_fail_deliveries"], (now, hook_id)).rowcount
                summary.final["failed"] = summary.final.get("failed", 0) + n
                summary.removed_hooks.append(hook_id)
                self._mem.forget(st[3])
                ops.append(operational.OperationalEvent(st[3], operational.REMOVED, {
                    "hook_id": hook_id, "target_url": st[4]}, hook_id))
            elif v.action is health.Action.RESET:
                ok.append((hook_id,))
            elif v.action in (health.Action.COUNT, health.Action.DISABLE):
                c.execute(Q["hook_failures"], (v.failures, v.failing_since, hook_id))
                if v.action is health.Action.DISABLE:
                    c.execute(Q["hook_set_status"], (HookStatus.DISABLED.value, now, hook_id))
                    c.execute(Q["hook_set_held"], (1, hook_id))
                    summary.disabled_hooks.append(hook_id)
                    self._mem.forget(st[3])
                    ops.append(operational.OperationalEvent(st[3], operational.DISABLED, {
                        "hook_id": hook_id, "target_url": st[4],
                        "failing_since": iso(v.failing_since), "failures": v.failures}, hook_id))
        execute_rows(c, "hook_success", ok)

    async def record_attempts(self, results: Sequence[AttemptResult], now: float, *,
                              disable_after_failures: int, disable_after_seconds: float,
                              then_claim: Claim | None = None) -> RecordSummary:
        """Append attempts, move each delivery on, and keep each hook's failure streak; then,
        in the same transaction, claim the next rows (one commit and one thread hop where a
        busy loop would otherwise spend two)."""
        summary = RecordSummary()
        policy = health.HealthPolicy(disable_after_failures, disable_after_seconds)

        def tx(c: sqlite3.Connection) -> None:
            execute_rows(c, "attempt_insert", [
                (r.delivery_id, r.attempt.at, r.attempt.status_code, r.attempt.error,
                 r.attempt.duration_ms, r.attempt.response_excerpt) for r in results])
            final = summary.final
            recorded = []
            exhausted: list[AttemptResult] = []
            for r in results:
                outcome = r.outcome
                st = outcome.status_value
                recorded.append((r.delivery_id, r.attempt.status_code,
                                 r.next_attempt_at if r.next_attempt_at is not None else now,
                                 st, now))
                if st != PENDING:
                    final[st] = final.get(st, 0) + 1
                    if outcome is Outcome.FAILED:
                        exhausted.append(r)
            execute_rows(c, "delivery_record", recorded)
            ops = operational.exhausted(c, exhausted) if exhausted else []
            self._apply_health(c, results, now, policy, summary, ops)
            if ops:
                # In this transaction: the change and the news of it commit together.
                summary.published_due += sum(
                    p.due for p in operational.publish(c, self._mem, ops, now))
            if then_claim is not None:
                summary.claimed = self._claim_tx(c, then_claim)

        await self._db.tx(tx, relaxed=True)
        return summary
