//! What a local run did, read back from moto where it can be (objects,
//! Parquet rows, dead letters, status windows, executions), and printed as
//! text for people or JSON for machines.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use anyhow::{Context as _, Result};
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::lake_reader;

pub use crate::iceberg_reader::TableReport as IcebergTable;
use telemetry_lake::device_status::status::Status;
use telemetry_lake::device_status::window_store::count_attribute;

/// The whole run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub records: Records,
    pub lake: Lake,
    /// With `LakeFormat` `iceberg`: the table as pyiceberg read it back.
    pub iceberg: Option<IcebergTable>,
    pub dead_letters: DeadLetters,
    pub device_status: DeviceStatusReport,
    pub executions: Vec<Execution>,
    pub scheduler_ticks: Vec<Tick>,
    /// With the Hive layout: the event-time table the workflow's queries
    /// made, run in DuckDB.
    pub event_time: Option<crate::local_run::event_time::EventTimeTable>,
    /// What each function's metrics documents add up to.
    pub metrics: Vec<FunctionMetrics>,
    /// Each function's invocation times and AWS requests.
    pub usage: Vec<FunctionUsage>,
    /// Where everything is: name → bucket URI, table, ARN or endpoint.
    pub outputs: BTreeMap<String, String>,
    pub seconds: f64,
}

/// Records generated and what the stream functions made of them.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Records {
    pub generated: usize,
    /// The readings' JSON documents, added up (before compression).
    pub generated_json_bytes: usize,
    /// Generated bad on purpose, by kind.
    pub generated_bad: BTreeMap<String, usize>,
    /// How they reached the stream ([`super::Source::name`]).
    pub source: String,
    pub stream_records: usize,
    /// As kinesis-to-parquet reported them.
    pub good: usize,
    pub bad: usize,
    pub kinesis_to_parquet_invocations: usize,
    pub device_status_invocations: usize,
    pub retries: usize,
}

/// One function's metrics over the run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FunctionMetrics {
    /// The function's logical ID in the template.
    pub function: String,
    /// Invocations that wrote a document.
    pub invocations: usize,
    /// Each metric summed over the invocations (a time: its largest).
    pub totals: BTreeMap<String, f64>,
    /// Dead letters by reason, summed.
    pub dead_letters_by_reason: BTreeMap<String, f64>,
}

/// Adds up each function's documents (JSON lines, by logical ID): counts
/// and bytes summed, milliseconds the largest.
pub fn metric_totals(lines: &BTreeMap<String, Vec<String>>) -> Vec<FunctionMetrics> {
    let mut out = Vec::new();
    for (function, lines) in lines {
        let mut f = FunctionMetrics {
            function: function.clone(),
            ..FunctionMetrics::default()
        };
        for line in lines {
            let Ok(doc) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let directive = &doc["_aws"]["CloudWatchMetrics"][0];
            let by_reason = doc.get("Reason").and_then(|r| r.as_str());
            if by_reason.is_none() {
                f.invocations += 1;
            }
            for m in directive["Metrics"].as_array().into_iter().flatten() {
                let (Some(name), Some(value)) = (
                    m["Name"].as_str(),
                    doc[m["Name"].as_str().unwrap_or_default()].as_f64(),
                ) else {
                    continue;
                };
                if let Some(reason) = by_reason {
                    *f.dead_letters_by_reason
                        .entry(reason.to_string())
                        .or_default() += value;
                    continue;
                }
                let total = f.totals.entry(name.to_string()).or_default();
                if m["Unit"] == "Milliseconds" {
                    *total = total.max(value);
                } else {
                    *total += value;
                }
            }
        }
        out.push(f);
    }
    out
}

/// One function's invocations and the AWS requests they made, as its
/// counting proxy saw them.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FunctionUsage {
    /// The function's logical ID in the template.
    pub function: String,
    /// Invocations timed (a retried batch counts each time).
    pub invocations: usize,
    /// Their wall time, added up and the longest, in seconds.
    pub seconds: f64,
    pub longest_seconds: f64,
    /// The milliseconds Lambda would bill for them (each rounded up).
    pub billed_ms: f64,
    /// Bytes of the metrics documents it printed (what CloudWatch Logs
    /// ingests of them).
    pub metrics_bytes: usize,
    /// Its requests by kind (`S3 PUT`, `DynamoDB UpdateItem`, ...).
    pub requests: crate::request_count::Tallies,
}

/// Each function's usage, from its invocation times, its requests and
/// its metrics documents (all by logical ID).
pub fn usage(
    durations: &BTreeMap<String, Vec<f64>>,
    requests: &BTreeMap<String, crate::request_count::Tallies>,
    metrics_lines: &BTreeMap<String, Vec<String>>,
) -> Vec<FunctionUsage> {
    let mut ids: Vec<&String> = durations.keys().chain(requests.keys()).collect();
    ids.sort();
    ids.dedup();
    ids.into_iter()
        .map(|id| {
            let times = durations.get(id).map(Vec::as_slice).unwrap_or_default();
            FunctionUsage {
                function: id.clone(),
                invocations: times.len(),
                seconds: times.iter().sum(),
                longest_seconds: times.iter().copied().fold(0.0, f64::max),
                billed_ms: crate::cost::billed_ms(times),
                metrics_bytes: metrics_lines
                    .get(id)
                    .map_or(0, |l| l.iter().map(|l| l.len() + 1).sum()),
                requests: requests.get(id).cloned().unwrap_or_default(),
            }
        })
        .collect()
}

/// The Parquet lake, read back.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Lake {
    pub uri: String,
    pub objects: usize,
    pub bytes: i64,
    /// Rows read back from every Parquet object.
    pub rows: usize,
    pub partitions: Vec<Partition>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Partition {
    pub partition: String,
    pub objects: usize,
    pub bytes: i64,
    pub rows: usize,
}

/// Dead letters, read back.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DeadLetters {
    pub uri: String,
    pub total: usize,
    pub by_reason: BTreeMap<String, usize>,
}

/// The status windows table, read back, and the reference change.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DeviceStatusReport {
    pub table: String,
    pub by_status: Vec<StatusRow>,
    pub changed_device: ChangedDevice,
}

/// One status across the windows table.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct StatusRow {
    pub status: String,
    pub windows: usize,
    pub devices: usize,
    /// Readings counted in those windows (each reading is in two windows
    /// when windows slide by half their size).
    pub readings: u64,
}

/// The device whose normal range was changed between the two halves.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ChangedDevice {
    pub device: String,
    pub change: String,
    /// The change flag's version before and after the change.
    pub flag_version_before: u64,
    pub flag_version_after: u64,
    /// Reference loads of device-status before and after.
    pub reference_loads_before: u64,
    pub reference_loads_after: u64,
    /// Readings per status in the device's windows of the first half (that
    /// end before the change) and of the second (that start after).
    pub before: BTreeMap<String, u64>,
    pub after: BTreeMap<String, u64>,
}

/// One state machine execution, from Step Functions.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Execution {
    pub state_machine: String,
    pub name: String,
    pub status: String,
    pub states: Vec<String>,
    pub seconds: f64,
}

/// One scheduler tick.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Tick {
    pub scheduled_time: DateTime<Utc>,
    pub started: Vec<String>,
    pub skipped: Vec<String>,
    pub failed: Vec<String>,
}

/// Reads the lake back: objects and bytes per partition, Parquet rows.
pub async fn read_lake(s3: &aws_sdk_s3::Client, bucket: &str, prefix: &str) -> Result<Lake> {
    let mut partitions: BTreeMap<String, Partition> = BTreeMap::new();
    let objects = lake_reader::list(s3, bucket, prefix).await?;
    let mut lake = Lake {
        uri: format!("s3://{bucket}/{prefix}/"),
        objects: objects.len(),
        ..Default::default()
    };
    for o in &objects {
        let part = o
            .key
            .strip_prefix(prefix)
            .unwrap_or(&o.key)
            .trim_start_matches('/')
            .rsplit_once('/')
            .map(|(p, _)| p.to_string())
            .unwrap_or_default();
        let rows: usize = lake_reader::parquet_batches(lake_reader::get(s3, bucket, &o.key).await?)
            .with_context(|| format!("reading s3://{bucket}/{}", o.key))?
            .iter()
            .map(|b| b.num_rows())
            .sum();
        let p = partitions.entry(part.clone()).or_insert_with(|| Partition {
            partition: part,
            ..Default::default()
        });
        p.objects += 1;
        p.bytes += o.size;
        p.rows += rows;
        lake.bytes += o.size;
        lake.rows += rows;
    }
    lake.partitions = partitions.into_values().collect();
    Ok(lake)
}

/// Reads the dead letters back, counted by reason.
pub async fn read_dead_letters(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
) -> Result<DeadLetters> {
    let mut out = DeadLetters {
        uri: format!("s3://{bucket}/{prefix}/"),
        ..Default::default()
    };
    for o in lake_reader::list(s3, bucket, prefix).await? {
        for l in lake_reader::dead_letters(&lake_reader::get(s3, bucket, &o.key).await?)? {
            *out.by_reason.entry(l.reason).or_default() += 1;
            out.total += 1;
        }
    }
    Ok(out)
}

/// One item of the status windows table.
#[derive(Debug, Clone)]
pub struct Window {
    pub device: String,
    pub status: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub count: u64,
}

/// Every item of a DynamoDB table, page after page.
pub async fn scan_items(
    ddb: &aws_sdk_dynamodb::Client,
    table: &str,
) -> Result<Vec<HashMap<String, aws_sdk_dynamodb::types::AttributeValue>>> {
    let mut items = Vec::new();
    let mut start = None;
    loop {
        let page = ddb
            .scan()
            .table_name(table)
            .set_exclusive_start_key(start)
            .send()
            .await
            .with_context(|| format!("scanning {table}"))?;
        items.extend(page.items().iter().cloned());
        match page.last_evaluated_key() {
            Some(key) => start = Some(key.clone()),
            None => return Ok(items),
        }
    }
}

/// Every item of the status windows table.
pub async fn read_windows(ddb: &aws_sdk_dynamodb::Client, table: &str) -> Result<Vec<Window>> {
    let mut out = Vec::new();
    for item in &scan_items(ddb, table).await? {
        let s = |a: &str| item.get(a).and_then(|v| v.as_s().ok()).cloned();
        let t = |a: &str| {
            s(a).and_then(|v| DateTime::parse_from_rfc3339(&v).ok())
                .map(|t| t.with_timezone(&Utc))
        };
        let (Some(device), Some(start), Some(end)) =
            (s("device"), t("window_start"), t("window_end"))
        else {
            continue;
        };
        // One item per device and window: a status window per status
        // it counts.
        for status in Status::ALL {
            let Some(count) = item
                .get(&count_attribute(status))
                .and_then(|v| v.as_n().ok())
                .and_then(|n| n.parse().ok())
            else {
                continue;
            };
            out.push(Window {
                device: device.clone(),
                status: status.as_str().to_string(),
                start,
                end,
                count,
            });
        }
    }
    Ok(out)
}

/// Windows, readings and devices per status.
pub fn status_rows(windows: &[Window]) -> Vec<StatusRow> {
    let mut rows: BTreeMap<&str, (usize, std::collections::BTreeSet<&str>, u64)> = BTreeMap::new();
    for w in windows {
        let r = rows.entry(&w.status).or_default();
        r.0 += 1;
        r.1.insert(&w.device);
        r.2 += w.count;
    }
    rows.into_iter()
        .map(|(status, (windows, devices, readings))| StatusRow {
            status: status.to_string(),
            windows,
            devices: devices.len(),
            readings,
        })
        .collect()
}

/// Readings per status of `device` in the windows that end by `at`
/// (before) and that start from `at` (after).
pub fn before_after(
    windows: &[Window],
    device: &str,
    at: DateTime<Utc>,
) -> (BTreeMap<String, u64>, BTreeMap<String, u64>) {
    let (mut before, mut after) = (BTreeMap::new(), BTreeMap::new());
    for w in windows.iter().filter(|w| w.device == device) {
        if w.end <= at {
            *before.entry(w.status.clone()).or_default() += w.count;
        } else if w.start >= at {
            *after.entry(w.status.clone()).or_default() += w.count;
        }
    }
    (before, after)
}

fn counts<N: std::fmt::Display>(m: &BTreeMap<String, N>) -> String {
    m.iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The event-time table: counts, statuses, and a few rows with their
/// moving averages.
fn render_event_time(o: &mut String, t: &crate::local_run::event_time::EventTimeTable) {
    let _ = writeln!(
        o,
        "\nEvent-time table {} (the workflow's {} {}, run in {}: moto's Athena runs none)",
        t.table,
        t.queries,
        if t.queries == 1 { "query" } else { "queries" },
        t.engine
    );
    let _ = writeln!(
        o,
        "  rows {:>7}  in {} partitions, {} objects under {}",
        t.rows,
        t.partitions.len(),
        t.objects,
        t.uri
    );
    let _ = writeln!(o, "  by status      {}", counts(&t.by_status));
    let shown: Vec<usize> = (0..t.columns.len())
        .filter(|&i| i < 2 || t.columns[i] == "status" || t.columns[i].starts_with("avg_o2"))
        .collect();
    let header: Vec<&str> = shown.iter().map(|&i| t.columns[i].as_str()).collect();
    let _ = writeln!(o, "  {}", header.join("  "));
    for row in t.all_rows.iter().take(3) {
        let cells: Vec<String> = shown
            .iter()
            .map(|&i| match &row[i] {
                serde_json::Value::Number(n) if n.is_f64() => {
                    format!("{:.2}", n.as_f64().unwrap_or_default())
                }
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect();
        let _ = writeln!(o, "  {}", cells.join("  "));
    }
}

/// The summary as text for a terminal.
pub fn render(s: &Summary) -> String {
    let mut o = String::new();
    let r = &s.records;
    let _ = writeln!(o, "\nStream → lake");
    let _ = writeln!(
        o,
        "  records generated   {:>7}  ({} on the stream from {}, {} bad on purpose)",
        r.generated,
        r.stream_records,
        if r.source == super::Source::CloudWatchLogs.name() {
            "CloudWatch Logs subscription envelopes"
        } else {
            "producers"
        },
        r.generated_bad.values().sum::<usize>()
    );
    let _ = writeln!(
        o,
        "  good → Parquet      {:>7}  (rows read back: {}; {} batches, {} retries)",
        r.good, s.lake.rows, r.kinesis_to_parquet_invocations, r.retries
    );
    let _ = writeln!(
        o,
        "  bad → dead letters  {:>7}  (read back: {})",
        r.bad, s.dead_letters.total
    );
    for (reason, n) in &s.dead_letters.by_reason {
        let _ = writeln!(o, "      {reason:<24}{n:>6}");
    }
    let _ = writeln!(
        o,
        "  lake                {:>7}  objects, {} bytes under {}",
        s.lake.objects, s.lake.bytes, s.lake.uri
    );
    for p in &s.lake.partitions {
        let _ = writeln!(
            o,
            "      {:<40} {:>3} objects {:>8} bytes {:>6} rows",
            p.partition, p.objects, p.bytes, p.rows
        );
    }

    if let Some(t) = &s.iceberg {
        let _ = writeln!(
            o,
            "\nIceberg table {} (read back by pyiceberg through the Glue catalog)",
            t.table
        );
        let _ = writeln!(
            o,
            "  rows                {:>7}  ({} equal to another: each good record once when 0)",
            t.rows, t.duplicate_rows
        );
        let _ = writeln!(
            o,
            "  snapshots           {:>7}  (current {})",
            t.snapshots,
            t.current_snapshot_id
                .map_or_else(|| "none".to_string(), |id| id.to_string())
        );
        let _ = writeln!(
            o,
            "  data files          {:>7}  partitioned by {}",
            t.data_files,
            t.partition_spec.join(", ")
        );
        for p in &t.partitions {
            let _ = writeln!(
                o,
                "      {:<40} {:>3} files {:>6} rows",
                p.partition, p.data_files, p.rows
            );
        }
        for (shard, mark) in &t.watermarks {
            let _ = writeln!(o, "  committed up to     {shard}: {mark}");
        }
    }

    let d = &s.device_status;
    let _ = writeln!(
        o,
        "\nDevice status windows ({}, {} batches)",
        d.table, r.device_status_invocations
    );
    let _ = writeln!(
        o,
        "      {:<8} {:>8} {:>8} {:>9}",
        "status", "windows", "devices", "readings"
    );
    for row in &d.by_status {
        let _ = writeln!(
            o,
            "      {:<8} {:>8} {:>8} {:>9}",
            row.status, row.windows, row.devices, row.readings
        );
    }
    let c = &d.changed_device;
    let _ = writeln!(
        o,
        "  reference change: device {} {}\n      change flag v{} → v{}, device-status reloaded the reference ({} → {} loads)\n      its readings before: {}\n      its readings after:  {}",
        c.device,
        c.change,
        c.flag_version_before,
        c.flag_version_after,
        c.reference_loads_before,
        c.reference_loads_after,
        counts(&c.before),
        counts(&c.after)
    );

    let _ = writeln!(o, "\nState machine executions");
    for e in &s.executions {
        let _ = writeln!(
            o,
            "  {:<12} {:<44} {:<9} {:>5.1}s\n      {}",
            e.state_machine,
            e.name,
            e.status,
            e.seconds,
            e.states.join(" → ")
        );
    }
    if let Some(t) = &s.event_time {
        render_event_time(&mut o, t);
    }
    let _ = writeln!(o, "\nScheduler ticks");
    for t in &s.scheduler_ticks {
        let _ = writeln!(
            o,
            "  {}  started [{}]  skipped {}{}",
            t.scheduled_time.format("%H:%M"),
            t.started.join(", "),
            t.skipped.len(),
            if t.failed.is_empty() {
                String::new()
            } else {
                format!("  FAILED [{}]", t.failed.join("; "))
            }
        );
    }
    let _ = writeln!(
        o,
        "\nMetrics (each function's EMF documents, summed; times the largest)"
    );
    for f in &s.metrics {
        let values: Vec<String> = f
            .totals
            .iter()
            .map(|(name, v)| format!("{name} {v}"))
            .collect();
        let _ = writeln!(
            o,
            "  {:<28} {:>3} invocations  {}",
            f.function,
            f.invocations,
            values.join(", ")
        );
        if !f.dead_letters_by_reason.is_empty() {
            let reasons: Vec<String> = f
                .dead_letters_by_reason
                .iter()
                .map(|(r, n)| format!("{r} {n}"))
                .collect();
            let _ = writeln!(
                o,
                "  {:<28}     dead letters by reason: {}",
                "",
                reasons.join(", ")
            );
        }
    }
    let _ = writeln!(
        o,
        "\nAWS requests (each function through its own counting proxy) and invocation times"
    );
    for u in &s.usage {
        let requests: Vec<String> = u
            .requests
            .iter()
            .map(|(kind, t)| format!("{kind} {}", t.requests))
            .collect();
        let _ = writeln!(
            o,
            "  {:<28} {:>3} invocations, {:.2}s in all  {}",
            u.function,
            u.invocations,
            u.seconds,
            requests.join(", ")
        );
    }
    let _ = writeln!(o, "\nWhere things are");
    for (k, v) in &s.outputs {
        let _ = writeln!(o, "  {k:<22} {v}");
    }
    let _ = writeln!(o, "\nDone in {:.1}s.", s.seconds);
    o
}
