"""What one attempt came to: the Outcome the delivery loop hands to storage, and `classify`,
the pure rule that decides it.

An attempt is DELIVERED (a 2xx), GONE (a 410: the hook unsubscribes), RETRY (anything else while
the schedule has a wait left) or FAILED (anything else once it has none, or a manual retry,
which gets no automatic ones). A 429 or 503 with a Retry-After waits what it asks (capped;
zero, negative or past counts as the schedule's wait, see retry.next_delay). Storage moves the
delivery and the hook's health on from it.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum

from gateway.models import DeliveryStatus
from gateway.retry import Random, next_delay, parse_retry_after


class Outcome(Enum):
    DELIVERED = "delivered"
    RETRY = "retry"
    FAILED = "failed"
    GONE = "gone"

    # The delivery's status after an attempt with this outcome, and its value as stored: plain
    # attributes of each member, set below (read for every attempt recorded; a property with
    # a dict keyed by the member, whose hash is a Python call, cost ~2,000 instructions each).
    status: DeliveryStatus
    status_value: str


for _outcome, _status in ((Outcome.DELIVERED, DeliveryStatus.DELIVERED),
                          (Outcome.RETRY, DeliveryStatus.PENDING),
                          (Outcome.FAILED, DeliveryStatus.FAILED),
                          (Outcome.GONE, DeliveryStatus.FAILED)):
    _outcome.status = _status
    _outcome.status_value = _status.value


def classify(status_code: int | None, retry_after: str | None, at: float, attempts_made: int,
             schedule: Sequence[float], *, manual: bool, max_retry_after: float, jitter: float,
             rng: Random | None) -> tuple[Outcome, float | None]:
    """(the outcome of an attempt made at `at`, the wait before the next one or None).

    `status_code` is None when the target did not answer (a timeout, a refused or reset
    connection, a redirect refused); `retry_after` is the answer's header; `attempts_made`
    counts this one."""
    if status_code is not None and 200 <= status_code < 300:
        return Outcome.DELIVERED, None
    if status_code == 410:
        return Outcome.GONE, None
    if manual:
        return Outcome.FAILED, None
    wait = None
    if status_code in (429, 503) and retry_after:
        wait = parse_retry_after(retry_after, at)
    delay = next_delay(attempts_made, schedule, retry_after=wait,
                       max_retry_after=max_retry_after, jitter=jitter, rng=rng)
    if delay is None:
        return Outcome.FAILED, None
    return Outcome.RETRY, delay
