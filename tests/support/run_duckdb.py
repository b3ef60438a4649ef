"""Runs SQL in an in-memory DuckDB for the integration tests.

    .venv/bin/python tests/support/run_duckdb.py SETUP.sql STATEMENT.sql QUERY.sql

Executes SETUP (several statements), then STATEMENT as one statement (the
rendered repartition SQL, unchanged), then QUERY, and prints QUERY's rows on
stdout as one JSON object {"columns": [...], "rows": [[...], ...]}, with
timestamps as ISO strings. Any failure exits non-zero with DuckDB's message.
"""

import json
import sys

import duckdb


def main() -> None:
    setup, statement, query = (open(path, encoding="utf-8").read() for path in sys.argv[1:4])
    con = duckdb.connect()
    con.execute(setup)
    con.execute(statement)
    cursor = con.execute(query)
    columns = [d[0] for d in cursor.description]
    rows = cursor.fetchall()
    json.dump({"columns": columns, "rows": rows}, sys.stdout, default=str)


if __name__ == "__main__":
    main()
