//! Throughput and memory of `kinesis-to-parquet` on a generated 10,000-record
//! Kinesis event, minus the S3 PUT: the event JSON is parsed (with base64) by
//! the Lambda event model, split into runs, validated, converted and encoded
//! as Parquet by the same `write_runs` the function uses, with a sink that
//! drops the bytes.
//!
//! `cargo bench -p lake-tools --bench stream_to_lake` prints records/s on one
//! core and the peak RSS of a child process that only processes the event.

use std::process::Command;
use std::time::{Duration, Instant};

use aws_lambda_events::event::kinesis::KinesisEvent;
use chrono::{TimeZone, Utc};
use lake_tools::kinesis_event::{event_json, sequence_number, stream_arn, StreamRecord};
use lake_tools::telemetry::{generate, payload, Compression, TelemetryOptions};
use telemetry_lake::lake_writer::{write_runs, LakeLayout, ObjectSink, SinkError};
use telemetry_lake::parquet_writer::ParquetEncoder;
use telemetry_lake::schema::Schema;
use telemetry_lake::stream_batch::split_into_runs;

const RECORDS: usize = 10_000;

/// A sink that keeps nothing: the benchmark measures everything but the PUT.
struct Discard;

impl ObjectSink for Discard {
    async fn put(&self, _key: String, body: Vec<u8>, _ct: &'static str) -> Result<(), SinkError> {
        std::hint::black_box(body);
        Ok(())
    }
}

fn event_bytes(compression: Compression, bad_share: f64) -> Vec<u8> {
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
            data: payload(&[&r.json], compression),
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

fn schema() -> Schema {
    Schema::parse(include_str!("../../config/ventilator.schema.json")).unwrap()
}

/// Processes one event exactly as the function does, minus the PUT.
async fn process(
    event: &[u8],
    schema: &Schema,
    encoder: &ParquetEncoder,
    layout: &LakeLayout,
) -> usize {
    let event: KinesisEvent = serde_json::from_slice(event).unwrap();
    let arrow_schema = schema.arrow_schema();
    let (runs, counts) = split_into_runs(&event.records, schema, &arrow_schema, 1 << 20);
    let report = write_runs(runs, &Discard, encoder, layout, 4).await;
    assert!(report.retry_from.is_none());
    counts.good + counts.bad
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

fn layout() -> LakeLayout {
    LakeLayout {
        lake_prefix: "raw".into(),
        dead_letter_prefix: "dl".into(),
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let args: Vec<String> = std::env::args().collect();

    // Child mode: process one event file once and report the peak RSS.
    if let Some(pos) = args.iter().position(|a| a == "--child") {
        let bytes = std::fs::read(&args[pos + 1]).unwrap();
        let before = peak_rss_kib();
        let n = rt.block_on(process(
            &bytes,
            &schema(),
            &ParquetEncoder::new(),
            &layout(),
        ));
        println!("{n} {before} {}", peak_rss_kib());
        return;
    }

    let (schema, encoder, layout) = (schema(), ParquetEncoder::new(), layout());
    println!("kinesis-to-parquet, {RECORDS}-record event, one core (current-thread runtime), minus the S3 PUT");
    println!(
        "{:<22} {:>10} {:>12} {:>10} {:>14} {:>12}",
        "event", "MB", "records/s", "MB/s", "floor rec/s", "peak RSS MB"
    );
    for (name, compression, bad) in [
        ("plain", Compression::None, 0.0),
        ("gzip", Compression::Gzip, 0.0),
        ("plain, 1% bad", Compression::None, 0.01),
    ] {
        let event = event_bytes(compression, bad);
        let mb = event.len() as f64 / 1e6;
        let per_sec = |f: &mut dyn FnMut()| {
            f(); // warm-up
            let (mut n, start) = (0u32, Instant::now());
            while start.elapsed() < Duration::from_secs(2) || n < 3 {
                f();
                n += 1;
            }
            f64::from(n) / start.elapsed().as_secs_f64()
        };
        let runs = per_sec(&mut || {
            rt.block_on(process(&event, &schema, &encoder, &layout));
        });
        let floor_runs = per_sec(&mut || {
            std::hint::black_box(floor(&event));
        });

        let path = std::env::temp_dir().join(format!("bench-event-{}.json", std::process::id()));
        std::fs::write(&path, &event).unwrap();
        let out = Command::new(&args[0])
            .arg("--child")
            .arg(&path)
            .output()
            .unwrap();
        let _ = std::fs::remove_file(&path);
        let text = String::from_utf8_lossy(&out.stdout);
        let peak_mb = text
            .split_whitespace()
            .nth(2)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0;

        println!(
            "{name:<22} {mb:>10.2} {:>12.0} {:>10.1} {:>14.0} {:>12.1}",
            runs * RECORDS as f64,
            runs * mb,
            floor_runs * RECORDS as f64,
            peak_mb
        );
    }
}
