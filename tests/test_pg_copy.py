"""Moving a SQLite database to PostgreSQL with `gateway copy-sqlite`: everything arrives (keys,
topics, hooks, events, deliveries and their attempts), the sequence goes on where it was, and a
database that is not empty is refused."""

from __future__ import annotations

import time
from pathlib import Path

from gateway.auth import generate_key, hash_key
from gateway.models import Attempt, PayloadMode, Role
from gateway.outcome import Outcome
from gateway.storage import AttemptResult, Claim, NewEvent, Storage
from gateway.storage.postgres import PgStorage
from tests.process import clean_env, run_gateway

OPERATIONAL_TOPICS = ("gateway.hook.disabled", "gateway.hook.removed",
                      "gateway.delivery.exhausted", "gateway.test")


async def make_sqlite(path: Path) -> tuple[str, str]:
    s = Storage(str(path))
    await s.open()
    now = time.time()
    try:
        key = generate_key()
        await s.create_key(Role.PUBLISHER, None, hash_key(key), key[-4:], now)
        await s.put_topics([("t.x", "things")], now)
        hook = await s.create_hook(account="acme", target_url="https://a.example/x",
                                   host="a.example", topics=["t.x"], payload=PayloadMode.FULL,
                                   ordered=True, description="d", headers={"X-A": "1"},
                                   secret="whsec_x", now=now)
        await s.publish([NewEvent("acme", "t.x", b'{"n": %d}' % i, None, None) for i in range(3)],
                        now)
        [first] = (await s.claim_due(Claim(now + 1, 10, {}, 10))).rows
        await s.record_attempts([AttemptResult(first.id, hook.id, Attempt(now, 204, None, 3.0, "ok"),
                                               Outcome.DELIVERED, None)], now,
                                disable_after_failures=20, disable_after_seconds=1)
        return key, hook.id
    finally:
        await s.close()


async def test_copy_sqlite_moves_everything_and_the_sequence_goes_on(tmp_path: Path,
                                                                    pg_url: str) -> None:
    key, hook_id = await make_sqlite(tmp_path / "old.db")
    config = tmp_path / "pg.toml"
    config.write_text(f'[database]\nurl = "{pg_url}"\n')
    rc, out, err = await run_gateway("copy-sqlite", str(tmp_path / "old.db"), "--config",
                                     str(config), cwd=tmp_path, env=clean_env())
    assert rc == 0, err
    assert "events=3" in out and "deliveries=3" in out and "attempts=1" in out, out

    s = PgStorage(pg_url)
    await s.open()
    try:
        assert (await s.fetch_key(hash_key(key))) is not None
        # Every topic of the SQLite catalog, its operational ones (sql/0006) among them.
        assert {t.name for t in await s.list_topics()} == {"t.x", *OPERATIONAL_TOPICS}
        hook = await s.get_hook(hook_id)
        assert hook is not None and hook.ordered and hook.headers == {"X-A": "1"}
        items, _ = await s.list_deliveries(hook_id, None, 10, None)
        assert sorted(d.status.value for d in items) == ["delivered", "pending", "pending"]
        done = next(d for d in items if d.status.value == "delivered")
        _, attempts = await s.get_delivery(done.id) or (None, [])
        assert [a.status_code for a in attempts] == [204]
        [pub] = await s.publish([NewEvent("acme", "t.x", b"{}", None, None)], time.time())
        got = await s.get_event(pub.id)
        assert got is not None and got[0].sequence == 4
        # The ordered hook goes on in order: the next one out is sequence 2.
        [row] = (await s.claim_due(Claim(time.time() + 1, 10, {}, 10))).rows
        assert row.sequence == 2
    finally:
        await s.close()

    rc, _, err = await run_gateway("copy-sqlite", str(tmp_path / "old.db"), "--config",
                                   str(config), cwd=tmp_path, env=clean_env())
    assert rc == 1 and "not empty" in err, err
