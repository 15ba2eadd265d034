"""The named SQL: every statement is written out, and the multi-row forms in rows.sql are the
one-row statements of queries.sql with their VALUES row repeated, nothing else.

`python tests/test_sql.py` writes gateway/sql/rows.sql again after a one-row statement changes.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from gateway.storage import queries

SQL = Path(__file__).resolve().parent.parent / "gateway" / "sql"
VALUES_ROW = re.compile(r"VALUES\s*(\([?,\s]*\))")


def expand(sql: str, rows: int) -> str:
    m = VALUES_ROW.search(sql)
    assert m is not None, "no VALUES (?, …) row"
    one = m.group(1).replace(" ", "")
    line = ",".join([one] * min(rows, 16))  # 16 rows a line
    return sql[:m.start(1)] + ",\n".join([line] * (rows // 16) or [line]) + sql[m.end(1):]


def rows_sql() -> str:
    out = ["-- Written by tests/test_sql.py from the one-row statements in queries.sql: each is\n"
           "-- the same statement with its VALUES row repeated, so that a batch is one statement\n"
           "-- step per chunk of rows (see execute_rows in storage/connector.py). Do not edit.\n"]
    for name in queries.ROW_STATEMENTS:
        for size in queries.ROW_CHUNKS:
            if size == 1:
                continue
            out.append(f"\n-- name: {name}*{size}\n{expand(queries.Q[name], size)};\n")
    return "".join(out)


def test_rows_sql_is_the_one_row_statements_repeated() -> None:
    assert (SQL / "rows.sql").read_text() == rows_sql(), "run python tests/test_sql.py"


@pytest.mark.parametrize("name", queries.ROW_STATEMENTS)
def test_every_chunk_size_has_its_statement(name: str) -> None:
    for size in queries.ROW_CHUNKS:
        sql = queries.rows_query(name, size)
        assert sql.count("?") == size * queries.Q[name].count("?")


def test_the_claim_variants_differ_only_where_they_say() -> None:
    """claim_candidates is written out four ways: by time or for one host, rows or JSON."""
    plain, of_host = queries.Q["claim_candidates"], queries.Q["claim_candidates_of_host"]
    assert of_host == plain.replace("INDEXED BY deliveries_due\n",
                                    "INDEXED BY deliveries_due_by_host\n").replace(
        "d.host NOT IN (SELECT value FROM json_each(?))", "d.host = ?")
    for base in ("claim_candidates", "claim_candidates_of_host"):
        js = queries.Q[f"{base}_json"]
        assert queries.Q[base] in js and js.startswith("WITH claim(")


def test_no_statement_is_empty_and_names_are_unique() -> None:
    text = "".join(p.read_text() for p in sorted(SQL.glob("*.sql")) if not p.name[0].isdigit())
    names = re.findall(r"^-- name: (\S+)", text, flags=re.M)
    assert len(names) == len(set(names)) == len(queries.Q)
    assert all(queries.Q[n] for n in names)


if __name__ == "__main__":
    (SQL / "rows.sql").write_text(rows_sql())
    sys.exit(0)
