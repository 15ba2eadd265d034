"""What one attempt came to: the Outcome the delivery loop hands to storage.

An attempt is DELIVERED (a 2xx), GONE (a 410: the hook unsubscribes), RETRY (anything else while
the schedule has a wait left) or FAILED (anything else once it has none, or a manual retry,
which gets no automatic ones). Storage moves the delivery and the hook's health on from it.
"""

from __future__ import annotations

from enum import Enum

from gateway.models import DeliveryStatus


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
