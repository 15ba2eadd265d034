"""Seed a database for the retention scenario with the storage layer's own verbs: OLD events
made `--age` seconds ago to one hook, each delivered then (a backlog of old final rows the
pruner deletes), and FRESH events now to another hook, pending and due (what the gateway
delivers while the pruner works). The server must not be running.

Run: python bench/seed_retention.py --db DIR/gateway.db --url http://127.0.0.1:9001/h \
         --old 200000 --fresh 20000 --age 7200
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

import orjson

from gateway.models import Attempt, PayloadMode, new_secret
from gateway.outcome import Outcome
from gateway.storage import AttemptResult, Claim, NewEvent, Storage
from gateway.targets import host_key

ACCOUNT = "bench"


def events(topic: str, n: int, pad: int) -> list[NewEvent]:
    return [NewEvent(account=ACCOUNT, topic=topic, idempotency_key=None, resource_url=None,
                     data_json=orjson.dumps({"i": i, "t": time.time(), "pad": "x" * pad}))
            for i in range(n)]


async def seed(db: str, url: str, old: int, fresh: int, age: float, pad: int) -> dict[str, float]:
    storage = Storage(db, synchronous="normal")
    await storage.open()
    t0 = time.time()
    then = t0 - age
    try:
        await storage.put_topics([("bench.old", "benchmark"), ("bench.a", "benchmark")], then)
        for topic, target in (("bench.old", "http://127.0.0.1:9/old"), ("bench.a", url)):
            await storage.create_hook(
                account=ACCOUNT, target_url=target, host=host_key(target), topics=[topic],
                payload=PayloadMode.FULL, ordered=False, description="", headers={},
                secret=new_secret(), now=then)
        for start in range(0, old, 1000):
            await storage.publish(events("bench.old", min(1000, old - start), pad), then)
            got = await storage.claim_due(Claim(now=then, limit=1000, host_room={},
                                                default_room=1000))
            await storage.record_attempts(
                [AttemptResult(d.id, d.hook_id, Attempt(then, 200, None, 5.0, ""),
                               Outcome.DELIVERED, None) for d in got.rows],
                then, disable_after_failures=20, disable_after_seconds=1e9)
        for start in range(0, fresh, 1000):
            await storage.publish(events("bench.a", min(1000, fresh - start), pad), time.time())
    finally:
        await storage.close()
    return {"old": old, "fresh": fresh, "seconds": time.time() - t0}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--db", required=True)
    p.add_argument("--url", required=True)
    p.add_argument("--old", type=int, required=True)
    p.add_argument("--fresh", type=int, required=True)
    p.add_argument("--age", type=float, default=7200)
    p.add_argument("--pad", type=int, default=160)
    a = p.parse_args()
    out = asyncio.run(seed(a.db, a.url, a.old, a.fresh, a.age, a.pad))
    sys.stdout.write(orjson.dumps(out).decode() + "\n")


if __name__ == "__main__":
    main()
