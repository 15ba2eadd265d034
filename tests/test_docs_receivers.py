"""The receiver's guide's programs (docs/receivers.md), run as written against a real `gateway
serve`: each answers the handshake, verifies a real delivery, keeps verifying through a secret
rotation, refuses a stale or forged one and processes a repeated webhook-id once."""

from __future__ import annotations

import asyncio
import base64
import re
import shutil
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from gateway.signing import sign
from tests.conftest import wait_until
from tests.process import TOPIC, ServeProcess, clean_env, create_key, free_port, write_config

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "receivers.md"
SAMPLE = re.compile(r"<!-- sample: (\S+) -->\n```\w+\n(.*?)\n```", re.DOTALL)
PLACEHOLDER = "whsec_" + base64.b64encode(b"\0" * 32).decode()
NODE = shutil.which("node")
DEMO_RECEIVER = GUIDE.parent.parent / "contrib" / "receiver.py"


def samples() -> dict[str, str]:
    found = {name: code + "\n" for name, code in SAMPLE.findall(GUIDE.read_text())}
    assert found, f"no <!-- sample: NAME --> blocks in {GUIDE}"
    return found


def test_every_code_block_of_the_guide_is_a_tested_sample_or_a_command() -> None:
    text = GUIDE.read_text()
    blocks = re.findall(r"^```(\w*)$", text, re.MULTILINE)[::2]  # opening fences
    assert blocks.count("python") + blocks.count("js") == len(samples())
    assert set(samples()) == {"receiver_library.py", "receiver_by_hand.py", "receiver.js",
                              "fetch_event.py", "retired.py"}


@dataclass
class Program:
    """One sample run as a child process, its output collected line by line."""

    argv: list[str]
    port: int
    lines: list[str] = field(default_factory=list)
    proc: asyncio.subprocess.Process | None = None
    _reader: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, secret: str) -> Program:
        env = clean_env(WEBHOOK_SECRET=secret, PORT=str(self.port))
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv, env=env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        self._reader = asyncio.create_task(self._read())

        async def listening() -> bool:
            assert self.proc is not None
            if self.proc.returncode is not None:
                raise AssertionError(f"{self.argv} exited: {self.lines}")
            try:  # a connection, no request: the program's output stays its deliveries' only
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                return False
            writer.close()
            await writer.wait_closed()
            return True
        await wait_until(listening, 60, f"{self.argv[-1]} to listen")
        return self

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        async for line in self.proc.stdout:
            self.lines.append(line.decode().rstrip())

    async def wait_line(self, prefix: str) -> str:
        def match() -> str | None:
            return next((x for x in self.lines if x.startswith(prefix)), None)
        await wait_until(lambda: match() is not None, 60, f"{prefix!r} in {self.lines}")
        line = match()
        assert line is not None
        return line

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            await self.proc.wait()
        if self._reader is not None:
            await self._reader


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[tuple[ServeProcess, str, str]]:
    port = free_port()
    config = write_config(tmp_path, port)
    gw = ServeProcess(config, port)
    try:
        # Started before the keys are made (the CLI beside a running gateway, as operators do):
        # the port picked above is free only until someone binds it.
        await gw.start()
        pub = await create_key(config, "publisher")
        sub = await create_key(config, "subscriber", "acme")
        yield gw, pub, sub
    finally:
        await gw.close()


async def publish(gw: ServeProcess, pub: str, n: int) -> str:
    code, out = await gw.call("POST", "/v1/events", pub,
                              {"topic": TOPIC, "account": "acme", "data": {"n": n}})
    assert code == 202, out
    return str(out["id"])


async def post(url: str, headers: dict[str, str], body: bytes) -> int:
    async with aiohttp.ClientSession() as http, http.post(url, data=body, headers=headers) as r:
        return r.status


def signed(secret: str, msg_id: str, ts: int, body: bytes, extra: str = "") -> dict[str, str]:
    sig = sign(secret, msg_id, ts, body)
    return {"webhook-id": msg_id, "webhook-timestamp": str(ts),
            "webhook-signature": f"{extra} {sig}".strip(), "Content-Type": "application/json"}


def argv_of(name: str, tmp_path: Path) -> list[str]:
    path = tmp_path / name
    path.write_text(samples()[name])
    return [NODE or "node", str(path)] if name.endswith(".js") else [sys.executable, str(path)]


@pytest.mark.parametrize("name", [
    "receiver_library.py",
    "receiver_by_hand.py",
    pytest.param("receiver.js", marks=pytest.mark.skipif(NODE is None, reason="node not installed")),
])
async def test_the_guides_receiver_verifies_real_deliveries(
        name: str, gateway: tuple[ServeProcess, str, str], tmp_path: Path) -> None:
    gw, pub, sub = gateway
    receiver = Program(argv_of(name, tmp_path), free_port())
    try:
        # The guide's order: a placeholder secret for the handshake, then the hook's own.
        await receiver.start(PLACEHOLDER)
        code, hook = await gw.call("POST", "/v1/hooks", sub,
                                   {"target_url": receiver.url + "/hooks/contacts", "topics": [TOPIC]})
        assert code == 201, hook
        await receiver.stop()
        secret = hook["secret"]
        receiver = Program(receiver.argv, receiver.port)
        await receiver.start(secret)

        first = await publish(gw, pub, 1)
        await receiver.wait_line(f"verified {first}")

        # Rotation, step by step: the receiver on the old secret verifies (two signatures) ...
        code, rotated = await gw.call("POST", f"/v1/hooks/{hook['id']}/rotate-secret", sub)
        assert code == 200, rotated
        second = await publish(gw, pub, 2)
        await receiver.wait_line(f"verified {second}")
        # ... and so does the one deployed with the new secret.
        await receiver.stop()
        receiver = Program(receiver.argv, receiver.port)
        await receiver.start(rotated["secret"])
        third = await publish(gw, pub, 3)
        await receiver.wait_line(f"verified {third}")

        async def delivered(event_id: str) -> bool:
            code, body = await gw.call("GET", f"/v1/events/{event_id}", sub)
            return code == 200 and body["deliveries"]["delivered"] == 1
        for event_id in (first, second, third):
            await wait_until(lambda e=event_id: delivered(e), 60, f"{event_id} delivered")
        assert not [x for x in receiver.lines if x.startswith("rejected")]

        # Requests made here, signed with the receiver's (new) secret as the gateway signs.
        new = rotated["secret"]
        body = b'{"id":"evt_test","type":"contact.created","sequence":9,"data":{}}'
        now = int(time.time())
        target = receiver.url + "/hooks/contacts"
        assert await post(target, signed(new, "evt_stale", now - 6 * 60, body), body) == 401
        assert await post(target, signed(new, "evt_early", now + 6 * 60, body), body) == 401
        forged = signed(new, "evt_forged", now, body)
        forged["webhook-signature"] = "v1," + base64.b64encode(b"x" * 32).decode()
        assert await post(target, forged, body) == 401
        two = signed(new, "evt_twice", now, body, extra="v1,bm90IHRoaXMgb25l")  # one matches
        assert await post(target, two, body) == 204
        assert await post(target, two, body) == 204
        await receiver.wait_line("duplicate evt_twice")
        assert len([x for x in receiver.lines if x.startswith("verified evt_twice")]) == 1, \
            receiver.lines
        assert len([x for x in receiver.lines if x.startswith("rejected")]) == 3
    finally:
        await receiver.stop()


async def test_fetch_event_reads_a_skinny_deliverys_resource_url(
        gateway: tuple[ServeProcess, str, str], tmp_path: Path) -> None:
    gw, pub, sub = gateway
    event_id = await publish(gw, pub, 42)
    proc = await asyncio.create_subprocess_exec(
        *argv_of("fetch_event.py", tmp_path), f"{gw.base_url}/v1/events/{event_id}",
        env=clean_env(GATEWAY_API_KEY=sub), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0, err
    assert out.decode().strip() == f'{TOPIC} {{"n": 42}}'


async def test_the_retired_endpoint_unsubscribes_the_hook(
        gateway: tuple[ServeProcess, str, str], tmp_path: Path) -> None:
    gw, pub, sub = gateway
    live = await Program(argv_of("receiver_by_hand.py", tmp_path), free_port()).start(PLACEHOLDER)
    try:
        code, hook = await gw.call("POST", "/v1/hooks", sub,
                                   {"target_url": live.url + "/hooks/contacts", "topics": [TOPIC]})
        assert code == 201, hook
    finally:
        await live.stop()
    retired = await Program(argv_of("retired.py", tmp_path), live.port).start(PLACEHOLDER)
    try:
        await publish(gw, pub, 1)

        async def removed() -> bool:
            code, body = await gw.call("GET", f"/v1/hooks/{hook['id']}", sub)
            return code == 200 and body["status"] == "removed"
        await wait_until(removed, 60, "the hook to be removed")
    finally:
        await retired.stop()


def test_samples_do_not_need_the_gateway_installed() -> None:
    """A receiver's author has only the guide: the samples import nothing of the project."""
    for name, code in samples().items():
        assert "gateway" not in re.findall(r"^(?:from|import) (\w+)", code, re.MULTILINE), name


async def test_the_demo_receiver_checks_signature_and_timestamp_and_dedupes(
        gateway: tuple[ServeProcess, str, str], tmp_path: Path) -> None:
    """contrib/receiver.py, as the README's walkthrough runs it."""
    gw, pub, sub = gateway
    secret_file = tmp_path / "secret.txt"
    port = free_port()
    demo = Program([sys.executable, str(DEMO_RECEIVER), "--port", str(port), "--secret-file",
                    str(secret_file)], port)
    await demo.start(PLACEHOLDER)
    try:
        code, hook = await gw.call("POST", "/v1/hooks", sub,
                                   {"target_url": demo.url + "/hooks/contacts", "topics": [TOPIC]})
        assert code == 201, hook
        await demo.wait_line("handshake for " + hook["id"])
        secret_file.write_text(hook["secret"] + "\n")
        event_id = await publish(gw, pub, 1)
        await demo.wait_line(f"delivery {event_id} signature OK")

        body = b'{"id":"evt_demo"}'
        now = int(time.time())
        target = demo.url + "/hooks/contacts"
        assert await post(target, signed(hook["secret"], "evt_old", now - 301, body), body) == 401
        await demo.wait_line("delivery evt_old TIMESTAMP")
        assert await post(target, signed(PLACEHOLDER, "evt_bad", now, body), body) == 401
        await demo.wait_line("delivery evt_bad SIGNATURE MISMATCH")
        again = signed(hook["secret"], "evt_demo", now, body)
        assert await post(target, again, body) == 204
        assert await post(target, again, body) == 204
        await demo.wait_line("delivery evt_demo again: already processed")
        assert len([x for x in demo.lines if x.startswith("delivery evt_demo signature OK")]) == 1
    finally:
        await demo.stop()
