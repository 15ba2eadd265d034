"""What every scenario shares: child processes that never outlive the run, a real `gateway
serve` in its own temp dir, receivers in their own processes, the gateway's HTTP API, and
small statistics."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

BENCH = Path(__file__).resolve().parent
PYTHON = sys.executable
GATEWAY_BIN = shutil.which("gateway", path=str(Path(PYTHON).parent)) or "gateway"
ACCOUNT = "bench"
LOCAL = "127.0.0.1"

# -- child processes ---------------------------------------------------------------------------

_children: list[subprocess.Popen[bytes]] = []
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # The kernel kills the child if this process dies, even by SIGKILL: nothing outlives a run.
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def spawn(args: Sequence[str], *, log: Path | None = None, env: dict[str, str] | None = None,
          stdout: Any = None) -> subprocess.Popen[bytes]:
    logf = log.open("ab") if log else None
    try:
        out = stdout if stdout is not None else (logf or subprocess.DEVNULL)
        proc = subprocess.Popen(list(args), stdout=out, stderr=logf, stdin=subprocess.DEVNULL,
                                env={**os.environ, **(env or {})}, preexec_fn=_die_with_parent)
    finally:
        if logf is not None:
            logf.close()  # the child has its own descriptor
    _children.append(proc)
    return proc


def stop(proc: subprocess.Popen[bytes], grace: float = 5.0) -> int | None:
    """SIGTERM, then SIGKILL after the grace period; returns the exit code."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()
    if proc in _children:
        _children.remove(proc)
    return proc.returncode


def kill_all() -> None:
    for proc in list(_children):
        stop(proc, grace=2.0)


atexit.register(kill_all)


def _on_signal(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds every finally, then atexit kills the rest


signal.signal(signal.SIGTERM, _on_signal)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOCAL, 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak) of a process, in MB."""
    out: dict[str, float] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(rest.split()[0]) / 1024
    return out


async def wait_http(url: str, timeout: float = 30.0, proc: subprocess.Popen[bytes] | None = None,
                    what: str = "server") -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as s:
        while True:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"{what} exited with {proc.returncode} before it was ready")
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with s.get(url) as r:
                    if r.status < 500:
                        return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} not ready at {url} after {timeout}s")
            await asyncio.sleep(0.05)


async def run_json(args: Sequence[str], timeout: float, env: dict[str, str] | None = None
                   ) -> dict[str, Any]:
    """Run a child to the end and parse the last JSON line it printed."""
    proc = spawn(args, stdout=subprocess.PIPE, env=env)
    try:
        out, _ = await asyncio.to_thread(proc.communicate, timeout=timeout)
    finally:
        stop(proc)
    lines = [ln for ln in out.decode(errors="replace").splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{Path(args[0]).name} {' '.join(args[1:3])} exited {proc.returncode}: "
                           f"{out.decode(errors='replace')[-500:]}")
    return orjson.loads(lines[-1])  # type: ignore[no-any-return]


# -- receivers ---------------------------------------------------------------------------------


class Receiver:
    """One receiver process; `url` is where hooks point (path /h/<tag>)."""

    def __init__(self, mode: str = "ok", latency: bool = False, port: int | None = None,
                 name: str = LOCAL) -> None:
        self.mode, self.latency, self.name = mode, latency, name
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.control = f"http://{LOCAL}:{self.port}/_bench"

    def url(self, tag: str = "x") -> str:
        return f"http://{self.name}:{self.port}/h/{tag}"

    async def start(self) -> Receiver:
        args = [PYTHON, str(BENCH / "receiver.py"), "--port", str(self.port), "--mode", self.mode]
        if self.latency:
            args.append("--latency")
        self.proc = spawn(args)
        await wait_http(f"{self.control}/stats", 15, self.proc, f"receiver :{self.port}")
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc, grace=2.0)
            self.proc = None

    async def _call(self, method: str, path: str, timeout: float = 10) -> Any:
        t = aiohttp.ClientTimeout(total=timeout)
        async with aiohttp.ClientSession(timeout=t) as s, s.request(method, self.control + path) as r:
            r.raise_for_status()
            return orjson.loads(await r.read())

    async def reset(self, target: int = 0) -> None:
        await self._call("POST", f"/reset?target={target}")

    async def stats(self) -> dict[str, Any]:
        return await self._call("GET", "/stats")  # type: ignore[no-any-return]

    async def wait(self, timeout: float) -> dict[str, Any]:
        st = await self._call("GET", f"/wait?timeout={timeout}", timeout=timeout + 10)
        return st  # type: ignore[no-any-return]

    async def latencies(self) -> list[float]:
        return await self._call("GET", "/latencies", timeout=60)  # type: ignore[no-any-return]


@contextlib.asynccontextmanager
async def receivers(*specs: dict[str, Any]) -> Any:
    started: list[Receiver] = []
    try:
        for spec in specs:
            started.append(await Receiver(**spec).start())
        yield started
    finally:
        for r in started:
            r.stop()


async def wait_all(recvs: Iterable[Receiver], timeout: float) -> list[dict[str, Any]]:
    """Wait until every receiver reached its target; raise if one did not."""
    stats = await asyncio.gather(*(r.wait(timeout) for r in recvs))
    for r, st in zip(recvs, stats, strict=True):
        if st["target_at"] is None:
            raise RuntimeError(f"receiver :{r.port} got {st['ok']} of {st['target']} within {timeout}s")
    return list(stats)


# -- the gateway -------------------------------------------------------------------------------


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)


@dataclass
class Settings:
    """Run-wide options every gateway gets: temp dir base, extra env overrides, profiling."""

    tmp: str | None = None
    keep: bool = False
    env: dict[str, str] = field(default_factory=dict)
    profile_dir: Path | None = None
    profile_rate: int = 50  # py-spy samples/s: low, because the sampler shares the 2 cores


SETTINGS = Settings()


class Gateway:
    """A real `gateway serve` with its own temp dir, config TOML and SQLite database."""

    def __init__(self, delivery: dict[str, Any] | None = None, topics: Sequence[str] = ("bench.a",),
                 server: dict[str, Any] | None = None, workdir: Path | None = None,
                 log: dict[str, Any] | None = None) -> None:
        self.dir = workdir or Path(tempfile.mkdtemp(prefix="gwbench-", dir=SETTINGS.tmp))
        self.port = free_port()
        self.base = f"http://{LOCAL}:{self.port}"
        self.db = self.dir / "gateway.db"
        self.config = self.dir / "gateway.toml"
        self.log = self.dir / "gateway.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.admin_key = ""
        self.publisher_key = ""
        sections: dict[str, dict[str, Any]] = {
            # 1 MiB: a batch of 1000 bench events is ~280 KB, over the 256 KiB default.
            "server": {"host": LOCAL, "port": self.port, "max_body_bytes": 1 << 20,
                       **(server or {})},
            "database": {"path": str(self.db)},
            "delivery": dict(delivery or {}),
            "security": {"verify_intent": False, "allow_http_targets": True,
                         "allow_private_targets": True},
            # The default configuration (level info, a JSON access line per request): the
            # gateway as shipped is what is measured. `log` overrides it (e.g. access off, to
            # see what the access line costs).
            "log": dict(log or {}),
        }
        lines: list[str] = []
        for name, values in sections.items():
            lines.append(f"[{name}]")
            lines += [f"{k} = {_toml(v)}" for k, v in values.items()]
            lines.append("")
        for t in topics:
            lines += ["[[topics]]", f"name = {_toml(t)}", ""]
        self.config.write_text("\n".join(lines))

    def _key(self, role: str) -> str:
        out = subprocess.run([GATEWAY_BIN, "keys", "create", "--role", role, "--config",
                              str(self.config)], capture_output=True, text=True, check=True,
                             env={**os.environ, **SETTINGS.env}, timeout=60)
        return out.stdout.strip()

    def make_keys(self) -> None:
        if not self.admin_key:
            self.admin_key = self._key("admin")
            self.publisher_key = self._key("publisher")

    async def start(self) -> Gateway:
        self.make_keys()
        self.started_at = time.time()
        self.proc = spawn([GATEWAY_BIN, "serve", "--config", str(self.config)], log=self.log,
                          env=SETTINGS.env)
        try:
            await wait_http(f"{self.base}/readyz", 60, self.proc, "gateway")
        except Exception:
            print(self.tail(), file=sys.stderr)
            raise
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def __aenter__(self) -> Gateway:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: object) -> None:
        # A failed run shows the end of the gateway's log; every run removes its process and dir.
        if exc_type is not None and issubclass(exc_type, Exception):
            print(self.tail())
        self.cleanup()

    def tail(self, n: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        return ""

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        code = stop(self.proc, grace=15.0)
        self.proc = None
        return code

    def cleanup(self) -> None:
        self.stop()
        if not SETTINGS.keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    def api(self, key: str | None = None) -> Api:
        return Api(self.base, key or self.admin_key)


class Api:
    """The gateway's HTTP API, as the orchestrator calls it."""

    def __init__(self, base: str, key: str) -> None:
        self.base = base
        self.headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Api:
        self._session = aiohttp.ClientSession(
            headers=self.headers, timeout=aiohttp.ClientTimeout(total=120),
            connector=aiohttp.TCPConnector(limit=32))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def call(self, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
        assert self._session is not None
        data = None if body is None else orjson.dumps(body)
        async with self._session.request(method, self.base + path, data=data) as r:
            raw = await r.read()
            if r.status != expect:
                raise RuntimeError(f"{method} {path} answered {r.status}: {raw[:300]!r}")
            return orjson.loads(raw) if raw else None

    async def create_hook(self, url: str, topics: Sequence[str]) -> str:
        hook = await self.call("POST", "/v1/hooks", {"target_url": url, "topics": list(topics),
                                                     "account": ACCOUNT}, expect=201)
        return str(hook["id"])

    async def set_status(self, hook_id: str, status: str) -> None:
        await self.call("PATCH", f"/v1/hooks/{hook_id}", {"status": status})

    async def publish(self, events: list[dict[str, Any]]) -> list[str]:
        out = await self.call("POST", "/v1/events", events, expect=202)
        return [e["id"] for e in out["data"]]

    async def count(self, hook_id: str, status: str, limit: int = 500) -> int:
        """How many deliveries of a hook have this status (pages through the list)."""
        n, cursor = 0, ""
        while True:
            q = f"/v1/hooks/{hook_id}/deliveries?status={status}&limit={limit}"
            page = await self.call("GET", q + (f"&cursor={cursor}" if cursor else ""))
            n += len(page["data"])
            cursor = page["next_cursor"]
            if not cursor:
                return n

    async def pending_empty(self, hook_id: str) -> bool:
        page = await self.call("GET", f"/v1/hooks/{hook_id}/deliveries?status=pending&limit=1")
        return not page["data"]


async def gather_limited(n: int, coros: Iterable[Any]) -> list[Any]:
    sem = asyncio.Semaphore(n)

    async def one(c: Any) -> Any:
        async with sem:
            return await c

    return await asyncio.gather(*(one(c) for c in coros))


def event(topic: str, i: int, pad: int = 160) -> dict[str, Any]:
    """One event as publishers send it; `t` is the publish time, for latency."""
    return {"topic": topic, "account": ACCOUNT,
            "data": {"i": i, "t": time.time(), "email": f"user{i}@example.com", "pad": "x" * pad}}


async def publish_all(api: Api, events: Sequence[dict[str, Any]], batch: int = 1000,
                      parallel: int = 2) -> list[str]:
    chunks = [list(events[i:i + batch]) for i in range(0, len(events), batch)]
    ids = await gather_limited(parallel, (api.publish(c) for c in chunks))
    return [i for part in ids for i in part]


# -- profiling ---------------------------------------------------------------------------------


class Profiler:
    """py-spy attached to the gateway for one measured phase (only with --profile DIR)."""

    def __init__(self, pid: int, label: str) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        if SETTINGS.profile_dir is None:
            return
        py_spy = shutil.which("py-spy", path=str(Path(PYTHON).parent)) or shutil.which("py-spy")
        if py_spy is None:
            print("  (py-spy not installed: pip install py-spy)", file=sys.stderr)
            return
        SETTINGS.profile_dir.mkdir(parents=True, exist_ok=True)
        stem = "".join(c if c.isalnum() else "-" for c in label).strip("-")
        out = SETTINGS.profile_dir / f"{stem}-{int(time.time())}.txt"
        self.proc = spawn([py_spy, "record", "--pid", str(pid), "--format", "raw", "--threads",
                           "--nonblocking", "--rate", str(SETTINGS.profile_rate), "-o", str(out)],
                          log=SETTINGS.profile_dir / "py-spy.log")
        print(f"  profiling gateway pid {pid} → {out}", file=sys.stderr)

    def stop(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(30)
            stop(self.proc, grace=5.0)
            self.proc = None


# -- statistics --------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = (len(s) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def summary(values: Sequence[float]) -> tuple[float, float, float]:
    """(median, min, max)."""
    vals = [v for v in values if v == v]  # drop NaN
    if not vals:
        return (float("nan"),) * 3
    return statistics.median(vals), min(vals), max(vals)
