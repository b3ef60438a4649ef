"""Reads an Iceberg table through the Glue catalog with pyiceberg, an
independent reader of what the suite commits, and prints it as JSON.

Usage: read_iceberg.py ENDPOINT DATABASE TABLE [FILTER]

ENDPOINT is moto's (Glue and S3 both). Prints one JSON object: the schema
(field id, name, type, required), the partition spec (source id, field
name, transform), every snapshot's id, parent and summary (in no
particular order) and the current snapshot's id, the data files
(path, partition, record count, and the column metrics of the manifests:
values, nulls, lower and upper bounds by column name, bounds decoded to
their values, timestamps as microseconds) and every row (timestamps as
ISO 8601). With FILTER (a pyiceberg row filter, "ventilatorid >= 7"),
also the paths of the data files a scan with that filter plans: the files
the metrics do not rule out.
"""

import json
import sys

from pyiceberg.catalog import load_catalog
from pyiceberg.conversions import from_bytes


def main() -> None:
    endpoint, database, table_name = sys.argv[1:4]
    row_filter = sys.argv[4] if len(sys.argv) > 4 else None
    credentials = {"access-key-id": "testing", "secret-access-key": "testing"}
    catalog = load_catalog(
        "glue",
        **{
            "type": "glue",
            "glue.endpoint": endpoint,
            "glue.region": "us-east-1",
            "glue.access-key-id": credentials["access-key-id"],
            "glue.secret-access-key": credentials["secret-access-key"],
            "s3.endpoint": endpoint,
            "s3.region": "us-east-1",
            "s3.access-key-id": credentials["access-key-id"],
            "s3.secret-access-key": credentials["secret-access-key"],
        },
    )
    table = catalog.load_table((database, table_name))
    schema = table.schema()
    spec = table.spec()
    snapshots = [
        {
            "id": s.snapshot_id,
            "parent": s.parent_snapshot_id,
            "summary": dict(s.summary.additional_properties) if s.summary else {},
            "operation": s.summary.operation.value if s.summary else None,
        }
        for s in table.snapshots()
    ]
    def by_name(metrics, decode=False):
        out = {}
        for field_id, value in (metrics or {}).items():
            field = schema.find_field(field_id)
            out[field.name] = from_bytes(field.field_type, value) if decode else value
        return out

    scan = table.scan()
    files = [
        {
            "path": task.file.file_path,
            "partition": list(task.file.partition),
            "records": task.file.record_count,
            "values": by_name(task.file.value_counts),
            "nulls": by_name(task.file.null_value_counts),
            "lower": by_name(task.file.lower_bounds, decode=True),
            "upper": by_name(task.file.upper_bounds, decode=True),
        }
        for task in scan.plan_files()
    ]
    filtered = (
        [task.file.file_path for task in table.scan(row_filter=row_filter).plan_files()]
        if row_filter
        else None
    )
    arrow = scan.to_arrow()
    rows = []
    for row in arrow.to_pylist():
        rows.append({k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()})
    print(
        json.dumps(
            {
                "schema": [
                    {
                        "id": f.field_id,
                        "name": f.name,
                        "type": str(f.field_type),
                        "required": f.required,
                    }
                    for f in schema.fields
                ],
                "arrow_types": {f.name: str(f.type) for f in arrow.schema},
                "partition_spec": [
                    {"source_id": f.source_id, "name": f.name, "transform": str(f.transform)}
                    for f in spec.fields
                ],
                "snapshots": snapshots,
                "current_snapshot_id": (
                    table.current_snapshot().snapshot_id if table.current_snapshot() else None
                ),
                "files": sorted(files, key=lambda f: f["path"]),
                "filtered_files": sorted(filtered) if filtered is not None else None,
                "rows": rows,
            }
        )
    )


if __name__ == "__main__":
    main()
