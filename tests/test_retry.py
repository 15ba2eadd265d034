"""Tests for gateway.retry: the pure backoff policy, as a table, and Retry-After parsing."""

from __future__ import annotations

import random
import time
from email.utils import formatdate

import pytest

from gateway.retry import next_delay, parse_retry_after

SCHEDULE = (5.0, 30.0, 120.0)
NOW = 1_800_000_000.0

# (attempts made, retry_after, max_retry_after, expected wait) with jitter off.
EXACT = [
    (1, None, 3600, 5.0),  # after the first attempt: the first wait
    (2, None, 3600, 30.0),
    (3, None, 3600, 120.0),  # the last wait in the schedule
    (4, None, 3600, None),  # 1 + len(schedule) attempts made: give up
    (0, None, 3600, None),  # nothing attempted yet: not a retry decision
    (1, 90.0, 3600, 90.0),  # Retry-After replaces the scheduled wait, longer...
    (2, 2.0, 3600, 2.0),  # ...or shorter
    (1, 0.0, 3600, 5.0),  # zero asks for no wait: the schedule's wait instead
    (2, 0.0, 3600, 30.0),
    (1, -10.0, 3600, 5.0),  # below zero (a date in the past): the schedule's wait
    (3, -0.001, 3600, 120.0),
    (1, 0.001, 3600, 0.001),  # a real wait, however short, is kept
    (1, 100_000.0, 600, 600.0),  # capped by max_retry_after
    (3, 7200.0, 3600, 3600.0),
    (4, 10.0, 3600, None),  # Retry-After never adds attempts beyond the schedule
]


@pytest.mark.parametrize(("made", "retry_after", "cap", "expected"), EXACT)
def test_next_delay_table(made: int, retry_after: float | None, cap: float,
                          expected: float | None) -> None:
    got = next_delay(made, SCHEDULE, retry_after=retry_after, max_retry_after=cap, jitter=0.0)
    assert got == expected


def test_empty_schedule_means_one_attempt() -> None:
    assert next_delay(1, (), jitter=0.0) is None


def test_jitter_stays_within_bounds_and_spreads() -> None:
    rng = random.Random(1234)
    for made, base in enumerate(SCHEDULE, start=1):
        waits = [next_delay(made, SCHEDULE, jitter=0.2, rng=rng) for _ in range(500)]
        assert all(w is not None for w in waits)
        values = [w for w in waits if w is not None]
        assert min(values) >= base * 0.8
        assert max(values) <= base * 1.2
        # Jitter exists to spread an outage's retries apart: they must not all coincide.
        assert len(set(values)) > 400
        assert min(values) < base < max(values)


def test_jitter_is_reproducible_with_a_seeded_random() -> None:
    a = [next_delay(2, SCHEDULE, jitter=0.1, rng=random.Random(7)) for _ in range(3)]
    b = [next_delay(2, SCHEDULE, jitter=0.1, rng=random.Random(7)) for _ in range(3)]
    assert a == b
    assert a[0] != 30.0


def test_retry_after_is_not_jittered() -> None:
    rng = random.Random(99)
    assert {next_delay(1, SCHEDULE, retry_after=42.0, jitter=0.5, rng=rng) for _ in range(50)} == {42.0}


def test_zero_jitter_is_exact_whatever_the_random_source() -> None:
    class Wild:
        def uniform(self, a: float, b: float) -> float:
            return 1e9

    assert next_delay(3, SCHEDULE, jitter=0.0, rng=Wild()) == 120.0


# (header value, expected seconds from NOW)
RETRY_AFTER = [
    ("120", 120.0),
    ("0", 0.0),
    (" 7 ", 7.0),
    (formatdate(NOW + 300, usegmt=True), 300.0),  # HTTP date (IMF-fixdate)
    (formatdate(NOW - 300, usegmt=True), 0.0),  # a date already past: no wait
    (None, None),
    ("", None),
    ("soon", None),
    ("-5", None),
    ("1.5", None),  # delta-seconds is an integer
    ("5 minutes", None),
    ("²", None),  # a Unicode digit that is not a decimal number
    ("Mon, 01 Jan 99999 00:00:00 GMT", None),
    ("01 Jan 2024 99999999999999999999:00:00 GMT", None),
    ("Sun, 06 Nov 1994 08:49:37 +9999999999999999", None),
]


@pytest.mark.parametrize(("value", "expected"), RETRY_AFTER)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, NOW) == expected


@pytest.mark.parametrize("value", [
    "Sun Nov  6 08:49:37 1994",  # asctime form, which HTTP-date allows and which is always GMT
    "Sun, 06 Nov 1994 08:49:37 -0000",
    "Sun, 06 Nov 1994 08:49:37 GMT",
])
def test_http_dates_are_gmt_whatever_the_local_zone(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    when = 784111777.0  # 1994-11-06T08:49:37Z
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        assert parse_retry_after(value, when - 60) == 60.0
    finally:
        monkeypatch.undo()
        time.tzset()


class Edge:
    """Answers the top of the range asked for, and remembers each call."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, float]] = []

    def uniform(self, a: float, b: float) -> float:
        self.calls.append((a, b))
        return b


# (schedule, keyword arguments, expected wait after the first attempt, whether rng is asked)
DEFAULTS = [
    ((100.0,), {"retry_after": 10.0**6}, 3600.0, False),  # the default cap is an hour
    ((100.0,), {}, 110.0, True),  # the default jitter is 10 %
    ((100.0,), {"jitter": 0.5}, 150.0, True),
    ((0.5,), {"jitter": 0.5}, 0.75, True),  # a short wait is jittered too
    ((0.0,), {"jitter": 0.5}, 0.0, False),  # nothing to spread
    ((100.0,), {"jitter": 0.0}, 100.0, False),
]


@pytest.mark.parametrize(("schedule", "kwargs", "expected", "asked"), DEFAULTS)
def test_next_delay_defaults_and_edges(schedule: tuple[float, ...], kwargs: dict[str, float],
                                       expected: float, asked: bool) -> None:
    rng = Edge()
    assert next_delay(1, schedule, rng=rng, **kwargs) == pytest.approx(expected)
    assert bool(rng.calls) == asked


def test_without_a_random_source_the_module_one_is_used() -> None:
    random.seed(5)
    first = next_delay(1, (100.0,), jitter=0.5)
    random.seed(5)
    assert next_delay(1, (100.0,), jitter=0.5) == first
    assert first is not None and 50.0 <= first <= 150.0 and first != 100.0


def test_a_date_with_an_offset_keeps_it() -> None:
    when = 784111777.0  # 1994-11-06T08:49:37Z, which is 09:49:37 at +0100
    assert parse_retry_after("Sun, 06 Nov 1994 09:49:37 +0100", when - 60) == 60.0
    assert parse_retry_after("Sun, 06 Nov 1994 03:49:37 -0500", when - 60) == 60.0
