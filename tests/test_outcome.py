"""gateway.outcome.classify: what an attempt came to, as a table (pure; no I/O, no clock)."""

from __future__ import annotations

from email.utils import formatdate

import pytest

from gateway.outcome import Outcome, classify

AT = 1_800_000_000.0
SCHEDULE = (5.0, 30.0)

# (status code, Retry-After, attempts made, manual, expected outcome, expected wait)
TABLE = [
    (200, None, 1, False, Outcome.DELIVERED, None),
    (204, None, 3, False, Outcome.DELIVERED, None),  # past the schedule, still delivered
    (299, None, 1, True, Outcome.DELIVERED, None),
    (410, None, 1, False, Outcome.GONE, None),
    (410, None, 1, True, Outcome.GONE, None),
    (500, None, 1, False, Outcome.RETRY, 5.0),
    (500, None, 2, False, Outcome.RETRY, 30.0),
    (500, None, 3, False, Outcome.FAILED, None),  # 1 + len(schedule) attempts made
    (None, None, 1, False, Outcome.RETRY, 5.0),  # no answer: a timeout, a reset
    (404, None, 1, True, Outcome.FAILED, None),  # a manual retry gets no automatic ones
    (300, None, 1, False, Outcome.RETRY, 5.0),
    (429, "120", 1, False, Outcome.RETRY, 120.0),
    (503, "7", 2, False, Outcome.RETRY, 7.0),
    (503, formatdate(AT + 300, usegmt=True), 1, False, Outcome.RETRY, 300.0),
    (429, "100000", 1, False, Outcome.RETRY, 3600.0),  # capped
    (429, "0", 1, False, Outcome.RETRY, 5.0),  # no wait asked: the schedule's wait
    (429, "-5", 1, False, Outcome.RETRY, 5.0),
    (503, formatdate(AT - 300, usegmt=True), 2, False, Outcome.RETRY, 30.0),  # in the past
    (503, "soon", 1, False, Outcome.RETRY, 5.0),
    (500, "120", 1, False, Outcome.RETRY, 5.0),  # Retry-After counts on 429 and 503 only
    (429, "120", 3, False, Outcome.FAILED, None),  # it never adds attempts
    (429, "120", 1, True, Outcome.FAILED, None),
]


@pytest.mark.parametrize(("code", "retry_after", "made", "manual", "outcome", "wait"), TABLE)
def test_classify_table(code: int | None, retry_after: str | None, made: int, manual: bool,
                        outcome: Outcome, wait: float | None) -> None:
    got = classify(code, retry_after, AT, made, SCHEDULE, manual=manual, max_retry_after=3600,
                   jitter=0.0, rng=None)
    assert got == (outcome, wait)
