"""A key revoked by another process is refused on the next request, and on every one after it,
by a running `gateway serve` that holds the key in memory: real child processes, real SQLite.

Each case here was added because a one-line mutant of the key cache survived the rest of the
suite (tools/mutate.py --module keys)."""

from __future__ import annotations

import os
import stat
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from tests.conftest import Gateway
from tests.process import ServeProcess, create_key, free_port, run_gateway, write_config


@pytest.fixture
async def serving(tmp_path: Path) -> AsyncIterator[list[ServeProcess]]:
    started: list[ServeProcess] = []
    yield started
    for gw in started:
        await gw.close()


async def _key_id(gw: ServeProcess, admin: str, key: str) -> str:
    """A key's id, from the listing (which shows the key's last four characters, never it)."""
    status, body = await gw.call("GET", "/v1/keys", admin)
    assert status == 200, body
    [key_id] = [k["id"] for k in body["data"] if k["key_hint"] == f"\u2026{key[-4:]}"]
    return str(key_id)


async def _revoke(config: Path, key_id: str) -> None:
    rc, _, err = await run_gateway("keys", "revoke", key_id, "--config", str(config),
                                   cwd=config.parent)
    assert rc == 0, err


async def _revoke_new_key(config: Path) -> None:
    """Make a throwaway key and revoke it through the CLI, by the id `keys list` shows (its
    table lists keys oldest first)."""
    await create_key(config, "publisher")
    rc, out, err = await run_gateway("keys", "list", "--config", str(config), cwd=config.parent)
    assert rc == 0, err
    newest = out.strip().splitlines()[-1].split()[0]
    assert newest.startswith("key_"), out
    await _revoke(config, newest)


async def _status(gw: ServeProcess, key: str) -> int:
    status, _ = await gw.call("GET", "/v1/topics", key)
    return status


@pytest.mark.parametrize("marker", ["kept", "missing"])
async def test_a_key_revoked_with_the_cli_is_refused_by_a_running_serve(
        tmp_path: Path, serving: list[ServeProcess], marker: str) -> None:
    """`marker`: whether the key-change marker next to the database exists when serve starts.
    It is missing for a database restored from a copy of its file, or made before the marker
    existed; the first change must still reach a process that cached keys without one."""
    port = free_port()
    config = write_config(tmp_path, port)
    key = await create_key(config, "publisher")
    other = await create_key(config, "admin")
    # Creating a key leaves the marker alone (no process holds a key not yet made); revoking
    # one writes it, so a key revoked before serve starts leaves a marker to keep or remove.
    await _revoke_new_key(config)
    assert (tmp_path / "gateway.db-keys").exists()
    if marker == "missing":
        # (Creating keys does not write the marker: only a revocation does.)
        (tmp_path / "gateway.db-keys").unlink(missing_ok=True)
    gw = ServeProcess(config, port)
    serving.append(gw)
    await gw.start()
    key_id = await _key_id(gw, other, key)
    for _ in range(3):  # the first looks the key up, the others find it in memory
        assert await _status(gw, other) == 200
        assert await _status(gw, key) == 200
    assert await _status(gw, key) == 200  # the last request before the revocation

    await _revoke(config, key_id)
    for _ in range(3):
        assert await _status(gw, key) == 401
    assert await _status(gw, other) == 200

    # A key made by the CLI meanwhile works at once, and its revocation too.
    late = await create_key(config, "publisher")
    assert await _status(gw, late) == 200
    assert await _status(gw, late) == 200
    await _revoke(config, await _key_id(gw, other, late))
    assert await _status(gw, late) == 401
    assert await _status(gw, late) == 401
    assert await _status(gw, other) == 200


async def test_a_key_revoked_through_one_serve_is_refused_by_another(
        tmp_path: Path, serving: list[ServeProcess]) -> None:
    port = free_port()
    config = write_config(tmp_path, port)
    admin = await create_key(config, "admin")
    key = await create_key(config, "publisher")
    first = ServeProcess(config, port)
    serving.append(first)
    await first.start()
    key_id = await _key_id(first, admin, key)
    second_config = tmp_path / "second.toml"
    second_port = free_port()
    second_config.write_text(config.read_text().replace(f"port = {port}", f"port = {second_port}"))
    second = ServeProcess(second_config, second_port)
    serving.append(second)
    await second.start()
    for gw in (first, second, first, second):
        assert await _status(gw, key) == 200

    status, body = await first.call("DELETE", f"/v1/keys/{key_id}", admin)
    assert status in (200, 204), body
    for gw in (second, first, second, first):
        assert await _status(gw, key) == 401
    assert await _status(second, admin) == 200


async def test_a_key_change_that_cannot_be_told_fails_loudly(
        tmp_path: Path, start_gateway: Callable[..., Awaitable[Gateway]]) -> None:
    """The marker next to the database tells other processes that keys changed; when it cannot
    be replaced, the change is answered as an error, not as done, and leaves no stray file."""
    gw = await start_gateway()
    marker = tmp_path / "gateway.db-keys"
    keys = await gw.storage.list_keys()
    [first] = [k for k in keys if k.account == "globex"]
    [key] = [k for k in keys if k.role.value == "publisher"]
    status, body, _ = await gw.call("DELETE", f"/v1/keys/{first.id}", gw.admin)
    assert status in (200, 204), body  # a revocation writes the marker
    assert stat.S_IMODE(marker.stat().st_mode) == 0o600
    marker.unlink()
    marker.mkdir()  # os.replace cannot put a file over a directory
    status, body, _ = await gw.call("DELETE", f"/v1/keys/{key.id}", gw.admin)
    # (500 today; the standards ask 503 for a database that cannot write: a follow-up.)
    assert status >= 500, body
    assert body["status"] == status
    left = [name for name in os.listdir(tmp_path) if name.startswith("gateway.db-keys")]
    assert left == ["gateway.db-keys"]
