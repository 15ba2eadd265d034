"""The delivery baseline: a bare aiohttp client loop (uvloop) in its own process.

It does what a minimal webhook sender must do per request and nothing else: build the same
body as the gateway (same fields, same data), sign it with HMAC-SHA256 the Standard Webhooks
way, POST it with the same headers and read the answer. `--concurrency` workers share one
connection pool. Prints one JSON line: {"start", "end", "ok", "errors"} (time.time()).

Run: python bench/bareclient.py --urls http://127.0.0.1:9001/h/0 --n 20000 --concurrency 64
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import os
import sys
import time
from datetime import UTC, datetime

import aiohttp
import orjson
import uvloop


def make_data(i: int, pad: int) -> bytes:
    # The same shape harness.event() publishes, so bodies match the gateway's in size.
    return orjson.dumps({"i": i, "t": time.time(), "email": f"user{i}@example.com", "pad": "x" * pad})


async def run(urls: list[str], n: int, concurrency: int, pad: int, secrets: int) -> dict[str, object]:
    keys = [os.urandom(32) for _ in range(secrets)]
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    counter = iter(range(n))
    ok = errors = 0
    created = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")

    async with aiohttp.ClientSession(connector=connector,
                                     headers={"User-Agent": "gateway/0.1.0"}) as session:

        async def worker() -> None:
            nonlocal ok, errors
            for i in counter:
                url = urls[i % len(urls)]
                msg_id = f"evt_{i:026d}"
                body = orjson.dumps({"id": msg_id, "type": "bench.a", "timestamp": created,
                                     "account": "bench", "sequence": i + 1,
                                     "data": orjson.Fragment(make_data(i, pad))})
                ts = int(time.time())
                mac = hmac.new(keys[i % len(keys)], f"{msg_id}.{ts}.".encode() + body, hashlib.sha256)
                headers = {"Content-Type": "application/json", "webhook-id": msg_id,
                           "webhook-timestamp": str(ts),
                           "webhook-signature": "v1," + base64.b64encode(mac.digest()).decode()}
                try:
                    async with session.post(url, data=body, headers=headers,
                                            allow_redirects=False) as resp:
                        await resp.read()
                        if 200 <= resp.status < 300:
                            ok += 1
                        else:
                            errors += 1
                except (aiohttp.ClientError, OSError):
                    errors += 1

        start = time.time()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        end = time.time()
    return {"start": start, "end": end, "ok": ok, "errors": errors}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--urls", required=True, help="comma-separated; request i goes to urls[i % len]")
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--pad", type=int, default=160)
    p.add_argument("--secrets", type=int, default=1, help="distinct HMAC keys (one per hook)")
    a = p.parse_args()
    out = uvloop.run(run(a.urls.split(","), a.n, a.concurrency, a.pad, a.secrets))
    sys.stdout.write(orjson.dumps(out).decode() + "\n")


if __name__ == "__main__":
    main()
