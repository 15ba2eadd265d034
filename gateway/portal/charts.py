"""SVG charts drawn on the server (no script): attempts delivered against failed per time bucket."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape

HOUR = 3600.0
MINUTE = 60.0


@dataclass(frozen=True, slots=True)
class Buckets:
    """Counts per bucket of `step` seconds, the first starting at `start`."""

    start: float
    step: float
    ok: tuple[int, ...]
    failed: tuple[int, ...]

    @property
    def total_ok(self) -> int:
        return sum(self.ok)

    @property
    def total_failed(self) -> int:
        return sum(self.failed)


def window(now: float, step: float, count: int) -> float:
    """The start of a window of `count` buckets of `step` seconds whose last one holds `now`,
    aligned on the step (hours start on the hour) so a chart does not shift between loads."""
    return (now // step + 1 - count) * step


def bucketed(rows: Iterable[tuple[int, int, int]], start: float, step: float,
             count: int) -> Buckets:
    """Rows of (bucket index, delivered, failed) as `count` buckets; indexes outside the
    window are dropped, repeated ones added up."""
    ok = [0] * count
    failed = [0] * count
    for index, good, bad in rows:
        if 0 <= index < count:
            ok[index] += good
            failed[index] += bad
    return Buckets(start, step, tuple(ok), tuple(failed))


def _clock(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M")


def _fmt(n: float) -> str:
    return f"{n:.2f}".rstrip("0").rstrip(".")


def _span(b: Buckets) -> str:
    seconds = len(b.ok) * b.step
    return f"{seconds / HOUR:g} h ago" if b.step >= HOUR else f"{seconds / MINUTE:g} min ago"


def bars(b: Buckets, *, title: str, width: int = 720, height: int = 100) -> str:
    """Stacked bars, delivered below failed, one per bucket, in a <figure> whose caption holds
    the axis as HTML text (so it stays readable however far the picture is scaled). The
    picture scales with its box (viewBox), says what it shows to screen readers (role=img,
    aria-label) and each bar's counts on hover (<title>); colours come from the CSS."""
    n = len(b.ok)
    peak = max((o + f for o, f in zip(b.ok, b.failed, strict=True)), default=0)
    slot = width / n if n else 0
    summary = (f"{title}: {b.total_ok} delivered, {b.total_failed} failed, "
               f"{_clock(b.start)} to {_clock(b.start + n * b.step)} UTC")
    out = ['<figure class="chart">',
           f'<svg viewBox="0 0 {width} {height}" preserveAspectRatio="none" role="img" '
           f'aria-label="{escape(summary)}" xmlns="http://www.w3.org/2000/svg">',
           f"<title>{escape(summary)}</title>"]
    for i, (good, bad) in enumerate(zip(b.ok, b.failed, strict=True)):
        if good + bad == 0:
            continue
        x = i * slot + slot * 0.1
        w = slot * 0.8
        h_ok = height * good / peak
        h_bad = height * bad / peak
        y_ok = height - h_ok
        label = escape(f"{_clock(b.start + i * b.step)}: {good} delivered, {bad} failed")
        out.append(f"<g><title>{label}</title>")
        if good:
            out.append(f'<rect class="ok" x="{_fmt(x)}" y="{_fmt(y_ok)}" width="{_fmt(w)}" '
                       f'height="{_fmt(h_ok)}"/>')
        if bad:
            out.append(f'<rect class="failed" x="{_fmt(x)}" y="{_fmt(y_ok - h_bad)}" '
                       f'width="{_fmt(w)}" height="{_fmt(h_bad)}"/>')
        out.append("</g>")
    out.append(f'<line class="base" x1="0" y1="{height}" x2="{width}" y2="{height}"/>')
    out.append("</svg>")
    out.append(f'<figcaption aria-hidden="true"><span>{_span(b)}</span>'
               f"<span>tallest bar: {peak}</span><span>now</span></figcaption>")
    out.append("</figure>")
    return "".join(out)
