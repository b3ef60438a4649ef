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
    /// How the telemetry reaches the stream.
    pub source: Source,
}

/// How the telemetry reaches the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Source {
    /// Producers put each reading as one gzip'd JSON record.
    #[default]
    Producers,
    /// The devices log their readings to CloudWatch Logs, and a subscription
    /// filter puts them on the stream: gzip'd envelopes of up to
    /// [`crate::cloudwatch_logs::EVENTS_PER_ENVELOPE`] log events of one device's log stream, after a
    /// control message. The stack is made with `RecordFormat`
    /// `cloudwatch-logs`.
    CloudWatchLogs,
}

impl Source {
    /// Its name on the command line and in the summary.
    pub fn name(self) -> &'static str {
        match self {
            Source::Producers => "producers",
            Source::CloudWatchLogs => "cloudwatch-logs",
        }
    }
}

/// The log group the CloudWatch Logs source's devices log to.
pub const LOG_GROUP: &str = "/telemetry-lake/ventilators";

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
            source: Source::Producers,
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
    let mut parameters = options.parameters.clone();
    if options.source == Source::CloudWatchLogs {
        parameters
            .entry("RecordFormat".to_string())
            .or_insert_with(|| "cloudwatch-logs".to_string());
    }
    let stack = stack::create(
        template,
        &options.stack_name,
        &options.region,
        parameters,
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

/// Puts `readings` on `stream` as a CloudWatch Logs subscription would
/// (see [`Source::CloudWatchLogs`]), a control message first when
/// `control` is set, calling `progress` with the readings put so far.
/// Returns the number of records (envelopes) put.
pub async fn put_log_envelopes(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
    readings: &[Reading],
    control: bool,
    mut progress: impl FnMut(usize),
) -> Result<usize> {
    use crate::cloudwatch_logs::{control_message, gzip, readings_envelope, EVENTS_PER_ENVELOPE};
    let mut by_device: BTreeMap<u32, Vec<&Reading>> = BTreeMap::new();
    for r in readings {
        by_device.entry(r.device).or_default().push(r);
    }
    let mut records: Vec<(String, Vec<u8>, usize)> = Vec::new();
    if control {
        let now = chrono::Utc::now().timestamp_millis();
        records.push(("control".to_string(), gzip(&control_message(now)), 0));
    }
    for (device, readings) in &by_device {
        for chunk in readings.chunks(EVENTS_PER_ENVELOPE) {
            let stream = format!("ventilator-{device}");
            let envelope = readings_envelope(LOG_GROUP, &stream, chunk.iter().copied());
            records.push((device.to_string(), envelope, chunk.len()));
        }
    }
    let (mut put, mut readings_put) = (0, 0);
    for chunk in records.chunks(PUT_RECORDS_MAX) {
        readings_put += chunk.iter().map(|(_, _, n)| n).sum::<usize>();
        let batch = chunk
            .iter()
            .map(|(k, d, _)| (k.clone(), d.clone()))
            .collect();
        put_records(kinesis, stream, batch).await?;
        put += chunk.len();
        progress(readings_put);
    }
    Ok(put)
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
