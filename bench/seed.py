"""Bulk-load a gateway database with the storage layer's own verbs, before the server starts.

Creates hooks (Storage.create_hook) whose targets go round-robin over the given URLs, then
publishes events (Storage.publish) on one topic that every hook matches: E events fan out to
hooks x E deliveries, all pending and due at once. The server must not be running.

Run: python bench/seed.py --db DIR/gateway.db --urls http://127.0.0.1:9001/h,... \
         --hooks 100000 --events 10 [--topic bench.a]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

import orjson

from gateway.models import PayloadMode, new_secret
from gateway.storage import NewEvent, Storage
from gateway.targets import host_key

ACCOUNT = "bench"


async def seed(db: str, urls: list[str], hooks: int, events: int, topic: str, pad: int,
               per_call: int) -> dict[str, float]:
    storage = Storage(db, synchronous="normal")
    await storage.open()
    t0 = time.time()
    try:
        await storage.put_topics([(topic, "benchmark")], t0)
        for h in range(hooks):
            url = f"{urls[h % len(urls)]}/{h}"
            await storage.create_hook(
                account=ACCOUNT, target_url=url, host=host_key(url), topics=[topic],
                payload=PayloadMode.FULL, ordered=False, description="", headers={},
                secret=new_secret(), now=time.time())
        t1 = time.time()
        deliveries = 0
        for start in range(0, events, per_call):
            batch = [NewEvent(account=ACCOUNT, topic=topic, idempotency_key=None, resource_url=None,
                              data_json=orjson.dumps({"i": i, "t": time.time(),
                                                      "email": f"user{i}@example.com",
                                                      "pad": "x" * pad}))
                     for i in range(start, min(events, start + per_call))]
            deliveries += sum(p.deliveries for p in await storage.publish(batch, time.time()))
        t2 = time.time()
    finally:
        await storage.close()
    return {"hooks": hooks, "events": events, "deliveries": deliveries,
            "hooks_seconds": t1 - t0, "publish_seconds": t2 - t1}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--db", required=True)
    p.add_argument("--urls", required=True, help="comma-separated; hook h gets urls[h % len]/h")
    p.add_argument("--hooks", type=int, required=True)
    p.add_argument("--events", type=int, required=True)
    p.add_argument("--topic", default="bench.a")
    p.add_argument("--pad", type=int, default=160)
    p.add_argument("--per-call", type=int, default=1,
                   help="events per Storage.publish call (one transaction)")
    a = p.parse_args()
    out = asyncio.run(seed(a.db, a.urls.split(","), a.hooks, a.events, a.topic, a.pad, a.per_call))
    sys.stdout.write(orjson.dumps(out).decode() + "\n")


if __name__ == "__main__":
    main()
