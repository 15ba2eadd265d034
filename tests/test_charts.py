"""The portal's SVG charts: pure functions from counts to markup."""

from __future__ import annotations

import re
from xml.etree import ElementTree

import pytest

from gateway.portal.charts import HOUR, MINUTE, Buckets, bars, bucketed, window

SVG = "{http://www.w3.org/2000/svg}"


@pytest.mark.parametrize(("now", "step", "count", "start"), [
    (10 * HOUR + 5, HOUR, 24, (10 + 1 - 24) * HOUR),  # the last bucket holds now
    (10 * HOUR, HOUR, 24, (10 + 1 - 24) * HOUR),  # on the hour: a new bucket begins
    (10 * HOUR - 0.001, HOUR, 24, (9 + 1 - 24) * HOUR),
    (125.0, MINUTE, 60, (2 + 1 - 60) * MINUTE),
])
def test_window_ends_with_the_bucket_holding_now(now: float, step: float, count: int,
                                                 start: float) -> None:
    assert window(now, step, count) == start
    assert start + (count - 1) * step <= now < start + count * step


def test_bucketed_adds_repeats_and_drops_what_is_outside() -> None:
    b = bucketed([(0, 1, 2), (0, 3, 0), (2, 0, 5), (-1, 9, 9), (3, 9, 9)], 100.0, 60.0, 3)
    assert b == Buckets(100.0, 60.0, (4, 0, 0), (2, 0, 5))
    assert (b.total_ok, b.total_failed) == (4, 7)


def parse(html: str) -> ElementTree.Element:
    figure = ElementTree.fromstring(html)  # well-formed XML, or this raises
    assert figure.tag == "figure"
    svg = figure.find(f"{SVG}svg")
    assert svg is not None
    return svg


def rects(root: ElementTree.Element, cls: str) -> list[ElementTree.Element]:
    return [r for r in root.iter(f"{SVG}rect") if r.get("class") == cls]


def test_bars_are_stacked_and_scaled_to_the_busiest_bucket() -> None:
    b = Buckets(0.0, HOUR, (3, 0, 6, 0), (1, 2, 0, 0))
    root = parse(bars(b, title="Health", width=400, height=120))
    ok, failed = rects(root, "ok"), rects(root, "failed")
    assert len(ok) == 2 and len(failed) == 2  # empty counts draw nothing
    plot = 120
    heights = [float(r.get("height", "0")) for r in ok]
    assert heights == pytest.approx([plot * 3 / 6, plot * 6 / 6])
    # A failed bar sits on top of its bucket's delivered bar.
    first_ok, first_failed = ok[0], failed[0]
    assert float(first_failed.get("y", "0")) + float(first_failed.get("height", "0")) \
        == pytest.approx(float(first_ok.get("y", "0")))
    # Bars run left to right in time order, inside the picture.
    xs = [float(r.get("x", "0")) for r in ok]
    assert xs == sorted(xs) and all(0 <= x < 400 for x in xs)
    assert root.get("role") == "img"
    assert "9 delivered, 3 failed" in (root.get("aria-label") or "")


def test_each_bar_says_its_counts_and_the_caption_the_span() -> None:
    html = bars(Buckets(2 * HOUR, HOUR, (5, 0), (2, 1)), title="Health")
    titles = [t.text for t in parse(html).iter(f"{SVG}title")]
    assert "02:00: 5 delivered, 2 failed" in titles
    assert "03:00: 0 delivered, 1 failed" in titles
    caption = [s.text for s in ElementTree.fromstring(html).iter("span")]
    assert caption == ["2 h ago", "tallest bar: 7", "now"]
    per_minute = bars(Buckets(0.0, MINUTE, (0,) * 60, (0,) * 60), title="x")
    assert next(s.text for s in ElementTree.fromstring(per_minute).iter("span")) == "60 min ago"


def test_no_data_is_an_empty_chart_not_an_error() -> None:
    root = parse(bars(Buckets(0.0, MINUTE, (0,) * 60, (0,) * 60), title="Per minute"))
    assert rects(root, "ok") == rects(root, "failed") == []
    assert "0 delivered, 0 failed" in (root.get("aria-label") or "")


def test_the_title_is_escaped() -> None:
    svg = bars(Buckets(0.0, HOUR, (1,), (0,)), title='<script>"x"</script>')
    assert "<script>" not in svg
    assert re.search(r"&lt;script&gt;(&quot;|\")x", svg)
    parse(svg)
