//! Runs the suite's whole job on this machine, with no AWS account (see
//! `lake_tools::local_run`), or, with `--real`, puts the generated
//! telemetry on a real stream in a real account.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use chrono::{Duration, Utc};
use clap::Parser;
use lake_tools::local_run::{self, put_readings, summary, Options};
use lake_tools::telemetry::{generate, TelemetryOptions};

#[derive(Parser, Debug)]
#[command(about = "Run the telemetry lake end to end on a local moto server")]
struct Args {
    /// Devices sending telemetry.
    #[arg(long, default_value_t = 50)]
    devices: u32,
    /// Minutes of event time (fed through the stream in two halves).
    #[arg(long, default_value_t = 120)]
    minutes: i64,
    /// Readings per device per minute.
    #[arg(long, default_value_t = 1)]
    rate: u32,
    /// Share of records made bad on purpose (0..1).
    #[arg(long, default_value_t = 0.03)]
    bad_share: f64,
    /// Random seed of the generator (the same seed generates the same data).
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// A template parameter to override, NAME=VALUE (repeatable), e.g.
    /// `--parameter StreamShardCount=4`.
    #[arg(long = "parameter", value_name = "NAME=VALUE")]
    parameters: Vec<String>,
    /// The lake's layout: `hive` (Parquet by arrival hour) or `iceberg`
    /// (an Iceberg table in the Glue catalog, partitioned by event time);
    /// the template's `LakeFormat` parameter.
    #[arg(long, value_parser = ["hive", "iceberg"])]
    lake_format: Option<String>,
    /// How the telemetry reaches the stream: `producers` (one gzip'd
    /// reading a record) or `cloudwatch-logs` (the devices log their
    /// readings, and a subscription filter puts gzip'd envelopes of up to
    /// 100 log events on the stream; the stack reads them with
    /// `RecordFormat` `cloudwatch-logs`).
    #[arg(long, default_value = "producers", value_parser = ["producers", "cloudwatch-logs"])]
    source: String,
    /// Print the summary as JSON on standard output.
    #[arg(long)]
    json: bool,
    /// Leave moto running after the summary, for the AWS CLI, until Ctrl-C.
    #[arg(long)]
    keep_running: bool,
    /// Only generate the telemetry and put it on a real Kinesis stream
    /// (`--stream-name`, `--region`), with the default AWS credentials.
    #[arg(long, requires = "stream_name")]
    real: bool,
    /// The real stream (with `--real`).
    #[arg(long)]
    stream_name: Option<String>,
    /// The real stream's region (with `--real`; default: the AWS config's).
    #[arg(long)]
    region: Option<String>,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if args.real {
        return put_on_real_stream(&args).await;
    }
    let mut parameters = BTreeMap::new();
    for p in &args.parameters {
        let (k, v) = p
            .split_once('=')
            .with_context(|| format!("--parameter {p:?} is not NAME=VALUE"))?;
        parameters.insert(k.to_string(), v.to_string());
    }
    if let Some(format) = &args.lake_format {
        parameters.insert("LakeFormat".to_string(), format.clone());
    }
    let options = Options {
        devices: args.devices,
        minutes: args.minutes,
        rate: args.rate,
        bad_share: args.bad_share,
        seed: args.seed,
        parameters,
        source: if args.source == "cloudwatch-logs" {
            local_run::Source::CloudWatchLogs
        } else {
            local_run::Source::Producers
        },
        ..Options::default()
    };
    let run = local_run::run(&options).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&run.summary)?);
    } else {
        print!("{}", summary::render(&run.summary));
    }
    if args.keep_running {
        let ep = &run.moto.endpoint;
        let bucket = run.stack.name(local_run::stack::ids::LAKE_BUCKET);
        eprintln!(
            "\nmoto keeps running at {ep} until Ctrl-C. Try:\n  \
             aws --endpoint-url {ep} s3 ls --recursive s3://{bucket}/ | head\n  \
             aws --endpoint-url {ep} dynamodb scan --table-name {} --max-items 3\n  \
             aws --endpoint-url {ep} stepfunctions list-executions --state-machine-arn {}\n\
             (any access key works: export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION={})",
            run.stack.name(local_run::stack::ids::WINDOWS_TABLE),
            run.stack.attribute(local_run::stack::ids::REPARTITION, "Arn"),
            options.region,
        );
        // Ctrl-C ends the process; moto exits when its standard input closes.
        loop {
            std::thread::park();
        }
    } else if !args.json {
        println!("The moto server stops with this program (--keep-running leaves it up).");
    }
    Ok(())
}

/// `--real`: the generator alone, against a real stream.
async fn put_on_real_stream(args: &Args) -> Result<()> {
    let stream = args.stream_name.as_deref().unwrap_or_default();
    let sdk = telemetry_lake::config::aws::load_in(args.region.as_deref()).await;
    let kinesis = aws_sdk_kinesis::Client::new(&sdk);
    let readings = generate(&TelemetryOptions {
        devices: args.devices,
        start: Utc::now() - Duration::minutes(args.minutes),
        duration: Duration::minutes(args.minutes),
        per_device_per_minute: args.rate,
        bad_share: args.bad_share,
        drifting_devices: args.devices / 10,
        seed: args.seed,
        ..Default::default()
    });
    let put = put_readings(&kinesis, stream, &readings, |n| {
        eprint!("\rputting on {stream}: {n}/{}", readings.len())
    })
    .await?;
    eprintln!();
    println!("{put} records put on {stream}");
    Ok(())
}
