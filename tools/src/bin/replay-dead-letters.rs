//! Puts dead letters back on the stream once their cause is fixed (see
//! `lake_tools::dead_letter_replay`): reads them from S3 by prefix,
//! arrival-time range and reason; with `--check`, decodes each again with
//! the schema and format of this process's environment (the variables the
//! stream functions read: `SCHEMA` or `SCHEMA_FILE`, `FORMAT`, ...) and
//! sends only those that now pass. Prints how many went and how many would
//! still fail, by reason; exits non-zero when some would still fail.

use anyhow::Result;
use chrono::{DateTime, Utc};
use clap::Parser;
use lake_tools::dead_letter_replay::{decoder_from, replay, Selection};

#[derive(Parser, Debug)]
#[command(about = "Put dead letters back on the stream, checked against the current schema")]
struct Args {
    /// The bucket of the dead letters (the stack's `LakeBucketName`).
    #[arg(long)]
    bucket: String,
    /// Their prefix (the path of the `DeadLetterUri` output, or narrower).
    #[arg(long)]
    prefix: String,
    /// The stream to put them on (the `StreamName` output).
    #[arg(long)]
    stream: String,
    /// Arrival times from (RFC 3339, inclusive).
    #[arg(long)]
    from: Option<DateTime<Utc>>,
    /// Arrival times to (RFC 3339, exclusive).
    #[arg(long)]
    to: Option<DateTime<Utc>>,
    /// Only this reason (repeat for several; all when none).
    #[arg(long = "reason")]
    reasons: Vec<String>,
    /// Decode each again with the environment's schema and format, and
    /// send only those that pass.
    #[arg(long)]
    check: bool,
    /// Read and check, put nothing.
    #[arg(long)]
    dry_run: bool,
    /// The AWS region (default: the environment's).
    #[arg(long)]
    region: Option<String>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    let sdk = telemetry_lake::config::aws::load_in(args.region.as_deref()).await;
    let decoder = match args.check {
        true => Some(decoder_from(|name| std::env::var(name).ok())?),
        false => None,
    };
    let selection = Selection {
        bucket: args.bucket,
        prefix: args.prefix,
        from: args.from,
        to: args.to,
        reasons: args.reasons,
    };
    let report = replay(
        &aws_sdk_s3::Client::new(&sdk),
        &aws_sdk_kinesis::Client::new(&sdk),
        &args.stream,
        &selection,
        decoder.as_ref(),
        args.dry_run,
    )
    .await?;
    let verb = if args.dry_run { "would go" } else { "sent" };
    println!(
        "{} dead letters read, {} selected, {} {verb} to {}",
        report.read, report.selected, report.sent, args.stream
    );
    for (reason, n) in &report.still_failing {
        println!("  {n} would still fail: {reason}");
    }
    if report.unreadable > 0 {
        println!(
            "  {} unreadable (their data is not base64)",
            report.unreadable
        );
    }
    let left: usize = report.still_failing.values().sum::<usize>() + report.unreadable;
    if left > 0 {
        std::process::exit(1);
    }
    Ok(())
}
