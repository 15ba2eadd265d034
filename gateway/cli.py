"""Command line: parse arguments, run one coroutine, errors to stderr with exit 1."""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
import time
from collections.abc import Sequence

from gateway import __version__
from gateway.auth import ACCOUNT_NAME, generate_key, hash_key
from gateway.config import Config, load_config
from gateway.errors import ConfigError, GatewayError
from gateway.models import Role, iso
from gateway.storage.backend import Backend
from gateway.storage.factory import make_storage, migrate


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gateway", description="A self-hosted webhook gateway.")
    p.add_argument("--version", action="version", version=f"gateway {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    def with_config(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sp.add_argument("--config", metavar="PATH",
                        help="TOML config file (default: $GATEWAY_CONFIG, else built-in defaults)")
        return sp

    with_config(sub.add_parser("serve", help="run the service"))
    with_config(sub.add_parser("check-config", help="validate a config file"))
    with_config(sub.add_parser("migrate", help="bring the database's schema up to date"))
    keys = sub.add_parser("keys", help="manage API keys").add_subparsers(dest="keys_command",
                                                                        required=True)
    create = with_config(keys.add_parser("create", help="create a key; prints it alone"))
    create.add_argument("--role", required=True, choices=[r.value for r in Role])
    create.add_argument("--account", help="the account the key is bound to (subscriber keys)")
    with_config(keys.add_parser("list", help="list keys (never the keys themselves)"))
    revoke = with_config(keys.add_parser("revoke", help="revoke a key at once"))
    revoke.add_argument("id")
    return p


async def _with_storage(cfg: Config) -> Backend:
    storage = make_storage(cfg)
    await storage.open()
    return storage


async def _keys_create(cfg: Config, role: Role, account: str | None) -> str:
    if role is Role.SUBSCRIBER and not account:
        raise GatewayError("a subscriber key needs --account NAME")
    if role is not Role.SUBSCRIBER and account is not None:
        raise GatewayError(f"--account is only for subscriber keys; a {role.value} key acts for "
                           "every account")
    if account is not None and not ACCOUNT_NAME.match(account):
        raise GatewayError("--account must be 1-128 letters, digits, '.', '_' or '-'")
    storage = await _with_storage(cfg)
    try:
        key = generate_key()
        await storage.create_key(role, account, hash_key(key), key[-4:], time.time())
        return key
    finally:
        await storage.close()


async def _keys_list(cfg: Config) -> list[str]:
    storage = await _with_storage(cfg)
    try:
        keys = await storage.list_keys()
    finally:
        await storage.close()
    lines = [f"{'ID':<31} {'ROLE':<10} {'ACCOUNT':<20} {'CREATED':<24} REVOKED"]
    for k in keys:
        lines.append(f"{k.id:<31} {k.role.value:<10} {k.account or '-':<20} "
                     f"{iso(k.created_at) or '':<24} {iso(k.revoked_at) or '-'}")
    return lines


async def _keys_revoke(cfg: Config, key_id: str) -> None:
    storage = await _with_storage(cfg)
    try:
        if await storage.revoke_key(key_id, time.time()) is None:
            raise GatewayError(f"no key with id {key_id}")
    finally:
        await storage.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        cfg = load_config(args.config)
        if args.command == "check-config":
            source = args.config or "built-in defaults / $GATEWAY_CONFIG"
            print(f"config OK: {source}")
            return 0
        if args.command == "migrate":
            backend, version = asyncio.run(migrate(cfg))
            print(f"{backend} schema at version {version}")
            return 0
        if args.command == "serve":
            from gateway.server import serve

            serve(cfg)
            return 0
        if args.keys_command == "create":
            print(asyncio.run(_keys_create(cfg, Role(args.role), args.account)))
        elif args.keys_command == "list":
            print("\n".join(asyncio.run(_keys_list(cfg))))
        elif args.keys_command == "revoke":
            asyncio.run(_keys_revoke(cfg, args.id))
            print(f"revoked {args.id}", file=sys.stderr)
        return 0
    except ConfigError as exc:
        print(f"gateway: config error: {exc.key}: {exc.message}", file=sys.stderr)
        return 1
    except GatewayError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 1
    except sqlite3.Error as exc:
        print(f"gateway: database error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        # e.g. the port is taken: say so in one line, not a traceback
        print(f"gateway: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
