"""A real `gateway serve` child process for end-to-end tests: its config file, keys made with the
CLI, start and readiness, SIGKILL / SIGTERM, and the log it wrote."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from tests import pg
from tests.conftest import wait_until

TOPIC = "contact.created"


def free_port() -> int:
    """A port nothing listens on right now (the kernel picks it; we let go of it at once)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    raise TypeError(f"no TOML spelling for {value!r}")


def config_text(sections: dict[str, dict[str, Any]], topics: tuple[str, ...] = (TOPIC,)) -> str:
    lines: list[str] = []
    for name, values in sections.items():
        lines.append(f"[{name}]")
        lines.extend(f"{k} = {_toml(v)}" for k, v in values.items())
        lines.append("")
    for t in topics:
        lines += ["[[topics]]", f"name = {_toml(t)}", f"description = {_toml(t + ' happened')}", ""]
    return "\n".join(lines)


def write_config(tmp_path: Path, port: int, topics: tuple[str, ...] = (TOPIC,),
                 **overrides: dict[str, Any]) -> Path:
    """A config for a test gateway: its own SQLite file, loopback http targets allowed, short
    retries. `overrides` replace keys section by section."""
    sections: dict[str, dict[str, Any]] = {
        "server": {"host": "127.0.0.1", "port": port},
        "database": {"path": str(tmp_path / "gateway.db"), "url": pg.ACTIVE["url"]},
        "delivery": {
            "timeout_seconds": 5,
            "retry_schedule_seconds": [0.1, 0.2, 0.5, 1, 1, 1, 1, 1, 1, 1],
            "retry_jitter": 0,
            "max_in_flight_per_host": 16,
            "poll_interval_seconds": 0.2,
            "shutdown_grace_seconds": 2,
        },
        "security": {"verify_intent": True, "allow_private_targets": True,
                     "allow_http_targets": True},
        "log": {"level": "warning", "access": False},
    }
    for name, values in overrides.items():
        sections.setdefault(name, {}).update(values)
    path = tmp_path / "config.toml"
    path.write_text(config_text(sections, topics))
    return path


def clean_env(**extra: str) -> dict[str, str]:
    """The test's environment without GATEWAY_* variables that would override the config file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(extra)
    return env


async def run_gateway(*args: str, cwd: Path, env: dict[str, str] | None = None,
                      timeout: float = 20.0) -> tuple[int, str, str]:
    """Run `python -m gateway ARGS` to completion: (exit code, stdout, stderr). A process that
    does not exit within `timeout` is killed and reported as a failure."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", *args, cwd=cwd, env=env or clean_env(),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    # Read in tasks of their own, so what a hung process printed is kept when it is killed.
    reads = asyncio.gather(proc.stdout.read(), proc.stderr.read())
    try:
        async with asyncio.timeout(timeout):
            rc = await proc.wait()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        _, err = await reads
        raise AssertionError(
            f"`gateway {' '.join(args)}` did not exit within {timeout}s (killed it); "
            f"stderr: {err.decode()!r}") from None
    out, err = await reads
    return rc, out.decode(), err.decode()


async def create_key(config: Path, role: str, account: str | None = None) -> str:
    args = ["keys", "create", "--role", role, "--config", str(config)]
    if account is not None:
        args += ["--account", account]
    rc, out, err = await run_gateway(*args, cwd=config.parent)
    assert rc == 0, err
    lines = out.splitlines()
    assert len(lines) == 1, f"keys create must print the key alone, got {out!r}"
    return lines[0]


async def connection_refused(port: int) -> bool:
    """Nothing accepts connections on the port. A reset counts: the connection reached the
    backlog of a listener that closed before accepting it."""
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except (ConnectionRefusedError, ConnectionResetError):
        return True
    writer.close()
    await writer.wait_closed()
    return False


@dataclass
class ServeProcess:
    """`gateway serve --config PATH` as a child process, restartable on the same database and
    port. Each run writes stdout and stderr to its own log file next to the config."""

    config: Path
    port: int
    env: dict[str, str] = field(default_factory=clean_env)
    proc: asyncio.subprocess.Process | None = None
    http: aiohttp.ClientSession | None = None
    runs: int = 0
    logs: list[Path] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.returncode

    async def start(self, ready_timeout: float = 20.0) -> ServeProcess:
        """Start and wait until /readyz answers 200 (the database is open, the loop runs)."""
        assert self.proc is None or self.proc.returncode is not None, "already running"
        self.runs += 1
        log = self.config.parent / f"serve-{self.runs}.log"
        self.logs.append(log)
        with log.open("wb") as fh:  # the child keeps its own copy of the descriptor
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "gateway", "serve", "--config", str(self.config),
                cwd=self.config.parent, env=self.env, stdin=asyncio.subprocess.DEVNULL,
                stdout=fh, stderr=fh)
        # A fresh session per run: pooled connections to a killed process are dead.
        if self.http is not None:
            await self.http.close()
        self.http = aiohttp.ClientSession()
        await wait_until(self._ready, ready_timeout, f"gateway on port {self.port} to be ready")
        return self

    async def _ready(self) -> bool:
        assert self.proc is not None and self.http is not None
        if self.proc.returncode is not None:
            raise AssertionError(f"gateway exited with {self.proc.returncode} while starting:\n"
                                 f"{self.log_text()}")
        try:
            async with self.http.get(f"{self.base_url}/readyz") as resp:
                return resp.status == 200
        except aiohttp.ClientError:
            return False

    def log_text(self, run: int = -1) -> str:
        return self.logs[run].read_text(errors="replace") if self.logs else ""

    def log_events(self, run: int = -1) -> list[dict[str, Any]]:
        """The JSON log lines of one run (other lines skipped)."""
        out = []
        for line in self.log_text(run).splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    continue
        return out

    async def call(self, method: str, path: str, key: str, json_body: Any = None,
                   params: dict[str, str] | None = None) -> tuple[int, Any]:
        assert self.http is not None
        async with self.http.request(method, self.base_url + path, json=json_body, params=params,
                                     headers={"Authorization": f"Bearer {key}"}) as resp:
            body = await resp.json(content_type=None) if resp.content_length != 0 else None
            return resp.status, body

    async def kill(self) -> int:
        """SIGKILL, then wait for the exit status."""
        assert self.proc is not None
        self.proc.kill()
        return await self.proc.wait()

    async def wait_exit(self, timeout: float) -> int:
        assert self.proc is not None
        async with asyncio.timeout(timeout):
            return await self.proc.wait()

    async def close(self) -> None:
        """Always called in a finally: kill a process still running, close the client session."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        if self.http is not None:
            await self.http.close()
            self.http = None


async def count_deliveries(gw: ServeProcess, key: str, hook_id: str, status: str) -> int:
    """How many of a hook's deliveries have `status`, following every page."""
    total = 0
    params = {"status": status, "limit": "500"}
    while True:
        code, body = await gw.call("GET", f"/v1/hooks/{hook_id}/deliveries", key, params=params)
        assert code == 200, body
        total += len(body["data"])
        if not body["next_cursor"]:
            return total
        params["cursor"] = body["next_cursor"]
