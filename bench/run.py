"""Run the benchmark scenarios, each three times, and print medians, ranges and targets.

    python bench/run.py                      # the default set (everything but backlog)
    python bench/run.py throughput ingest    # some scenarios
    python bench/run.py backlog              # the long one, opt-in
    python bench/run.py soak --reps 1        # hostile traffic beside healthy (2 x 10 min)
    python bench/run.py --quick              # small sizes, one repetition: a smoke run

See bench/README.md for what each scenario measures.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import harness
import orjson
import uvloop
from report import Measure, tables

SCENARIOS = ("throughput", "ingest", "latency", "isolation", "retry", "backlog", "retention",
             "soak")
DEFAULT = ("throughput", "ingest", "latency", "isolation", "retry")


def machine() -> str:
    model = ""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        model = next((ln.split(":", 1)[1].strip() for ln in out.splitlines()
                      if ln.startswith("Model name")), "")
    except (OSError, subprocess.SubprocessError):
        pass
    cpu = model or platform.processor()
    return (f"{os.cpu_count()} cores (nproc {len(os.sched_getaffinity(0))}), {cpu}, "
            f"Python {platform.python_version()}, {platform.system()} {platform.release()}")


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("scenarios", nargs="*", metavar="SCENARIO",
                   help=f"any of {', '.join(SCENARIOS)}, or all (default: {', '.join(DEFAULT)})")
    p.add_argument("--quick", action="store_true", help="small sizes and one repetition")
    p.add_argument("--reps", type=int, help="repetitions per scenario (default 3; --quick 1)")
    p.add_argument("--backlog-seconds", type=float, default=0,
                   help="steady-run length of the backlog scenario (default 300; --quick 30)")
    p.add_argument("--soak-seconds", type=float, default=0,
                   help="length of each of the soak scenario's two runs (default 600; --quick 60)")
    p.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto",
                   help="ingest load generator (auto: wrk when installed)")
    p.add_argument("--profile", metavar="DIR", type=Path,
                   help="attach py-spy to the gateway during throughput and ingest runs")
    p.add_argument("--profile-rate", type=int, default=50, help="py-spy samples per second")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="extra gateway setting for every server, as GATEWAY_<SECTION>_<KEY>")
    p.add_argument("--tmp", help="where the temp dirs (databases) go (default: system temp)")
    p.add_argument("--keep", action="store_true", help="keep the temp dirs")
    p.add_argument("--json", metavar="FILE", type=Path, help="also write every figure as JSON")
    a = p.parse_args()
    bad = [n for n in a.scenarios if n not in (*SCENARIOS, "all")]
    if bad:
        p.error(f"unknown scenario {bad[0]!r} (choose from {', '.join(SCENARIOS)}, all)")
    return a


async def main(a: argparse.Namespace) -> int:
    names = list(a.scenarios) or list(DEFAULT)
    if "all" in names:
        names = list(SCENARIOS)
    names = [n for n in SCENARIOS if n in names]
    reps = a.reps or (1 if a.quick else 3)
    harness.SETTINGS.tmp = a.tmp
    harness.SETTINGS.keep = a.keep
    harness.SETTINGS.profile_dir = a.profile
    harness.SETTINGS.profile_rate = a.profile_rate
    for item in a.set:
        key, _, value = item.partition("=")
        section, _, name = key.partition(".")
        harness.SETTINGS.env[f"GATEWAY_{section.upper()}_{name.upper()}"] = value
    print(f"machine: {machine()}")
    print(f"scenarios: {', '.join(names)}; {reps} repetition(s){'; quick' if a.quick else ''}"
          + (f"; settings {harness.SETTINGS.env}" if harness.SETTINGS.env else ""), flush=True)
    results: dict[str, list[Measure]] = {}
    targets = []
    failed: list[str] = []
    started = time.time()
    for name in names:
        mod = importlib.import_module(f"scenarios.{name}")
        targets += mod.TARGETS
        t0 = time.time()
        try:
            for rep in range(reps):
                opts = SimpleNamespace(quick=a.quick, loadgen=a.loadgen,
                                       backlog_seconds=a.backlog_seconds,
                                       soak_seconds=a.soak_seconds, rep=f"{rep + 1}/{reps}")
                try:
                    for m in await mod.run(opts):
                        results.setdefault(m.label, []).append(m)
                except Exception as exc:
                    failed.append(f"{name} run {rep + 1}: {type(exc).__name__}: {exc}")
                    print(f"{name} run {rep + 1} FAILED: {type(exc).__name__}: {exc}", flush=True)
        finally:
            if hasattr(mod, "cleanup"):
                mod.cleanup()
        print(f"  ({name}: {time.time() - t0:.0f} s)", flush=True)
    print(f"\n## Results ({reps} run(s) each; medians, min-max in brackets; "
          f"{time.time() - started:.0f} s in all)\n\nmachine: {machine()}\n")
    print(tables(results, targets))
    if failed:
        print("\nfailed runs:\n" + "\n".join(f"- {f}" for f in failed))
    if a.json:
        a.json.write_bytes(orjson.dumps({
            "machine": machine(), "reps": reps, "quick": a.quick,
            "results": {k: [m.__dict__ | {"ratio": m.ratio} for m in v] for k, v in results.items()},
        }, option=orjson.OPT_INDENT_2))
    return 1 if failed else 0


if __name__ == "__main__":
    args = parse()
    try:
        code = uvloop.run(main(args))
    finally:
        harness.kill_all()
    sys.exit(code)
