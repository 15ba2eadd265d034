"""The command line as operators script it: `gateway keys create/list/revoke` on a real database."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway import __version__, cli
from tests.conftest import Gateway, Receiver

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


async def gateway_cli(*args: str, cwd: Path | None = None,
                      env: dict[str, str] | None = None) -> Result:
    """Run `python -m gateway ARGS` without blocking the event loop a test app is serving on."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**cli_env(), **(env or {})}, cwd=cwd)
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


# -- which database, and where the options go ---------------------------------------------------


async def test_a_relative_database_path_is_next_to_the_config_file(tmp_path: Path) -> None:
    """Run from another folder, a command opens the database the config file names relative to
    itself, and says so on stderr."""
    conf, elsewhere = tmp_path / "conf", tmp_path / "elsewhere"
    conf.mkdir()
    elsewhere.mkdir()
    (conf / "demo.toml").write_text('[database]\npath = "demo.db"\n')
    res = await gateway_cli("keys", "create", "--role", "admin", "--config", "../conf/demo.toml",
                            cwd=elsewhere)
    assert res.returncode == 0, res.stderr
    assert res.stderr.splitlines() == [f"database: {conf / 'demo.db'} (new file)"]
    assert KEY_LINE.match(res.stdout.strip())
    assert (conf / "demo.db").exists()
    assert list(elsewhere.iterdir()) == []
    # From the config's own folder, through GATEWAY_CONFIG: the same database, the same key.
    res = await gateway_cli("keys", "list", cwd=conf, env={"GATEWAY_CONFIG": "demo.toml"})
    assert res.returncode == 0, res.stderr
    assert res.stderr.splitlines() == [f"database: {conf / 'demo.db'}"]
    assert len(res.stdout.splitlines()) == 2


async def test_without_a_config_file_the_database_is_in_the_working_directory(
        tmp_path: Path) -> None:
    res = await gateway_cli("keys", "list", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stderr.splitlines() == [f"database: {tmp_path / 'gateway.db'} (new file)"]


@pytest.mark.parametrize("where", ["first", "after the group", "last"])
async def test_config_is_accepted_anywhere_on_the_line(config_file: Path, tmp_path: Path,
                                                       where: str) -> None:
    key = await create_key(config_file, "--role", "admin")
    args = {"first": ["--config", str(config_file), "keys", "list"],
            "after the group": ["keys", "--config", str(config_file), "list"],
            "last": ["keys", "list", "--config", str(config_file)]}[where]
    res = await gateway_cli(*args, cwd=tmp_path / "..")
    assert res.returncode == 0, res.stderr
    assert f"database: {tmp_path / 'gateway.db'}" in res.stderr
    assert len(res.stdout.splitlines()) == 2
    assert key not in res.stdout


async def test_an_unknown_gateway_variable_stops_every_command(config_file: Path) -> None:
    res = await gateway_cli("keys", "list", "--config", str(config_file),
                            env={"GATEWAY_SERVER_PROT": "9000"})
    assert res.returncode == 1
    assert "GATEWAY_SERVER_PROT" in res.stderr and "GATEWAY_SERVER_PORT" in res.stderr
    assert res.stdout == ""
    # (Refused before the database is opened: nothing was made.)
    assert not (config_file.parent / "gateway.db").exists()


async def test_version() -> None:
    res = await gateway_cli("--version")
    assert res.returncode == 0
    assert res.stdout.strip() == f"gateway {__version__}"


@pytest.mark.parametrize("args", [(), ("keys",), ("hooks",), ("deliveries",), ("events",)])
async def test_a_group_without_an_action_shows_its_help(args: tuple[str, ...]) -> None:
    res = await gateway_cli(*args)
    assert res.returncode == 2
    assert res.stdout == ""
    assert res.stderr.startswith("usage: gateway")
    assert "name a" in res.stderr
    assert "required:" not in res.stderr and "_command" not in res.stderr
    actions = {(): ["serve", "check-config", "keys", "hooks", "deliveries", "events"],
               ("keys",): ["create", "list", "revoke"]}.get(args, ["list"])
    for action in actions:
        assert f"    {action}" in res.stderr, action


def test_every_option_has_help() -> None:
    parser, _ = cli._parser()
    seen: set[str] = set()

    def walk(p: argparse.ArgumentParser) -> None:
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    seen.add(name)
                    walk(sub)
            elif not isinstance(action, argparse._HelpAction):
                assert action.help, (p.prog, action.dest)
        assert p.description or p.prog == "gateway", p.prog

    walk(parser)
    assert {"serve", "check-config", "keys", "create", "hooks", "deliveries", "events",
            "list"} <= seen
    res = subprocess.run([sys.executable, "-m", "gateway", "keys", "create", "--help"],
                         capture_output=True, text=True, env=cli_env(), timeout=30, check=False)
    assert "--role" in res.stdout and "subscriber: the hooks of one account" in res.stdout


# -- inspection: hooks and deliveries -----------------------------------------------------------


def table_rows(text: str) -> tuple[list[str], list[list[str]]]:
    """A table's header and rows split into cells (cells hold no blanks here)."""
    lines = text.splitlines()
    assert lines, text
    assert all(ln == ln.rstrip() for ln in lines), "trailing blanks"
    return lines[0].split(), [ln.split() for ln in lines[1:]]


async def test_hooks_list_as_a_table_and_as_json(
        config_file: Path, start_gateway: Callable[..., Awaitable[Gateway]],
        receiver: Receiver) -> None:
    gw = await start_gateway()
    first = await gw.hook(receiver)
    second = await gw.hook(receiver, topics=["contact.*", "billing.tier_changed"])
    status, _, _ = await gw.call("PATCH", f"/v1/hooks/{second['id']}", gw.subscriber,
                                 json={"status": "paused"})
    assert status == 200
    theirs = await gw.hook(receiver, key=gw.other)
    res = await gateway_cli("hooks", "list", "--config", str(config_file))
    assert res.returncode == 0, res.stderr
    assert res.stderr.splitlines() == [f"database: {config_file.parent / 'gateway.db'}"]
    header, rows = table_rows(res.stdout)
    assert header == ["ID", "ACCOUNT", "STATUS", "FAILURES", "TOPICS", "TARGET_URL"]
    assert sorted(rows) == sorted([
        [first["id"], "acme", "active", "0", "contact.created", first["target_url"]],
        [second["id"], "acme", "paused", "0", "contact.*,billing.tier_changed", second["target_url"]],
        [theirs["id"], "globex", "active", "0", "contact.created", theirs["target_url"]]])
    # Columns line up: each starts where its header does.
    lines = res.stdout.splitlines()
    at = lines[0].index("TARGET_URL")
    assert all(ln[at:] == ln[at:].lstrip() and ln[at - 1] == " " for ln in lines[1:])

    res = await gateway_cli("hooks", "list", "--status", "paused", "--json",
                            "--config", str(config_file))
    assert res.returncode == 0, res.stderr
    listed = json.loads(res.stdout)
    assert [h["id"] for h in listed] == [second["id"]]
    assert listed[0]["topics"] == ["contact.*", "billing.tier_changed"]
    assert "secret" not in listed[0]
    assert second["secret"] not in res.stdout

    res = await gateway_cli("hooks", "list", "--account", "globex", "--config", str(config_file))
    assert [r[0] for r in table_rows(res.stdout)[1]] == [theirs["id"]]
    res = await gateway_cli("hooks", "list", "--account", "nobody", "--config", str(config_file))
    assert res.returncode == 0
    assert table_rows(res.stdout)[1] == []
    assert "no hooks" in res.stderr
    res = await gateway_cli("hooks", "list", "--limit", "1", "--config", str(config_file))
    assert len(table_rows(res.stdout)[1]) == 1
    assert "--limit" in res.stderr
    res = await gateway_cli("hooks", "list", "--status", "sleeping", "--config", str(config_file))
    assert res.returncode == 2
    assert "--status" in res.stderr and "paused" in res.stderr


async def test_deliveries_list_of_a_hook(
        config_file: Path, start_gateway: Callable[..., Awaitable[Gateway]],
        receiver: Receiver) -> None:
    gw = await start_gateway(run_delivery_loop=False)
    hook = await gw.hook(receiver)
    events = [await gw.publish(data={"n": i}) for i in range(3)]
    await gw.engine.run_until_idle()
    late = await gw.publish()
    res = await gateway_cli("deliveries", "list", "--hook", hook["id"], "--config",
                            str(config_file))
    assert res.returncode == 0, res.stderr
    header, rows = table_rows(res.stdout)
    assert header == ["ID", "EVENT", "TOPIC", "STATUS", "ATTEMPTS", "LAST_CODE", "NEXT_ATTEMPT",
                      "CREATED"]
    # Newest first: the pending one, then the three delivered.
    assert [r[1] for r in rows] == [late["id"], *[e["id"] for e in reversed(events)]]
    assert [(r[3], r[4], r[5]) for r in rows] == [("pending", "0", "-")] + [
        ("delivered", "1", "204")] * 3
    assert rows[0][6] != "-" and all(r[6] == "-" for r in rows[1:])

    res = await gateway_cli("deliveries", "list", "--hook", hook["id"], "--status", "pending",
                            "--json", "--config", str(config_file))
    assert res.returncode == 0, res.stderr
    [pending] = json.loads(res.stdout)
    status, api, _ = await gw.call("GET", f"/v1/deliveries/{pending['id']}", gw.admin)
    assert status == 200
    assert pending == {k: v for k, v in api.items() if k != "attempt_log"}

    res = await gateway_cli("deliveries", "list", "--hook", "hook_nope", "--config",
                            str(config_file))
    assert res.returncode == 1
    assert "no hook with id hook_nope" in res.stderr
    assert res.stdout == ""
    res = await gateway_cli("deliveries", "list", "--config", str(config_file))
    assert res.returncode == 2
    assert "--hook" in res.stderr


async def test_events_list(config_file: Path,
                           start_gateway: Callable[..., Awaitable[Gateway]]) -> None:
    gw = await start_gateway(run_delivery_loop=False)
    first = await gw.publish(data={"n": 1})
    other = await gw.publish(topic="billing.tier_changed", account="globex", data={"n": 2})
    last = await gw.publish(data={"n": 3})
    res = await gateway_cli("events", "list", "--config", str(config_file))
    assert res.returncode == 0, res.stderr
    header, rows = table_rows(res.stdout)
    assert header == ["ID", "ACCOUNT", "TOPIC", "SEQUENCE", "CREATED"]
    # Newest first; the sequence counts per account.
    assert [r[:4] for r in rows] == [[last["id"], "acme", "contact.created", "2"],
                                     [other["id"], "globex", "billing.tier_changed", "1"],
                                     [first["id"], "acme", "contact.created", "1"]]
    res = await gateway_cli("events", "list", "--account", "acme", "--json",
                            "--config", str(config_file))
    assert res.returncode == 0, res.stderr
    listed = json.loads(res.stdout)
    assert [e["id"] for e in listed] == [last["id"], first["id"]]
    status, api, _ = await gw.call("GET", f"/v1/events/{first['id']}", gw.admin)
    assert status == 200
    assert listed[1] == {k: v for k, v in api.items() if k != "deliveries"}
    res = await gateway_cli("events", "list", "--topic", "billing.tier_changed",
                            "--config", str(config_file))
    assert [r[0] for r in table_rows(res.stdout)[1]] == [other["id"]]
    res = await gateway_cli("events", "list", "--limit", "2", "--config", str(config_file))
    assert [r[0] for r in table_rows(res.stdout)[1]] == [last["id"], other["id"]]
    assert "showing the first 2 events; --limit N shows more" in res.stderr
    res = await gateway_cli("events", "list", "--limit", "0", "--config", str(config_file))
    assert res.returncode == 2
    assert "--limit" in res.stderr and "at least 1" in res.stderr


async def test_backup_names_the_database_it_copies(tmp_path: Path) -> None:
    conf, elsewhere = tmp_path / "conf", tmp_path / "elsewhere"
    conf.mkdir()
    elsewhere.mkdir()
    (conf / "demo.toml").write_text('[database]\npath = "demo.db"\n')
    assert (await gateway_cli("keys", "create", "--role", "admin", "--config",
                              "../conf/demo.toml", cwd=elsewhere)).returncode == 0
    res = await gateway_cli("backup", "copy.db", "--config", "../conf/demo.toml", cwd=elsewhere)
    assert res.returncode == 0, res.stderr
    assert res.stderr.splitlines()[0] == f"database: {conf / 'demo.db'}"
    assert (elsewhere / "copy.db").exists()
