"""Pure topic routing: which subscription patterns match a topic."""

from __future__ import annotations

# The gateway's own topics (API.md, "Operational events"). `*` and `prefix.*` do not reach
# them: a hook that took every contact event must not start receiving the gateway's news
# about other hooks. A pattern that names the gateway's prefix itself does.
OPERATIONAL_PREFIX = "gateway."


def operational(topic: str) -> bool:
    """Whether the topic is one of the gateway's own (gateway.…)."""
    return topic.startswith(OPERATIONAL_PREFIX)


def pattern_prefix(pattern: str) -> str | None:
    """What a wildcard pattern matches the start of: "" for `*`, "a.b." for `a.b.*`; None for an
    exact topic name."""
    if pattern == "*":
        return ""
    if pattern.endswith(".*"):
        return pattern[:-1]
    return None


def prefix_matches(prefix: str, topic: str) -> bool:
    """Whether a wildcard with this prefix (see pattern_prefix) matches the topic."""
    if not topic.startswith(prefix):
        return False
    return not operational(topic) or operational(prefix)


def matches(pattern: str, topic: str) -> bool:
    """Whether one subscription pattern matches a topic."""
    prefix = pattern_prefix(pattern)
    if prefix is None:
        return pattern == topic
    return prefix_matches(prefix, topic)
