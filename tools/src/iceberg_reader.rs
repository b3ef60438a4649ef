//! Reads an Iceberg table back with pyiceberg (`scripts/read_iceberg.py`),
//! through the Glue catalog and S3 of a moto server: an independent reader
//! of what the suite commits, for the tests and the local run.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Duration, Utc};
use serde_json::Value;

use crate::moto::repo_root;
use telemetry_lake::lake::iceberg::history::WATERMARK_PREFIX;

/// The table as `scripts/read_iceberg.py` prints it: schema, Arrow types,
/// partition spec, snapshots, data files and every row.
pub fn read_table(endpoint: &str, database: &str, table: &str) -> Result<Value> {
    read_table_with(endpoint, database, table, None)
}

/// [`read_table`], with the data files a scan filtered by `filter` (a
/// pyiceberg row filter) plans, as `filtered_files`.
pub fn read_table_with(
    endpoint: &str,
    database: &str,
    table: &str,
    filter: Option<&str>,
) -> Result<Value> {
    let root = repo_root();
    let out = std::process::Command::new(root.join(".venv/bin/python"))
        .arg(root.join("scripts/read_iceberg.py"))
        .args([endpoint, database, table])
        .args(filter)
        .output()
        .context("running .venv/bin/python (make setup installs pyiceberg)")?;
    if !out.status.success() {
        bail!(
            "pyiceberg could not read {database}.{table}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    serde_json::from_slice(&out.stdout).context("pyiceberg's JSON")
}

/// What a table holds, in short: what the local run's summary shows.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct TableReport {
    /// `database.table`.
    pub table: String,
    /// `transform(field)` of each partition field.
    pub partition_spec: Vec<String>,
    pub snapshots: usize,
    pub current_snapshot_id: Option<i64>,
    /// The committed stream watermarks of the current snapshot, by
    /// `stream/shard`.
    pub watermarks: BTreeMap<String, String>,
    pub data_files: usize,
    /// Rows read back.
    pub rows: usize,
    /// Rows equal to another row (each good record once: 0).
    pub duplicate_rows: usize,
    /// Data files and rows per partition value (an hour or a day).
    pub partitions: Vec<PartitionReport>,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PartitionReport {
    pub partition: String,
    pub data_files: usize,
    pub rows: usize,
}

/// Summarises a table as [`read_table`] gave it.
pub fn report(table_name: &str, table: &Value) -> TableReport {
    let array = |v: &Value| v.as_array().cloned().unwrap_or_default();
    let spec = array(&table["partition_spec"]);
    let transform = spec
        .first()
        .and_then(|f| f["transform"].as_str())
        .unwrap_or("")
        .to_string();
    let current = table["current_snapshot_id"].as_i64();
    let watermarks = array(&table["snapshots"])
        .iter()
        .find(|s| s["id"].as_i64() == current && current.is_some())
        .and_then(|s| s["summary"].as_object().cloned())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(k, v)| {
            Some((
                k.strip_prefix(WATERMARK_PREFIX)?.to_string(),
                v.as_str()?.to_string(),
            ))
        })
        .collect();
    let mut partitions: BTreeMap<String, PartitionReport> = BTreeMap::new();
    let files = array(&table["files"]);
    for f in &files {
        let value = f["partition"]
            .as_array()
            .and_then(|p| p.first())
            .and_then(Value::as_i64);
        let name = partition_name(&transform, value);
        let p = partitions
            .entry(name.clone())
            .or_insert_with(|| PartitionReport {
                partition: name,
                ..Default::default()
            });
        p.data_files += 1;
        p.rows += f["records"].as_u64().unwrap_or(0) as usize;
    }
    let rows = array(&table["rows"]);
    let distinct: BTreeSet<String> = rows.iter().map(Value::to_string).collect();
    TableReport {
        table: table_name.to_string(),
        partition_spec: spec
            .iter()
            .map(|f| {
                format!(
                    "{}({}) as {}",
                    f["transform"].as_str().unwrap_or("?"),
                    source_name(table, f["source_id"].as_i64()),
                    f["name"].as_str().unwrap_or("?")
                )
            })
            .collect(),
        snapshots: array(&table["snapshots"]).len(),
        current_snapshot_id: current,
        watermarks,
        data_files: files.len(),
        rows: rows.len(),
        duplicate_rows: rows.len() - distinct.len(),
        partitions: partitions.into_values().collect(),
    }
}

fn source_name(table: &Value, id: Option<i64>) -> String {
    table["schema"]
        .as_array()
        .and_then(|fields| fields.iter().find(|f| f["id"].as_i64() == id))
        .and_then(|f| f["name"].as_str())
        .unwrap_or("?")
        .to_string()
}

/// An hour or day partition value (hours or days since the epoch) as a
/// time: `2026-11-22-10` or `2026-11-22`.
fn partition_name(transform: &str, value: Option<i64>) -> String {
    let Some(v) = value else {
        return "null".to_string();
    };
    let epoch = DateTime::<Utc>::UNIX_EPOCH;
    match transform {
        "hour" => (epoch + Duration::hours(v))
            .format("%Y-%m-%d-%H")
            .to_string(),
        "day" => (epoch + Duration::days(v)).format("%Y-%m-%d").to_string(),
        _ => v.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_table_is_summarised_with_its_partitions_watermarks_and_duplicates() {
        let table = json!({
            "schema": [{"id": 1, "name": "id"}, {"id": 2, "name": "at"}],
            "partition_spec": [{"source_id": 2, "name": "at_hour", "transform": "hour"}],
            "snapshots": [
                {"id": 1, "summary": {"telemetry-lake.watermark.s/0": "5"}},
                {"id": 2, "summary": {"telemetry-lake.watermark.s/0": "9", "added-records": "2"}}
            ],
            "current_snapshot_id": 2,
            "files": [
                {"path": "a", "partition": [490_000], "records": 2},
                {"path": "b", "partition": [490_001], "records": 1}
            ],
            "rows": [{"id": 1}, {"id": 2}, {"id": 2}]
        });
        let r = report("db.t", &table);
        assert_eq!(r.partition_spec, ["hour(at) as at_hour"]);
        assert_eq!((r.snapshots, r.current_snapshot_id), (2, Some(2)));
        assert_eq!(r.watermarks, BTreeMap::from([("s/0".into(), "9".into())]));
        assert_eq!((r.data_files, r.rows, r.duplicate_rows), (2, 3, 1));
        // 490,000 hours after the epoch.
        assert_eq!(r.partitions[0].partition, "2025-11-24-16");
        assert_eq!(r.partitions[1].rows, 1);
    }
}
