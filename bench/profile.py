"""Summarise py-spy raw (folded) profiles of the gateway: where the samples went.

`python bench/run.py throughput ingest --profile DIR` leaves one file per measured run in DIR
(py-spy record --format raw --threads). This prints, per group of files (by scenario label):
samples per thread, the top frames by self time, by inclusive time, and by "deepest gateway
frame" (each sample charged to the innermost gateway/ function on its stack, so library time
is charged to the gateway code that called it).

Run: python bench/profile.py DIR [--top 20] [--match throughput]
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def split(frame: str, with_line: bool = False) -> str:
    m = FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    where = m["file"] + (f":{m['line']}" if with_line and m["line"] else "")
    return f"{where} {m['func']}"


def load(paths: list[Path]) -> list[tuple[list[str], int]]:
    stacks: list[tuple[list[str], int]] = []
    for p in paths:
        for line in p.read_text(errors="replace").splitlines():
            stack, _, count = line.rpartition(" ")
            if stack and count.isdigit():
                stacks.append((stack.split(";"), int(count)))
    return stacks


def thread_name(frame: str) -> str:
    # "thread (1234): MainThread" or "thread (1234): Thread-1 (_connection_worker_thread)"
    name = frame.split(":", 1)[-1].strip()
    return "sqlite writer/reader thread" if "connection_worker" in name else name


def summarise(paths: list[Path], top: int) -> str:
    stacks = load(paths)
    total = sum(c for _, c in stacks)
    if not total:
        return "  (no samples)"
    threads: Counter[str] = Counter()
    self_t: Counter[str] = Counter()
    self_line: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    gw: Counter[str] = Counter()
    gw_line: Counter[str] = Counter()
    for frames, n in stacks:
        threads[thread_name(frames[0])] += n
        body = frames[1:] or frames
        self_t[split(body[-1])] += n
        self_line[split(body[-1], with_line=True)] += n
        for f in {split(f) for f in body}:
            incl[f] += n
        inner = [f for f in body if "(gateway/" in f]
        if inner:
            gw[split(inner[-1])] += n
            gw_line[split(inner[-1], with_line=True)] += n
        else:
            gw["(no gateway frame: event loop, aiohttp server/client internals)"] += n

    def block(title: str, c: Counter[str]) -> list[str]:
        out = [f"  {title}"]
        out += [f"    {100 * v / total:5.1f}%  {k}" for k, v in c.most_common(top)]
        return out

    lines = [f"  {total} samples in {len(paths)} file(s)"]
    lines += [f"    {100 * v / total:5.1f}%  thread {k}" for k, v in threads.most_common()]
    lines += block("deepest gateway frame (library time charged to its gateway caller):", gw)
    lines += block("deepest gateway line:", gw_line)
    lines += block("self time (leaf frame):", self_t)
    lines += block("self time by line:", self_line)
    lines += block("inclusive time:", incl)
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dir", type=Path)
    p.add_argument("--top", type=int, default=20)
    p.add_argument("--match", default="", help="only files whose name contains this")
    a = p.parse_args()
    groups: dict[str, list[Path]] = {}
    for f in sorted(a.dir.glob("*.txt")):
        if a.match in f.name:
            groups.setdefault(f.name.rsplit("-", 1)[0], []).append(f)
    for label, files in groups.items():
        print(f"== {label}")
        print(summarise(files, a.top))
        print()


if __name__ == "__main__":
    main()
