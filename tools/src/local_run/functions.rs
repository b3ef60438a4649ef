//! The suite's functions as the local Lambda service runs them: each built
//! from its environment in the template (with the local overrides below),
//! the stream consumers called in process by the pollers, the state
//! machines' tasks served on the local Lambda endpoint.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context as _, Result};
use crawler_status::CrawlerStatus;
use device_status::DeviceStatus;
use kinesis_to_parquet::KinesisToParquet;
use lambda_runtime::{Context, LambdaEvent};
use query_status::QueryStatus;
use reference_change_flag::ReferenceChangeFlag;
use scheduler::Scheduler;
use start_crawler::StartCrawler;
use start_queries::StartQueries;
use telemetry_lake::config::vars::{
    AWS_LAMBDA_FUNCTION_NAME, CHANGE_FLAG_CHECK_SECONDS, CRAWLER_WAIT_SECONDS, QUERY_WAIT_SECONDS,
};
use telemetry_lake::lake::writer::S3Sink;
use telemetry_lake::metrics::{MetricsOut, Recorded};
use telemetry_lake::repartition::config::{
    CrawlerStatusConfig, StartCrawlerConfig, StartQueriesConfig,
};
use telemetry_lake::scheduler::providers::DynamoProviders;

use super::stack::{ids, Stack};
use crate::lambda_endpoint::LambdaEndpoint;
use crate::moto::sdk_config;
use crate::request_count::{RequestCounter, Tallies};

/// Where the local run departs from the template's environment, and why:
/// the reference change must be seen by the next batch, not a minute
/// later; the workflow's waits are seconds, not a minute.
pub const OVERRIDES: &[(&str, &str, &str)] = &[
    (ids::DEVICE_STATUS, CHANGE_FLAG_CHECK_SECONDS, "0"),
    (ids::START_CRAWLER, CRAWLER_WAIT_SECONDS, "1"),
    (ids::START_CRAWLER, QUERY_WAIT_SECONDS, "1"),
];

/// A function's environment: the template's, with [`OVERRIDES`], and the
/// function's name as Lambda sets it.
pub fn environment(stack: &Stack, function_id: &str) -> BTreeMap<String, String> {
    let overrides: Vec<(&str, &str)> = OVERRIDES
        .iter()
        .filter(|(id, _, _)| *id == function_id)
        .map(|(_, k, v)| (*k, *v))
        .collect();
    let mut env = stack.environment(function_id, &overrides);
    env.insert(AWS_LAMBDA_FUNCTION_NAME.into(), stack.name(function_id));
    env
}

/// What the run observes of each function: its metrics documents, kept in
/// memory where Lambda would print them to CloudWatch Logs; the AWS
/// requests it makes, each function through its own counting proxy; and
/// how long each invocation took. The summary adds them up.
#[derive(Debug, Clone, Default)]
pub struct LocalMetrics {
    kept: Arc<Mutex<BTreeMap<String, Recorded>>>,
    requests: RequestCounter,
    durations: Arc<Mutex<BTreeMap<String, Vec<f64>>>>,
}

impl LocalMetrics {
    /// The SDK configuration function `function_id` of `stack` is built
    /// with: moto, through the function's own counting proxy.
    pub async fn sdk(&self, stack: &Stack, function_id: &str) -> Result<aws_config::SdkConfig> {
        let endpoint = self.requests.endpoint(&stack.endpoint, function_id).await?;
        Ok(sdk_config(&endpoint, &stack.ctx.region).await)
    }

    /// Runs one invocation of `function_id`, keeping its wall time.
    pub async fn timed<T>(&self, function_id: &str, invocation: impl Future<Output = T>) -> T {
        let started = Instant::now();
        let out = invocation.await;
        self.durations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(function_id.to_string())
            .or_default()
            .push(started.elapsed().as_secs_f64());
        out
    }

    /// Each function's AWS requests (by logical ID).
    pub fn requests(&self) -> BTreeMap<String, Tallies> {
        self.requests.counts()
    }

    /// Each function's invocation times in seconds (by logical ID).
    pub fn durations(&self) -> BTreeMap<String, Vec<f64>> {
        self.durations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Where function `function_id` of `stack` writes its metrics, as its
    /// environment names them.
    pub fn out(&self, stack: &Stack, function_id: &str) -> MetricsOut {
        let env = environment(stack, function_id);
        let (out, recorded) =
            MetricsOut::from_env(|k| env.get(k).cloned(), function_id).in_memory();
        self.kept
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(function_id.to_string(), recorded);
        out
    }

    /// The documents of each function (by logical ID), one JSON line each.
    pub fn lines(&self) -> BTreeMap<String, Vec<String>> {
        self.kept
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(id, r)| (id.clone(), r.lines()))
            .collect()
    }
}

/// A variable's value in a function's environment.
type Lookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// A function's environment as the lookup its `load` reads (shared by the
/// invocations of a task, each of which loads the function as a cold start
/// does).
fn lookup(env: BTreeMap<String, String>) -> Lookup {
    Arc::new(move |k| env.get(k).cloned())
}

/// The functions the pollers and the scheduler ticks call in process.
pub struct Consumers {
    pub kinesis_to_parquet: KinesisToParquet<S3Sink>,
    pub device_status: DeviceStatus<S3Sink>,
    pub reference_change_flag: ReferenceChangeFlag,
    pub scheduler: Scheduler<DynamoProviders>,
}

impl Consumers {
    /// Builds the four functions from the template, on moto, their metrics
    /// kept in `metrics`.
    pub async fn new(stack: &Stack, metrics: &LocalMetrics) -> Result<Self> {
        let sdk = metrics.sdk(stack, ids::KINESIS_TO_PARQUET).await?;
        let kinesis_to_parquet =
            KinesisToParquet::load(&*lookup(environment(stack, ids::KINESIS_TO_PARQUET)), &sdk)
                .await
                .context("kinesis-to-parquet's environment in the template")?
                .with_metrics(metrics.out(stack, ids::KINESIS_TO_PARQUET));
        let sdk = metrics.sdk(stack, ids::DEVICE_STATUS).await?;
        let device_status =
            DeviceStatus::load(&*lookup(environment(stack, ids::DEVICE_STATUS)), &sdk)
                .await
                .context("device-status's environment in the template")?
                .with_metrics(metrics.out(stack, ids::DEVICE_STATUS));
        let sdk = metrics.sdk(stack, ids::REFERENCE_CHANGE_FLAG).await?;
        let reference_change_flag = ReferenceChangeFlag::load(
            &*lookup(environment(stack, ids::REFERENCE_CHANGE_FLAG)),
            &sdk,
        )
        .context("reference-change-flag's environment in the template")?
        .with_metrics(metrics.out(stack, ids::REFERENCE_CHANGE_FLAG));
        let sdk = metrics.sdk(stack, ids::SCHEDULER).await?;
        let scheduler = Scheduler::load(&*lookup(environment(stack, ids::SCHEDULER)), &sdk)
            .context("the scheduler's environment in the template")?
            .with_metrics(metrics.out(stack, ids::SCHEDULER));
        Ok(Consumers {
            kinesis_to_parquet,
            device_status,
            reference_change_flag,
            scheduler,
        })
    }
}

/// Where a workflow task's clients go: its counting proxy in front of moto.
#[derive(Clone)]
struct TaskClients {
    endpoint: String,
    region: String,
}

impl TaskClients {
    async fn of(stack: &Stack, metrics: &LocalMetrics, function_id: &str) -> Result<Self> {
        Ok(TaskClients {
            endpoint: metrics
                .requests
                .endpoint(&stack.endpoint, function_id)
                .await?,
            region: stack.ctx.region.clone(),
        })
    }

    async fn sdk(&self) -> aws_config::SdkConfig {
        sdk_config(&self.endpoint, &self.region).await
    }
}

/// Serves the repartition workflow's four tasks on `lambda` under the
/// functions' names in the stack. Handlers run on the endpoint's runtime,
/// so each invocation builds its own clients (cheap, and what a cold start
/// does).
pub async fn serve_workflow_tasks(
    lambda: &LambdaEndpoint,
    stack: &Stack,
    metrics: &LocalMetrics,
) -> Result<()> {
    // Each configuration is read once here, so that a bad one stops the
    // run before any task is invoked.
    let env = lookup(environment(stack, ids::START_CRAWLER));
    StartCrawlerConfig::from_lookup(&*env)
        .context("start-crawler's environment in the template")?;
    let clients = TaskClients::of(stack, metrics, ids::START_CRAWLER).await?;
    let (out, kept) = (metrics.out(stack, ids::START_CRAWLER), metrics.clone());
    lambda.register(&stack.name(ids::START_CRAWLER), move |input| {
        let (env, clients, out, kept) = (env.clone(), clients.clone(), out.clone(), kept.clone());
        let run = async move {
            let f = StartCrawler::load(&*env, &clients.sdk().await)
                .map_err(|e| e.to_string())?
                .with_metrics(out);
            let plan = f
                .handle(LambdaEvent::new(input, Context::default()))
                .await?;
            Ok(serde_json::to_value(plan).unwrap_or_default())
        };
        async move { kept.timed(ids::START_CRAWLER, run).await }
    });

    let env = lookup(environment(stack, ids::CRAWLER_STATUS));
    CrawlerStatusConfig::from_lookup(&*env)
        .context("crawler-status's environment in the template")?;
    let clients = TaskClients::of(stack, metrics, ids::CRAWLER_STATUS).await?;
    let (out, kept) = (metrics.out(stack, ids::CRAWLER_STATUS), metrics.clone());
    lambda.register(&stack.name(ids::CRAWLER_STATUS), move |input| {
        let (env, clients, out, kept) = (env.clone(), clients.clone(), out.clone(), kept.clone());
        let run = async move {
            let f = CrawlerStatus::load(&*env, &clients.sdk().await)
                .map_err(|e| e.to_string())?
                .with_metrics(out);
            f.handle(LambdaEvent::new(input, Context::default())).await
        };
        async move { kept.timed(ids::CRAWLER_STATUS, run).await }
    });

    let env = lookup(environment(stack, ids::START_QUERIES));
    StartQueriesConfig::from_lookup(&*env)
        .context("start-queries's environment in the template")?;
    let clients = TaskClients::of(stack, metrics, ids::START_QUERIES).await?;
    let (out, kept) = (metrics.out(stack, ids::START_QUERIES), metrics.clone());
    lambda.register(&stack.name(ids::START_QUERIES), move |input| {
        let (env, clients, out, kept) = (env.clone(), clients.clone(), out.clone(), kept.clone());
        let run = async move {
            let f = StartQueries::load(&*env, &clients.sdk().await)
                .map_err(|e| e.to_string())?
                .with_metrics(out);
            f.handle(LambdaEvent::new(input, Context::default())).await
        };
        async move { kept.timed(ids::START_QUERIES, run).await }
    });

    let env = lookup(environment(stack, ids::QUERY_STATUS));
    let clients = TaskClients::of(stack, metrics, ids::QUERY_STATUS).await?;
    let (out, kept) = (metrics.out(stack, ids::QUERY_STATUS), metrics.clone());
    lambda.register(&stack.name(ids::QUERY_STATUS), move |input| {
        let (env, clients, out, kept) = (env.clone(), clients.clone(), out.clone(), kept.clone());
        let run = async move {
            let f = QueryStatus::load(&*env, &clients.sdk().await).with_metrics(out);
            f.handle(LambdaEvent::new(input, Context::default())).await
        };
        async move { kept.timed(ids::QUERY_STATUS, run).await }
    });
    Ok(())
}
