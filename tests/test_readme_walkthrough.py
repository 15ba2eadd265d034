"""README.md's walkthrough, run as a reader pastes it: its shell blocks in three terminals (the
gateway, the demo receiver, and one shell that keeps its variables), with only the ports moved
off 8080 and 9000, the demo's three retries made ten times shorter (GATEWAY_DELIVERY_RETRY_
SCHEDULE_SECONDS, as many waits), and the one `sleep` turned into a wait for what it waits for."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import wait_until
from tests.process import clean_env, free_port

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def json_objects(text: str) -> list[dict[str, Any]]:
    """The JSON objects curl printed, in order (curl -s adds no newline after them)."""
    decoder, out, i = json.JSONDecoder(), [], text.find("{")
    while i != -1:
        try:
            obj, end = decoder.raw_decode(text, i)
        except ValueError:
            i = text.find("{", i + 1)
            continue
        out.append(obj)
        i = text.find("{", end)
    return out


def section_blocks(heading: str) -> list[str]:
    """The shell blocks of one README section (up to the next `## ` heading)."""
    text = README.read_text()
    start = text.index(f"## {heading}")
    end = text.find("\n## ", start + 1)
    part = text[start:end if end != -1 else len(text)]
    return re.findall(r"```sh\n(.*?)```", part, re.DOTALL)


def walkthrough() -> list[str]:
    return section_blocks("Walkthrough")


class Terminal:
    """A child process with its output collected; for the interactive shell, commands are sent
    one block at a time and answered up to a marker, so variables carry over between blocks."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.out = ""
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, argv: list[str], cwd: Path, env: dict[str, str]) -> Terminal:
        proc = await asyncio.create_subprocess_exec(
            *argv, cwd=cwd, env=env, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        return cls(proc)

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while chunk := await self.proc.stdout.read(4096):
            self.out += chunk.decode(errors="replace")

    async def wait_for(self, text: str, timeout: float = 60) -> None:
        await wait_until(lambda: text in self.out, timeout, f"{text!r} in:\n{self.out}")

    async def run(self, block: str, n: int, timeout: float = 120) -> str:
        """Send one block to the shell; what it printed."""
        assert self.proc.stdin is not None
        start = len(self.out)
        self.proc.stdin.write(f"{block}\necho __block_{n}_done__\n".encode())
        await self.proc.stdin.drain()
        await self.wait_for(f"__block_{n}_done__", timeout)
        return self.out[start:]

    async def interrupt(self) -> None:
        """Ctrl-C: SIGINT to the process group the terminal's command runs in."""
        if self.proc.returncode is None:
            os.killpg(self.proc.pid, 2)
            await asyncio.wait_for(self.proc.wait(), 20)
        await self._reader


@pytest.fixture
async def terminals() -> AsyncIterator[list[Terminal]]:
    opened: list[Terminal] = []
    try:
        yield opened
    finally:
        for t in opened:
            if t.proc.returncode is None:
                t.proc.kill()
                await t.proc.wait()


@pytest.mark.skipif(shutil.which("curl") is None or shutil.which("setsid") is None,
                    reason="the walkthrough needs curl; its terminals, setsid")
async def test_the_readme_walkthrough_as_pasted(tmp_path: Path, terminals: list[Terminal]) -> None:
    blocks = walkthrough()
    assert len(blocks) == 8, f"the walkthrough has {len(blocks)} shell blocks; update this test"
    gw_port, rx_port = free_port(), free_port()

    def moved(block: str) -> str:
        return block.replace("127.0.0.1:8080", f"127.0.0.1:{gw_port}") \
            .replace("127.0.0.1:9000", f"127.0.0.1:{rx_port}").replace("--port 9000",
                                                                       f"--port {rx_port}")

    # "Inside the checkout with the venv active": the checkout's contrib/, and an activate
    # script that puts this interpreter's `gateway` first on PATH.
    (tmp_path / "contrib").symlink_to(ROOT / "contrib")
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    bindir = os.path.dirname(sys.executable)
    (tmp_path / ".venv" / "bin" / "activate").write_text(f'export PATH="{bindir}:$PATH"\n')
    env = clean_env(PATH=f"{bindir}:{os.environ['PATH']}")

    async def terminal(block: str) -> Terminal:
        t = await Terminal.start(["setsid", "bash", "-c", block], tmp_path,
                                 {**env, "GATEWAY_SERVER_PORT": str(gw_port),
                                  "GATEWAY_DELIVERY_RETRY_SCHEDULE_SECONDS": "0.2,0.5,1"})
        terminals.append(t)
        return t

    serve = await terminal(moved(blocks[0]))
    await serve.wait_for("started")
    receiver = await terminal(moved(blocks[1]))
    await receiver.wait_for("listening on")

    shell = await Terminal.start(["bash", "--norc", "-s"], tmp_path, env)
    terminals.append(shell)
    await shell.run(moved(blocks[2]), 2)
    await receiver.wait_for("handshake for hook_")
    hook = json.loads((tmp_path / "hook.json").read_text())
    assert (tmp_path / "secret.txt").read_text().strip() == hook["secret"]
    assert hook["id"] in await shell.run(moved(blocks[3]), 3)
    published = await shell.run(moved(blocks[4]), 4)
    assert '"deliveries":1' in published, published
    await receiver.wait_for(" signature OK: ")
    log = await shell.run(moved(blocks[5]), 5)
    assert '"status_code":204' in log, log

    # The retry: the receiver stopped, the delivery fails four times, then a manual retry.
    await receiver.interrupt()
    assert "sleep 25" in blocks[6] and "retry_schedule_seconds = [2, 5, 10]" in blocks[0]
    wait = ('until curl -s "http://127.0.0.1:8080/v1/deliveries/$DLV" -H "Authorization: Bearer '
            '$SUB" | grep -q \'"status":"failed"\'; do sleep 0.2; done')
    failed = await shell.run(moved(blocks[6].replace("sleep 25", wait)), 6)
    delivery = json_objects(failed)[-1]
    assert delivery["status"] == "failed"
    assert [a["error"] for a in delivery["attempt_log"]] == ["connection refused"] * 4
    receiver = await terminal(moved(blocks[1]))
    await receiver.wait_for("listening on")
    [answer] = json_objects(await shell.run(moved(blocks[7]), 7))
    assert answer["status"] == "pending"
    await receiver.wait_for(f"delivery {delivery['event_id']} signature OK")
    # "Continue the walkthrough" in the portal: the link for the account, from the same shell.
    if "## The portal" in README.read_text():
        [portal] = section_blocks("The portal")
        [link] = json_objects(await shell.run(moved(portal), 8))
        assert link["url"] and link["expires_at"], link
    await serve.interrupt()
    await receiver.interrupt()
