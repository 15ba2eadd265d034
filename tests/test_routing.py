"""gateway.routing: the pattern grammar and the index publishing routes with, as tables."""

from __future__ import annotations

import pytest

from gateway.routing import Route, RouteIndex, matches, prefix_of


@pytest.mark.parametrize(("pattern", "topic", "hit"), [
    ("contact.created", "contact.created", True),
    ("contact.created", "contact.created.x", False),
    ("contact.*", "contact.created", True),
    ("contact.*", "contact", False),
    ("contact.*", "contacts.created", False),
    ("contact.*", "contact.a.b", True),
    ("*", "anything.at.all", True),
])
def test_matches(pattern: str, topic: str, hit: bool) -> None:
    assert matches(pattern, topic) is hit


def test_prefix_of() -> None:
    assert prefix_of("*") == "" and prefix_of("a.*") == "a." and prefix_of("a.b") is None


def test_the_index_matches_each_hook_once_and_counts_the_due() -> None:
    idx = RouteIndex()
    a, b, c = Route("a", False, "x"), Route("b", True, "y"), Route("c", False, "z")
    idx.add(a, ["contact.created", "contact.*", "contact.*"])
    idx.add(b, ["*"])
    idx.add(c, ["billing.paid"])
    assert sorted(r.hook_id for r in idx.match("contact.created")) == ["a", "b"]
    assert sorted(r.hook_id for r in idx.match("billing.paid")) == ["b", "c"]
    assert idx.due("contact.created") == 1  # b is held
    assert [r.hook_id for r in idx.match("other")] == ["b"]
    for topic in ("contact.created", "billing.paid", "other", "contact.x"):
        want = {h for h, pats in (("a", ["contact.created", "contact.*"]), ("b", ["*"]),
                                  ("c", ["billing.paid"])) if any(matches(p, topic) for p in pats)}
        assert {r.hook_id for r in idx.match(topic)} == want
