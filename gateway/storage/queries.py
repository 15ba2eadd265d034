"""The named SQL of gateway/sql/, read once: queries by name, migrations by number."""

from __future__ import annotations

import re
from importlib import resources

# Statements that carry many rows in one statement (a VALUES row repeated): their one-row form
# is in queries.sql, the others in rows.sql under `name*rows` (see connector.execute_rows).
ROW_STATEMENTS = ("event_insert", "delivery_insert", "idempotency_put", "attempt_insert",
                  "delivery_record", "hook_success", "claim_mark")
# Rows per statement, largest first; only sizes within the parameter limit are used (32,766
# since SQLite 3.32, 999 before).
ROW_CHUNKS = (1024, 256, 64, 16, 4, 1)


def _named(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for chunk in re.split(r"^-- name: ", text, flags=re.M)[1:]:
        name, _, body = chunk.partition("\n")
        lines = [ln for ln in body.splitlines() if not ln.startswith("--")]
        out[name.strip()] = "\n".join(lines).strip().rstrip(";")
    return out


def _load() -> tuple[dict[str, str], list[tuple[int, str]]]:
    pkg = resources.files("gateway") / "sql"
    queries: dict[str, str] = {}
    for name in ("queries.sql", "rows.sql", "views.sql"):
        queries.update(_named((pkg / name).read_text()))
    migrations = []
    for entry in pkg.iterdir():
        m = re.match(r"^(\d{4})_.*\.sql$", entry.name)
        if m:
            migrations.append((int(m.group(1)), entry.read_text()))
    migrations.sort()
    return queries, migrations


Q, MIGRATIONS = _load()
SCHEMA_VERSION = MIGRATIONS[-1][0]


def rows_query(name: str, rows: int) -> str:
    """The statement `name` carrying `rows` rows (one of ROW_CHUNKS)."""
    return Q[name] if rows == 1 else Q[f"{name}*{rows}"]
