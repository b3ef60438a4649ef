//! The suite's functions as the local Lambda service runs them: each built
//! from its environment in the template (with the local overrides below),
//! the stream consumers called in process by the pollers, the state
//! machines' tasks served on the local Lambda endpoint.

use std::collections::BTreeMap;
use std::sync::Arc;

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
    CHANGE_FLAG_CHECK_SECONDS, CRAWLER_WAIT_SECONDS, QUERY_WAIT_SECONDS,
};
use telemetry_lake::lake::writer::S3Sink;
use telemetry_lake::repartition::config::{
    CrawlerStatusConfig, StartCrawlerConfig, StartQueriesConfig,
};
use telemetry_lake::scheduler::providers::DynamoProviders;

use super::stack::{ids, Stack};
use crate::lambda_endpoint::LambdaEndpoint;
use crate::moto::sdk_config;

/// Where the local run departs from the template's environment, and why:
/// the reference change must be seen by the next batch, not a minute
/// later; the workflow's waits are seconds, not a minute.
pub const OVERRIDES: &[(&str, &str, &str)] = &[
    (ids::DEVICE_STATUS, CHANGE_FLAG_CHECK_SECONDS, "0"),
    (ids::START_CRAWLER, CRAWLER_WAIT_SECONDS, "1"),
    (ids::START_CRAWLER, QUERY_WAIT_SECONDS, "1"),
];

/// A function's environment: the template's, with [`OVERRIDES`].
pub fn environment(stack: &Stack, function_id: &str) -> BTreeMap<String, String> {
    let overrides: Vec<(&str, &str)> = OVERRIDES
        .iter()
        .filter(|(id, _, _)| *id == function_id)
        .map(|(_, k, v)| (*k, *v))
        .collect();
    stack.environment(function_id, &overrides)
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
    /// Builds the four functions from the template, on moto.
    pub async fn new(stack: &Stack) -> Result<Self> {
        let sdk = sdk_config(&stack.endpoint, &stack.ctx.region).await;
        let kinesis_to_parquet =
            KinesisToParquet::load(&*lookup(environment(stack, ids::KINESIS_TO_PARQUET)), &sdk)
                .await
                .context("kinesis-to-parquet's environment in the template")?;
        let device_status =
            DeviceStatus::load(&*lookup(environment(stack, ids::DEVICE_STATUS)), &sdk)
                .await
                .context("device-status's environment in the template")?;

        let reference_change_flag = ReferenceChangeFlag::load(
            &*lookup(environment(stack, ids::REFERENCE_CHANGE_FLAG)),
            &sdk,
        )
        .context("reference-change-flag's environment in the template")?;
        let scheduler = Scheduler::load(&*lookup(environment(stack, ids::SCHEDULER)), &sdk)
            .context("the scheduler's environment in the template")?;
        Ok(Consumers {
            kinesis_to_parquet,
            device_status,
            reference_change_flag,
            scheduler,
        })
    }
}

/// Serves the repartition workflow's four tasks on `lambda` under the
/// functions' names in the stack. Handlers run on the endpoint's runtime,
/// so each invocation builds its own clients (cheap, and what a cold start
/// does).
pub fn serve_workflow_tasks(lambda: &LambdaEndpoint, stack: &Stack) -> Result<()> {
    let (endpoint, region) = (stack.endpoint.clone(), stack.ctx.region.clone());
    let clients = move || {
        let (endpoint, region) = (endpoint.clone(), region.clone());
        async move { sdk_config(&endpoint, &region).await }
    };

    // Each configuration is read once here, so that a bad one stops the
    // run before any task is invoked.
    let env = lookup(environment(stack, ids::START_CRAWLER));
    StartCrawlerConfig::from_lookup(&*env)
        .context("start-crawler's environment in the template")?;
    let sdk = clients.clone();
    lambda.register(&stack.name(ids::START_CRAWLER), move |input| {
        let (env, sdk) = (env.clone(), sdk.clone());
        async move {
            let f = StartCrawler::load(&*env, &sdk().await).map_err(|e| e.to_string())?;
            let plan = f
                .handle(LambdaEvent::new(input, Context::default()))
                .await?;
            Ok(serde_json::to_value(plan).unwrap_or_default())
        }
    });

    let env = lookup(environment(stack, ids::CRAWLER_STATUS));
    CrawlerStatusConfig::from_lookup(&*env)
        .context("crawler-status's environment in the template")?;
    let sdk = clients.clone();
    lambda.register(&stack.name(ids::CRAWLER_STATUS), move |input| {
        let (env, sdk) = (env.clone(), sdk.clone());
        async move {
            let f = CrawlerStatus::load(&*env, &sdk().await).map_err(|e| e.to_string())?;
            f.handle(LambdaEvent::new(input, Context::default())).await
        }
    });

    let env = lookup(environment(stack, ids::START_QUERIES));
    StartQueriesConfig::from_lookup(&*env)
        .context("start-queries's environment in the template")?;
    let sdk = clients.clone();
    lambda.register(&stack.name(ids::START_QUERIES), move |input| {
        let (env, sdk) = (env.clone(), sdk.clone());
        async move {
            let f = StartQueries::load(&*env, &sdk().await).map_err(|e| e.to_string())?;
            f.handle(LambdaEvent::new(input, Context::default())).await
        }
    });

    let sdk = clients;
    lambda.register(&stack.name(ids::QUERY_STATUS), move |input| {
        let sdk = sdk.clone();
        async move {
            let f = QueryStatus::load(&sdk().await);
            f.handle(LambdaEvent::new(input, Context::default())).await
        }
    });
    Ok(())
}
