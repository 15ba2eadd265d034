"""Mutation testing of the policy that keeps users safe: one-line changes to the code, each run
against the tests that cover it; a change no test notices (a survivor) is a behaviour no test pins.

    python tools/mutate.py                      # every module below
    python tools/mutate.py --module targets     # one module (repeatable)
    python tools/mutate.py --list               # the mutants, without running anything
    python tools/mutate.py --only gateway/targets.py:291   # the mutants of one line

Each mutant is written to a private copy of the tree (never to the working tree), and the
copy's tests run in a child process with the copy first on PYTHONPATH, so `gateway serve` and
CLI children of the tests run the mutant too. Not part of CI: a full run takes tens of minutes.

A small runner of our own rather than mutmut: mutmut 3 mutates function bodies only (through
trampolines), so the tables that matter most here, the module-level address blocklists, would
never be mutated; and it needs its own copy layout and runs every test for every mutant.
"""

from __future__ import annotations

import argparse
import ast
import copy
import dataclasses
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclasses.dataclass(frozen=True)
class Target:
    """Source files (globs, relative to the tree) and, if given, the functions in them to mutate
    (by name, at any depth: a method, a nested function); None mutates the whole file."""

    pattern: str
    functions: tuple[str, ...] | None = None


@dataclasses.dataclass(frozen=True)
class Module:
    targets: tuple[Target, ...]
    tests: tuple[str, ...]  # test files (globs); missing ones are skipped


_STORAGE = ("gateway/storage.py", "gateway/storage/*.py")
_REQUEST = ("gateway/app.py", "gateway/request_layer.py")
# The places move between branches (storage.py becomes a package, the request layer and the
# outcome rule get modules of their own): every spelling is listed, missing files are skipped.
MODULES: dict[str, Module] = {
    "targets": Module(
        (Target("gateway/targets.py"),),
        ("tests/test_target_table.py", "tests/test_targets.py", "tests/test_ssrf.py")),
    "signing": Module(
        (Target("gateway/signing.py"),),
        ("tests/test_signing.py",)),
    "retry": Module(
        (Target("gateway/retry.py"),),
        ("tests/test_retry.py", "tests/test_outcome.py", "tests/test_classify_table.py",
         "tests/test_attempt_outcome.py")),
    "outcome": Module(
        (Target("gateway/outcome.py"),
         Target("gateway/dispatch.py", ("classify",)),
         Target("gateway/delivery/*.py", ("classify",)),
         *(Target(p, ("status", "hook_failed", "gone")) for p in _STORAGE)),
        ("tests/test_outcome.py", "tests/test_classify_table.py", "tests/test_attempt_outcome.py",
         "tests/test_hook_health.py", "tests/test_delivery.py")),
    "health": Module(
        (Target("gateway/health.py"),
         *(Target(p, ("record_attempts", "_apply_health", "update_hook")) for p in _STORAGE)),
        ("tests/test_health.py", "tests/test_hook_health.py", "tests/test_storage.py",
         "tests/test_hooks_api.py", "tests/test_delivery.py")),
    "auth": Module(
        (Target("gateway/auth.py"),
         *(Target(p, ("bearer", "admit")) for p in _REQUEST)),
        ("tests/test_auth.py", "tests/test_keys_api.py", "tests/test_hooks_api.py",
         "tests/test_errors.py")),
    "keys": Module(
        (Target("gateway/storage.py", ("cached_key", "fetch_key", "key_by_hash", "_keys_changed",
                                       "_keys_stamp")),
         Target("gateway/storage/keys.py", ("cached_key", "fetch_key", "key_by_hash", "_changed",
                                            "_stamp"))),
        ("tests/test_keys_api.py", "tests/test_key_cache.py", "tests/test_cli.py")),
}


@dataclasses.dataclass(frozen=True)
class Mutant:
    path: str  # relative to the tree
    line: int
    start: int  # byte offsets of the replaced source
    end: int
    original: str
    replacement: str
    kind: str
    shown: str = ""  # what the label shows for the replacement, when not the replacement itself
    context: str = ""  # the whole lines it is on, whitespace folded: the same mutant elsewhere
    col: int = 0  # where on its first line it starts

    def label(self) -> str:
        return f"{self.path}:{self.line}: {self.kind}: {self.original} -> {self.shown or self.replacement}"


# -- making mutants ---------------------------------------------------------------------------

_COMPARE_SWAPS: dict[type[ast.cmpop], tuple[type[ast.cmpop], ...]] = {
    ast.Eq: (ast.NotEq,), ast.NotEq: (ast.Eq,),
    ast.Lt: (ast.LtE, ast.GtE), ast.LtE: (ast.Lt, ast.Gt),
    ast.Gt: (ast.GtE, ast.LtE), ast.GtE: (ast.Gt, ast.Lt),
    ast.In: (ast.NotIn,), ast.NotIn: (ast.In,), ast.Is: (ast.IsNot,), ast.IsNot: (ast.Is,),
}
_BINOP_SWAPS: dict[type[ast.operator], type[ast.operator]] = {
    ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.FloorDiv, ast.Div: ast.Mult,
    ast.FloorDiv: ast.Mult, ast.LShift: ast.RShift, ast.RShift: ast.LShift,
    ast.BitAnd: ast.BitOr, ast.BitOr: ast.BitAnd, ast.Pow: ast.Mult, ast.Mod: ast.FloorDiv,
}
_CALL_SWAPS = {"any": "all", "all": "any", "min": "max", "max": "min",
               "fullmatch": "match", "match": "fullmatch", "startswith": "endswith",
               "endswith": "startswith", "issubset": "issuperset"}
_LOG_NAMES = {"log", "logger", "logging", "structlog"}


def _unparse(node: ast.AST) -> str:
    text = ast.unparse(node)
    return f"({text})" if isinstance(node, ast.expr) and "\n" not in text else text


def _is_docstring(node: ast.stmt, body: Sequence[ast.stmt]) -> bool:
    return (bool(body) and body[0] is node and isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str))


def _is_log_call(node: ast.stmt) -> bool:
    if not isinstance(node, ast.Expr):
        return False
    call = node.value.value if isinstance(node.value, ast.Await) else node.value
    if not isinstance(call, ast.Call):
        return False
    f = call.func
    while isinstance(f, ast.Attribute):
        f = f.value
    return isinstance(f, ast.Name) and f.id in _LOG_NAMES


def _changes(node: ast.AST, parent: ast.AST | None) -> Iterator[tuple[str, ast.AST | str]]:
    """(kind, replacement) pairs for one node: an AST to unparse in its place, or source text."""
    if isinstance(node, ast.Compare):
        for i, op in enumerate(node.ops):
            for new in _COMPARE_SWAPS.get(type(op), ()):
                m = copy.deepcopy(node)
                m.ops[i] = new()
                yield "compare", m
    elif isinstance(node, ast.BoolOp):
        m = copy.deepcopy(node)
        m.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
        yield "boolean operator", m
        for i in range(len(node.values)):
            rest = [v for j, v in enumerate(node.values) if j != i]
            yield "drop operand", rest[0] if len(rest) == 1 else ast.BoolOp(node.op, rest)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        yield "drop not", node.operand
    elif isinstance(node, ast.BinOp) and type(node.op) in _BINOP_SWAPS:
        m = copy.deepcopy(node)
        m.op = _BINOP_SWAPS[type(node.op)]()
        yield "arithmetic", m
    elif isinstance(node, ast.Constant) and not isinstance(parent, ast.JoinedStr):
        v = node.value
        if isinstance(v, bool):
            yield "constant", ast.Constant(not v)
        elif isinstance(v, int):
            yield "constant", ast.Constant(v + 1)
        elif isinstance(v, float):
            yield "constant", ast.Constant(v + 1.0)
        elif isinstance(v, str | bytes) and len(v) <= 12:
            yield "constant", ast.Constant(v[:0] if v else type(v)("X" if isinstance(v, str) else b"X"))
    elif isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load):
        index = node.slice
        if isinstance(index, ast.Constant) and index.value == 0:
            yield "index", ast.Subscript(node.value, ast.Constant(-1), ast.Load())
        elif (isinstance(index, ast.UnaryOp) and isinstance(index.op, ast.USub)
              and isinstance(index.operand, ast.Constant) and index.operand.value == 1):
            yield "index", ast.Subscript(node.value, ast.Constant(0), ast.Load())
    elif isinstance(node, ast.Call):
        f = node.func
        name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
        if name in _CALL_SWAPS:
            m = copy.deepcopy(node)
            if isinstance(m.func, ast.Name):
                m.func.id = _CALL_SWAPS[name]
            else:
                assert isinstance(m.func, ast.Attribute)
                m.func.attr = _CALL_SWAPS[name]
            yield "call", m
        if name == "compare_digest" and len(node.args) == 2:
            yield "call", ast.Call(ast.Attribute(node.args[0], "startswith", ast.Load()),
                                   [node.args[1]], [])
    elif (isinstance(node, ast.Tuple | ast.List | ast.Set) and len(node.elts) >= 2
          and isinstance(getattr(node, "ctx", ast.Load()), ast.Load)
          and not isinstance(parent, ast.Return | ast.Subscript | ast.Yield)
          and _homogeneous(node.elts)):
        for i in range(len(node.elts)):
            m = copy.deepcopy(node)
            del m.elts[i]
            yield "drop element", m


def _homogeneous(elts: Sequence[ast.expr]) -> bool:
    """A table (every element of one kind, tuples of one length): dropping a row is a mutant;
    dropping a field of a record such as (network, reason) only breaks the code outright."""
    kinds = {type(e) for e in elts}
    if len(kinds) != 1 or not kinds <= {ast.Constant, ast.Tuple, ast.Call, ast.Name, ast.Attribute}:
        return False
    return len({len(e.elts) for e in elts if isinstance(e, ast.Tuple)}) <= 1


def _iter_changes(node: ast.AST) -> Iterator[tuple[str, ast.AST, ast.AST | str]]:
    """(kind, node replaced, replacement) for the statements and expressions under node."""
    if isinstance(node, ast.If | ast.While | ast.IfExp):
        yield "condition", node.test, ast.Constant(True)
        yield "condition", node.test, ast.Constant(False)
    if isinstance(node, ast.comprehension):
        for test in node.ifs:
            yield "condition", test, ast.Constant(True)
    if isinstance(node, ast.For | ast.AsyncFor | ast.comprehension) and isinstance(
            node.iter, ast.Name | ast.Attribute | ast.Subscript):
        yield "first only", node.iter, ast.Subscript(node.iter, ast.Slice(None, ast.Constant(1)),
                                                      ast.Load())
    for field, value in ast.iter_fields(node):
        if field in ("annotation", "returns", "type_comment", "decorator_list"):
            continue
        children = value if isinstance(value, list) else [value]
        for child in children:
            if not isinstance(child, ast.AST):
                continue
            if isinstance(child, ast.stmt):
                if isinstance(child, ast.Assert | ast.Pass | ast.Import | ast.ImportFrom) \
                        or _is_docstring(child, children) or _is_log_call(child):
                    continue
                if isinstance(child, ast.Expr | ast.Assign | ast.AugAssign | ast.AnnAssign
                              | ast.Raise | ast.Return | ast.Continue | ast.Break | ast.Delete
                              ) and not (isinstance(child, ast.AnnAssign) and child.value is None):
                    yield "delete statement", child, "pass"
            for kind, replacement in _changes(child, node):
                yield kind, child, replacement
            if isinstance(child, ast.AugAssign) and type(child.op) in _BINOP_SWAPS:
                m = copy.deepcopy(child)
                m.op = _BINOP_SWAPS[type(child.op)]()
                yield "arithmetic", child, m
            yield from _iter_changes(child)


def _roots(tree: ast.Module, functions: tuple[str, ...] | None) -> Iterator[ast.AST]:
    if functions is None:
        yield ast.Module([s for s in tree.body if not _skip_module_node(s)], [])
        return
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name in functions \
                and not all(isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant)
                            for s in node.body):  # a Protocol's stub: nothing to mutate
            yield node


def _skip_module_node(node: ast.AST) -> bool:
    # __all__ and the like: names, not behaviour.
    return isinstance(node, ast.Assign) and any(
        isinstance(t, ast.Name) and t.id.startswith("__") for t in node.targets)


def mutants_of(tree_root: Path, rel: str, functions: tuple[str, ...] | None) -> list[Mutant]:
    source = (tree_root / rel).read_bytes()
    tree = ast.parse(source)
    starts = [0]
    for line in source.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))

    def span(n: ast.AST) -> tuple[int, int]:
        return (starts[n.lineno - 1] + n.col_offset,  # type: ignore[attr-defined]
                starts[n.end_lineno - 1] + n.end_col_offset)  # type: ignore[attr-defined]

    seen: set[tuple[int, int, str]] = set()
    out: list[Mutant] = []
    for root in _roots(tree, functions):
        changes = list(_iter_changes(root))
        for kind, node, replacement in changes:
            start, end = span(node)
            text = replacement if isinstance(replacement, str) else _unparse(replacement)
            if isinstance(node, ast.stmt) and not isinstance(replacement, str):
                text = ast.unparse(replacement)
            original = source[start:end].decode()
            if text == original or text == f"({original})":
                continue
            key = (start, end, text)
            if key in seen:
                continue
            seen.add(key)
            short = " ".join(original.split())
            shown, line = "", node.lineno  # type: ignore[attr-defined]
            if kind == "drop element":
                # Show the row that goes, not the whole table without it.
                assert isinstance(replacement, ast.Tuple | ast.List | ast.Set)
                elts = node.elts  # type: ignore[attr-defined]
                i = next((i for i, (a, b) in enumerate(zip(elts, replacement.elts, strict=False))
                          if ast.dump(a) != ast.dump(b)), len(elts) - 1)
                short = " ".join((ast.get_source_segment(source.decode(), elts[i]) or "").split())
                shown, line = "(row dropped)", elts[i].lineno
            lines = source[starts[node.lineno - 1]:starts[node.end_lineno]]  # type: ignore[attr-defined]
            out.append(Mutant(rel, line, start, end,
                              short if len(short) <= 90 else short[:87] + "...", text, kind, shown,
                              " ".join(lines.decode().split()),
                              start - starts[node.lineno - 1] - (len(lines) - len(lines.lstrip()))))
    return sorted(out, key=lambda m: (m.start, m.end, m.replacement))


def apply(source: bytes, m: Mutant) -> bytes:
    return source[:m.start] + m.replacement.encode() + source[m.end:]


# -- running them ---------------------------------------------------------------------------

@dataclasses.dataclass
class Result:
    mutant: Mutant
    outcome: str  # killed, survived, timeout, error
    seconds: float
    by: str = ""  # the first failing test


def _copy_tree(dest: Path) -> Path:
    def ignore(_: str, names: list[str]) -> set[str]:
        return {n for n in names if n in (".git", ".venv", "__pycache__", ".mypy_cache",
                                          ".ruff_cache", ".pytest_cache", "node_modules")
                or n.endswith(".egg-info")}
    shutil.copytree(ROOT, dest, ignore=ignore, symlinks=True)
    return dest


def _env(tree: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(tree) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # a stale .pyc would run the previous mutant
    return env


def _pytest(tree: Path, tests: Sequence[str], timeout: float) -> tuple[int | None, str, float]:
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "--no-header", *tests]
    start = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=tree, env=_env(tree), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)  # the tests' own `gateway serve` children too
        proc.communicate()
        return None, "", time.monotonic() - start
    return proc.returncode, out.decode(errors="replace"), time.monotonic() - start


_FAILED = re.compile(r"^(?:FAILED|ERROR) (\S+)", re.M)


def run_one(tree: Path, m: Mutant, tests: Sequence[str], timeout: float) -> Result:
    path = tree / m.path
    original = path.read_bytes()
    path.write_bytes(apply(original, m))
    try:
        rc, out, took = _pytest(tree, tests, timeout)
    finally:
        path.write_bytes(original)
    if rc is None:
        return Result(m, "timeout", took)
    if rc == 0:
        return Result(m, "survived", took)
    # No FAILED line: collection or import failed, the mutant broke the module outright.
    found = _FAILED.search(out)
    return Result(m, "killed", took, found.group(1) if found else f"(exit {rc})")


def _existing(patterns: Sequence[str]) -> tuple[list[str], list[str]]:
    found: list[str] = []
    missing: list[str] = []
    for p in patterns:
        hits = sorted(str(Path(h).relative_to(ROOT)) for h in glob.glob(str(ROOT / p)))
        (found.extend(hits) if hits else missing.append(p))
    return found, missing


def collect(name: str, module: Module, only: str | None) -> tuple[list[Mutant], list[str]]:
    mutants: list[Mutant] = []
    notes: list[str] = []
    for target in module.targets:
        files, _ = _existing([target.pattern])
        if not files and "*" not in target.pattern:
            notes.append(f"skip {target.pattern}: not in this tree")
        for rel in files:
            ms = mutants_of(ROOT, rel, target.functions)
            if target.functions is not None and not ms:
                continue
            mutants.extend(ms)
    if only:
        path, _, line = only.partition(":")
        mutants = [m for m in mutants if m.path == path and (not line or m.line == int(line))]
    return mutants, notes


def _same(module: str, kind: str, original: str, replacement: str, context: str,
          col: int) -> tuple[object, ...]:
    return (module, kind, original, replacement, context, col)


def main(argv: Sequence[str] | None = None) -> int:
    global ROOT
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--module", action="append", choices=sorted(MODULES),
                    help="only these modules (repeatable); default all")
    ap.add_argument("--only", metavar="PATH[:LINE]", help="only the mutants of this file or line")
    ap.add_argument("--list", action="store_true", help="list the mutants and stop")
    ap.add_argument("--jobs", type=int, default=1, help="mutants run at once (default 1)")
    ap.add_argument("--timeout-factor", type=float, default=3.0,
                    help="a mutant's time limit: this times the clean run, plus 10 s")
    ap.add_argument("--json", type=Path, help="also write every result to this file")
    ap.add_argument("--resume", type=Path, metavar="JSON",
                    help="count the mutants an earlier run (its --json) killed as killed, and run "
                         "only the others (tests are only ever added, so a kill stands): the same "
                         "change on a line of the same text, in the same module, even if the "
                         "code moved to another file; a changed line runs again")
    ap.add_argument("--verbose", action="store_true", help="print each mutant as it finishes")
    ap.add_argument("--tree", type=Path, default=None,
                    help="the source tree to mutate (default: this checkout), e.g. an older "
                         "worktree for a before-and-after score")
    args = ap.parse_args(argv)
    ROOT = (args.tree or ROOT).resolve()

    names = args.module or list(MODULES)
    earlier: dict[tuple[object, ...], list[str]] = {}
    if args.resume:
        for r in json.loads(args.resume.read_text()):
            if r["outcome"] in ("killed", "timeout"):
                earlier.setdefault(_same(r["module"], r["kind"], r["original"], r["replacement"],
                                         r["context"], r["col"]), []).append(r["by"])
    work = Path(tempfile.mkdtemp(prefix="gateway-mutate-"))
    trees = [_copy_tree(work / f"tree{i}") for i in range(max(1, args.jobs))]
    # Mutants are made from the copy too: the checkout may change while a long run goes on.
    ROOT = trees[0]
    probe = subprocess.run([sys.executable, "-c", "import gateway; print(gateway.__file__)"],
                           cwd=trees[0], env=_env(trees[0]), capture_output=True, text=True)
    if not probe.stdout.startswith(str(trees[0])):
        print(f"the copy's gateway is not the one imported ({probe.stdout.strip()}); stopping",
              file=sys.stderr)
        return 2
    table: list[tuple[str, int, int, int]] = []
    report: list[dict[str, object]] = []
    try:
        for name in names:
            module = MODULES[name]
            mutants, notes = collect(name, module, args.only)
            tests, missing_tests = _existing(module.tests)
            for note in notes:
                print(f"[{name}] {note}")
            if not mutants:
                print(f"[{name}] no mutants (its files are not in this tree)")
                continue
            if args.list:
                for m in mutants:
                    print(f"[{name}] {m.label()}")
                continue
            rc, out, clean = _pytest(trees[0], tests, 600)
            if rc != 0:
                print(f"[{name}] the tests fail without any mutant; fix them first:\n{out[-3000:]}")
                return 1
            timeout = clean * args.timeout_factor + 10
            print(f"[{name}] {len(mutants)} mutants, tests {' '.join(tests)} "
                  f"({clean:.1f} s clean){'; no ' + ', '.join(missing_tests) if missing_tests else ''}",
                  flush=True)
            free = list(trees)

            def job(m: Mutant, tests: list[str] = tests, timeout: float = timeout,
                    free: list[Path] = free) -> Result:
                tree = free.pop()
                try:
                    return run_one(tree, m, tests, timeout)
                finally:
                    free.append(tree)

            results: list[Result] = []
            todo: list[Mutant] = []
            for m in mutants:
                # Each earlier kill accounts for one mutant: a line that now occurs twice runs
                # its second copy again.
                kills = earlier.get(_same(name, m.kind, m.original, m.replacement, m.context,
                                          m.col))
                if kills:
                    results.append(Result(m, "killed", 0.0, f"earlier run: {kills.pop()}"))
                else:
                    todo.append(m)
            if earlier:
                print(f"[{name}] {len(results)} killed in the earlier run; running {len(todo)}",
                      flush=True)
            with ThreadPoolExecutor(max_workers=len(trees)) as pool:
                for r in pool.map(job, todo):
                    results.append(r)
                    if args.verbose or r.outcome == "survived":
                        print(f"  {r.outcome:8} {r.mutant.label()}"
                              f"{'  [' + r.by + ']' if r.by else ''}", flush=True)
            killed = sum(r.outcome in ("killed", "timeout") for r in results)
            table.append((name, len(results), killed, len(results) - killed))
            report += [{**dataclasses.asdict(r.mutant), "module": name, "outcome": r.outcome,
                        "by": r.by, "seconds": round(r.seconds, 2)} for r in results]
            if args.json:  # after each module: a run stopped later keeps what it found
                args.json.write_text(json.dumps(report, indent=1))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    if table:
        print(f"\n{'module':10} {'mutants':>7} {'killed':>7} {'survived':>8} {'score':>6}")
        for name, total, killed, survived in table:
            print(f"{name:10} {total:7} {killed:7} {survived:8} {100 * killed / total:5.0f}%")
        for r in report:
            if r["outcome"] == "survived":
                print(f"survived: {r['path']}:{r['line']}: {r['kind']}: "
                      f"{r['original']} -> {r['shown'] or r['replacement']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
