"""What the portal's charts and operator pages read: aggregate, read-only queries on the
storage's reader connection (SQL in gateway/sql/portal.sql), answered as plain values."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

import orjson

from gateway.models import Hook, first_id_at
from gateway.portal.charts import HOUR, MINUTE, Buckets, bucketed, window
from gateway.storage import Storage


def _load() -> dict[str, str]:
    text = (resources.files("gateway") / "sql" / "portal.sql").read_text()
    out: dict[str, str] = {}
    for chunk in re.split(r"^-- name: ", text, flags=re.M)[1:]:
        name, _, body = chunk.partition("\n")
        lines = [ln for ln in body.splitlines() if not ln.startswith("--")]
        out[name.strip()] = "\n".join(lines).strip().rstrip(";")
    return out


Q = _load()
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


async def hook_health(storage: Storage, hook_ids: list[str], now: float,
                      hours: int = 24) -> dict[str, Buckets]:
    """Each hook's attempts per hour over the last `hours`, delivered against failed."""
    start = window(now, HOUR, hours)
    rows: dict[str, list[tuple[int, int, int]]] = {h: [] for h in hook_ids}
    if hook_ids:
        for r in await storage._read(Q["portal_hook_health"], (
                start, HOUR, orjson.dumps(hook_ids).decode(), first_id_at("dlv", now - LOOKBACK))):
            rows[r[0]].append((r[1], r[2], r[3]))
    return {h: bucketed(rows[h], start, HOUR, hours) for h in hook_ids}


async def last_errors(storage: Storage, hook_ids: list[str], now: float) -> dict[str, LastError]:
    if not hook_ids:
        return {}
    return {r[0]: LastError(r[1], r[2], r[3]) for r in await storage._read(
        Q["portal_hook_last_error"],
        (orjson.dumps(hook_ids).decode(), first_id_at("dlv", now - LOOKBACK)))}


async def per_minute(storage: Storage, now: float, minutes: int = 60) -> Buckets:
    """Attempts of every hook per minute over the last `minutes`."""
    start = window(now, MINUTE, minutes)
    rows = await storage._read(Q["portal_attempts_per_bucket"], (start, MINUTE, RECENT_ATTEMPTS))
    return bucketed([(r[0], r[1], r[2]) for r in rows], start, MINUTE, minutes)


async def backlog_by_host(storage: Storage, now: float, limit: int = 20) -> list[HostBacklog]:
    return [HostBacklog(r[0], r[1], r[2])
            for r in await storage._read(Q["portal_backlog_by_host"], (now, limit))]


async def troubled_hooks(storage: Storage, limit: int = 50) -> list[Hook]:
    """Hooks disabled, removed, or failing now (a streak of failures), longest failing first."""
    out = []
    for r in await storage._read(Q["portal_troubled_hooks"], (limit,)):
        hook = await storage.get_hook(r[0])
        if hook is not None:
            out.append(hook)
    return out


async def accounts(storage: Storage, limit: int = 500) -> list[tuple[str, int]]:
    return [(r[0], r[1]) for r in await storage._read(Q["portal_accounts"], (limit,))]
