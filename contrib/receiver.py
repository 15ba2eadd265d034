"""A demo webhook receiver: answers the X-Hook-Secret handshake, prints and verifies deliveries.

    python contrib/receiver.py --port 9000 [--secret-file secret.txt] [--status 204]

With --secret-file, each delivery's Standard Webhooks signature is checked against the secret
in that file (read on every request, so it can be written after the hook is created), and its
webhook-timestamp must be within 5 minutes of now; a delivery failing either is answered 401.
A webhook-id seen before is answered 2xx and not printed as new (delivery is at least once).
docs/receivers.md explains each step."""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import time
from pathlib import Path

from aiohttp import web

TOLERANCE = 5 * 60  # seconds either way: older is a replay, newer a wrong clock


def fresh(headers: dict[str, str]) -> bool:
    ts = headers.get("webhook-timestamp", "")
    return ts.isascii() and ts.isdigit() and abs(time.time() - int(ts)) <= TOLERANCE


def verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    if not {"webhook-id", "webhook-timestamp", "webhook-signature"} <= headers.keys():
        return False
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(hmac.compare_digest(f"v1,{expected}", s) for s in headers["webhook-signature"].split())


def read_secret(path: str) -> str | None:
    p = Path(path)
    return p.read_text().strip() if p.exists() else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=9000)
    ap.add_argument("--secret-file")
    ap.add_argument("--status", type=int, default=204, help="status to answer deliveries with")
    args = ap.parse_args()
    seen: set[str] = set()  # webhook-ids already accepted (a real receiver keeps them in its database)

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        if "X-Hook-Secret" in request.headers:
            print(f"handshake for {json.loads(body).get('hook_id')}: echoing X-Hook-Secret",
                  flush=True)
            return web.Response(status=200, headers={"X-Hook-Secret": request.headers["X-Hook-Secret"]})
        headers = {k.lower(): v for k, v in request.headers.items()}
        msg_id = headers.get("webhook-id")
        check = ""
        if args.secret_file:
            # Read per delivery: the secret file may be written (or rotated) after start-up.
            secret = await asyncio.to_thread(read_secret, args.secret_file)
            if secret is not None:
                if not verify(secret, headers, body):
                    print(f"delivery {msg_id} SIGNATURE MISMATCH: answered 401", flush=True)
                    return web.Response(status=401)
                if not fresh(headers):
                    print(f"delivery {msg_id} TIMESTAMP {headers.get('webhook-timestamp')} is more "
                          f"than 5 minutes from now: answered 401", flush=True)
                    return web.Response(status=401)
                check = " signature OK"
        if msg_id in seen:
            print(f"delivery {msg_id} again: already processed, answered {args.status}", flush=True)
            return web.Response(status=args.status)
        if 200 <= args.status < 300 and msg_id is not None:
            seen.add(msg_id)
        print(f"delivery {msg_id}{check}: {body.decode()}", flush=True)
        return web.Response(status=args.status)

    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    print(f"listening on http://{args.host}:{args.port}", flush=True)
    web.run_app(app, host=args.host, port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
