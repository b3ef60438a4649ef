//! Smoke-tests a deployed stack (see `lake_tools::smoke`): puts generated
//! readings on its stream, waits for them in the lake and the windows
//! table, repartitions their day, and prints each stage with its time.
//! Exits non-zero when something did not arrive.
//!
//! The stack is named by its outputs, as the AWS CLI prints them:
//! `aws cloudformation describe-stacks --stack-name NAME --query 'Stacks[0].Outputs' > outputs.json`.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::Parser;
use lake_tools::smoke::{run, Targets};

#[derive(Parser, Debug)]
#[command(about = "Smoke-test a deployed stack: stream → lake → windows → repartition")]
struct Args {
    /// The stack's outputs: the JSON list `describe-stacks` prints
    /// (`OutputKey`, `OutputValue`).
    #[arg(long)]
    outputs: std::path::PathBuf,
    /// Readings to put on the stream.
    #[arg(long, default_value_t = 300)]
    readings: usize,
    /// Seconds each stage may take.
    #[arg(long, default_value_t = 300)]
    wait_seconds: u64,
    /// The AWS region (default: the environment's).
    #[arg(long)]
    region: Option<String>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    let text = std::fs::read_to_string(&args.outputs)
        .with_context(|| format!("reading {}", args.outputs.display()))?;
    let list: Vec<serde_json::Value> = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a list of outputs", args.outputs.display()))?;
    let outputs: BTreeMap<String, String> = list
        .iter()
        .filter_map(|o| {
            Some((
                o["OutputKey"].as_str()?.to_string(),
                o["OutputValue"].as_str()?.to_string(),
            ))
        })
        .collect();
    let sdk = telemetry_lake::config::aws::load_in(args.region.as_deref()).await;
    let stages = run(
        &sdk,
        &Targets::from_outputs(&outputs)?,
        args.readings,
        Duration::from_secs(args.wait_seconds),
    )
    .await?;
    for s in &stages {
        println!("{:<22} {:<32} {:>7.1} s", s.name, s.found, s.seconds);
    }
    Ok(())
}
