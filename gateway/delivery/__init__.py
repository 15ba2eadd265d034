"""Delivery, split by job:

- loop.py      DeliveryEngine: the claim loop, one attempt's bookkeeping, the staged stop
- budget.py    ClaimBudget: rows held per host and overall, and when the loop is dry
- slots.py     HostSlots: queued rows per host and the workers, under both bounds
- recorder.py  Recorder: finished attempts written in batches, with backoff

The HTTP attempt itself is gateway/dispatch.py; what it came to, gateway/outcome.py.
"""

from gateway.delivery.loop import DeliveryEngine

__all__ = ["DeliveryEngine"]
