//! Throughput of `device-status` on a generated 10,000-record Kinesis event
//! with a warm reference cache, minus the DynamoDB writes: the event JSON is
//! parsed (with base64) by the Lambda event model, then every record is
//! decoded, validated, joined with its device's ranges, given a status and
//! aggregated per (device, status, window) by the same `aggregate` the
//! function runs before it writes.
//!
//! `cargo bench --workspace --bench device_status` prints records/s on one
//! core (the fastest of 15 runs) and how many window items the batch touches.

use std::time::{Duration, Instant};

use aws_lambda_events::event::kinesis::KinesisEvent;
use chrono::{TimeZone, Utc};
use device_status::config::DeviceStatusConfig;
use device_status::{aggregate, BatchPlan};
use lake_tools::kinesis_event::{event_json, sequence_number, stream_arn, StreamRecord};
use lake_tools::telemetry::{generate, payload, Compression, TelemetryOptions};
use telemetry_lake::reference::ReferenceData;
use telemetry_lake::status::Range;

const RECORDS: usize = 10_000;
const DEVICES: u32 = 100;

fn event_bytes(compression: Compression, bad_share: f64) -> Vec<u8> {
    let opts = TelemetryOptions {
        devices: DEVICES,
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

fn plan() -> BatchPlan {
    let schema = include_str!("../../config/ventilator.schema.json").to_string();
    let config = DeviceStatusConfig::from_lookup(|k| match k {
        "REFERENCE_TABLE" | "WINDOWS_TABLE" | "CHANGE_FLAG_BUCKET" | "DEAD_LETTER_BUCKET" => {
            Some("bench".into())
        }
        "SCHEMA" => Some(schema.clone()),
        _ => None,
    })
    .unwrap();
    BatchPlan::of(&config).unwrap()
}

/// The warm cache: every device has the generator's normal ranges.
fn reference() -> ReferenceData {
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
    ReferenceData::from_ranges((1..=DEVICES).map(|d| (d.to_string(), ranges.clone())))
}

fn main() {
    let (plan, reference) = (plan(), reference());
    println!("device-status, {RECORDS}-record event, one core, warm reference cache, minus the DynamoDB writes");
    println!(
        "{:<22} {:>10} {:>12} {:>10} {:>10} {:>10}",
        "event", "MB", "records/s", "MB/s", "good", "windows"
    );
    for (name, compression, bad) in [
        ("plain", Compression::None, 0.0),
        ("gzip", Compression::Gzip, 0.0),
        ("plain, 1% bad", Compression::None, 0.01),
    ] {
        let event = event_bytes(compression, bad);
        let mb = event.len() as f64 / 1e6;
        let run = || {
            let event: KinesisEvent = serde_json::from_slice(&event).unwrap();
            aggregate(&event.records, &plan, &reference)
        };
        let once = run();
        let best = (0..15)
            .map(|_| {
                let start = Instant::now();
                std::hint::black_box(run());
                start.elapsed()
            })
            .min()
            .unwrap_or(Duration::MAX);
        let per_sec = 1.0 / best.as_secs_f64();
        println!(
            "{name:<22} {mb:>10.2} {:>12.0} {:>10.1} {:>10} {:>10}",
            per_sec * RECORDS as f64,
            per_sec * mb,
            once.good,
            once.windows.len(),
        );
    }
}
