"""Pure topic routing: which patterns match which topics (API.md: Topics, Operational events)."""

from __future__ import annotations

import pytest

from gateway.routing import matches, operational, pattern_prefix

CASES = [
    # pattern, topic, matches
    ("contact.created", "contact.created", True),
    ("contact.created", "contact.updated", False),
    ("contact.*", "contact.created", True),
    ("contact.*", "contact.address.changed", True),
    ("contact.*", "contact", False),
    ("contact.*", "contacts.created", False),
    ("*", "contact.created", True),
    ("*", "billing", True),
    # The gateway's own topics: never by * or another prefix...
    ("*", "gateway.test", False),
    ("*", "gateway.hook.disabled", False),
    ("gateway.hook.*", "gateway.test", False),
    # ...but by their own prefix, or by name.
    ("gateway.*", "gateway.test", True),
    ("gateway.*", "gateway.delivery.exhausted", True),
    ("gateway.hook.*", "gateway.hook.removed", True),
    ("gateway.test", "gateway.test", True),
    ("gateway.*", "contact.created", False),
    # A topic that only starts like the prefix is not one of them.
    ("*", "gateways.created", True),
    ("gateway.*", "gateways.created", False),
]


@pytest.mark.parametrize(("pattern", "topic", "expected"), CASES)
def test_matches(pattern: str, topic: str, expected: bool) -> None:
    assert matches(pattern, topic) is expected


@pytest.mark.parametrize(("pattern", "prefix"), [
    ("*", ""), ("contact.*", "contact."), ("a.b.*", "a.b."), ("contact.created", None)])
def test_pattern_prefix(pattern: str, prefix: str | None) -> None:
    assert pattern_prefix(pattern) == prefix


@pytest.mark.parametrize(("topic", "expected"), [
    ("gateway.test", True), ("gateway.hook.disabled", True), ("gateways.x", False),
    ("contact.created", False)])
def test_operational(topic: str, expected: bool) -> None:
    assert operational(topic) is expected
