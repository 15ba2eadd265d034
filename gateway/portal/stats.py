"""What the portal's charts and operator pages show, from the storage's view verbs: the
windows they cover and how far back they look, as charts.Buckets and plain values."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.models import Hook, first_id_at
from gateway.portal.charts import HOUR, MINUTE, Buckets, bucketed, window
from gateway.storage import Backend

# A delivery still retrying after this long has used up the default schedule (about 47 hours
# of waits), so the charts of the last day need only deliveries made since then: the bound
# keeps their queries on the (hook_id, id) index.
LOOKBACK = 72 * HOUR
# Deliveries per minute count the latest attempts only (a range of rowids): above ~3,000
# attempts a second the hour's first minutes are left out, instead of a scan of the table.
RECENT_ATTEMPTS = 200_000


@dataclass(frozen=True, slots=True)
class LastError:
    at: float
    status_code: int | None
    error: str | None

    def text(self) -> str:
        return f"answered {self.status_code}" if self.status_code is not None \
            else (self.error or "failed")


@dataclass(frozen=True, slots=True)
class HostBacklog:
    host: str
    waiting: int
    due: int


async def hook_health(storage: Backend, hook_ids: list[str], now: float,
                      hours: int = 24) -> dict[str, Buckets]:
    """Each hook's attempts per hour over the last `hours`, delivered against failed."""
    start = window(now, HOUR, hours)
    found: dict[str, list[tuple[int, int, int]]] = {h: [] for h in hook_ids}
    for hook_id, bucket, ok, failed in await storage.hook_attempts_by_bucket(
            hook_ids, start, HOUR, first_id_at("dlv", now - LOOKBACK)):
        found[hook_id].append((bucket, ok, failed))
    return {h: bucketed(found[h], start, HOUR, hours) for h in hook_ids}


async def last_errors(storage: Backend, hook_ids: list[str], now: float) -> dict[str, LastError]:
    return {h: LastError(*f) for h, f in (await storage.last_failures(
        hook_ids, first_id_at("dlv", now - LOOKBACK))).items()}


async def per_minute(storage: Backend, now: float, minutes: int = 60) -> Buckets:
    """Attempts of every hook per minute over the last `minutes`."""
    start = window(now, MINUTE, minutes)
    return bucketed(await storage.attempts_by_bucket(start, MINUTE, RECENT_ATTEMPTS),
                    start, MINUTE, minutes)


async def backlog_by_host(storage: Backend, now: float, limit: int = 20) -> list[HostBacklog]:
    return [HostBacklog(*b) for b in await storage.backlog_by_host(now, limit)]


async def troubled_hooks(storage: Backend, limit: int = 50) -> list[Hook]:
    return await storage.troubled_hooks(limit)


async def accounts(storage: Backend, limit: int = 500) -> list[tuple[str, int]]:
    return await storage.account_summaries(limit)
