//! The suite's whole job on this machine, with no AWS account: moto plays
//! AWS, this module plays the Lambda service (event source mappings over
//! the Kinesis shards and the reference table's stream, and the Lambda
//! tasks of the state machines), and the real handlers and state machines
//! do the work. [`run`] returns the summary with moto still up, so callers
//! can look at (or test) what is there.

pub mod event_time;
pub mod functions;
pub mod progress;
pub mod scenario;
pub mod stack;
pub mod summary;

use std::collections::BTreeMap;

use crate::kinesis_event::{put_records, PUT_RECORDS_MAX};
use anyhow::{Context as _, Result};

use crate::lambda_endpoint::LambdaEndpoint;
use crate::moto::{repo_root, MotoOptions, MotoServer};
use crate::telemetry::{payload, Compression, Reading};
use crate::template::Template;

pub use progress::Progress;
pub use summary::Summary;

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Devices sending telemetry.
    pub devices: u32,
    /// Minutes of event time.
    pub minutes: i64,
    /// Readings per device per minute.
    pub rate: u32,
    /// Share of records made bad on purpose.
    pub bad_share: f64,
    /// Random seed of the generator.
    pub seed: u64,
    /// Providers of the scheduler part (at most four).
    pub providers: usize,
    /// Scheduler ticks, one schedule period apart.
    pub ticks: usize,
    /// The stack's name (resource names derive from it).
    pub stack_name: String,
    pub region: String,
    /// Template parameters that replace their defaults.
    pub parameters: BTreeMap<String, String>,
    /// No progress lines.
    pub quiet: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            devices: 50,
            minutes: 120,
            rate: 1,
            bad_share: 0.03,
            seed: 7,
            providers: 4,
            ticks: 4,
            stack_name: "telemetry-lake-local".to_string(),
            region: "us-east-1".to_string(),
            parameters: BTreeMap::new(),
            quiet: false,
        }
    }
}

/// A finished run: its summary, and moto and the Lambda endpoint still
/// serving (they stop when this is dropped).
pub struct LocalRun {
    pub summary: Summary,
    pub stack: stack::Stack,
    pub moto: MotoServer,
    pub lambda: LambdaEndpoint,
}

/// Runs the whole job on a fresh moto server.
pub async fn run(options: &Options) -> Result<LocalRun> {
    let started = std::time::Instant::now();
    let mut progress = Progress::new(scenario::STAGES, options.quiet);
    progress.stage("starting moto and creating the stack from template.yaml");
    let lambda = LambdaEndpoint::start()?;
    let moto = MotoServer::start(&MotoOptions {
        lambda_endpoint_port: Some(lambda.port()),
        execute_state_machines: true,
    })?;
    lambda.set_upstream(&moto.endpoint);
    let template = Template::load(&repo_root().join("template.yaml"))?;
    let stack = stack::create(
        template,
        &options.stack_name,
        &options.region,
        options.parameters.clone(),
        &moto.endpoint,
    )
    .await
    .context("creating the stack on moto")?;
    let metrics = functions::LocalMetrics::default();
    functions::serve_workflow_tasks(&lambda, &stack, &metrics).await?;
    progress.done(&format!("moto at {}", moto.endpoint));

    let mut summary = scenario::play(&stack, options, &mut progress, &metrics).await?;
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(LocalRun {
        summary,
        stack,
        moto,
        lambda,
    })
}

/// Puts `readings` on `stream`, one gzip-compressed document per record,
/// 500 records per `PutRecords`, calling `progress` with the count put so
/// far. Returns the number of records put.
pub async fn put_readings(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
    readings: &[Reading],
    mut progress: impl FnMut(usize),
) -> Result<usize> {
    let mut put = 0;
    for chunk in readings.chunks(PUT_RECORDS_MAX) {
        let records = chunk
            .iter()
            .map(|r| {
                let data = payload(&[r.json.as_str()], Compression::Gzip);
                (r.device.to_string(), data)
            })
            .collect();
        put_records(kinesis, stream, records).await?;
        put += chunk.len();
        progress(put);
    }
    Ok(put)
}
