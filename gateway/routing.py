"""Topic routing, pure: which hooks' patterns match a topic.

A hook subscribes to patterns: an exact topic name, `prefix.*` (every topic under the prefix)
or `*` (every topic). A RouteIndex holds one account's hooks (and the admin hooks of every
account) and answers match(topic) from memory, so publishing fans an event out without a
query per event.

The gateway's own topics (`gateway.…`, API.md "Operational events") are reached only by a
pattern that names them: `*` and `prefix.*` do not match them, so a hook that took every
contact event does not start receiving the gateway's news about other hooks.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

OPERATIONAL_PREFIX = "gateway."


class Route(NamedTuple):
    """A hook as publishing sees it: what a new delivery row needs from its hook."""

    hook_id: str
    held: bool  # not active: the row waits without being scanned
    host: str
    account: str  # the hook's: the event's, or "*" for an admin hook of every account


def operational(topic: str) -> bool:
    """Whether the topic is one of the gateway's own (gateway.…)."""
    return topic.startswith(OPERATIONAL_PREFIX)


def prefix_of(pattern: str) -> str | None:
    """The prefix a wildcard pattern matches under ("" for `*`); None for an exact name."""
    if pattern == "*":
        return ""
    if pattern.endswith(".*"):
        return pattern[:-1]
    return None


def prefix_matches(prefix: str, topic: str) -> bool:
    """Whether a wildcard with this prefix (see prefix_of) matches the topic."""
    if not topic.startswith(prefix):
        return False
    return not operational(topic) or operational(prefix)


def matches(pattern: str, topic: str) -> bool:
    prefix = prefix_of(pattern)
    return topic == pattern if prefix is None else prefix_matches(prefix, topic)


@dataclass(slots=True)
class RouteIndex:
    """One account's hooks by pattern, with each topic's answer remembered."""

    exact: dict[str, list[Route]] = field(default_factory=dict)
    prefixes: list[tuple[str, Route]] = field(default_factory=list)
    memo: dict[str, list[Route]] = field(default_factory=dict)
    due_memo: dict[str, int] = field(default_factory=dict)

    def add(self, route: Route, patterns: Iterable[str]) -> None:
        seen: set[str] = set()
        for p in patterns:
            if p in seen:
                continue
            seen.add(p)
            prefix = prefix_of(p)
            if prefix is None:
                self.exact.setdefault(p, []).append(route)
            else:
                self.prefixes.append((prefix, route))

    def match(self, topic: str) -> list[Route]:
        """Every hook with a pattern matching topic, once each."""
        hit = self.memo.get(topic)
        if hit is None:
            found = {r.hook_id: r for r in self.exact.get(topic, ())}
            for prefix, route in self.prefixes:
                if prefix_matches(prefix, topic):
                    found[route.hook_id] = route
            hit = self.memo[topic] = list(found.values())
        return hit

    def due(self, topic: str) -> int:
        """Of match(topic), the hooks whose deliveries are not held."""
        n = self.due_memo.get(topic)
        if n is None:
            n = self.due_memo[topic] = sum(not r.held for r in self.match(topic))
        return n
