"""The claim budget: how many rows the loop may hold claimed, overall and per callback host, and
when another claim would find nothing new (the loop is "dry").

Rows are claimed ahead of free slots (PREFETCH per slot), so the next attempt to a host starts
the moment one ends; a host that answers fast earns more rows ahead (what it finished in the
last RATE_WINDOW, scaled to LOOKAHEAD seconds of work), a slow or silent one keeps PREFETCH x
its slots, so it cannot hold rows healthy hosts could be sending.
"""

from __future__ import annotations

from collections import Counter

from gateway.config import DeliveryConfig
from gateway.models import DueDelivery
from gateway.storage import Claim, Claimed

PREFETCH = 2
RATE_WINDOW = 0.5
LOOKAHEAD = 0.2


class ClaimBudget:
    __slots__ = (
        "_batch",
        "_host_rate",
        "_rate_bound",
        "base_host_cap",
        "claim_cap",
        "dry",
        "dry_epoch",
        "dry_since",
        "min_claim",
        "next_due",
        "unfinished",
        "unfinished_total",
    )

    def __init__(self, cfg: DeliveryConfig) -> None:
        self.base_host_cap = cfg.max_in_flight_per_host * PREFETCH
        self.claim_cap = max(cfg.max_in_flight * PREFETCH, cfg.claim_batch_size)
        self.min_claim = max(1, min(cfg.claim_batch_size, self.claim_cap // 4))
        self._batch = cfg.claim_batch_size
        # Of the rows claimed, those not attempted yet (queued or in flight), per host: what
        # the bounds count. A finished row waiting to be recorded no longer takes room.
        self.unfinished: Counter[str] = Counter()
        self.unfinished_total = 0
        # host → (window start, finished in this window, finished in the previous one)
        self._host_rate: dict[str, tuple[float, int, int]] = {}
        self._rate_bound = 1000
        # Set when a claim saw every due row: the hosts that held rows then (any of them may
        # have been at its bound). Until one has room again, or something new may be due (a
        # wake, a retry, an ordered hook moving on, a timer), another claim would only scan
        # the rows of full hosts again.
        self.dry: frozenset[str] | None = None
        self.next_due: tuple[float | None] | None = None  # when dry: (next row due), once read
        self.dry_since = 0.0  # the `now` of the claim that found the loop dry
        self.dry_epoch = 0  # counts claims, so a next-due answer read across one is dropped

    def room(self) -> int:
        return min(self.claim_cap - self.unfinished_total, self._batch)

    def wanted(self, queued: bool, now: float) -> int:
        """How many rows to claim now, or 0. Claim when the prefetched rows run dry, or when
        enough room has opened to make a batch (one claim per finished attempt would cost a
        transaction per delivery), and not while the last claim saw every due row and no host
        it left at its bound has freed half its room."""
        room = self.room()
        if room <= 0 or (queued and room < self.min_claim):
            return 0
        if self.dry is not None and not any(self._has_freed_room(h, now) for h in self.dry):
            return 0
        return room

    def _has_freed_room(self, host: str, now: float) -> bool:
        cap = self.host_cap(host, now)
        return cap - self.unfinished.get(host, 0) >= max(1, min(self.min_claim, cap // 2))

    def host_cap(self, host: str, now: float) -> int:
        rate = self._host_rate.get(host)
        if rate is None:
            return self.base_host_cap
        start, _, previous = rate
        if now - start >= 2 * RATE_WINDOW:
            previous = 0  # nothing finished for a whole window: the earned rows are gone
        earned = int(previous * (LOOKAHEAD / RATE_WINDOW))
        return max(self.base_host_cap, min(self.claim_cap, earned))

    def spec(self, room: int, now: float) -> Claim:
        """A snapshot of the room left, overall and per host."""
        host_room = {h: cap for h in self._host_rate
                     if (cap := self.host_cap(h, now)) != self.base_host_cap}
        for h, n in self.unfinished.items():
            host_room[h] = host_room.get(h, self.base_host_cap) - n
        return Claim(now=now, limit=room, host_room=host_room, default_room=self.base_host_cap)

    def saw(self, claimed: Claimed, spec: Claim) -> None:
        """A claim was made with `spec`: remember whether it saw every due row."""
        # The hosts that may have held rows back: full when the claim was made, or holding
        # rows now (a host's room can run out part-way through a claim).
        self.dry = frozenset((*spec.full_hosts, *self.unfinished)) if claimed.exhausted else None
        self.dry_since = spec.now
        self.dry_epoch += 1
        self.next_due = None

    def took(self, d: DueDelivery) -> None:
        self.unfinished[d.host] += 1
        self.unfinished_total += 1

    def finished(self, d: DueDelivery) -> None:
        """The row is out of the queue and not in flight: it no longer counts against the
        bounds (it stays claimed until recorded or handed back)."""
        self.unfinished_total -= 1
        self.unfinished[d.host] -= 1
        if self.unfinished[d.host] <= 0:
            del self.unfinished[d.host]

    def note_finished(self, host: str, now: float) -> None:
        start, current, previous = self._host_rate.get(host, (now, 0, 0))
        if now - start >= RATE_WINDOW:
            previous = current if now - start < 2 * RATE_WINDOW else 0
            start, current = now, 0
        self._host_rate[host] = (start, current + 1, previous)
        if len(self._host_rate) > self._rate_bound:
            # Many hosts once: forget the idle ones rather than grow without bound, and let the
            # table double before looking again, so busy hosts do not make this run per attempt.
            self._host_rate = {h: r for h, r in self._host_rate.items() if h in self.unfinished}
            self._rate_bound = max(1000, 2 * len(self._host_rate))
