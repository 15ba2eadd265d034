"""The database's files: created readable by their owner only, whatever the umask; nothing
else left beside them."""

from __future__ import annotations

import os
import stat
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import Gateway, Receiver

StartGateway = Callable[..., Awaitable[Gateway]]


@pytest.fixture
def open_umask() -> Iterator[None]:
    old = os.umask(0)  # what a careless service manager might hand down
    try:
        yield
    finally:
        os.umask(old)


async def test_the_database_its_companions_and_the_key_marker_are_0600(
        tmp_path: Path, open_umask: None, start_gateway: StartGateway,
        receiver: Receiver) -> None:
    gw = await start_gateway()  # its keys are made through storage: the marker is written
    await gw.hook(receiver)
    await gw.publish()
    status, body, _ = await gw.call("DELETE", f"/v1/keys/{(await gw.storage.list_keys())[0].id}",
                                    gw.admin)
    assert status in (200, 204), body
    names = {p.name for p in tmp_path.iterdir()}  # noqa: ASYNC240
    assert names == {"gateway.db", "gateway.db-wal", "gateway.db-shm", "gateway.db-keys"}, names
    for name in names:
        mode = stat.S_IMODE((tmp_path / name).stat().st_mode)
        assert mode == 0o600, f"{name}: {oct(mode)}"
