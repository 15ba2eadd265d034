"""A key revoked by another process is refused on the next request, and on every one after it,
by a running `gateway serve` that holds the key in memory: real child processes, real SQLite.

Each case here was added because a one-line mutant of the key cache survived the rest of the
suite (tools/mutate.py --module keys)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

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
    if marker == "missing":
        (tmp_path / "gateway.db-keys").unlink()
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
