"""gateway.outcome.classify, the pure outcome rule, beyond its own table: the edges of 2xx, a
Retry-After that is not jittered, and the configured jitter and random source. Skipped until
the rule is a pure function (the hostile-traffic branch makes it one); tests/test_attempt_outcome.py
covers the same end to end meanwhile."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from gateway import outcome
from gateway.outcome import Outcome

classify: Callable[..., tuple[Outcome, float | None]] | None = getattr(outcome, "classify", None)
pytestmark = pytest.mark.skipif(classify is None, reason="gateway.outcome.classify not here yet")

AT = 1_800_000_000.0
SCHEDULE = (5.0, 30.0)


class Edge:
    def __init__(self, high: bool) -> None:
        self.high = high
        self.calls: list[tuple[float, float]] = []

    def uniform(self, a: float, b: float) -> float:
        self.calls.append((a, b))
        return b if self.high else a


def _classify(code: int | None, retry_after: str | None = None, made: int = 1, *,
              manual: bool = False, jitter: float = 0.0, rng: Any = None) -> tuple[Outcome, Any]:
    assert classify is not None
    return classify(code, retry_after, AT, made, SCHEDULE, manual=manual, max_retry_after=3600,
                    jitter=jitter, rng=rng)


@pytest.mark.parametrize(("code", "expected"), [
    (199, (Outcome.RETRY, 5.0)), (200, (Outcome.DELIVERED, None)),
    (201, (Outcome.DELIVERED, None)), (299, (Outcome.DELIVERED, None)),
    (300, (Outcome.RETRY, 5.0)), (409, (Outcome.RETRY, 5.0)), (411, (Outcome.RETRY, 5.0)),
    (410, (Outcome.GONE, None)), (None, (Outcome.RETRY, 5.0)),
])
def test_the_edges_of_each_outcome(code: int | None, expected: tuple[Outcome, Any]) -> None:
    assert _classify(code) == expected


@pytest.mark.parametrize(("high", "jitter", "wait"), [(True, 0.5, 7.5), (False, 0.5, 2.5),
                                                      (True, 0.2, 6.0)])
def test_the_configured_jitter_and_random_source_set_the_wait(high: bool, jitter: float,
                                                              wait: float) -> None:
    rng = Edge(high)
    assert _classify(500, jitter=jitter, rng=rng) == (Outcome.RETRY, pytest.approx(wait))
    assert rng.calls == [(-jitter, jitter)]


def test_neither_a_retry_after_nor_a_manual_retry_is_jittered() -> None:
    rng = Edge(True)
    assert _classify(429, "120", jitter=0.5, rng=rng) == (Outcome.RETRY, 120.0)
    assert _classify(500, manual=True, jitter=0.5, rng=rng) == (Outcome.FAILED, None)
    assert _classify(503, "7", made=3, jitter=0.5, rng=rng) == (Outcome.FAILED, None)
    assert rng.calls == []
