"""Pure retry policy: when the next attempt happens, or None when the delivery has failed."""

from __future__ import annotations

import datetime
import email.utils
import random
from collections.abc import Sequence
from typing import Protocol


class Random(Protocol):
    def uniform(self, a: float, b: float) -> float: ...


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date; None if absent
    or unreadable."""
    if not value:
        return None
    value = value.strip()
    # isdigit() alone also admits digits such as "²" that float() refuses.
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        # asctime and "-0000" dates parse without a zone; an HTTP date is always GMT.
        when = when.replace(tzinfo=datetime.UTC)
    return max(0.0, when.timestamp() - now)


def next_delay(
    attempts_made: int,
    schedule: Sequence[float],
    *,
    retry_after: float | None = None,
    max_retry_after: float = 3600,
    jitter: float = 0.1,
    rng: Random | None = None,
) -> float | None:
    """The wait before the next attempt after `attempts_made` attempts, or None to give up.

    The schedule lists the waits after the first attempt, so a delivery gets at most
    1 + len(schedule) attempts. A Retry-After (429/503) replaces the scheduled wait, capped,
    but never extends the number of attempts. One of zero, below zero or in the past asks for
    no wait at all: it counts as the schedule's wait, or a target answering "Retry-After: 0"
    (or a date long gone) would use up every retry within milliseconds. Jitter spreads
    retries of one outage apart."""
    if attempts_made < 1 or attempts_made > len(schedule):
        return None
    if retry_after is not None and retry_after > 0:
        return min(retry_after, max_retry_after)
    base = schedule[attempts_made - 1]
    if jitter <= 0 or base <= 0:
        return base
    r = rng if rng is not None else random
    return max(0.0, base * (1 + r.uniform(-jitter, jitter)))
