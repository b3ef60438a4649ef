//! Runs the suite's main job on this machine, with no AWS account: starts a
//! moto server, creates the stream and the lake bucket, generates telemetry,
//! puts it on the stream, plays Lambda's event source mapping over each
//! shard with the real `kinesis-to-parquet` handler, and shows what landed.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{Context, Result};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use chrono::{Duration, Utc};
use clap::Parser;
use kinesis_to_parquet::KinesisToParquet;
use lake_tools::event_source::{drain_shard, MappingSettings};
use lake_tools::lake_reader;
use lake_tools::moto::{repo_root, s3_client, sdk_config, MotoOptions, MotoServer};
use lake_tools::telemetry::{generate, payload, Compression, TelemetryOptions};
use telemetry_lake::config::StreamConfig;
use telemetry_lake::lake_writer::S3Sink;
use telemetry_lake::schema::Schema;

#[derive(Parser, Debug)]
#[command(about = "Run the telemetry lake end to end on a local moto server")]
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
    /// Documents per stream record.
    #[arg(long, default_value_t = 1)]
    docs_per_record: usize,
    /// Payload compression.
    #[arg(long, value_enum, default_value = "gzip")]
    compression: Compression,
    /// Shards of the stream.
    #[arg(long, default_value_t = 2)]
    shards: i32,
    /// Records per Lambda batch.
    #[arg(long, default_value_t = 500)]
    batch_size: i32,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

const REGION: &str = "us-east-1";
const BUCKET: &str = "telemetry-lake-local";
const STREAM: &str = "ventilators";
const LAKE_PREFIX: &str = "raw/ventilator_metrics";
const DL_PREFIX: &str = "dead-letters/ventilator_metrics";

fn step(json: bool, msg: &str) {
    if !json {
        eprintln!("==> {msg}");
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let started = Instant::now();

    step(args.json, "starting moto server");
    let moto = MotoServer::start(&MotoOptions::default())?;
    let sdk = sdk_config(&moto.endpoint, REGION).await;
    let s3 = s3_client(&sdk);
    let kinesis = aws_sdk_kinesis::Client::new(&sdk);

    step(
        args.json,
        &format!(
            "creating bucket {BUCKET} and stream {STREAM} ({} shards)",
            args.shards
        ),
    );
    s3.create_bucket()
        .bucket(BUCKET)
        .send()
        .await
        .context("creating the lake bucket")?;
    kinesis
        .create_stream()
        .stream_name(STREAM)
        .shard_count(args.shards)
        .send()
        .await?;
    let arn = kinesis
        .describe_stream_summary()
        .stream_name(STREAM)
        .send()
        .await?
        .stream_description_summary
        .map(|d| d.stream_arn)
        .context("stream summary")?;

    let opts = TelemetryOptions {
        devices: args.devices,
        start: Utc::now() - Duration::minutes(args.minutes),
        duration: Duration::minutes(args.minutes),
        per_device_per_minute: args.rate,
        bad_share: args.bad_share,
        ..Default::default()
    };
    let readings = generate(&opts);
    let generated_bad = readings.iter().filter(|r| r.bad.is_some()).count();
    step(
        args.json,
        &format!(
            "putting {} readings from {} devices ({} made bad on purpose, {:?} payloads) on the stream",
            readings.len(),
            args.devices,
            generated_bad,
            args.compression
        ),
    );
    let mut put = 0usize;
    for chunk in readings.chunks(500 * args.docs_per_record.max(1)) {
        let entries = chunk
            .chunks(args.docs_per_record.max(1))
            .map(|docs| {
                let texts: Vec<&str> = docs.iter().map(|r| r.json.as_str()).collect();
                PutRecordsRequestEntry::builder()
                    .partition_key(docs[0].device.to_string())
                    .data(Blob::new(payload(&texts, args.compression)))
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()?;
        put += entries.len();
        kinesis
            .put_records()
            .stream_name(STREAM)
            .set_records(Some(entries))
            .send()
            .await?;
    }

    let schema_text = std::fs::read_to_string(repo_root().join("config/ventilator.schema.json"))?;
    let config = StreamConfig {
        lake_bucket: BUCKET.into(),
        lake_prefix: LAKE_PREFIX.into(),
        dead_letter_prefix: DL_PREFIX.into(),
        schema: Schema::parse(&schema_text)?,
        max_payload_bytes: telemetry_lake::config::DEFAULT_MAX_PAYLOAD_BYTES,
        write_concurrency: telemetry_lake::config::DEFAULT_WRITE_CONCURRENCY,
        format: telemetry_lake::format::Format::Json,
    };
    let function = KinesisToParquet::new(config, S3Sink::new(s3.clone(), BUCKET));
    let settings = MappingSettings {
        batch_size: args.batch_size,
        maximum_retry_attempts: 3,
    };

    let shards = kinesis.list_shards().stream_name(STREAM).send().await?;
    let (good, bad) = (std::cell::Cell::new(0usize), std::cell::Cell::new(0usize));
    let mut invocations = 0;
    for shard in shards.shards() {
        let id = shard.shard_id();
        step(
            args.json,
            &format!(
                "kinesis-to-parquet: reading {id} in batches of {}",
                args.batch_size
            ),
        );
        let report = drain_shard(&kinesis, STREAM, &arn, id, &settings, |event| {
            let (f, good, bad) = (&function, &good, &bad);
            async move {
                let (summary, response) = f.process(&event).await;
                good.set(good.get() + summary.good);
                bad.set(bad.get() + summary.bad);
                response
            }
        })
        .await?;
        invocations += report.invocations;
    }

    // Read back what landed.
    let lake = lake_reader::list(&s3, BUCKET, LAKE_PREFIX).await?;
    let mut partitions: BTreeMap<String, (usize, i64)> = BTreeMap::new();
    let mut rows_read = 0usize;
    let mut sample = Vec::new();
    for o in &lake {
        let part = o
            .key
            .rsplit_once('/')
            .map(|(p, _)| p.to_string())
            .unwrap_or_default();
        let e = partitions.entry(part).or_default();
        e.0 += 1;
        e.1 += o.size;
        let batches = lake_reader::parquet_batches(lake_reader::get(&s3, BUCKET, &o.key).await?)?;
        for b in &batches {
            rows_read += b.num_rows();
            if sample.is_empty() {
                sample.push(arrow_array_pretty(b, 3));
            }
        }
    }
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    for o in lake_reader::list(&s3, BUCKET, DL_PREFIX).await? {
        for l in lake_reader::dead_letters(&lake_reader::get(&s3, BUCKET, &o.key).await?)? {
            *reasons.entry(l.reason).or_default() += 1;
        }
    }

    let (good, bad) = (good.get(), bad.get());
    let summary = serde_json::json!({
        "readings_generated": readings.len(),
        "stream_records_put": put,
        "lambda_invocations": invocations,
        "good_rows": good,
        "bad_records": bad,
        "rows_read_back_from_parquet": rows_read,
        "lake_objects": lake.len(),
        "partitions": partitions.iter().map(|(p, (n, b))| serde_json::json!({"partition": p, "objects": n, "bytes": b})).collect::<Vec<_>>(),
        "dead_letters_by_reason": reasons,
        "lake_uri": format!("s3://{BUCKET}/{LAKE_PREFIX}/"),
        "dead_letter_uri": format!("s3://{BUCKET}/{DL_PREFIX}/"),
        "seconds": started.elapsed().as_secs_f64(),
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
        return Ok(());
    }
    println!();
    println!("Stream to lake, on moto at {}", moto.endpoint);
    println!(
        "  readings generated      {:>8}  ({} stream records, {} Lambda batches)",
        readings.len(),
        put,
        invocations
    );
    println!(
        "  good rows in the lake   {:>8}  (read back from Parquet: {rows_read})",
        good
    );
    println!("  dead letters            {:>8}", bad);
    for (reason, n) in &reasons {
        println!("      {reason:<22} {n:>6}");
    }
    println!(
        "  lake objects            {:>8}  under s3://{BUCKET}/{LAKE_PREFIX}/",
        lake.len()
    );
    for (p, (n, b)) in &partitions {
        println!("      {p}  {n} objects, {b} bytes");
    }
    println!();
    println!("First rows of the lake:");
    for s in sample {
        println!("{s}");
    }
    println!(
        "Done in {:.1}s. The moto server stops with this program.",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// A few rows of a batch as an aligned text table.
fn arrow_array_pretty(batch: &arrow_array::RecordBatch, n: usize) -> String {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Int64Type, TimestampMicrosecondType};
    use arrow_schema::DataType;
    let schema = batch.schema();
    let mut lines = vec![schema
        .fields()
        .iter()
        .map(|f| format!("{:>16}", f.name()))
        .collect::<Vec<_>>()
        .join(" ")];
    for r in 0..batch.num_rows().min(n) {
        let cells: Vec<String> = batch
            .columns()
            .iter()
            .map(|c| {
                let v = match c.data_type() {
                    DataType::Int64 => c.as_primitive::<Int64Type>().value(r).to_string(),
                    DataType::Utf8 => c.as_string::<i32>().value(r).to_string(),
                    DataType::Timestamp(_, _) => {
                        let us = c.as_primitive::<TimestampMicrosecondType>().value(r);
                        chrono::DateTime::from_timestamp_micros(us)
                            .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                            .unwrap_or_default()
                    }
                    _ => "?".into(),
                };
                format!("{v:>16}")
            })
            .collect();
        lines.push(cells.join(" "));
    }
    lines.join("\n")
}
