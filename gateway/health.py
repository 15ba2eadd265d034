"""Hook health, pure: what a hook's attempts mean for the hook (storage applies the verdict).

A target that answers 410 Gone unsubscribes its hook (removed: its pending deliveries fail). A
hook whose attempts keep failing counts a streak of consecutive failures since failing_since;
once the streak is at least `disable_after_failures` long and `disable_after_seconds` old, an
active hook is disabled (its deliveries wait, held, until it is enabled again). A success
ends the streak.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import NamedTuple, Protocol

from gateway.models import Attempt, HookStatus
from gateway.outcome import Outcome


class Tried(Protocol):
    """One attempt as health sees it (storage's AttemptResult is one)."""

    @property
    def outcome(self) -> Outcome: ...
    @property
    def attempt(self) -> Attempt: ...


class Streak(NamedTuple):
    """What one batch of a hook's attempts, in order, says on its own."""

    gone: bool  # some attempt answered 410
    fails: int  # failures after the batch's last success (all of them when none succeeded)
    first_fail_at: float | None  # when the first of those failed
    restarted: bool  # a success came before those failures: the old streak is over


def streak(tried: Sequence[Tried]) -> Streak:
    last_ok = -1
    gone = False
    for i, r in enumerate(tried):
        if r.outcome is Outcome.DELIVERED:
            last_ok = i
        elif r.outcome is Outcome.GONE:
            gone = True
    fails = len(tried) - last_ok - 1
    return Streak(gone, fails, tried[last_ok + 1].attempt.at if fails else None, last_ok >= 0)


def needs_state(s: Streak) -> bool:
    """Whether judging needs the hook's stored streak: not when the batch ends in a success."""
    return s.gone or s.fails > 0


class HookState(NamedTuple):
    status: HookStatus
    consecutive_failures: int
    failing_since: float | None


@dataclass(frozen=True, slots=True)
class HealthPolicy:
    disable_after_failures: int
    disable_after_seconds: float


class Action(Enum):
    RESET = "reset"  # the streak is over
    COUNT = "count"  # store the streak
    DISABLE = "disable"  # store the streak and disable the hook
    REMOVE = "remove"  # 410: the hook is removed
    NOTHING = "nothing"  # (a hook already removed)


class Verdict(NamedTuple):
    action: Action
    failures: int = 0
    failing_since: float | None = None


def judge(s: Streak, state: HookState, now: float, policy: HealthPolicy) -> Verdict:
    if s.gone:
        return Verdict(Action.NOTHING if state.status is HookStatus.REMOVED else Action.REMOVE)
    if not s.fails:
        return Verdict(Action.RESET)
    if s.restarted or state.failing_since is None:
        count = s.fails if s.restarted else state.consecutive_failures + s.fails
        since = s.first_fail_at
    else:
        count, since = state.consecutive_failures + s.fails, state.failing_since
    assert since is not None
    if (state.status is HookStatus.ACTIVE and count >= policy.disable_after_failures
            and now - since >= policy.disable_after_seconds):
        return Verdict(Action.DISABLE, count, since)
    return Verdict(Action.COUNT, count, since)
