"""The documentation's links stay inside the repository and land somewhere: every relative link
in README.md, bench/README.md, contrib/README.md and docs/*.md names a file of the repository,
and every #anchor a heading of the file it points to."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", ROOT / "bench" / "README.md", ROOT / "contrib" / "README.md",
         *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
# Guides that other branches of this session add (docs/portal.md, docs/postgresql.md): linked
# already, checked as soon as they exist.
WRITTEN_ELSEWHERE = {ROOT / "docs" / "portal.md", ROOT / "docs" / "postgresql.md"}


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lowercased, punctuation but '-' and '_' dropped, spaces to '-'."""
    out = set()
    for heading in re.findall(r"^#+ (.+)$", FENCE.sub("", page.read_text()), re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
        out.add(slug.replace(" ", "-"))
    return out


def links(page: Path) -> list[str]:
    return LINK.findall(FENCE.sub("", page.read_text()))


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_name_files_of_the_repository(page: Path) -> None:
    assert links(page), f"{page} has no links: the pattern no longer finds them"
    for target in links(page):
        if re.match(r"^[a-z]+:", target):
            continue  # https:, mailto:
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        assert dest.is_relative_to(ROOT), f"{page.name}: {target} leaves the repository"
        if dest in WRITTEN_ELSEWHERE and not dest.exists():
            continue
        assert dest.exists(), f"{page.name}: {target} names no file"
        if anchor and dest.suffix == ".md":
            assert anchor in anchors(dest), f"{page.name}: {target}: no such heading in {dest.name}"


def test_the_anchor_rule_matches_githubs() -> None:
    api = anchors(ROOT / "docs" / "api.md")
    assert {"quick-reference", "several-processes-postgresql", "what-a-target-receives",
            "recover-a-span-of-deliveries"} <= api


def test_every_route_the_app_serves_is_in_the_apis_quick_reference() -> None:
    """docs/api.md's table lists what the service answers: a route added without its line
    fails here. The portal's pages (under /portal/) are described in prose, not one by one."""
    from gateway.app import create_app
    from gateway.config import load_config

    text = (ROOT / "docs" / "api.md").read_text()
    table = text[text.index("## Quick reference"):text.index("## Conventions")]
    documented = set(re.findall(r"^\| `([A-Z]+ /\S*)` \|", table, re.MULTILINE))
    served = set()
    for route in create_app(load_config(None, env={})).router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter", "")
        if route.method in ("HEAD", "*") or path.startswith("/portal"):
            continue
        served.add(f"{route.method} {path}")
    assert served, "no routes found: the way routes are read no longer works"
    assert served <= documented, f"served but not in docs/api.md: {sorted(served - documented)}"
