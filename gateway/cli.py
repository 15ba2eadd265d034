"""Command line: parse arguments, run one coroutine, errors to stderr with exit 1."""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import sys
import time
from collections.abc import Awaitable, Callable, Sequence

from yarl import URL

from gateway import __version__, listing
from gateway.auth import ACCOUNT_NAME, generate_key, hash_key
from gateway.config import Config, config_path, load_config, with_overrides
from gateway.errors import ConfigError, GatewayError
from gateway.models import DeliveryStatus, HookStatus, Role, iso
from gateway.storage import Storage

CONFIG_HELP = ("the TOML config file (default: the file named by $GATEWAY_CONFIG, else built-in "
               "defaults); a relative database.path in it is relative to the file's folder. "
               "Accepted anywhere on the line")
OUTPUT_EPILOG = "Prints an aligned table, or JSON (an array of objects) with --json."


def _parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The parser, and each command's own parser by name (to show its help when an action is
    missing)."""
    # --config on every parser, with no default of its own: given before the command or after
    # it, it lands in the same place, and a later parser never resets an earlier one's value.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS, help=CONFIG_HELP)
    p = argparse.ArgumentParser(
        prog="gateway", parents=[common],
        description="A self-hosted webhook gateway: REST Hooks subscriptions, signed durable "
                    "deliveries.",
        epilog="Run `gateway COMMAND --help` for a command's options.")
    p.add_argument("--version", action="version", version=f"gateway {__version__}",
                   help="print the version and exit")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    groups: dict[str, argparse.ArgumentParser] = {"": p}

    def command(parent: argparse._SubParsersAction[argparse.ArgumentParser], name: str,
                text: str, epilog: str | None = None) -> argparse.ArgumentParser:
        return parent.add_parser(name, parents=[common], help=text, description=text,
                                 epilog=epilog)

    command(sub, "serve", "run the service: the REST API and the delivery loop")
    command(sub, "check-config", "validate the config file and the GATEWAY_* variables; names "
                                 "the file read")

    keys = groups["keys"] = command(sub, "keys", "manage API keys")
    keys_sub = keys.add_subparsers(dest="action", metavar="ACTION", title="actions")
    create = command(keys_sub, "create", "create a key and print it alone on stdout",
                     epilog="KEY=$(gateway keys create --role admin) captures it.")
    create.add_argument("--role", required=True, choices=[r.value for r in Role],
                        help="admin: everything, every account; publisher: publish and read "
                             "events; subscriber: the hooks of one account (needs --account)")
    create.add_argument("--account", metavar="NAME",
                        help="the account a subscriber key is bound to (created if new)")
    command(keys_sub, "list", "list keys (never the keys themselves)")
    revoke = command(keys_sub, "revoke", "revoke a key at once")
    revoke.add_argument("id", metavar="ID", help="the key's id, as `gateway keys list` shows it")

    hooks = groups["hooks"] = command(sub, "hooks", "inspect hooks")
    hooks_list = command(hooks.add_subparsers(dest="action", metavar="ACTION", title="actions"),
                         "list", "list hooks, oldest first", epilog=OUTPUT_EPILOG)
    hooks_list.add_argument("--account", metavar="NAME", help="only this account's hooks")
    hooks_list.add_argument("--status", choices=[s.value for s in HookStatus],
                            help="only hooks with this status")
    _output_options(hooks_list)

    deliveries = groups["deliveries"] = command(sub, "deliveries", "inspect deliveries")
    d_list = command(deliveries.add_subparsers(dest="action", metavar="ACTION", title="actions"),
                     "list", "list a hook's deliveries, newest first", epilog=OUTPUT_EPILOG)
    d_list.add_argument("--hook", metavar="ID", required=True, help="the hook's id")
    d_list.add_argument("--status", choices=[s.value for s in DeliveryStatus],
                        help="only deliveries with this status")
    _output_options(d_list)

    events = groups["events"] = command(sub, "events", "inspect events")
    e_list = command(events.add_subparsers(dest="action", metavar="ACTION", title="actions"),
                     "list", "list events, newest first", epilog=OUTPUT_EPILOG)
    e_list.add_argument("--account", metavar="NAME", help="only this account's events")
    e_list.add_argument("--topic", metavar="TOPIC", help="only events of this topic")
    _output_options(e_list)

    backup = command(sub, "backup", "write a consistent copy of the database while the gateway "
                                    "serves (SQLite's online backup); progress on a terminal")
    backup.add_argument("dest", metavar="DEST", help="the copy's file name (must not exist)")
    return p, groups


def _backup(cfg: Config, dest: str) -> str:
    """The copy, with a progress bar when stderr is a terminal; its one-line summary."""
    from gateway.storage.backup import backup

    bar = sys.stderr.isatty()

    def progress(done: int, total: int) -> None:
        filled = 30 * done // max(total, 1)
        print(f"\r[{'#' * filled}{' ' * (30 - filled)}] {100 * done // max(total, 1):3d}% "
              f"{done:,}/{total:,} pages", end="", file=sys.stderr, flush=True)

    result = backup(cfg.database.path, dest, busy_timeout=cfg.database.busy_timeout_seconds,
                    progress=progress if bar else None)
    if bar:
        print(file=sys.stderr)
    return result.summary()


def _output_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--limit", metavar="N", type=_positive, default=100,
                   help="show at most N rows (default 100)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, not {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {n}")
    return n


def _say(text: str) -> None:
    print(text, file=sys.stderr)


def _database_name(cfg: Config) -> str:
    """The database a command would open, as an operator would write it."""
    url = getattr(cfg.database, "url", "")  # (a PostgreSQL URL, where the config has one)
    if url:
        parsed = URL(url)
        return str(parsed.with_password("***") if parsed.password else parsed)
    return os.path.abspath(cfg.database.path)


def _announce(cfg: Config) -> str:
    """Say on stderr which database a command opens: one run from another folder must not
    write to a database nobody reads without a word."""
    shown = _database_name(cfg)
    new = not getattr(cfg.database, "url", "") and not os.path.exists(shown)
    _say(f"database: {shown}" + (" (new file)" if new else ""))
    return shown


async def _with_storage(cfg: Config, shown: str,
                        use: Callable[[Storage], Awaitable[str | None]]) -> str | None:
    storage = Storage(cfg.database.path, synchronous=cfg.database.synchronous)
    try:
        await storage.open()
    except sqlite3.OperationalError as exc:
        raise GatewayError(f"cannot open the database {shown}: {exc}; set database.path in the "
                           "config file (or GATEWAY_DATABASE_PATH) to a writable place") from None
    try:
        return await use(storage)
    finally:
        await storage.close()


def _keys_create(role: Role, account: str | None) -> Callable[[Storage], Awaitable[str]]:
    if role is Role.SUBSCRIBER and not account:
        raise GatewayError("a subscriber key needs --account NAME")
    if role is not Role.SUBSCRIBER and account is not None:
        raise GatewayError(f"--account is only for subscriber keys; a {role.value} key acts for "
                           "every account")
    if account is not None and not ACCOUNT_NAME.match(account):
        raise GatewayError("--account must be 1-128 letters, digits, '.', '_' or '-'")

    async def use(storage: Storage) -> str:
        key = generate_key()
        await storage.create_key(role, account, hash_key(key), key[-4:], time.time())
        return key

    return use


async def _keys_list(storage: Storage) -> str:
    keys = await storage.list_keys()
    lines = [f"{'ID':<31} {'ROLE':<10} {'ACCOUNT':<20} {'CREATED':<24} REVOKED"]
    for k in keys:
        lines.append(f"{k.id:<31} {k.role.value:<10} {k.account or '-':<20} "
                     f"{iso(k.created_at) or '':<24} {iso(k.revoked_at) or '-'}")
    return "\n".join(lines)


def _keys_revoke(key_id: str) -> Callable[[Storage], Awaitable[None]]:
    async def use(storage: Storage) -> None:
        if await storage.revoke_key(key_id, time.time()) is None:
            raise GatewayError(f"no key with id {key_id} (gateway keys list shows the keys)")
        _say(f"revoked {key_id}")

    return use


def _show(get: Callable[[Storage], Awaitable[listing.Listing]], as_json: bool, limit: int
          ) -> Callable[[Storage], Awaitable[str]]:
    async def use(storage: Storage) -> str:
        found = await get(storage)
        if found.more:
            _say(f"showing the first {limit} {found.noun}; --limit N shows more")
        elif not found.rows and not as_json:
            _say(f"no {found.noun}")
        return found.json() if as_json else found.table()

    return use


def _check_config(args: argparse.Namespace, cfg: Config) -> str:
    path = config_path(getattr(args, "config", None))
    if path is None:
        source = "no config file: built-in defaults and GATEWAY_* variables"
    else:
        source = os.path.abspath(path)
        if getattr(args, "config", None) is None:
            source += " (named by GATEWAY_CONFIG)"
    return f"config OK: {source}\ndatabase: {_database_name(cfg)}"


def _use(args: argparse.Namespace) -> Callable[[Storage], Awaitable[str | None]]:
    """What a command does with the database."""
    command, action = args.command, args.action
    if command == "keys":
        if action == "create":
            return _keys_create(Role(args.role), args.account)
        if action == "list":
            return _keys_list
        return _keys_revoke(args.id)
    if command == "hooks":
        status = HookStatus(args.status) if args.status else None
        return _show(lambda s: listing.hooks(s, args.account, status, args.limit),
                     args.json, args.limit)
    if command == "events":
        return _show(lambda s: listing.events(s, args.account, args.topic, args.limit),
                     args.json, args.limit)
    d_status = DeliveryStatus(args.status) if args.status else None
    return _show(lambda s: listing.deliveries(s, args.hook, d_status, args.limit),
                 args.json, args.limit)


def main(argv: Sequence[str] | None = None) -> int:
    parser, groups = _parser()
    args = parser.parse_args(argv)
    if args.command is None or (args.command in groups and getattr(args, "action", None) is None):
        group = groups[args.command or ""]
        group.print_help(sys.stderr)
        what = "a command" if args.command is None else "an action"
        _say(f"\n{group.prog}: name {what}, e.g. `{group.prog} "
             f"{'serve' if args.command is None else 'list'}`")
        return 2
    try:
        cfg = load_config(getattr(args, "config", None))
        if args.command == "check-config":
            print(_check_config(args, cfg))
            return 0
        if args.command == "serve":
            from gateway.server import serve

            # Absolute, so that the "started" log line says which file it is.
            serve(with_overrides(cfg, database={"path": os.path.abspath(cfg.database.path)}))
            return 0
        if args.command == "backup":
            _say(f"database: {_database_name(cfg)}")
            print(_backup(cfg, args.dest))
            return 0
        use = _use(args)
        out = asyncio.run(_with_storage(cfg, _announce(cfg), use))
        if out is not None:
            print(out)
        return 0
    except ConfigError as exc:
        _say(f"gateway: config error: {exc.key}: {exc.message}")
        return 1
    except GatewayError as exc:
        _say(f"gateway: {exc}")
        return 1
    except sqlite3.Error as exc:
        _say(f"gateway: database error: {exc}")
        return 1
    except BrokenPipeError:
        # The reader stopped early (`gateway hooks list | head`): nothing more to say, and
        # nothing for the interpreter to complain about when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as exc:
        # e.g. the port is taken: say so in one line, not a traceback
        _say(f"gateway: {exc.strerror or exc}")
        return 1
    except KeyboardInterrupt:
        return 130
