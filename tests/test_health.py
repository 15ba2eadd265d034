"""gateway.health: a hook's streak, and the verdict on it, as tables."""

from __future__ import annotations

import pytest

from gateway.health import Action, HealthPolicy, HookState, Streak, Verdict, judge, needs_state, streak
from gateway.models import Attempt, HookStatus
from gateway.outcome import Outcome
from gateway.storage import AttemptResult

D, R, F, G = Outcome.DELIVERED, Outcome.RETRY, Outcome.FAILED, Outcome.GONE


def tried(*outcomes: Outcome) -> list[AttemptResult]:
    return [AttemptResult(f"d{i}", "h", Attempt(100.0 + i, None, None, 1.0, ""), o, None)
            for i, o in enumerate(outcomes)]


@pytest.mark.parametrize(("outcomes", "expected"), [
    ((D,), Streak(False, 0, None, True)),
    ((R, R), Streak(False, 2, 100.0, False)),
    ((R, D), Streak(False, 0, None, True)),
    ((D, R, F), Streak(False, 2, 101.0, True)),
    ((R, G, D), Streak(True, 0, None, True)),
    ((G,), Streak(True, 1, 100.0, False)),
])
def test_streak(outcomes: tuple[Outcome, ...], expected: Streak) -> None:
    assert streak(tried(*outcomes)) == expected


def test_a_batch_ending_in_success_needs_no_stored_state() -> None:
    assert not needs_state(streak(tried(R, D)))
    assert needs_state(streak(tried(D, R)))
    assert needs_state(streak(tried(G, D)))


POLICY = HealthPolicy(disable_after_failures=3, disable_after_seconds=60)
ACTIVE, PAUSED, REMOVED = HookStatus.ACTIVE, HookStatus.PAUSED, HookStatus.REMOVED


@pytest.mark.parametrize(("s", "state", "now", "expected"), [
    # 410: removed, unless it already is
    (Streak(True, 0, None, True), HookState(ACTIVE, 0, None), 200, Verdict(Action.REMOVE)),
    (Streak(True, 1, 100, False), HookState(REMOVED, 0, None), 200, Verdict(Action.NOTHING)),
    # a success last: the streak is over
    (Streak(False, 0, None, True), HookState(ACTIVE, 9, 10), 200, Verdict(Action.RESET)),
    # the first failures: counted from the first of them
    (Streak(False, 2, 100, False), HookState(ACTIVE, 0, None), 200, Verdict(Action.COUNT, 2, 100)),
    # more failures: added to the stored streak, which keeps its start
    (Streak(False, 1, 150, False), HookState(ACTIVE, 1, 100), 155, Verdict(Action.COUNT, 2, 100)),
    # enough failures but not for long enough: counted only
    (Streak(False, 1, 150, False), HookState(ACTIVE, 5, 100), 155, Verdict(Action.COUNT, 6, 100)),
    # enough of them, long enough: disabled
    (Streak(False, 1, 150, False), HookState(ACTIVE, 2, 100), 160, Verdict(Action.DISABLE, 3, 100)),
    # long enough but too few
    (Streak(False, 1, 150, False), HookState(ACTIVE, 0, 10), 160, Verdict(Action.COUNT, 1, 10)),
    # a success inside the batch starts the streak over, whatever was stored
    (Streak(False, 2, 150, True), HookState(ACTIVE, 50, 10), 300, Verdict(Action.COUNT, 2, 150)),
    # a hook not active (paused) is never disabled, only counted
    (Streak(False, 5, 100, False), HookState(PAUSED, 5, 10), 500, Verdict(Action.COUNT, 10, 10)),
])
def test_judge(s: Streak, state: HookState, now: float, expected: Verdict) -> None:
    assert judge(s, state, now, POLICY) == expected
