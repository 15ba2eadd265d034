"""Settings: frozen dataclasses loaded from TOML and GATEWAY_* environment variables, validated once."""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

from gateway.errors import ConfigError

TOPIC_NAME = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*\Z")  # \Z: "$" allows a final "\n"


def _range(lo: float | None = None, hi: float | None = None) -> dict[str, Any]:
    return {"range": (lo, hi)}


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = field(default="127.0.0.1", metadata={"nonempty": True})  # "" would bind everywhere
    port: int = field(default=8080, metadata=_range(0, 65535))
    public_url: str = ""
    max_body_bytes: int = field(default=262144, metadata=_range(1024, 64 * 1024 * 1024))
    max_batch_events: int = field(default=1000, metadata=_range(1, 100000))
    idempotency_ttl_seconds: float = field(default=86400, metadata=_range(1, None))
    # Past max_connections the oldest idle connections are closed (gateway/connections.py).
    max_connections: int = field(default=1024, metadata=_range(1, 1_000_000))
    keep_alive_seconds: float = field(default=75, metadata=_range(0.01, 86400))
    header_timeout_seconds: float = field(default=10, metadata=_range(0.01, 3600))


@dataclass(frozen=True, slots=True)
class DatabaseConfig:
    path: str = field(default="gateway.db", metadata={"nonempty": True})
    # "normal" is durable across process crashes in WAL mode; "full" also survives power loss.
    synchronous: str = field(default="full", metadata={"choices": ("normal", "full")})
    # How long a write waits for a database locked by another process before it gives up
    # (the request then gets 503).
    busy_timeout_seconds: float = field(default=5, metadata=_range(0, 600))


@dataclass(frozen=True, slots=True)
class RetentionConfig:
    # Final deliveries, their attempts and events with nothing pending, older than this, are
    # deleted (and the rows of deleted hooks).
    keep_seconds: float = field(default=2592000, metadata=_range(1, None))
    prune_interval_seconds: float = field(default=60, metadata=_range(0.01, 86400))


@dataclass(frozen=True, slots=True)
class DeliveryConfig:
    timeout_seconds: float = field(default=10, metadata=_range(0.01, 600))
    max_in_flight: int = field(default=256, metadata=_range(1, 100000))
    max_in_flight_per_host: int = field(default=8, metadata=_range(1, 10000))
    retry_schedule_seconds: tuple[float, ...] = (
        5, 30, 120, 600, 1800, 3600, 10800, 21600, 43200, 86400,
    )
    retry_jitter: float = field(default=0.1, metadata=_range(0, 1))
    max_retry_after_seconds: float = field(default=3600, metadata=_range(0, None))
    disable_after_seconds: float = field(default=259200, metadata=_range(0, None))
    disable_after_failures: int = field(default=20, metadata=_range(1, None))
    shutdown_grace_seconds: float = field(default=10, metadata=_range(0, 3600))
    poll_interval_seconds: float = field(default=1.0, metadata=_range(0.01, 60))
    claim_batch_size: int = field(default=256, metadata=_range(1, 10000))
    response_excerpt_bytes: int = field(default=1024, metadata=_range(0, 65536))


@dataclass(frozen=True, slots=True)
class SecurityConfig:
    verify_intent: bool = True
    handshake_timeout_seconds: float = field(default=5, metadata=_range(0.01, 120))
    allow_http_targets: bool = False
    allow_private_targets: bool = False
    metrics_public: bool = False


@dataclass(frozen=True, slots=True)
class LogConfig:
    format: str = field(default="json", metadata={"choices": ("json", "console")})
    level: str = field(
        default="info", metadata={"choices": ("debug", "info", "warning", "error")}
    )
    access: bool = True


@dataclass(frozen=True, slots=True)
class TopicConfig:
    name: str
    description: str = ""


@dataclass(frozen=True, slots=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    delivery: DeliveryConfig = field(default_factory=DeliveryConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    log: LogConfig = field(default_factory=LogConfig)
    topics: tuple[TopicConfig, ...] = ()


SECTIONS: dict[str, type] = {
    "server": ServerConfig,
    "database": DatabaseConfig,
    "retention": RetentionConfig,
    "delivery": DeliveryConfig,
    "security": SecurityConfig,
    "log": LogConfig,
}


def _coerce(key: str, hint: Any, value: Any, meta: Mapping[str, Any]) -> Any:
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(key, f"must be true or false, not {value!r}")
    elif hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(key, f"must be an integer, not {value!r}")
    elif hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(key, f"must be a number, not {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise ConfigError(key, f"must be a finite number, not {value!r}")
    elif hint is str:
        if not isinstance(value, str):
            raise ConfigError(key, f"must be a string, not {value!r}")
        if meta.get("nonempty") and not value.strip():
            raise ConfigError(key, "must not be empty")
    elif hint == tuple[float, ...]:
        if not isinstance(value, list | tuple) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v >= 0
            for v in value
        ):
            raise ConfigError(key, f"must be a list of finite, non-negative numbers, not {value!r}")
        if len(value) > 100:
            raise ConfigError(key, "must have at most 100 entries")
        value = tuple(float(v) for v in value)
    lo, hi = meta.get("range", (None, None))
    if lo is not None and value < lo:
        raise ConfigError(key, f"must be at least {lo}, not {value!r}")
    if hi is not None and value > hi:
        raise ConfigError(key, f"must be at most {hi}, not {value!r}")
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        raise ConfigError(key, f"must be one of {', '.join(choices)}, not {value!r}")
    return value


def _parse_env(key: str, hint: Any, raw: str) -> Any:
    if hint is bool:
        low = raw.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ConfigError(key, f"must be true or false, not {raw!r}")
    if hint is int:
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(key, f"must be an integer, not {raw!r}") from None
    if hint is float:
        try:
            return float(raw)
        except ValueError:
            raise ConfigError(key, f"must be a number, not {raw!r}") from None
    if hint == tuple[float, ...]:
        text = raw.strip().strip("[]")
        try:
            return [float(p) for p in text.split(",") if p.strip()]
        except ValueError:
            raise ConfigError(key, f"must be a comma-separated list of numbers, not {raw!r}") from None
    return raw


def _build_section(name: str, cls: type, raw: Any, env: Mapping[str, str]) -> Any:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(name, "must be a table")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise ConfigError(f"{name}.{key}", f"unknown key (known keys in [{name}]: {known})")
    values: dict[str, Any] = {}
    for fname, f in fields.items():
        dotted = f"{name}.{fname}"
        env_name = f"GATEWAY_{name.upper()}_{fname.upper()}"
        if env_name in env:
            value = _parse_env(env_name, hints[fname], env[env_name])
            values[fname] = _coerce(env_name, hints[fname], value, f.metadata)
        elif fname in raw:
            values[fname] = _coerce(dotted, hints[fname], raw[fname], f.metadata)
    return cls(**values)


def _build_topics(raw: Any) -> tuple[TopicConfig, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigError("topics", "must be an array of tables ([[topics]])")
    out: list[TopicConfig] = []
    for i, item in enumerate(raw):
        key = f"topics[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(key, "must be a table with name and description")
        for k in item:
            if k not in ("name", "description"):
                raise ConfigError(f"{key}.{k}", "unknown key (known keys: name, description)")
        name = item.get("name")
        if not isinstance(name, str) or not TOPIC_NAME.match(name):
            raise ConfigError(f"{key}.name", f"must be dotted lowercase words, not {name!r}")
        desc = item.get("description", "")
        if not isinstance(desc, str):
            raise ConfigError(f"{key}.description", "must be a string")
        out.append(TopicConfig(name=name, description=desc))
    return tuple(out)


# GATEWAY_* variables the gateway reads that are not a setting's override.
OTHER_ENV = frozenset({"GATEWAY_CONFIG"})


def env_names() -> frozenset[str]:
    """Every GATEWAY_* variable the gateway reads."""
    return OTHER_ENV | {f"GATEWAY_{name.upper()}_{f.name.upper()}"
                        for name, cls in SECTIONS.items() for f in dataclasses.fields(cls)}


def _check_env(env: Mapping[str, str]) -> None:
    """A GATEWAY_* variable the gateway does not read is refused like an unknown key: a typo
    (GATEWAY_SERVER_PROT) would otherwise leave the default in place without a word."""
    known = env_names()
    for name in sorted(env):
        if name.startswith("GATEWAY_") and name not in known:
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.8)
            hint = (f"did you mean {close[0]}?" if close else
                    "settings are GATEWAY_<SECTION>_<KEY>, e.g. GATEWAY_SERVER_PORT")
            raise ConfigError(name, f"unknown environment variable ({hint}); unset it or fix "
                                    "its name")


def config_path(path: str | os.PathLike[str] | None = None,
                env: Mapping[str, str] | None = None) -> str | None:
    """The config file that load_config reads: `path`, else $GATEWAY_CONFIG, else none."""
    env = os.environ if env is None else env
    if path is not None:
        return os.fspath(path)
    return env.get("GATEWAY_CONFIG") or None


def load_config(
    path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None
) -> Config:
    """Load and validate settings; a ConfigError names the first bad key. With a config file,
    a relative database.path (the default included) is relative to the file's folder, so a
    command run from elsewhere opens the same database; with none, to the working directory."""
    env = os.environ if env is None else env
    _check_env(env)
    named = "" if path is not None else " (named by GATEWAY_CONFIG)"
    path = config_path(path, env)
    data: dict[str, Any] = {}
    if path is not None:
        try:
            with Path(path).open("rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError("config", f"file not found: {path}{named}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("config", f"{path} is not valid TOML: {exc}") from None
        except OSError as exc:
            raise ConfigError("config", f"cannot read {path}{named}: {exc.strerror}") from None
    for key in data:
        if key not in SECTIONS and key != "topics":
            known = ", ".join([*SECTIONS, "topics"])
            raise ConfigError(key, f"unknown section (known: {known})")
    sections = {name: _build_section(name, cls, data.get(name), env) for name, cls in SECTIONS.items()}
    cfg = Config(**sections, topics=_build_topics(data.get("topics")))
    db = cfg.database.path
    if (path is not None and "GATEWAY_DATABASE_PATH" not in env and db != ":memory:"
            and not os.path.isabs(db)):
        folder = os.path.dirname(os.path.abspath(path))
        database = dataclasses.replace(cfg.database, path=os.path.join(folder, db))
        cfg = dataclasses.replace(cfg, database=database)
    if cfg.server.public_url and not re.match(r"^https?://[^/\s]+", cfg.server.public_url):
        raise ConfigError("server.public_url", "must be an http(s) URL such as https://hooks.example.com")
    if cfg.server.public_url.endswith("/"):
        # "https://hooks.example.com/" + "/v1/events/…" would give a double slash.
        server = dataclasses.replace(cfg.server, public_url=cfg.server.public_url.rstrip("/"))
        cfg = dataclasses.replace(cfg, server=server)
    return cfg


def with_overrides(cfg: Config, **sections: dict[str, Any]) -> Config:
    """A copy of cfg with some section keys replaced (tests and benchmarks)."""
    changes = {name: dataclasses.replace(getattr(cfg, name), **vals) for name, vals in sections.items()}
    return dataclasses.replace(cfg, **changes)
