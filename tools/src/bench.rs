//! The workloads of the benchmarks (`cargo bench`: `stream_functions` and
//! the `report` that writes `BENCHMARKS.md`): generated Kinesis events and
//! both stream functions minus their network calls.
//!
//! Every run starts from the event's bytes as the Lambda runtime receives
//! them and reads them the way `lambda_runtime` does (`serde_path_to_error`
//! over `serde_json`) into the event type each `main` declares.

use std::io::Write;
use std::sync::Arc;

use chrono::{TimeZone, Utc};
use device_status::DeviceStatus;
use kinesis_to_parquet::KinesisToParquet;
use telemetry_lake::config::StreamConfig;
use telemetry_lake::device_status::config::DeviceStatusConfig;
use telemetry_lake::device_status::reference::ReferenceData;
use telemetry_lake::device_status::status::Range;
use telemetry_lake::device_status::window_store::{ApplyReport, WindowSink};
use telemetry_lake::device_status::windows::BatchWindows;
use telemetry_lake::lake::writer::{ObjectSink, SinkError};
use telemetry_lake::metrics::MetricsOut;
use telemetry_lake::stream::event::{KinesisBatch, StreamEvent};

use crate::kinesis_event::{event_json, sequence_number, stream_arn, StreamRecord};
use crate::runtime::invoke_stream;
use crate::telemetry::{generate, payload, Compression, TelemetryOptions};

/// The event sizes measured.
pub const SIZES: [usize; 3] = [1_000, 10_000, 100_000];

/// Devices in the generated telemetry.
const DEVICES: u32 = 100;

/// The Avro writer schema of the ventilator records (times as strings, as
/// in the JSON).
pub const AVRO_SCHEMA: &str = r#"{"type":"record","name":"ventilator","fields":[
    {"name":"ventilatorid","type":"long"},{"name":"eventtime","type":"string"},
    {"name":"serialnumber","type":"string"},{"name":"pressurecontrol","type":"long"},
    {"name":"o2stats","type":"long"},{"name":"minutevolume","type":"long"},
    {"name":"manufacturer","type":"string"}]}"#;

/// The fields of the ventilator schema, in order.
const FIELDS: [&str; 7] = [
    "ventilatorid",
    "eventtime",
    "serialnumber",
    "pressurecontrol",
    "o2stats",
    "minutevolume",
    "manufacturer",
];

/// The declared schema of the benchmarks.
const SCHEMA: &str = include_str!("../../config/ventilator.schema.json");

/// One kind of event: its payloads' format, compression and share of bad
/// records.
#[derive(Debug, Clone, Copy)]
pub struct Case {
    pub name: &'static str,
    pub format: &'static str,
    pub compression: Compression,
    pub bad_share: f64,
}

/// The cases measured: JSON plain, gzip and with 1% bad records, the same
/// records as CSV lines and as Avro datums, and as the messages of
/// CloudWatch Logs subscription envelopes (gzip'd,
/// [`crate::cloudwatch_logs::EVENTS_PER_ENVELOPE`]
/// log events each; its records are log events).
pub const CASES: [Case; 6] = [
    Case {
        name: "json",
        format: "json",
        compression: Compression::None,
        bad_share: 0.0,
    },
    Case {
        name: "json gzip",
        format: "json",
        compression: Compression::Gzip,
        bad_share: 0.0,
    },
    Case {
        name: "json 1% bad",
        format: "json",
        compression: Compression::None,
        bad_share: 0.01,
    },
    Case {
        name: "csv",
        format: "csv",
        compression: Compression::None,
        bad_share: 0.0,
    },
    Case {
        name: "avro datum",
        format: "avro",
        compression: Compression::None,
        bad_share: 0.0,
    },
    Case {
        name: CLOUDWATCH_LOGS,
        format: "cloudwatch-logs",
        compression: Compression::Gzip,
        bad_share: 0.0,
    },
];

/// The name of the CloudWatch Logs case.
pub const CLOUDWATCH_LOGS: &str = "cloudwatch-logs, 100 events";

/// The case called `name`.
pub fn case(name: &str) -> Case {
    CASES
        .into_iter()
        .find(|c| c.name == name)
        .unwrap_or(CASES[0])
}

/// One good JSON record re-encoded in `format` (`json`, `csv`, `avro`).
fn encode(json: &str, format: &str, avro: &apache_avro::Schema) -> Vec<u8> {
    let doc: serde_json::Value = serde_json::from_str(json).unwrap_or_default();
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        v => v.to_string(),
    };
    match format {
        "csv" => {
            let mut w = csv::Writer::from_writer(Vec::new());
            let cells: Vec<String> = FIELDS.iter().map(|f| text(&doc[f])).collect();
            let _ = w.write_record(&cells);
            w.into_inner().unwrap_or_default()
        }
        "avro" => {
            use apache_avro::types::Value as Avro;
            let fields = FIELDS
                .iter()
                .map(|f| {
                    let v = match &doc[f] {
                        serde_json::Value::String(s) => Avro::String(s.clone()),
                        v => Avro::Long(v.as_i64().unwrap_or_default()),
                    };
                    (f.to_string(), v)
                })
                .collect();
            apache_avro::to_avro_datum(avro, Avro::Record(fields)).unwrap_or_default()
        }
        _ => json.as_bytes().to_vec(),
    }
}

/// The bytes of a Lambda Kinesis event of `records` generated records of
/// one shard, as the Lambda service delivers them.
pub fn event_bytes(records: usize, case: Case) -> Vec<u8> {
    let avro = apache_avro::Schema::parse_str(AVRO_SCHEMA).expect("the Avro schema parses");
    let opts = TelemetryOptions {
        devices: DEVICES,
        bad_share: case.bad_share,
        ..Default::default()
    };
    let arrival = Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap();
    let readings = generate(&opts).into_iter().cycle().take(records);
    if case.format == "cloudwatch-logs" {
        use crate::cloudwatch_logs::{readings_envelope, EVENTS_PER_ENVELOPE};
        let readings: Vec<_> = readings.collect();
        let records: Vec<StreamRecord> = readings
            .chunks(EVENTS_PER_ENVELOPE)
            .enumerate()
            .map(|(i, chunk)| StreamRecord {
                data: readings_envelope("/ventilators", "ward-3", chunk),
                partition_key: i.to_string(),
                arrival,
                sequence_number: sequence_number(0, i as u64),
            })
            .collect();
        return kinesis_event_bytes(&records);
    }
    let records: Vec<StreamRecord> = readings
        .enumerate()
        .map(|(i, r)| StreamRecord {
            data: if case.format == "json" {
                payload(&[&r.json], case.compression)
            } else {
                let data = encode(&r.json, case.format, &avro);
                payload_bytes(data, case.compression)
            },
            partition_key: r.device.to_string(),
            arrival,
            sequence_number: sequence_number(0, i as u64),
        })
        .collect();
    kinesis_event_bytes(&records)
}

/// The bytes of a Lambda Kinesis event of `records`, of one shard.
fn kinesis_event_bytes(records: &[StreamRecord]) -> Vec<u8> {
    let json = event_json(
        &stream_arn("us-east-1", "ventilators"),
        "shardId-000000000000",
        records,
    );
    serde_json::to_vec(&json).expect("an event serialises")
}

/// Binary or text payload bytes, compressed as asked.
fn payload_bytes(data: Vec<u8>, compression: Compression) -> Vec<u8> {
    match compression {
        Compression::None => data,
        Compression::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            let _ = e.write_all(&data);
            e.finish().unwrap_or_default()
        }
        Compression::Zstd => zstd::encode_all(&data[..], 3).unwrap_or_default(),
    }
}

/// The benchmark configuration: the ventilator schema and `format`.
fn lookup(format: &'static str) -> impl Fn(&str) -> Option<String> {
    move |name: &str| -> Option<String> {
        use telemetry_lake::config::vars as v;
        Some(match name {
            v::LAKE_BUCKET
            | v::REFERENCE_TABLE
            | v::WINDOWS_TABLE
            | v::CHANGE_FLAG_BUCKET
            | v::DEAD_LETTER_BUCKET => "bench".into(),
            v::LAKE_PREFIX => "raw".into(),
            v::DEAD_LETTER_PREFIX => "dl".into(),
            v::SCHEMA => SCHEMA.into(),
            v::FORMAT => format.into(),
            v::AVRO_SCHEMA => AVRO_SCHEMA.into(),
            _ => return None,
        })
    }
}

/// A sink that keeps nothing: the benchmarks measure everything but the PUT.
pub struct Discard;

impl WindowSink for Discard {
    async fn apply(&self, batch: &BatchWindows) -> ApplyReport {
        ApplyReport {
            written: std::hint::black_box(batch).keys().count(),
            ..ApplyReport::default()
        }
    }
}

impl ObjectSink for Discard {
    async fn put(&self, _key: String, body: Vec<u8>, _ct: &'static str) -> Result<(), SinkError> {
        std::hint::black_box(body);
        Ok(())
    }
}

/// `kinesis-to-parquet` as its `main` builds it, with a sink that drops the
/// objects.
pub fn kinesis_to_parquet(case: Case) -> KinesisToParquet<Discard> {
    let config = StreamConfig::from_lookup(lookup(case.format)).expect("bench configuration");
    KinesisToParquet::new(config, Discard).with_metrics(dropped_metrics())
}

/// Metrics rendered as the functions render them, then dropped: the
/// benchmarks pay for the documents, not for a terminal.
fn dropped_metrics() -> MetricsOut {
    MetricsOut::from_env(|_| None, "bench").dropped()
}

/// `kinesis-to-parquet` with `LAKE_FORMAT=iceberg`, minus its network: a
/// new table `table` (at `s3://bench/<table>`), partitioned by event hour,
/// in an in-memory Iceberg catalog (the `iceberg` crate's: its metadata
/// files are written to memory), data files and dead letters handed to a
/// sink that drops them. So a run
/// measures the Hive path's decoding and encoding plus the Iceberg path's
/// own work: grouping by event hour, the data files' metadata and column
/// metrics, the manifest, manifest list and table metadata of the commit.
/// Each table takes one run: one that holds the records already skips
/// them all.
pub async fn kinesis_to_parquet_iceberg(case: Case, table: &str) -> KinesisToParquet<Discard> {
    use iceberg::memory::{MemoryCatalogBuilder, MEMORY_CATALOG_WAREHOUSE};
    use iceberg::{Catalog, CatalogBuilder, NamespaceIdent};
    use telemetry_lake::config::vars as v;
    use telemetry_lake::config::LakeFormat;
    use telemetry_lake::lake::iceberg::batch::IcebergLake;

    let base = lookup(case.format);
    let full = format!("bench.{table}");
    let config = StreamConfig::from_lookup(|name: &str| match name {
        v::LAKE_FORMAT => Some("iceberg".to_string()),
        v::ICEBERG_TABLE => Some(full.clone()),
        v::ICEBERG_PARTITION => Some("hour(eventtime)".to_string()),
        other => base(other),
    })
    .expect("bench configuration");
    let LakeFormat::Iceberg(settings) = &config.lake_format else {
        panic!("LAKE_FORMAT iceberg");
    };
    let catalog = MemoryCatalogBuilder::default()
        .load(
            "bench",
            std::collections::HashMap::from([(
                MEMORY_CATALOG_WAREHOUSE.to_string(),
                "memory://bench".to_string(),
            )]),
        )
        .await
        .expect("a memory catalog");
    catalog
        .create_namespace(
            &NamespaceIdent::new("bench".to_string()),
            Default::default(),
        )
        .await
        .expect("a namespace");
    let lake = IcebergLake::open(
        Arc::new(catalog),
        settings,
        &config.schema,
        &format!("s3://bench/{table}"),
    )
    .await
    .expect("the bench table");
    KinesisToParquet::new(config, Discard)
        .with_iceberg(Some(lake))
        .with_metrics(dropped_metrics())
}

/// `device-status` as its `main` builds it, but with reference data in
/// which every device has the generator's normal ranges (a warm cache) and
/// sinks that drop the windows and the dead letters.
pub fn device_status(case: Case) -> DeviceStatus<Discard, Discard, Arc<ReferenceData>> {
    let config = DeviceStatusConfig::from_lookup(lookup(case.format)).expect("bench configuration");
    let ranges = vec![
        Range {
            min: 90.0,
            max: 100.0,
        },
        Range {
            min: 5.0,
            max: 30.0,
        },
        Range {
            min: 2.0,
            max: 10.0,
        },
    ];
    let reference =
        ReferenceData::from_ranges((1..=DEVICES).map(|d| (d.to_string(), ranges.clone())));
    DeviceStatus::with_stores(&config, Arc::new(reference), Discard, Discard)
        .expect("bench configuration")
        .with_metrics(dropped_metrics())
}

/// Reads an invocation's body as the stream functions' `main` does.
pub fn read_event(body: &[u8]) -> KinesisBatch {
    match telemetry_lake::stream::runtime::read_event(body).expect("a Kinesis event") {
        StreamEvent::Kinesis(batch) => batch,
        StreamEvent::Kafka(_) => panic!("the benchmarks generate Kinesis events"),
    }
}

/// The floor: parsing the event JSON and base64-decoding its payloads, as
/// the functions do it. Returns the payload bytes.
pub fn floor(body: &[u8]) -> usize {
    read_event(body)
        .records()
        .map(|r| r.data.map(|d| d.len()).unwrap_or_default())
        .sum()
}

/// One generated reading, its fields borrowed from the payload: what the
/// floor that parses payloads reads each one into.
#[derive(serde::Deserialize)]
#[allow(dead_code)] // Read to be parsed, never used.
struct Reading<'a> {
    ventilatorid: i64,
    eventtime: &'a str,
    serialnumber: &'a str,
    pressurecontrol: i64,
    o2stats: i64,
    minutevolume: i64,
    manufacturer: &'a str,
}

/// The floor with payloads: [`floor`], plus parsing every (JSON)
/// payload with sonic-rs into a struct of its fields, strings borrowed, no
/// conversion and no validation beyond the JSON types. Returns the payloads
/// that parsed.
pub fn floor_with_payloads(body: &[u8]) -> usize {
    read_event(body)
        .records()
        .filter(|r| {
            r.data
                .as_ref()
                .is_ok_and(|d| sonic_rs::from_slice::<Reading<'_>>(d).is_ok())
        })
        .count()
}

/// [`floor_with_payloads`] after the scan `lambda_runtime` makes of a body
/// when it deserialises the handler's event (`serde_json` behind
/// `serde_path_to_error`, finding where a borrowed `RawValue` ends): what a
/// handler of `LambdaEvent<StreamEvent>` pays, and the functions' `main`,
/// which reads the body itself, does not.
pub fn floor_with_payloads_and_scan(body: &[u8]) -> usize {
    let de = &mut serde_json::Deserializer::from_slice(body);
    let raw: &serde_json::value::RawValue =
        serde_path_to_error::deserialize(de).expect("a JSON event");
    std::hint::black_box(raw);
    floor_with_payloads(body)
}

/// The same through the `aws_lambda_events` model, for comparison with the
/// functions' own visitor. Returns the payload bytes.
pub fn floor_event_model(body: &[u8]) -> usize {
    let event: aws_lambda_events::event::kinesis::KinesisEvent =
        serde_json::from_slice(body).expect("a Kinesis event");
    event.records.iter().map(|r| r.kinesis.data.len()).sum()
}

/// The same through `serde_json::Value` first, as the functions' `main` did
/// when its handler took `LambdaEvent<Value>`. Returns the payload bytes.
pub fn floor_through_value(body: &[u8]) -> usize {
    let value: serde_json::Value = serde_json::from_slice(body).expect("JSON");
    let event: aws_lambda_events::event::kinesis::KinesisEvent =
        serde_json::from_value(value).expect("a Kinesis event");
    event.records.iter().map(|r| r.kinesis.data.len()).sum()
}

/// One `kinesis-to-parquet` invocation minus the PUTs, from the event's
/// bytes through the runtime's path (an owned body freed once read, as the
/// runtime frees it); returns the records read.
pub async fn run_kinesis_to_parquet(
    body: impl AsRef<[u8]>,
    f: &KinesisToParquet<Discard>,
) -> usize {
    let out = invoke_stream(body, |e| f.handle(e))
        .await
        .expect("a Kinesis event");
    assert!(out.response.batch_item_failures.is_empty());
    out.summary.records
}

/// One `device-status` invocation minus the DynamoDB and S3 writes (the
/// windows computed and handed to a sink that drops them), from the event's
/// bytes through the runtime's path (an owned body freed once read, as the
/// runtime frees it); returns the records read.
pub async fn run_device_status(
    body: impl AsRef<[u8]>,
    f: &DeviceStatus<Discard, Discard, Arc<ReferenceData>>,
) -> usize {
    let out = invoke_stream(body, |e| f.handle(e))
        .await
        .expect("a Kinesis event");
    assert!(out.response.batch_item_failures.is_empty());
    out.summary.records
}

/// The process's peak resident set size so far, in KiB (Linux).
pub fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_iceberg_case_commits_the_event_to_a_table_in_memory() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let body = event_bytes(200, case("json 1% bad"));
        let f = rt.block_on(kinesis_to_parquet_iceberg(case("json 1% bad"), "t"));
        let out = rt
            .block_on(invoke_stream(&body, |e| f.handle(e)))
            .expect("a Kinesis event");
        assert!(
            out.response.batch_item_failures.is_empty(),
            "{:?}",
            out.summary
        );
        let s = &out.summary;
        assert_eq!(s.records, 200);
        assert!(s.bad > 0 && s.good + s.bad == 200, "{s:?}");
        assert!(s.snapshot_id.is_some(), "{s:?}");
        // Delivered again: the table holds them all.
        let again = rt
            .block_on(invoke_stream(&body, |e| f.handle(e)))
            .expect("a Kinesis event");
        assert_eq!((again.summary.good, again.summary.snapshot_id), (0, None));
    }
}
