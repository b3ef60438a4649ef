//! Replays the stream batches one consumer gave up on: reads its on-failure
//! queue (the stack's `KinesisToParquetFailureQueueUrl` or
//! `DeviceStatusFailureQueueUrl` output), reads each failed range again
//! from the stream and invokes the function that failed it with those
//! records. Messages of another function, of a DynamoDB stream, or whose
//! range has partly left the stream are refused and stay in the queue.
//! Exits non-zero when any message was not replayed.

use anyhow::Result;
use clap::Parser;
use lake_tools::replay::{Outcome, Replayer};

#[derive(Parser, Debug)]
#[command(about = "Replay the failed stream batches of one consumer into that consumer")]
struct Args {
    /// The consumer's on-failure queue URL.
    #[arg(long)]
    queue_url: String,
    /// The consumer: its function name or ARN. Messages naming another
    /// function are refused.
    #[arg(long)]
    function: String,
    /// Read each range and report, invoke nothing, delete nothing.
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
    let replayer = Replayer::new(&sdk);
    let report = replayer
        .replay(&args.queue_url, &args.function, args.dry_run)
        .await?;
    for (id, outcome) in &report.messages {
        match outcome {
            Outcome::Replayed { records } if args.dry_run => {
                println!("{id}: would replay {records} records")
            }
            Outcome::Replayed { records } => println!("{id}: replayed {records} records, deleted"),
            Outcome::Refused(why) => println!("{id}: refused, kept: {why}"),
            Outcome::Failed(why) => println!("{id}: failed, kept: {why}"),
        }
    }
    let (replayed, refused, failed) = report.counts();
    println!("{replayed} replayed, {refused} refused, {failed} failed");
    if refused + failed > 0 {
        std::process::exit(1);
    }
    Ok(())
}
