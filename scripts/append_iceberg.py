"""Appends rows to an Iceberg table through the Glue catalog with pyiceberg:
a commit made by another engine than the suite, whose snapshot carries none
of the suite's summary properties (as Athena's OPTIMIZE does not).

Usage: append_iceberg.py ENDPOINT DATABASE TABLE ROWS_JSON

ROWS_JSON is a list of objects keyed by column name; timestamps are ISO 8601
with a zone. Prints the new snapshot's id.
"""

import datetime
import json
import sys

import pyarrow as pa
from pyiceberg.catalog import load_catalog


def main() -> None:
    endpoint, database, table_name, rows_json = sys.argv[1:5]
    catalog = load_catalog(
        "glue",
        **{
            "type": "glue",
            "glue.endpoint": endpoint,
            "glue.region": "us-east-1",
            "glue.access-key-id": "testing",
            "glue.secret-access-key": "testing",
            "s3.endpoint": endpoint,
            "s3.region": "us-east-1",
            "s3.access-key-id": "testing",
            "s3.secret-access-key": "testing",
        },
    )
    table = catalog.load_table((database, table_name))
    schema = table.schema().as_arrow()
    rows = json.loads(rows_json)
    for row in rows:
        for field in schema:
            if pa.types.is_timestamp(field.type) and isinstance(row.get(field.name), str):
                row[field.name] = datetime.datetime.fromisoformat(row[field.name])
    table.append(pa.Table.from_pylist(rows, schema=schema))
    print(table.current_snapshot().snapshot_id)


if __name__ == "__main__":
    main()
