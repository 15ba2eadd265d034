"""gateway.routing: the pattern grammar and the index publishing routes with, as tables
(API.md: Topics, Operational events)."""

from __future__ import annotations

import pytest

from gateway.routing import Route, RouteIndex, matches, operational, prefix_of


@pytest.mark.parametrize(("pattern", "topic", "hit"), [
    ("contact.created", "contact.created", True),
    ("contact.created", "contact.created.x", False),
    ("contact.created", "contact.updated", False),
    ("contact.*", "contact.created", True),
    ("contact.*", "contact", False),
    ("contact.*", "contacts.created", False),
    ("contact.*", "contact.a.b", True),
    ("*", "anything.at.all", True),
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
])
def test_matches(pattern: str, topic: str, hit: bool) -> None:
    assert matches(pattern, topic) is hit


def test_prefix_of() -> None:
    assert prefix_of("*") == "" and prefix_of("a.*") == "a." and prefix_of("a.b") is None


@pytest.mark.parametrize(("topic", "expected"), [
    ("gateway.test", True), ("gateway.hook.disabled", True), ("gateways.x", False),
    ("contact.created", False)])
def test_operational(topic: str, expected: bool) -> None:
    assert operational(topic) is expected


def test_the_index_matches_each_hook_once_and_counts_the_due() -> None:
    idx = RouteIndex()
    a, b = Route("a", False, "x", "acme"), Route("b", True, "y", "acme")
    c, d = Route("c", False, "z", "acme"), Route("d", False, "w", "*")
    idx.add(a, ["contact.created", "contact.*", "contact.*"])
    idx.add(b, ["*"])
    idx.add(c, ["billing.paid"])
    idx.add(d, ["gateway.*"])
    assert sorted(r.hook_id for r in idx.match("contact.created")) == ["a", "b"]
    assert sorted(r.hook_id for r in idx.match("billing.paid")) == ["b", "c"]
    assert idx.due("contact.created") == 1  # b is held
    assert [r.hook_id for r in idx.match("other")] == ["b"]
    assert [r.hook_id for r in idx.match("gateway.test")] == ["d"]
    patterns = (("a", ["contact.created", "contact.*"]), ("b", ["*"]), ("c", ["billing.paid"]),
                ("d", ["gateway.*"]))
    for topic in ("contact.created", "billing.paid", "other", "contact.x", "gateway.test"):
        want = {h for h, pats in patterns if any(matches(p, topic) for p in pats)}
        assert {r.hook_id for r in idx.match(topic)} == want
