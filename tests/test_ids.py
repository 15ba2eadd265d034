"""Event and delivery ids: made in runs for a publish, the same as made one by one."""

from __future__ import annotations

import time

import pytest

import gateway.models as models
from gateway.models import _encode, new_monotonic_id, new_monotonic_ids


@pytest.mark.parametrize("count", [1, 2, 100, 5000])
@pytest.mark.parametrize("low", [None, (1 << 40) - 3, (1 << 40) - 1 - 99, (1 << 30) - 5, 1021])
def test_a_run_of_ids_is_the_ids_one_by_one(count: int, low: int | None) -> None:
    now = time.time()
    if low is not None:  # a run that reaches, or just stops short of, the shared head's end, or
        # crosses a block of 1,024 numbers (their ids share all but the last two characters)
        models._monotonic_last = (int(now * 1000) + 5 << 80) | low
    before = new_monotonic_id("dlv", now)
    run = new_monotonic_ids("dlv", count, now)
    after = new_monotonic_id("dlv", now)
    first = models._monotonic_last - count  # `after` took the last number
    assert run == [f"dlv_{_encode(n)}" for n in range(first, first + count)]
    assert before < run[0] and run == sorted(run) and run[-1] < after
    assert len(set(run)) == count and all(len(i) == 30 for i in run)
