"""Runs SQL in DuckDB: for the integration tests, and for the local run,
which runs the queries the repartition workflow started (moto's Athena runs
none).

    .venv/bin/python scripts/run_duckdb.py SETUP.sql STATEMENT.sql QUERY.sql [--database PATH] [--times N] [--then PATH]...

Executes SETUP (several statements), then STATEMENT as one statement (the
rendered repartition SQL, unchanged) N times (default 1), then each --then
file (one statement each, in order), then QUERY, and
prints QUERY's rows on stdout as one JSON object
{"columns": [...], "rows": [[...], ...]}, with timestamps as ISO strings.
In memory unless --database names a file, which keeps the tables from one
call to the next (SETUP must then be idempotent). Any failure exits non-zero
with DuckDB's message.
"""

import argparse
import json
import sys

import duckdb


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("setup")
    parser.add_argument("statement")
    parser.add_argument("query")
    parser.add_argument("--database", default=":memory:")
    parser.add_argument("--times", type=int, default=1)
    parser.add_argument("--then", action="append", default=[])
    args = parser.parse_args()
    setup, statement, query = (
        open(path, encoding="utf-8").read() for path in (args.setup, args.statement, args.query)
    )
    con = duckdb.connect(args.database)
    con.execute(setup)
    for _ in range(args.times):
        con.execute(statement)
    for path in args.then:
        con.execute(open(path, encoding="utf-8").read())
    cursor = con.execute(query)
    columns = [d[0] for d in cursor.description]
    rows = cursor.fetchall()
    json.dump({"columns": columns, "rows": rows}, sys.stdout, default=str)


if __name__ == "__main__":
    main()
