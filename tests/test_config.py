"""Configuration: TOML + GATEWAY_* env into frozen settings; every error names the key and why."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import (
    SECTIONS,
    Config,
    DeliveryConfig,
    SecurityConfig,
    ServerConfig,
    TopicConfig,
    env_names,
    load_config,
)
from gateway.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "config.example.toml"


def write(tmp_path: Path, text: str, name: str = "gateway.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def config_error(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), env=env or {})
    return info.value


def run_cli(*args: str, env: dict[str, str] | None = None,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True, text=True,
                          env=full_env, cwd=cwd, timeout=30, check=False)


def test_no_file_gives_the_documented_defaults() -> None:
    cfg = load_config(None, env={})
    assert cfg == Config()
    assert cfg.server.host == "127.0.0.1"
    assert cfg.server.port == 8080
    assert cfg.server.public_url == ""
    assert cfg.server.max_body_bytes == 262144
    assert cfg.server.max_batch_events == 1000
    assert cfg.database.path == "gateway.db"
    d = cfg.delivery
    assert d.timeout_seconds == 10
    assert d.max_in_flight == 256
    assert d.max_in_flight_per_host == 8
    assert d.retry_schedule_seconds == (5, 30, 120, 600, 1800, 3600, 10800, 21600, 43200, 86400)
    assert d.max_retry_after_seconds == 3600
    assert d.disable_after_seconds == 259200
    assert d.disable_after_failures == 20
    assert d.shutdown_grace_seconds == 10
    s = cfg.security
    assert (s.verify_intent, s.handshake_timeout_seconds, s.allow_http_targets,
            s.allow_private_targets, s.metrics_public) == (True, 5, False, False, False)
    assert (cfg.log.format, cfg.log.level) == ("json", "info")
    assert cfg.topics == ()


def test_settings_are_frozen() -> None:
    cfg = load_config(None, env={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.server.port = 1  # type: ignore[misc]


def test_a_file_sets_values_and_keeps_the_rest_default(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, """
[server]
port = 9000
public_url = "https://hooks.example.com"
[database]
path = "/var/lib/gateway/g.db"
[delivery]
retry_schedule_seconds = [0.2, 0.5]
timeout_seconds = 0.75
[security]
verify_intent = false
handshake_timeout_seconds = 0.3
[log]
format = "console"
"""), env={})
    assert cfg.server.port == 9000
    assert cfg.server.host == "127.0.0.1"
    assert cfg.server.public_url == "https://hooks.example.com"
    assert cfg.database.path == "/var/lib/gateway/g.db"
    assert cfg.delivery.retry_schedule_seconds == (0.2, 0.5)
    assert cfg.delivery.timeout_seconds == 0.75
    assert cfg.delivery.max_in_flight == 256
    assert cfg.security.verify_intent is False
    assert cfg.security.handshake_timeout_seconds == 0.3
    assert cfg.log.format == "console"


def test_integer_durations_become_floats(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "[delivery]\ntimeout_seconds = 3\n"
                                      "retry_schedule_seconds = [1, 2]\n"), env={})
    assert isinstance(cfg.delivery.timeout_seconds, float)
    assert all(isinstance(v, float) for v in cfg.delivery.retry_schedule_seconds)


def test_public_url_loses_a_trailing_slash(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, '[server]\npublic_url = "https://hooks.example.com/"\n'),
                      env={})
    assert cfg.server.public_url == "https://hooks.example.com"
    cfg = load_config(None, env={"GATEWAY_SERVER_PUBLIC_URL": "https://h.example.com/gw/"})
    assert cfg.server.public_url == "https://h.example.com/gw"


def test_topics_tables(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, """
[[topics]]
name = "contact.created"
description = "A contact was created"

[[topics]]
name = "billing.tier_changed"
"""), env={})
    assert cfg.topics == (TopicConfig("contact.created", "A contact was created"),
                          TopicConfig("billing.tier_changed", ""))


@pytest.mark.parametrize(("text", "key", "why"), [
    # wrong types
    ("[server]\nport = \"8080\"", "server.port", "integer"),
    ("[server]\nport = 80.5", "server.port", "integer"),
    ("[server]\nport = true", "server.port", "integer"),
    ("[server]\nhost = 127", "server.host", "string"),
    ("[server]\npublic_url = 5", "server.public_url", "string"),
    ("[server]\nmax_body_bytes = [1]", "server.max_body_bytes", "integer"),
    ("[database]\npath = 1", "database.path", "string"),
    ("[delivery]\ntimeout_seconds = \"10\"", "delivery.timeout_seconds", "number"),
    ("[delivery]\ntimeout_seconds = false", "delivery.timeout_seconds", "number"),
    ("[delivery]\nretry_schedule_seconds = 5", "delivery.retry_schedule_seconds", "list"),
    ("[delivery]\nretry_schedule_seconds = [1, \"2\"]", "delivery.retry_schedule_seconds", "list"),
    ("[delivery]\nretry_schedule_seconds = [1, -2]", "delivery.retry_schedule_seconds", "non-negative"),
    ("[delivery]\nmax_in_flight = 1.5", "delivery.max_in_flight", "integer"),
    ("[security]\nverify_intent = \"false\"", "security.verify_intent", "true or false"),
    ("[security]\nverify_intent = 0", "security.verify_intent", "true or false"),
    ("[security]\nmetrics_public = 1", "security.metrics_public", "true or false"),
    ("[log]\nformat = 1", "log.format", "string"),
    # bad values and out of range
    ("[server]\nport = 70000", "server.port", "at most 65535"),
    ("[server]\nport = -1", "server.port", "at least 0"),
    ("[server]\nmax_body_bytes = 10", "server.max_body_bytes", "at least 1024"),
    ("[server]\nmax_batch_events = 0", "server.max_batch_events", "at least 1"),
    ("[server]\npublic_url = \"hooks.example.com\"", "server.public_url", "http(s) URL"),
    ("[delivery]\ntimeout_seconds = 0", "delivery.timeout_seconds", "at least"),
    ("[delivery]\nmax_in_flight = 0", "delivery.max_in_flight", "at least 1"),
    ("[delivery]\nmax_in_flight_per_host = 0", "delivery.max_in_flight_per_host", "at least 1"),
    ("[delivery]\ndisable_after_failures = 0", "delivery.disable_after_failures", "at least 1"),
    ("[delivery]\nmax_retry_after_seconds = -1", "delivery.max_retry_after_seconds", "at least 0"),
    ("[delivery]\nshutdown_grace_seconds = 99999", "delivery.shutdown_grace_seconds", "at most"),
    ("[security]\nhandshake_timeout_seconds = 0", "security.handshake_timeout_seconds", "at least"),
    ("[security]\nhandshake_timeout_seconds = 1000", "security.handshake_timeout_seconds", "at most"),
    ("[security]\nhandshake_timeout_seconds = nan", "security.handshake_timeout_seconds", "finite"),
    ("[delivery]\ntimeout_seconds = inf", "delivery.timeout_seconds", "finite"),
    ("[delivery]\nretry_schedule_seconds = [1, nan]", "delivery.retry_schedule_seconds", "number"),
    ("[delivery]\nretry_schedule_seconds = [1, inf]", "delivery.retry_schedule_seconds", "finite"),
    ("[delivery]\ndisable_after_seconds = nan", "delivery.disable_after_seconds", "finite"),
    ("[database]\npath = \"\"", "database.path", "empty"),
    ("[server]\nhost = \"\"", "server.host", "empty"),
    ("[database]\nsynchronous = \"off\"", "database.synchronous", "normal, full"),
    ("[log]\nformat = \"xml\"", "log.format", "json, console"),
    ("[log]\nlevel = \"verbose\"", "log.level", "one of"),
    # unknown keys and sections, wrong shapes
    ("[server]\nprot = 8080", "server.prot", "unknown key"),
    ("[security]\nverify = false", "security.verify", "unknown key"),
    ("[serverr]\nport = 8080", "serverr", "unknown section"),
    ("port = 8080", "port", "unknown section"),
    ("server = 5", "server", "must be a table"),
    ("topics = \"contact.created\"", "topics", "array of tables"),
    ("[[topics]]\ndescription = \"x\"", "topics[0].name", "dotted lowercase"),
    ("[[topics]]\nname = \"Contact Created\"", "topics[0].name", "dotted lowercase"),
    ("[[topics]]\nname = \"contact.created\\n\"", "topics[0].name", "dotted lowercase"),
    ("[[topics]]\nname = \"a.b\"\ncolor = \"red\"", "topics[0].color", "unknown key"),
    ("[[topics]]\nname = \"a.b\"\ndescription = 5", "topics[0].description", "string"),
])
def test_a_bad_file_names_the_key_and_why(tmp_path: Path, text: str, key: str, why: str) -> None:
    err = config_error(tmp_path, text + "\n")
    assert err.key == key, str(err)
    assert why in err.message, str(err)
    assert key in str(err)


def test_the_first_bad_topic_is_named_by_index(tmp_path: Path) -> None:
    err = config_error(tmp_path, '[[topics]]\nname = "a.b"\n[[topics]]\nname = "B"\n')
    assert err.key == "topics[1].name"


def test_missing_and_unparseable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.toml", env={})
    assert "not found" in info.value.message
    err = config_error(tmp_path, "[server\nport = 1\n")
    assert err.key == "config"
    assert "not valid TOML" in err.message


@pytest.mark.parametrize(("name", "raw", "section", "key", "expected"), [
    ("GATEWAY_SERVER_PORT", "9001", "server", "port", 9001),
    ("GATEWAY_SERVER_HOST", "0.0.0.0", "server", "host", "0.0.0.0"),
    ("GATEWAY_DATABASE_PATH", "/tmp/x.db", "database", "path", "/tmp/x.db"),
    ("GATEWAY_DELIVERY_TIMEOUT_SECONDS", "0.25", "delivery", "timeout_seconds", 0.25),
    ("GATEWAY_DELIVERY_RETRY_SCHEDULE_SECONDS", "0.2,0.5", "delivery", "retry_schedule_seconds",
     (0.2, 0.5)),
    ("GATEWAY_DELIVERY_RETRY_SCHEDULE_SECONDS", "[1, 2, 3]", "delivery", "retry_schedule_seconds",
     (1.0, 2.0, 3.0)),
    ("GATEWAY_SECURITY_VERIFY_INTENT", "false", "security", "verify_intent", False),
    ("GATEWAY_SECURITY_VERIFY_INTENT", "0", "security", "verify_intent", False),
    ("GATEWAY_SECURITY_METRICS_PUBLIC", "TRUE", "security", "metrics_public", True),
    ("GATEWAY_SECURITY_ALLOW_PRIVATE_TARGETS", "yes", "security", "allow_private_targets", True),
    ("GATEWAY_LOG_FORMAT", "console", "log", "format", "console"),
])
def test_env_overrides(name: str, raw: str, section: str, key: str, expected: object) -> None:
    cfg = load_config(None, env={name: raw})
    assert getattr(getattr(cfg, section), key) == expected


def test_env_beats_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[server]\nport = 9000\nhost = \"0.0.0.0\"\n")
    cfg = load_config(path, env={"GATEWAY_SERVER_PORT": "9100"})
    assert cfg.server.port == 9100
    assert cfg.server.host == "0.0.0.0"


@pytest.mark.parametrize(("name", "raw", "why"), [
    ("GATEWAY_SERVER_PORT", "eighty", "integer"),
    ("GATEWAY_SERVER_PORT", "8080.0", "integer"),
    ("GATEWAY_SERVER_PORT", "99999", "at most 65535"),
    ("GATEWAY_DELIVERY_TIMEOUT_SECONDS", "soon", "number"),
    ("GATEWAY_DELIVERY_TIMEOUT_SECONDS", "nan", "finite"),
    ("GATEWAY_DELIVERY_RETRY_SCHEDULE_SECONDS", "1,x", "list of numbers"),
    ("GATEWAY_DELIVERY_RETRY_SCHEDULE_SECONDS", "1,-1", "non-negative"),
    ("GATEWAY_SECURITY_VERIFY_INTENT", "maybe", "true or false"),
    ("GATEWAY_LOG_LEVEL", "loud", "one of"),
])
def test_bad_env_values_name_the_variable(name: str, raw: str, why: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, env={name: raw})
    assert info.value.key == name
    assert why in info.value.message


def test_gateway_config_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[server]\nport = 9200\n")
    assert load_config(None, env={"GATEWAY_CONFIG": str(path)}).server.port == 9200
    # An explicit path wins over GATEWAY_CONFIG.
    other = write(tmp_path, "[server]\nport = 9300\n", "other.toml")
    assert load_config(other, env={"GATEWAY_CONFIG": str(path)}).server.port == 9300
    with pytest.raises(ConfigError) as info:
        load_config(None, env={"GATEWAY_CONFIG": str(tmp_path / "missing.toml")})
    assert "missing.toml" in info.value.message
    assert "GATEWAY_CONFIG" in info.value.message


def test_example_config_documents_the_defaults() -> None:
    if not EXAMPLE.exists():
        pytest.skip("config.example.toml is not written yet (another engineer owns it)")
    cfg = load_config(EXAMPLE, env={})
    # (Its relative database.path is made absolute against the file's folder.)
    assert cfg.database.path == str(EXAMPLE.parent / Config().database.path)
    cfg = dataclasses.replace(cfg, database=Config().database)
    assert dataclasses.replace(cfg, topics=()) == Config()
    text = EXAMPLE.read_text()
    for section, cls in [("server", ServerConfig), ("delivery", DeliveryConfig),
                         ("security", SecurityConfig)]:
        assert f"[{section}]" in text
        for f in dataclasses.fields(cls):
            assert f"\n{f.name} =" in text, f"{section}.{f.name} is not documented"


def test_check_config_refuses_a_bad_file(tmp_path: Path) -> None:
    bad = write(tmp_path, "[delivery]\nmax_in_flight = \"lots\"\n", "bad.toml")
    res = run_cli("check-config", "--config", str(bad))
    assert res.returncode != 0
    assert "delivery.max_in_flight" in res.stderr
    assert "integer" in res.stderr
    assert "Traceback" not in res.stderr
    assert res.stdout == ""


def test_check_config_refuses_an_unknown_key(tmp_path: Path) -> None:
    bad = write(tmp_path, "[security]\nallow_privat_targets = true\n", "bad.toml")
    res = run_cli("check-config", "--config", str(bad))
    assert res.returncode != 0
    assert "security.allow_privat_targets" in res.stderr
    assert "unknown key" in res.stderr


def test_check_config_refuses_a_bad_env_override(tmp_path: Path) -> None:
    good = write(tmp_path, "[server]\nport = 9000\n")
    res = run_cli("check-config", "--config", str(good), env={"GATEWAY_SERVER_PORT": "x"})
    assert res.returncode != 0
    assert "GATEWAY_SERVER_PORT" in res.stderr


def test_check_config_accepts_a_good_file(tmp_path: Path) -> None:
    good = write(tmp_path, "[server]\nport = 9000\n[[topics]]\nname = \"contact.created\"\n")
    res = run_cli("check-config", "--config", str(good))
    assert res.returncode == 0, res.stderr
    assert "OK" in res.stdout


def test_check_config_reads_gateway_config(tmp_path: Path) -> None:
    bad = write(tmp_path, "[server]\nport = 123456\n", "bad.toml")
    res = run_cli("check-config", env={"GATEWAY_CONFIG": str(bad)})
    assert res.returncode != 0
    assert "server.port" in res.stderr


def test_serve_refuses_to_start_on_a_bad_config(tmp_path: Path) -> None:
    bad = write(tmp_path, "[server]\nport = \"x\"\n", "bad.toml")
    res = run_cli("serve", "--config", str(bad), cwd=tmp_path)
    assert res.returncode != 0
    assert "server.port" in res.stderr
    assert not (tmp_path / "gateway.db").exists()


def test_a_relative_database_path_is_relative_to_the_config_file(tmp_path: Path) -> None:
    folder = tmp_path / "etc"
    folder.mkdir()
    path = write(folder, '[database]\npath = "data/hooks.db"\n')
    assert load_config(path, env={}).database.path == str(folder / "data" / "hooks.db")
    # Named by GATEWAY_CONFIG, or by a relative path: the same file, the same database.
    cfg = load_config(None, env={"GATEWAY_CONFIG": str(path)})
    assert cfg.database.path == str(folder / "data" / "hooks.db")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert load_config("etc/gateway.toml", env={}).database.path == str(
            folder / "data" / "hooks.db")
    finally:
        os.chdir(cwd)
    # A file that does not name one: the default file, next to it.
    other = write(folder, "[server]\nport = 9000\n", "other.toml")
    assert load_config(other, env={}).database.path == str(folder / "gateway.db")


def test_an_absolute_database_path_and_the_env_are_kept_as_written(tmp_path: Path) -> None:
    path = write(tmp_path, f'[database]\npath = "{tmp_path / "abs.db"}"\n')
    assert load_config(path, env={}).database.path == str(tmp_path / "abs.db")
    # An environment variable has no file to be relative to: the working directory, as without
    # a config file.
    cfg = load_config(path, env={"GATEWAY_DATABASE_PATH": "rel.db"})
    assert cfg.database.path == "rel.db"
    assert load_config(None, env={}).database.path == "gateway.db"


@pytest.mark.parametrize(("name", "suggestion"), [
    ("GATEWAY_SERVER_PROT", "GATEWAY_SERVER_PORT"),
    ("GATEWAY_DELIVERY_TIMEOUT", "GATEWAY_DELIVERY_TIMEOUT_SECONDS"),
    ("GATEWAY_SECURITY_ALLOW_PRIVATE_TARGET", "GATEWAY_SECURITY_ALLOW_PRIVATE_TARGETS"),
    ("GATEWAY_CONFIGG", "GATEWAY_CONFIG"),
    ("GATEWAY_PORT", None),
])
def test_an_unknown_gateway_variable_is_refused(name: str, suggestion: str | None) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, env={name: "9000"})
    assert info.value.key == name
    assert "unknown environment variable" in info.value.message
    if suggestion is not None:
        assert f"did you mean {suggestion}?" in info.value.message
    else:
        assert "GATEWAY_<SECTION>_<KEY>" in info.value.message


def test_the_variables_the_gateway_reads_are_allowed(tmp_path: Path) -> None:
    path = write(tmp_path, "[server]\nport = 9000\n")
    env = {"GATEWAY_CONFIG": str(path), "GATEWAY_LOG_LEVEL": "debug", "OTHER_PROT": "1",
           "XGATEWAY_SERVER_PROT": "1"}
    cfg = load_config(None, env=env)
    assert (cfg.server.port, cfg.log.level) == (9000, "debug")
    # Every key of every section has its variable.
    for name, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            assert f"GATEWAY_{name.upper()}_{f.name.upper()}" in env_names()


def test_check_config_names_the_file_it_read(tmp_path: Path) -> None:
    good = write(tmp_path, "[server]\nport = 9000\n")
    res = run_cli("check-config", env={"GATEWAY_CONFIG": str(good)}, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [f"config OK: {good} (named by GATEWAY_CONFIG)",
                                       f"database: {tmp_path / 'gateway.db'}"]
    res = run_cli("check-config", "--config", "gateway.toml", cwd=tmp_path)
    assert res.stdout.splitlines()[0] == f"config OK: {good}"
    res = run_cli("check-config", cwd=tmp_path)
    assert "no config file" in res.stdout


def test_check_config_refuses_a_misspelt_variable(tmp_path: Path) -> None:
    good = write(tmp_path, "[server]\nport = 9000\n")
    res = run_cli("check-config", "--config", str(good), env={"GATEWAY_SERVER_PROT": "9001"})
    assert res.returncode == 1
    assert res.stdout == ""
    assert "GATEWAY_SERVER_PROT" in res.stderr and "GATEWAY_SERVER_PORT" in res.stderr
    assert "Traceback" not in res.stderr
