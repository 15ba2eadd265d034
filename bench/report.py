"""Figures, targets and the tables: one line per measurement, medians and ranges at the end."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from harness import summary


@dataclass
class Measure:
    """One figure of one run, with the baseline measured in the same run."""

    label: str
    unit: str
    value: float
    baseline: float | None = None
    extra: dict[str, float] = field(default_factory=dict)
    note: str = ""
    ratio_shown: bool = True  # False where gateway/baseline means nothing (latency)

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or not self.ratio_shown or not self.baseline:
            return None
        return self.value / self.baseline

    def line(self, rep: str) -> str:
        parts = [f"{self.label:<32} {rep:>5}  {fmt(self.value)} {self.unit}"]
        if self.baseline is not None:
            parts.append(f"baseline {fmt(self.baseline)}")
        if self.ratio is not None:
            parts.append(f"ratio {self.ratio:.2f}")
        parts += [f"{k} {fmt(v)}" for k, v in self.extra.items()]
        if self.note:
            parts.append(f"({self.note})")
        return "  ".join(parts)


@dataclass(frozen=True)
class Target:
    label: str  # the Measure it reads
    key: str  # "value", "ratio" or an extra's name
    op: str  # ">=" or "<="
    bound: float
    text: str

    def judge(self, runs: Sequence[Measure]) -> tuple[str, str]:
        vals = [_pick(m, self.key) for m in runs]
        med, lo, hi = summary([v for v in vals if v is not None])
        if math.isnan(med):
            return "n/a", "MISS"
        ok = med >= self.bound if self.op == ">=" else med <= self.bound
        f = (lambda v: f"{v:.2f}") if self.key == "ratio" else fmt
        return f"{f(med)} ({f(lo)}-{f(hi)})", "PASS" if ok else "MISS"


def _pick(m: Measure, key: str) -> float | None:
    if key == "value":
        return m.value
    if key == "ratio":
        return m.ratio
    return m.extra.get(key)


def fmt(v: float | None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if float(v).is_integer():
        return f"{int(v):,}"
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def _cell(vals: Iterable[float | None], ratio: bool = False) -> str:
    got = [v for v in vals if v is not None]
    if not got:
        return "-"
    med, lo, hi = summary(got)
    f = (lambda v: f"{v:.2f}") if ratio else fmt
    if len(got) == 1:
        return f(med)
    return f"{f(med)} ({f(lo)}-{f(hi)})"


def tables(results: dict[str, list[Measure]], targets: Sequence[Target]) -> str:
    """Markdown: the figures (median, then min-max over the runs) and the targets."""
    out = ["| scenario | figure | unit | baseline (same run) | ratio | other figures (median) | runs |",
           "|---|---|---|---|---|---|---|"]
    for label, runs in results.items():
        m0 = runs[0]
        extras = ", ".join(f"{k} {fmt(summary([r.extra[k] for r in runs if k in r.extra])[0])}"
                           for k in m0.extra)
        note = f" [{m0.note}]" if m0.note and len({r.note for r in runs}) == 1 else ""
        out.append(f"| {label}{note} | {_cell(r.value for r in runs)} | {m0.unit} | "
                   f"{_cell(r.baseline for r in runs)} | {_cell((r.ratio for r in runs), ratio=True)} | "
                   f"{extras} | {len(runs)} |")
    judged = [t for t in targets if t.label in results]
    if judged:
        out += ["", "| target | measured: median (min-max) | result |", "|---|---|---|"]
        for t in judged:
            measured, verdict = t.judge(results[t.label])
            out.append(f"| {t.label}: {t.text} | {measured} | **{verdict}** |")
    return "\n".join(out)
