"""What storage verbs take and give back, the same for every backend."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from gateway.models import Attempt, DeliveryStatus, DueDelivery
from gateway.outcome import Outcome


class NewEvent(NamedTuple):  # made per published event: cheaper than a frozen dataclass
    account: str
    topic: str
    data_json: bytes
    resource_url: str | None
    idempotency_key: str | None


class Published(NamedTuple):  # made per published event: cheaper than a frozen dataclass
    id: str
    deliveries: int
    replayed: bool = False
    # Of the deliveries, those not held by a paused hook: the delivery loop has work only if
    # some publish made any (not part of the API's answer).
    due: int = 0

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "deliveries": self.deliveries}


class AttemptResult(NamedTuple):  # made per attempt: cheaper than a frozen dataclass
    """One finished attempt, as the delivery loop hands it to storage."""

    delivery_id: str
    hook_id: str
    attempt: Attempt
    outcome: Outcome
    next_attempt_at: float | None  # when the outcome is RETRY

    @property
    def status(self) -> DeliveryStatus:
        """The delivery's status after this attempt."""
        return self.outcome.status

    @property
    def hook_failed(self) -> bool:
        """Counts toward disabling the hook."""
        return self.outcome is not Outcome.DELIVERED

    @property
    def gone(self) -> bool:
        """The target answered 410: unsubscribe the hook."""
        return self.outcome is Outcome.GONE


@dataclass(frozen=True, slots=True)
class Claim:
    """What the delivery loop asks for: up to `limit` rows due by `now`; for each callback host
    at most host_room[host] (default_room for a host not listed); none for full_hosts."""

    now: float
    limit: int
    host_room: dict[str, int]
    default_room: int

    @property
    def full_hosts(self) -> tuple[str, ...]:
        return tuple(h for h, n in self.host_room.items() if n <= 0)


@dataclass(frozen=True, slots=True)
class Claimed:
    """Rows claimed; `exhausted`: every due row was seen, so whatever was left behind waits on a
    full host (or an ordered hook's earlier row) and claiming again before one frees is wasted."""

    rows: list[DueDelivery]
    exhausted: bool


@dataclass(slots=True)
class RecordSummary:
    claimed: Claimed | None = None
    disabled_hooks: list[str] = field(default_factory=list)
    removed_hooks: list[str] = field(default_factory=list)
    final: dict[str, int] = field(default_factory=dict)  # final status → count
    published_due: int = 0  # due deliveries of the operational events published



@dataclass(slots=True)
class PruneSummary:
    """What one prune step deleted; `more`: it stopped at its batch size, so go on."""

    deliveries: int = 0
    attempts: int = 0
    events: int = 0
    hooks: int = 0
    secrets: int = 0  # expired old secrets cleared
    more: bool = False

    @property
    def rows(self) -> int:
        return self.deliveries + self.attempts + self.events + self.hooks
