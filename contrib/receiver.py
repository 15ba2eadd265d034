"""A demo webhook receiver: answers the X-Hook-Secret handshake, prints and verifies deliveries.

    python contrib/receiver.py --port 9000 [--secret-file secret.txt] [--status 204]

With --secret-file, each delivery's Standard Webhooks signature is checked against the secret
in that file (read on every request, so it can be written after the hook is created)."""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
from pathlib import Path

from aiohttp import web


def verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
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

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        if "X-Hook-Secret" in request.headers:
            print(f"handshake for {json.loads(body).get('hook_id')}: echoing X-Hook-Secret",
                  flush=True)
            return web.Response(status=200, headers={"X-Hook-Secret": request.headers["X-Hook-Secret"]})
        headers = {k.lower(): v for k, v in request.headers.items()}
        check = ""
        if args.secret_file and "webhook-signature" in headers:
            # Read per delivery: the secret file may be written (or rotated) after start-up.
            secret = await asyncio.to_thread(read_secret, args.secret_file)
            if secret is not None:
                ok = verify(secret, headers, body)
                check = " signature OK" if ok else " SIGNATURE MISMATCH"
        print(f"delivery {headers.get('webhook-id')}{check}: {body.decode()}", flush=True)
        return web.Response(status=args.status)

    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    print(f"listening on http://{args.host}:{args.port}", flush=True)
    web.run_app(app, host=args.host, port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
