"""The command line as operators script it: `gateway keys create/list/revoke` on a real database."""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import Gateway

KEY_LINE = re.compile(r"^gw_[A-Za-z0-9_-]{43}$")


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def cli_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    """A config whose database is the one start_gateway uses (base_config: tmp_path/gateway.db)."""
    path = tmp_path / "cli.toml"
    path.write_text(f'[database]\npath = "{tmp_path / "gateway.db"}"\nsynchronous = "normal"\n')
    return path


async def gateway_cli(*args: str) -> Result:
    """Run `python -m gateway ARGS` without blocking the event loop a test app is serving on."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=cli_env())
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 20)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"gateway {' '.join(args)} did not exit within 20s") from None
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())


async def create_key(config_file: Path, *extra: str) -> str:
    res = await gateway_cli("keys", "create", "--config", str(config_file), *extra)
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


async def test_create_prints_only_the_key(config_file: Path) -> None:
    res = await gateway_cli("keys", "create", "--role", "admin", "--config", str(config_file))
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert len(lines) == 1, res.stdout
    assert res.stdout.endswith("\n")
    assert KEY_LINE.match(lines[0]), lines[0]


def test_key_can_be_captured_by_the_shell(config_file: Path) -> None:
    script = (f'KEY=$("{sys.executable}" -m gateway keys create --role publisher '
              f'--config "{config_file}") && printf "<%s>" "$KEY"')
    res = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=cli_env(),
                         timeout=30, check=False)
    assert res.returncode == 0, res.stderr
    m = re.fullmatch(r"<(.*)>", res.stdout)
    assert m is not None, res.stdout
    assert KEY_LINE.match(m.group(1))


async def test_each_key_is_different(config_file: Path) -> None:
    a = await create_key(config_file, "--role", "admin")
    b = await create_key(config_file, "--role", "admin")
    assert a != b


async def test_subscriber_key_needs_an_account(config_file: Path) -> None:
    res = await gateway_cli("keys", "create", "--role", "subscriber", "--config", str(config_file))
    assert res.returncode != 0
    assert "--account" in res.stderr
    assert res.stdout == ""
    assert "Traceback" not in res.stderr


async def test_bad_role_and_bad_account_are_refused(config_file: Path) -> None:
    res = await gateway_cli("keys", "create", "--role", "root", "--config", str(config_file))
    assert res.returncode != 0
    assert "--role" in res.stderr
    res = await gateway_cli("keys", "create", "--role", "subscriber", "--account", "a b",
                            "--config", str(config_file))
    assert res.returncode != 0
    assert "--account" in res.stderr
    assert res.stdout == ""
    # A publisher key acts for every account: an --account would only mislead.
    res = await gateway_cli("keys", "create", "--role", "publisher", "--account", "acme",
                            "--config", str(config_file))
    assert res.returncode != 0
    assert "--account" in res.stderr and "subscriber" in res.stderr
    assert res.stdout == ""
    listing = await gateway_cli("keys", "list", "--config", str(config_file))
    assert len(listing.stdout.splitlines()) == 1  # the header: nothing was created


async def test_subscriber_key_for_a_new_account_creates_it(
        config_file: Path, tmp_path: Path,
        start_gateway: Callable[..., Awaitable[Gateway]]) -> None:
    key = await create_key(config_file, "--role", "subscriber", "--account", "newco")
    with sqlite3.connect(tmp_path / "gateway.db") as db:
        names = [r[0] for r in db.execute("SELECT name FROM accounts")]
    assert names == ["newco"]
    gw = await start_gateway()
    status, body, _ = await gw.call("GET", "/v1/hooks", key)
    assert status == 200, body
    assert body["data"] == []
    # The key acts for its own account only.
    status, body, _ = await gw.call("POST", "/v1/hooks", key, json={
        "target_url": "http://127.0.0.1:9/x", "topics": ["contact.created"], "account": "acme"})
    assert status == 403, body


async def test_list_never_prints_a_key(config_file: Path) -> None:
    keys = [await create_key(config_file, "--role", "admin"),
            await create_key(config_file, "--role", "subscriber", "--account", "acme")]
    res = await gateway_cli("keys", "list", "--config", str(config_file))
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert len(lines) == 3  # a header and one line per key
    for key in keys:
        assert key not in res.stdout
        assert key[3:] not in res.stdout
        assert key[3:20] not in res.stdout
    assert "admin" in lines[1]
    assert "subscriber" in lines[2] and "acme" in lines[2]
    assert all(re.match(r"^key_[0-9a-z]{26} ", ln) for ln in lines[1:])


async def test_revoke_takes_effect_on_the_next_request(
        config_file: Path, start_gateway: Callable[..., Awaitable[Gateway]]) -> None:
    key = await create_key(config_file, "--role", "publisher")
    listing = await gateway_cli("keys", "list", "--config", str(config_file))
    [_, line] = listing.stdout.splitlines()
    key_id = line.split()[0]
    gw = await start_gateway()
    status, _, _ = await gw.call("GET", "/v1/topics", key)
    assert status == 200
    res = await gateway_cli("keys", "revoke", key_id, "--config", str(config_file))
    assert res.returncode == 0, res.stderr
    assert res.stdout == ""
    status, body, resp = await gw.call("GET", "/v1/topics", key)
    assert status == 401
    assert resp.content_type == "application/problem+json"
    assert key not in str(body)
    # The other keys still work, and the listing shows the revocation.
    status, _, _ = await gw.call("GET", "/v1/topics", gw.publisher)
    assert status == 200
    listing = await gateway_cli("keys", "list", "--config", str(config_file))
    [line] = [ln for ln in listing.stdout.splitlines() if ln.startswith(key_id)]
    assert line.split()[-1] != "-"


async def test_revoke_an_unknown_id_fails(config_file: Path) -> None:
    res = await gateway_cli("keys", "revoke", "key_nope", "--config", str(config_file))
    assert res.returncode != 0
    assert "key_nope" in res.stderr


@pytest.mark.parametrize("command", [("keys", "list"), ("keys", "create", "--role", "admin")])
async def test_a_newer_database_is_refused_and_the_command_exits(
        config_file: Path, tmp_path: Path, command: tuple[str, ...]) -> None:
    with sqlite3.connect(tmp_path / "gateway.db") as db:
        db.execute("PRAGMA user_version = 99")
    res = await gateway_cli(*command, "--config", str(config_file))
    assert res.returncode == 1
    assert "99" in res.stderr and "newer" in res.stderr
    assert "Traceback" not in res.stderr
    assert res.stdout == ""


async def test_keys_commands_refuse_a_bad_config(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[database]\npaht = \"x.db\"\n")
    res = await gateway_cli("keys", "create", "--role", "admin", "--config", str(bad))
    assert res.returncode != 0
    assert "database.paht" in res.stderr
    assert res.stdout == ""
