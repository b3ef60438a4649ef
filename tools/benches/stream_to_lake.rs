//! Throughput and memory of `kinesis-to-parquet` on a generated 10,000-record
//! Kinesis event, minus the S3 PUT: the event JSON is parsed (with base64) by
//! the Lambda event model, split into runs, validated, converted and encoded
//! as Parquet by the same `write_runs` the function uses, with a sink that
//! drops the bytes.
//!
//! JSON (plain, gzip, 1% bad) is measured next to the same records as CSV
//! lines and as Avro datums (`FORMAT=csv`, `FORMAT=avro`).
//!
//! `cargo bench -p lake-tools --bench stream_to_lake` prints records/s on one
//! core (the fastest of 15 runs), the floor (parsing the event JSON and
//! base64 alone), and the peak RSS of a child process that only builds the
//! function and processes the event once.

use std::process::Command;
use std::time::{Duration, Instant};

use aws_lambda_events::event::kinesis::KinesisEvent;
use chrono::{TimeZone, Utc};
use kinesis_to_parquet::KinesisToParquet;
use lake_tools::kinesis_event::{event_json, sequence_number, stream_arn, StreamRecord};
use lake_tools::telemetry::{generate, payload, Compression, TelemetryOptions};
use telemetry_lake::config::StreamConfig;
use telemetry_lake::lake_writer::{ObjectSink, SinkError};

const RECORDS: usize = 10_000;

/// A sink that keeps nothing: the benchmark measures everything but the PUT.
struct Discard;

impl ObjectSink for Discard {
    async fn put(&self, _key: String, body: Vec<u8>, _ct: &'static str) -> Result<(), SinkError> {
        std::hint::black_box(body);
        Ok(())
    }
}

/// The Avro writer schema of the ventilator records (times as strings, as
/// in the JSON).
const AVRO_SCHEMA: &str = r#"{"type":"record","name":"ventilator","fields":[
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

/// One good JSON record re-encoded in `format` (`json`, `csv`, `avro`).
fn encode(json: &str, format: &str, avro: &apache_avro::Schema) -> Vec<u8> {
    let doc: serde_json::Value = serde_json::from_str(json).unwrap();
    match format {
        "csv" => {
            let mut w = csv::Writer::from_writer(Vec::new());
            let cells: Vec<String> = FIELDS
                .iter()
                .map(|f| match &doc[f] {
                    serde_json::Value::String(s) => s.clone(),
                    v => v.to_string(),
                })
                .collect();
            w.write_record(&cells).unwrap();
            w.into_inner().unwrap()
        }
        "avro" => {
            use apache_avro::types::Value as Avro;
            let fields = FIELDS
                .iter()
                .map(|f| {
                    let v = match &doc[f] {
                        serde_json::Value::String(s) => Avro::String(s.clone()),
                        v => Avro::Long(v.as_i64().unwrap()),
                    };
                    (f.to_string(), v)
                })
                .collect();
            apache_avro::to_avro_datum(avro, Avro::Record(fields)).unwrap()
        }
        _ => json.as_bytes().to_vec(),
    }
}

fn event_bytes(compression: Compression, bad_share: f64, format: &str) -> Vec<u8> {
    let avro = apache_avro::Schema::parse_str(AVRO_SCHEMA).unwrap();
    let opts = TelemetryOptions {
        devices: 100,
        bad_share,
        ..Default::default()
    };
    let arrival = Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap();
    let records: Vec<StreamRecord> = generate(&opts)
        .into_iter()
        .cycle()
        .take(RECORDS)
        .enumerate()
        .map(|(i, r)| StreamRecord {
            data: if format == "json" {
                payload(&[&r.json], compression)
            } else {
                encode(&r.json, format, &avro)
            },
            partition_key: r.device.to_string(),
            arrival,
            sequence_number: sequence_number(0, i as u64),
        })
        .collect();
    let json = event_json(
        &stream_arn("us-east-1", "ventilators"),
        "shardId-000000000000",
        &records,
    );
    serde_json::to_vec(&json).unwrap()
}

/// The function as its `main` builds it, with a sink that drops the objects.
fn function(format: &str) -> KinesisToParquet<Discard> {
    let get = |name: &str| -> Option<String> {
        Some(match name {
            "LAKE_BUCKET" => "bench".into(),
            "LAKE_PREFIX" => "raw".into(),
            "DEAD_LETTER_PREFIX" => "dl".into(),
            "SCHEMA" => include_str!("../../config/ventilator.schema.json").into(),
            "FORMAT" => format.into(),
            "AVRO_SCHEMA" => AVRO_SCHEMA.into(),
            _ => return None,
        })
    };
    KinesisToParquet::new(StreamConfig::from_lookup(get).unwrap(), Discard)
}

/// Processes one event exactly as the function does, minus the PUT,
/// starting from the event's JSON as the runtime receives it.
async fn process(event: &[u8], f: &KinesisToParquet<Discard>) -> usize {
    let event: KinesisEvent = serde_json::from_slice(event).unwrap();
    process_event(event, f).await
}

async fn process_event(event: KinesisEvent, f: &KinesisToParquet<Discard>) -> usize {
    let (summary, response) = f.process(&event).await;
    assert!(response.batch_item_failures.is_empty());
    summary.good + summary.bad
}

/// The floor: parsing the event JSON and base64-decoding its payloads.
fn floor(event: &[u8]) -> usize {
    let event: KinesisEvent = serde_json::from_slice(event).unwrap();
    event.records.iter().map(|r| r.kinesis.data.len()).sum()
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let args: Vec<String> = std::env::args().collect();

    // Child mode: process one event file once and print "records, RSS
    // before (KiB), peak RSS (KiB)"; "before" holds the built function and
    // the deserialised event.
    if let Some(pos) = args.iter().position(|a| a == "--child") {
        // As in lambda_runtime: the body is deserialised into the event and
        // dropped before the handler runs.
        let function = function(&args[pos + 2]);
        let event: KinesisEvent =
            serde_json::from_slice(&std::fs::read(&args[pos + 1]).unwrap()).unwrap();
        let before = peak_rss_kib();
        let n = rt.block_on(process_event(event, &function));
        println!("{n} {before} {}", peak_rss_kib());
        return;
    }

    println!("kinesis-to-parquet, {RECORDS}-record event, one core (current-thread runtime), minus the S3 PUT");
    println!(
        "{:<22} {:>10} {:>12} {:>10} {:>14} {:>12} {:>12} {:>9}",
        "event", "MB", "records/s", "MB/s", "floor rec/s", "RSS before", "peak RSS MB", "peak/MB"
    );
    for (name, compression, bad, format) in [
        ("plain", Compression::None, 0.0, "json"),
        ("gzip", Compression::Gzip, 0.0, "json"),
        ("plain, 1% bad", Compression::None, 0.01, "json"),
        ("csv", Compression::None, 0.0, "csv"),
        ("avro datum", Compression::None, 0.0, "avro"),
    ] {
        let function = function(format);
        let event = event_bytes(compression, bad, format);
        let mb = event.len() as f64 / 1e6;
        // Records/s from the fastest of 15 runs: on a shared virtual
        // machine the slower runs measure the neighbours, not the code.
        let per_sec = |f: &mut dyn FnMut()| {
            f(); // warm-up
            let best = (0..15)
                .map(|_| {
                    let start = Instant::now();
                    f();
                    start.elapsed()
                })
                .min()
                .unwrap_or(Duration::MAX);
            1.0 / best.as_secs_f64()
        };
        let runs = per_sec(&mut || {
            rt.block_on(process(&event, &function));
        });
        let floor_runs = per_sec(&mut || {
            std::hint::black_box(floor(&event));
        });

        let path = std::env::temp_dir().join(format!("bench-event-{}.json", std::process::id()));
        std::fs::write(&path, &event).unwrap();
        let out = Command::new(&args[0])
            .arg("--child")
            .arg(&path)
            .arg(format)
            .output()
            .unwrap();
        let _ = std::fs::remove_file(&path);
        let text = String::from_utf8_lossy(&out.stdout);
        let rss_mb = |i: usize| {
            text.split_whitespace()
                .nth(i)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
                / 1024.0
        };
        let (before_mb, peak_mb) = (rss_mb(1), rss_mb(2));
        println!(
            "{name:<22} {mb:>10.2} {:>12.0} {:>10.1} {:>14.0} {:>12.1} {:>12.1} {:>9.2}",
            runs * RECORDS as f64,
            runs * mb,
            floor_runs * RECORDS as f64,
            before_mb,
            peak_mb,
            peak_mb / mb,
        );
    }
}
