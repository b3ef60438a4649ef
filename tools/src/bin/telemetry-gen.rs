//! Generates ventilator telemetry and writes it as a Lambda Kinesis event
//! file, or puts it into a Kinesis stream (local moto or a real account).
//!
//! ```text
//! telemetry-gen --devices 50 --minutes 120 --event-file event.json
//! telemetry-gen --stream ventilators            # uses the default AWS config
//! ```

use std::path::PathBuf;

use anyhow::{Context, Result};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use chrono::{Duration, Utc};
use clap::Parser;
use lake_tools::kinesis_event::{event_json, sequence_number, stream_arn, StreamRecord};
use lake_tools::telemetry::{generate, payload, Compression, TelemetryOptions};

#[derive(Parser, Debug)]
#[command(about = "Generate ventilator telemetry for the telemetry lake")]
struct Args {
    /// Number of devices.
    #[arg(long, default_value_t = 50)]
    devices: u32,
    /// Minutes of event time.
    #[arg(long, default_value_t = 120)]
    minutes: i64,
    /// Readings per device per minute.
    #[arg(long, default_value_t = 1)]
    rate: u32,
    /// Share of bad records (0..1).
    #[arg(long, default_value_t = 0.03)]
    bad_share: f64,
    /// Share of out-of-range readings (0..1).
    #[arg(long, default_value_t = 0.1)]
    out_of_range_share: f64,
    /// Documents per stream record (newline-separated).
    #[arg(long, default_value_t = 1)]
    docs_per_record: usize,
    /// Payload compression.
    #[arg(long, value_enum, default_value = "none")]
    compression: Compression,
    /// Random seed.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Write a Lambda Kinesis event (one shard) to this file.
    #[arg(long, conflicts_with = "stream")]
    event_file: Option<PathBuf>,
    /// Put the records into this Kinesis stream instead.
    #[arg(long)]
    stream: Option<String>,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let opts = TelemetryOptions {
        devices: args.devices,
        start: Utc::now() - Duration::minutes(args.minutes),
        duration: Duration::minutes(args.minutes),
        per_device_per_minute: args.rate,
        bad_share: args.bad_share,
        out_of_range_share: args.out_of_range_share,
        seed: args.seed,
        drifting_devices: 0,
    };
    let readings = generate(&opts);
    let chunks: Vec<(String, Vec<u8>)> = readings
        .chunks(args.docs_per_record.max(1))
        .map(|c| {
            let docs: Vec<&str> = c.iter().map(|r| r.json.as_str()).collect();
            (c[0].device.to_string(), payload(&docs, args.compression))
        })
        .collect();

    if let Some(stream) = &args.stream {
        let sdk = telemetry_lake::config::aws::load().await;
        let kinesis = aws_sdk_kinesis::Client::new(&sdk);
        let mut sent = 0;
        for batch in chunks.chunks(500) {
            let entries = batch
                .iter()
                .map(|(key, data)| {
                    PutRecordsRequestEntry::builder()
                        .partition_key(key)
                        .data(Blob::new(data.clone()))
                        .build()
                })
                .collect::<Result<Vec<_>, _>>()?;
            let out = kinesis
                .put_records()
                .stream_name(stream)
                .set_records(Some(entries))
                .send()
                .await?;
            anyhow::ensure!(
                out.failed_record_count().unwrap_or(0) == 0,
                "{} records were throttled; rerun with a lower --rate",
                out.failed_record_count().unwrap_or(0)
            );
            sent += batch.len();
        }
        println!(
            "put {sent} records ({} readings) into stream {stream}",
            readings.len()
        );
    }
    if let Some(path) = &args.event_file {
        let now = Utc::now();
        let records: Vec<StreamRecord> = chunks
            .into_iter()
            .enumerate()
            .map(|(i, (partition_key, data))| StreamRecord {
                data,
                partition_key,
                arrival: now,
                sequence_number: sequence_number(0, i as u64),
            })
            .collect();
        let event = event_json(
            &stream_arn("us-east-1", "ventilators"),
            "shardId-000000000000",
            &records,
        );
        std::fs::write(path, serde_json::to_vec_pretty(&event)?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!(
            "wrote {} records ({} readings) to {}",
            records.len(),
            readings.len(),
            path.display()
        );
    }
    if args.stream.is_none() && args.event_file.is_none() {
        for r in &readings {
            println!("{}", r.json);
        }
    }
    Ok(())
}
