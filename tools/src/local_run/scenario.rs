//! The story a local run tells, stage by stage: reference data, the first
//! half of the telemetry through both stream functions, a change of one
//! device's normal range, the second half, the repartition workflow, and
//! the scheduler's ticks starting provider-etl runs.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::time::Duration as StdDuration;

use crate::runtime::{invoke, invoke_stream};
use anyhow::{Context as _, Result};
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Duration, DurationRound, Utc};
use serde_json::json;
use telemetry_lake::config::vars::{DEAD_LETTER_PREFIX, ICEBERG_TABLE, LAKE_FORMAT, LAKE_PREFIX};
use telemetry_lake::device_status::config::DeviceStatusConfig;
use telemetry_lake::repartition::config::StartQueriesConfig;
use telemetry_lake::repartition::queries::LakeLayout;
use telemetry_lake::scheduler::providers::attr;

use super::event_time;
use super::functions::{environment, Consumers, LocalMetrics};
use super::stack::{ids, Stack};
use super::summary::{self, ChangedDevice, Execution, Summary, Tick};
use super::{put_log_envelopes, put_readings, Options, Progress, Source};
use crate::dynamodb_stream::TableStreamPoller;
use crate::event_source::{MappingSettings, ShardPoller};
use crate::iceberg_reader;
use crate::moto::{s3_client, sdk_config, set_transition};
use crate::step_functions::{states_entered, wait_for_execution};
use crate::telemetry::{generate, TelemetryOptions, NORMAL_RANGES};

/// Stages of a run, the stack's creation included.
pub const STAGES: usize = 8;

/// How long a state machine execution may take before the run gives up.
const EXECUTION_LIMIT: StdDuration = StdDuration::from_secs(120);

/// The providers of the scheduler part: name and frequency in minutes.
const PROVIDERS: [(&str, u32); 4] = [
    ("acme", 15),
    ("globex", 30),
    ("initech", 45),
    ("umbrella", 60),
];

/// The device whose o2stats range is narrowed between the two halves, and
/// its new lower bound.
const CHANGED_DEVICE: u32 = 1;
const CHANGED_FIELD: &str = "o2stats";
const CHANGED_MIN: i64 = 95;

/// Plays the run on a created stack.
pub async fn play(
    stack: &Stack,
    options: &Options,
    progress: &mut Progress,
    metrics: &LocalMetrics,
) -> Result<Summary> {
    let sdk = sdk_config(&stack.endpoint, &stack.ctx.region).await;
    let s3 = s3_client(&sdk);
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    let kinesis = aws_sdk_kinesis::Client::new(&sdk);
    let consumers = Consumers::new(stack, metrics).await?;
    let ds_config = DeviceStatusConfig::from_lookup(|k| {
        environment(stack, ids::DEVICE_STATUS).get(k).cloned()
    })?;
    let k2p_env = environment(stack, ids::KINESIS_TO_PARQUET);
    let bucket = stack.name(ids::LAKE_BUCKET);

    // ----------------------------------------------------- reference data
    progress.stage("reference data → DeviceReferenceTable → its stream → reference-change-flag");
    let devices = options.devices.max(1);
    for device in 1..=devices {
        let mut put = ddb.put_item().table_name(&ds_config.reference_table).item(
            &ds_config.reference_key_attribute,
            AttributeValue::N(device.to_string()),
        );
        for m in &ds_config.metrics {
            if let Some((_, min, max)) = NORMAL_RANGES.iter().find(|(f, _, _)| *f == m.field) {
                put = put
                    .item(&m.min_attribute, AttributeValue::N(min.to_string()))
                    .item(&m.max_attribute, AttributeValue::N(max.to_string()));
            }
        }
        put.send().await.context("putting a reference row")?;
    }
    let flag_settings = MappingSettings {
        batch_size: stack
            .event_setting(ids::REFERENCE_CHANGE_FLAG, "DynamoDB", "BatchSize")
            .unwrap_or(100) as i32,
        maximum_retry_attempts: stack
            .event_setting(
                ids::REFERENCE_CHANGE_FLAG,
                "DynamoDB",
                "MaximumRetryAttempts",
            )
            .unwrap_or(10) as u32,
    };
    let mut reference_stream = TableStreamPoller::open(
        aws_sdk_dynamodbstreams::Client::new(&sdk),
        &ds_config.reference_table,
        &flag_settings,
    )
    .await?;
    let flag_version = Cell::new(0u64);
    let flag = |event| {
        let (f, v) = (&consumers.reference_change_flag, &flag_version);
        async move {
            let published = metrics
                .timed(
                    ids::REFERENCE_CHANGE_FLAG,
                    f.publish(lambda_runtime::LambdaEvent::new(event, Default::default())),
                )
                .await?;
            if let Some(p) = published {
                v.set(p.version);
            }
            Ok::<(), lambda_runtime::Error>(())
        }
    };
    let report = reference_stream.drain(flag).await?;
    progress.done(&format!(
        "{devices} devices, {} stream records, change flag v{}",
        report.records,
        flag_version.get()
    ));

    // ------------------------------------------------------- telemetry
    let start = (Utc::now() - Duration::minutes(options.minutes))
        .duration_trunc(Duration::minutes(1))
        .unwrap_or_else(|_| Utc::now());
    let readings = generate(&TelemetryOptions {
        devices,
        start,
        duration: Duration::minutes(options.minutes.max(2)),
        per_device_per_minute: options.rate.max(1),
        bad_share: options.bad_share,
        // A tenth of the devices (at least one), never device 1, whose range changes.
        drifting_devices: if devices > 1 {
            (devices / 10).max(1)
        } else {
            0
        },
        seed: options.seed,
        ..Default::default()
    });
    let mid_time = start + Duration::minutes(options.minutes.max(2) / 2);
    let half = readings.partition_point(|r| r.event_time < mid_time);
    let mut generated_bad: BTreeMap<String, usize> = BTreeMap::new();
    for r in readings.iter().filter_map(|r| r.bad) {
        *generated_bad.entry(r.to_string()).or_default() += 1;
    }

    let stream = stack.name(ids::STREAM);
    let stream_arn = stack.attribute(ids::STREAM, "Arn");
    let shards: Vec<String> = kinesis
        .list_shards()
        .stream_name(&stream)
        .send()
        .await?
        .shards()
        .iter()
        .map(|s| s.shard_id().to_string())
        .collect();
    let mapping = |function_id: &str| MappingSettings {
        batch_size: stack
            .event_setting(function_id, "Kinesis", "BatchSize")
            .unwrap_or(100) as i32,
        maximum_retry_attempts: stack
            .event_setting(function_id, "Kinesis", "MaximumRetryAttempts")
            .unwrap_or(10) as u32,
    };
    let mut k2p_pollers = Vec::new();
    let mut ds_pollers = Vec::new();
    for shard in &shards {
        let settings = mapping(ids::KINESIS_TO_PARQUET);
        k2p_pollers
            .push(ShardPoller::open(&kinesis, &stream, &stream_arn, shard, &settings).await?);
        let settings = mapping(ids::DEVICE_STATUS);
        ds_pollers.push(ShardPoller::open(&kinesis, &stream, &stream_arn, shard, &settings).await?);
    }
    let mut feed = Feed {
        kinesis: &kinesis,
        stream: &stream,
        consumers: &consumers,
        k2p_pollers,
        ds_pollers,
        counts: FeedCounts::default(),
        metrics,
        source: options.source,
    };

    progress.stage("first half: telemetry → Kinesis → kinesis-to-parquet + device-status");
    feed.run(&readings[..half], progress).await?;
    progress.done(&feed.counts.line(half));

    // ------------------------------------------------ reference change
    progress.stage("reference change: narrower o2stats range for one device");
    let loads_before = consumers.device_status.cache().loads().await;
    let version_before = flag_version.get();
    let metric = ds_config
        .metrics
        .iter()
        .find(|m| m.field == CHANGED_FIELD)
        .context("device-status's METRICS has no o2stats")?;
    ddb.update_item()
        .table_name(&ds_config.reference_table)
        .key(
            &ds_config.reference_key_attribute,
            AttributeValue::N(CHANGED_DEVICE.to_string()),
        )
        .update_expression("SET #min = :min")
        .expression_attribute_names("#min", &metric.min_attribute)
        .expression_attribute_values(":min", AttributeValue::N(CHANGED_MIN.to_string()))
        .send()
        .await
        .context("changing the reference row")?;
    reference_stream.drain(flag).await?;
    let (_, o2_min, o2_max) = NORMAL_RANGES
        .iter()
        .find(|(f, _, _)| *f == CHANGED_FIELD)
        .copied()
        .unwrap_or_default();
    let change = format!(
        "{CHANGED_FIELD} {o2_min}–{o2_max} → {CHANGED_MIN}–{o2_max} (at event time {})",
        mid_time.format("%H:%M")
    );
    progress.done(&format!(
        "device {CHANGED_DEVICE}: {change}; change flag v{version_before} → v{}",
        flag_version.get()
    ));

    progress.stage("second half: telemetry → Kinesis → kinesis-to-parquet + device-status");
    feed.run(&readings[half..], progress).await?;
    progress.done(&feed.counts.line(readings.len()));
    let loads_after = consumers.device_status.cache().loads().await;

    // ------------------------------------------------------ repartition
    progress.stage("repartition state machine (crawl, Athena queries, crawl)");
    set_transition(
        &stack.endpoint,
        "glue::crawl",
        json!({"progression": "immediate"}),
    )
    .await?;
    let sfn = aws_sdk_sfn::Client::new(&sdk);
    let (first, last) = (
        start.date_naive(),
        readings.last().map_or(start, |r| r.event_time).date_naive(),
    );
    let input = json!({"from": first.to_string(), "to": last.to_string()});
    let arn = sfn
        .start_execution()
        .state_machine_arn(stack.attribute(ids::REPARTITION, "Arn"))
        .name(format!("local-{}", Utc::now().format("%Y%m%dT%H%M%S")))
        .input(input.to_string())
        .send()
        .await
        .context("starting the repartition workflow")?
        .execution_arn;
    let done = wait_for_execution(&sfn, &arn, EXECUTION_LIMIT).await?;
    progress.done(&format!("{} for {first}..{last}", done.status.as_str()));
    let event_time = event_time_table(
        stack,
        &sdk,
        &done,
        &k2p_env,
        &ds_config.reference_table,
        progress,
    )
    .await?;

    // -------------------------------------------------------- scheduler
    progress.stage("scheduler ticks → provider-etl executions → Glue jobs");
    let ticks = schedule(stack, options, &consumers, metrics, &sfn, &ddb, progress).await?;
    progress.done(&format!(
        "{} ticks, {} executions started",
        ticks.len(),
        ticks.iter().map(|t| t.started.len()).sum::<usize>()
    ));

    // ----------------------------------------------------------- read back
    progress.stage("reading back what landed");
    let lake_prefix = k2p_env.get(LAKE_PREFIX).cloned().unwrap_or_default();
    let dl_prefix = k2p_env.get(DEAD_LETTER_PREFIX).cloned().unwrap_or_default();
    let iceberg_table = (k2p_env.get(LAKE_FORMAT).map(String::as_str) == Some("iceberg"))
        .then(|| k2p_env.get(ICEBERG_TABLE).cloned())
        .flatten();
    // An Iceberg table keeps its data files under `data/` and its metadata
    // (JSON and Avro) under `metadata/`.
    let data_prefix = match &iceberg_table {
        Some(_) => format!("{}/data", lake_prefix.trim_end_matches('/')),
        None => lake_prefix.clone(),
    };
    let lake = summary::read_lake(&s3, &bucket, &data_prefix).await?;
    let iceberg = match &iceberg_table {
        Some(name) => {
            let (database, table) = name
                .split_once('.')
                .with_context(|| format!("ICEBERG_TABLE {name:?} is not DATABASE.TABLE"))?;
            let read = iceberg_reader::read_table(&stack.endpoint, database, table)?;
            Some(iceberg_reader::report(name, &read))
        }
        None => None,
    };
    let dead_letters = summary::read_dead_letters(&s3, &bucket, &dl_prefix).await?;
    let windows = summary::read_windows(&ddb, &ds_config.windows_table).await?;
    let (before, after) = summary::before_after(&windows, &CHANGED_DEVICE.to_string(), mid_time);
    let mut executions = Vec::new();
    for id in [ids::REPARTITION, ids::PROVIDER_ETL] {
        executions.extend(executions_of(&sfn, stack, id).await?);
    }
    let outputs = outputs(stack, &ds_config, &lake.uri, &dead_letters.uri);
    progress.done(&format!(
        "{} objects, {} windows, {} executions",
        lake.objects,
        windows.len(),
        executions.len()
    ));
    let c = &feed.counts;
    Ok(Summary {
        records: summary::Records {
            generated: readings.len(),
            generated_json_bytes: readings.iter().map(|r| r.json.len()).sum(),
            generated_bad,
            source: options.source.name().to_string(),
            stream_records: c.put,
            good: c.good.get(),
            bad: c.bad.get(),
            kinesis_to_parquet_invocations: c.k2p_invocations,
            device_status_invocations: c.ds_invocations,
            retries: c.retries,
        },
        lake,
        iceberg,
        dead_letters,
        device_status: summary::DeviceStatusReport {
            table: ds_config.windows_table.clone(),
            by_status: summary::status_rows(&windows),
            changed_device: ChangedDevice {
                device: CHANGED_DEVICE.to_string(),
                change,
                flag_version_before: version_before,
                flag_version_after: flag_version.get(),
                reference_loads_before: loads_before,
                reference_loads_after: loads_after,
                before,
                after,
            },
        },
        executions,
        scheduler_ticks: ticks,
        event_time,
        metrics: summary::metric_totals(&metrics.lines()),
        usage: summary::usage(&metrics.durations(), &metrics.requests(), &metrics.lines()),
        outputs,
        seconds: 0.0,
    })
}

#[derive(Debug, Default)]
struct FeedCounts {
    put: usize,
    good: Cell<usize>,
    bad: Cell<usize>,
    k2p_records: Cell<usize>,
    ds_records: Cell<usize>,
    k2p_invocations: usize,
    ds_invocations: usize,
    retries: usize,
}

impl FeedCounts {
    fn line(&self, total: usize) -> String {
        format!(
            "{}/{total} records put; kinesis-to-parquet {} good, {} bad; device-status {} records",
            self.put,
            self.good.get(),
            self.bad.get(),
            self.ds_records.get()
        )
    }
}

/// The stream and its two consumers, each with its own shard pollers.
struct Feed<'a> {
    kinesis: &'a aws_sdk_kinesis::Client,
    stream: &'a str,
    consumers: &'a Consumers,
    k2p_pollers: Vec<ShardPoller>,
    ds_pollers: Vec<ShardPoller>,
    counts: FeedCounts,
    metrics: &'a LocalMetrics,
    source: Source,
}

impl Feed<'_> {
    /// Puts `readings` on the stream, then lets each consumer read every
    /// shard to its end, one consumer after the other, so that each
    /// invocation's time is its own.
    async fn run(
        &mut self,
        readings: &[crate::telemetry::Reading],
        progress: &Progress,
    ) -> Result<()> {
        let already = self.counts.put;
        let show = |n: usize| progress.update(&format!("{n}/{} readings put", readings.len()));
        self.counts.put += match self.source {
            Source::Producers => put_readings(self.kinesis, self.stream, readings, show).await?,
            Source::CloudWatchLogs => {
                let first = already == 0;
                put_log_envelopes(self.kinesis, self.stream, readings, first, show).await?
            }
        };
        let (kinesis, consumers, counts, metrics) =
            (self.kinesis, self.consumers, &self.counts, self.metrics);
        let total = counts.put;
        let show = || {
            progress.update(&format!(
                "kinesis-to-parquet {}/{total}  device-status {}/{total}",
                counts.k2p_records.get(),
                counts.ds_records.get()
            ))
        };
        let k2p = async {
            let mut reports = Vec::new();
            for poller in &mut self.k2p_pollers {
                reports.push(
                    poller
                        .drain(kinesis, |event| async move {
                            let out = metrics
                                .timed(
                                    ids::KINESIS_TO_PARQUET,
                                    invoke_stream(&event, |e| {
                                        consumers.kinesis_to_parquet.handle(e)
                                    }),
                                )
                                .await?;
                            let s = &out.summary;
                            counts.good.set(counts.good.get() + s.good);
                            counts.bad.set(counts.bad.get() + s.bad);
                            if out.response.batch_item_failures.is_empty() {
                                counts.k2p_records.set(counts.k2p_records.get() + s.records);
                            }
                            show();
                            Ok(out.response)
                        })
                        .await?,
                );
            }
            anyhow::Ok(reports)
        };
        let ds = async {
            let mut reports = Vec::new();
            for poller in &mut self.ds_pollers {
                reports.push(
                    poller
                        .drain(kinesis, |event| async move {
                            // An error (no reference data) fails the batch:
                            // the poller retries it whole, as Lambda does.
                            let out = metrics
                                .timed(
                                    ids::DEVICE_STATUS,
                                    invoke_stream(&event, |e| consumers.device_status.handle(e)),
                                )
                                .await?;
                            if out.response.batch_item_failures.is_empty() {
                                counts
                                    .ds_records
                                    .set(counts.ds_records.get() + out.summary.records);
                            }
                            show();
                            Ok(out.response)
                        })
                        .await?,
                );
            }
            anyhow::Ok(reports)
        };
        let k2p = k2p.await?;
        let ds = ds.await?;
        for r in &k2p {
            self.counts.k2p_invocations += r.invocations;
            self.counts.retries += r.retries;
        }
        for r in &ds {
            self.counts.ds_invocations += r.invocations;
            self.counts.retries += r.retries;
        }
        let given_up: usize = k2p.iter().chain(&ds).map(|r| r.given_up.len()).sum();
        anyhow::ensure!(
            given_up == 0,
            "{given_up} records were given up after their retries"
        );
        Ok(())
    }
}

/// With the Hive layout, the queries the repartition run started, run in
/// DuckDB over the lake (see [`event_time`]); with the Iceberg layout,
/// nothing.
async fn event_time_table(
    stack: &Stack,
    sdk: &aws_config::SdkConfig,
    done: &aws_sdk_sfn::operation::describe_execution::DescribeExecutionOutput,
    k2p_env: &BTreeMap<String, String>,
    reference_items: &str,
    progress: &mut Progress,
) -> Result<Option<event_time::EventTimeTable>> {
    let env = environment(stack, ids::START_QUERIES);
    let config = StartQueriesConfig::from_lookup(|k| env.get(k).cloned())?;
    if config.layout == LakeLayout::Iceberg || done.status.as_str() != "SUCCEEDED" {
        return Ok(None);
    }
    progress.stage("event-time table: the workflow's queries run in DuckDB");
    let output: serde_json::Value =
        serde_json::from_str(done.output().unwrap_or("{}")).unwrap_or_default();
    let queries: Vec<String> = output["query_execution_ids"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|id| id.as_str().map(str::to_string))
        .collect();
    let tables = config.repartition.tables();
    let table = event_time::run(
        sdk,
        &event_time::Catalog {
            database: &tables.database,
            source: &tables.source,
            target: &tables.target,
            reference: &tables.reference,
            lake_bucket: &stack.name(ids::LAKE_BUCKET),
            lake_prefix: k2p_env.get(LAKE_PREFIX).map_or("", String::as_str),
            reference_items,
        },
        &queries,
    )
    .await?;
    progress.done(&format!(
        "{} queries, {} rows in {} partitions",
        table.queries,
        table.rows,
        table.partitions.len()
    ));
    Ok(Some(table))
}

/// Puts the providers and their Glue jobs, then ticks the scheduler one
/// schedule period apart, waiting for each tick's executions.
async fn schedule(
    stack: &Stack,
    options: &Options,
    consumers: &Consumers,
    metrics: &LocalMetrics,
    sfn: &aws_sdk_sfn::Client,
    ddb: &aws_sdk_dynamodb::Client,
    progress: &Progress,
) -> Result<Vec<Tick>> {
    let sdk = sdk_config(&stack.endpoint, &stack.ctx.region).await;
    let glue = aws_sdk_glue::Client::new(&sdk);
    let prefix = stack.parameter("ProviderJobPrefix");
    let period: i64 = stack
        .parameter("SchedulePeriodMinutes")
        .parse()
        .unwrap_or(15);
    let table = stack.name(ids::PROVIDERS_TABLE);
    for (provider, frequency) in PROVIDERS.iter().take(options.providers) {
        let job = format!("{prefix}{provider}");
        glue.create_job()
            .name(&job)
            .role(format!(
                "arn:aws:iam::{}:role/{job}",
                super::stack::ACCOUNT_ID
            ))
            .command(
                aws_sdk_glue::types::JobCommand::builder()
                    .name("glueetl")
                    .script_location(format!(
                        "s3://{}/jobs/{job}.py",
                        stack.name(ids::LAKE_BUCKET)
                    ))
                    .build(),
            )
            .send()
            .await
            .with_context(|| format!("creating Glue job {job}"))?;
        ddb.put_item()
            .table_name(&table)
            .item(attr::PROVIDER, AttributeValue::S(provider.to_string()))
            .item(attr::ENABLED, AttributeValue::Bool(true))
            .item(
                attr::FREQUENCY_MINUTES,
                AttributeValue::N(frequency.to_string()),
            )
            .item(attr::JOB_NAME, AttributeValue::S(job))
            .send()
            .await
            .context("putting a provider")?;
    }
    // The first tick a little ahead of now: a run's last_success is the
    // real time it ended, which must not be after the next ticks' slots.
    let first = (Utc::now() + Duration::minutes(2))
        .duration_trunc(Duration::seconds(1))
        .unwrap_or_else(|_| Utc::now());
    let mut ticks = Vec::new();
    for k in 0..options.ticks {
        let at: DateTime<Utc> = first + Duration::minutes(period * k as i64);
        progress.update(&format!(
            "tick {}/{} at {}",
            k + 1,
            options.ticks,
            at.format("%H:%M")
        ));
        // The tick as EventBridge delivers it, at its scheduled time.
        let event = json!({
            "version": "0", "id": format!("tick-{k}"), "detail-type": "Scheduled Event",
            "source": "aws.events", "account": super::stack::ACCOUNT_ID,
            "time": at.to_rfc3339(), "region": &stack.ctx.region,
            "resources": [], "detail": {}
        });
        let body = event.to_string();
        let tick = invoke(body.as_bytes(), |e| async {
            consumers.scheduler.handle(e).await.map_err(Into::into)
        });
        let s = metrics
            .timed(ids::SCHEDULER, tick)
            .await
            .map_err(|e| anyhow::anyhow!("a scheduler tick: {e}"))?;
        for started in &s.started {
            wait_for_execution(sfn, &started.execution_arn, EXECUTION_LIMIT).await?;
        }
        ticks.push(Tick {
            scheduled_time: at,
            started: s.started.iter().map(|x| x.provider.clone()).collect(),
            skipped: s
                .skipped
                .iter()
                .map(|x| format!("{}: {}", x.provider, x.reason))
                .collect(),
            failed: s
                .failed
                .iter()
                .map(|x| format!("{}: {}", x.provider, x.error))
                .collect(),
        });
    }
    Ok(ticks)
}

/// Every execution of a state machine, oldest first, with its path.
async fn executions_of(
    sfn: &aws_sdk_sfn::Client,
    stack: &Stack,
    id: &str,
) -> Result<Vec<Execution>> {
    let listed = sfn
        .list_executions()
        .state_machine_arn(stack.attribute(id, "Arn"))
        .send()
        .await
        .context("listing executions")?;
    let mut out = Vec::new();
    for e in listed.executions() {
        let d = sfn
            .describe_execution()
            .execution_arn(e.execution_arn())
            .send()
            .await?;
        let seconds = match (d.start_date.to_millis(), d.stop_date.map(|t| t.to_millis())) {
            (Ok(a), Some(Ok(b))) => (b - a) as f64 / 1000.0,
            _ => 0.0,
        };
        out.push(Execution {
            state_machine: id.trim_end_matches("StateMachine").to_string(),
            name: e.name().to_string(),
            status: d.status.as_str().to_string(),
            states: states_entered(sfn, e.execution_arn()).await?,
            seconds,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

fn outputs(
    stack: &Stack,
    ds: &DeviceStatusConfig,
    lake: &str,
    dead_letters: &str,
) -> BTreeMap<String, String> {
    let bucket = stack.name(ids::LAKE_BUCKET);
    BTreeMap::from([
        ("endpoint".into(), stack.endpoint.clone()),
        ("lake".into(), lake.to_string()),
        ("dead letters".into(), dead_letters.to_string()),
        (
            "device-status dead letters".into(),
            format!("s3://{bucket}/{}/", ds.dead_letter_prefix),
        ),
        (
            "change flag".into(),
            format!("s3://{}/{}", ds.change_flag.bucket, ds.change_flag.key),
        ),
        ("stream".into(), stack.name(ids::STREAM)),
        ("reference table".into(), ds.reference_table.clone()),
        ("status windows table".into(), ds.windows_table.clone()),
        ("providers table".into(), stack.name(ids::PROVIDERS_TABLE)),
        ("glue database".into(), stack.parameter("GlueDatabaseName")),
        ("athena workgroup".into(), stack.name(ids::WORKGROUP)),
        (
            "repartition".into(),
            stack.attribute(ids::REPARTITION, "Arn"),
        ),
        (
            "provider-etl".into(),
            stack.attribute(ids::PROVIDER_ETL, "Arn"),
        ),
    ])
}
