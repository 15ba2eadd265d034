"""A throwaway PostgreSQL cluster for tests: initdb in a temp folder, pg_ctl on a free port of
127.0.0.1, one fresh database per test made from a migrated template, pg_ctl stop at the end.

Debian's server binaries live in /usr/lib/postgresql/<version>/bin (package `postgresql`, which
.ci/run installs when missing). initdb refuses to run as root, so as root the cluster belongs to
the `postgres` user that package creates and every server command runs through runuser."""

from __future__ import annotations

import asyncio
import contextlib
import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

NO_SERVER = "no PostgreSQL server binaries (apt-get install postgresql; .ci/run does it)"


def server_bin() -> Path | None:
    """The newest /usr/lib/postgresql/*/bin holding initdb and pg_ctl (or GATEWAY_PG_BIN)."""
    env = os.environ.get("GATEWAY_PG_BIN")
    candidates = [env] if env else sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                                          key=lambda p: int(Path(p).parent.name)
                                          if Path(p).parent.name.isdigit() else 0)
    for c in reversed(candidates):
        if (Path(c) / "initdb").exists() and (Path(c) / "pg_ctl").exists():
            return Path(c)
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Cluster:
    """A running server; `url(db)` names one of its databases."""

    bin: Path
    root: Path
    port: int
    as_user: str | None  # run server commands as this user (we are root)
    durable: bool = False  # fsync and synchronous commits as a real server has them (bench/)

    @property
    def data(self) -> Path:
        return self.root / "data"

    def url(self, db: str = "postgres") -> str:
        return f"postgresql://gateway@127.0.0.1:{self.port}/{db}"

    def _cmd(self, *args: str) -> list[str]:
        cmd = [str(self.bin / args[0]), *args[1:]]
        return ["runuser", "-u", self.as_user, "--", *cmd] if self.as_user else cmd

    def run(self, *args: str) -> None:
        out = subprocess.run(self._cmd(*args), capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            raise RuntimeError(f"{args[0]} failed ({out.returncode}): {out.stderr or out.stdout}")

    def start(self) -> None:
        self.run("initdb", "-D", str(self.data), "-U", "gateway", "-A", "trust", "-E", "UTF8",
                 "--no-sync", "--no-instructions")
        # A test cluster: speed over durability (the data is thrown away), and enough
        # connections for three gateway processes' pools side by side.
        fast = "" if self.durable else "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
        with open(self.data / "postgresql.conf", "a") as f:
            f.write(f"port = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                    f"unix_socket_directories = '{self.root}'\n{fast}max_connections = 200\n"
                    "shared_buffers = 128MB\n")
        self.run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"),
                 "-w", "-t", "60", "start")

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")


@contextlib.contextmanager
def cluster(durable: bool = False) -> Iterator[Cluster]:
    pg_bin = server_bin()
    if pg_bin is None:
        raise FileNotFoundError(NO_SERVER)
    as_user = None
    root = Path(tempfile.mkdtemp(prefix="gateway-pg-"))
    if os.geteuid() == 0:
        as_user = "postgres"
        try:
            pw = pwd.getpwnam(as_user)
        except KeyError:
            raise RuntimeError("running as root and no `postgres` user to run the server") from None
        os.chown(root, pw.pw_uid, pw.pw_gid)
    c = Cluster(pg_bin, root, _free_port(), as_user, durable)
    try:
        c.start()
        yield c
    finally:
        c.stop()
        shutil.rmtree(root, ignore_errors=True)


class Databases:
    """Databases on one cluster: `clean()`, the one migrated database the tests share, emptied
    (TRUNCATE: milliseconds, where a new database writes megabytes); `fresh()`, a database of
    its own (for tests of migrations, or that must not share)."""

    def __init__(self, c: Cluster) -> None:
        self.cluster = c
        self._n = itertools.count(1)
        self._template_ready = False
        self._shared: str | None = None

    def _admin(self, sql: str, db: str = "postgres") -> None:
        import asyncpg

        async def run() -> None:
            conn = await asyncpg.connect(self.cluster.url(db))
            try:
                await conn.execute(sql)
            finally:
                await conn.close()

        # Fixtures are set up outside the test's event loop: a loop of its own, briefly.
        asyncio.run(run())

    def clean(self) -> str:
        if self._shared is None:
            self._shared = self.fresh()
            return self._shared
        # Every table but the migrations' own; a lock still held by a gateway the last test
        # left running fails this within seconds instead of hanging the suite.
        self._admin("SET lock_timeout = '10s'; DO $$ BEGIN EXECUTE (SELECT 'TRUNCATE ' || "
                    "string_agg(quote_ident(tablename), ', ') || ' RESTART IDENTITY' FROM pg_tables "
                    "WHERE schemaname = 'public' AND tablename <> 'schema_migrations'); END $$",
                    self._shared.rsplit("/", 1)[1])
        return self._shared

    def fresh(self, migrated: bool = True) -> str:
        """The URL of a new, empty database (schema in place unless migrated=False)."""
        name = f"t{next(self._n)}"
        if not migrated:
            self._admin(f"CREATE DATABASE {name}")
            return self.cluster.url(name)
        if not self._template_ready:
            from gateway.storage.postgres.connector import migrate

            self._admin("CREATE DATABASE tmpl")
            asyncio.run(migrate(self.cluster.url("tmpl")))
            self._template_ready = True
        self._admin(f"CREATE DATABASE {name} TEMPLATE tmpl")
        return self.cluster.url(name)


def on_disk(url: str) -> bytes:
    """What the server has written for the database at url, as it is on disk: its files and the
    write-ahead log, after a checkpoint (so every committed row is in the files too)."""
    import asyncpg

    async def where() -> tuple[str, str]:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute("CHECKPOINT")
            oid = await conn.fetchval("SELECT oid FROM pg_database WHERE datname = current_database()")
            data = await conn.fetchval("SHOW data_directory")
            return str(data), str(oid)
        finally:
            await conn.close()

    data, oid = asyncio.run(where()) if not _in_loop() else ("", "")
    assert data, "on_disk() is for code outside the event loop (asyncio.to_thread)"
    files = [p for d in (Path(data) / "base" / oid, Path(data) / "pg_wal")
             for p in sorted(d.iterdir()) if p.is_file()]
    return b"".join(p.read_bytes() for p in files)


def _in_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


# The database of the test running now, when it runs on PostgreSQL ("" on SQLite): read by
# base_config and tests.process.write_config, set by the `backend` fixture.
ACTIVE = {"url": ""}


def require_server() -> None:
    """Skip when no server binaries exist; in CI (CI=true) they must, so fail instead."""
    if server_bin() is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(NO_SERVER + ", and CI must run the PostgreSQL tests")
        pytest.skip(NO_SERVER)
