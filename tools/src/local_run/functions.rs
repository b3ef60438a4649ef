//! The suite's functions as the local Lambda service runs them: each built
//! from its environment in the template (with the local overrides below),
//! the stream consumers called in process by the pollers, the state
//! machines' tasks served on the local Lambda endpoint.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context as _, Result};
use crawler_status::CrawlerStatus;
use device_status::config::DeviceStatusConfig;
use device_status::DeviceStatus;
use kinesis_to_parquet::KinesisToParquet;
use query_status::QueryStatus;
use reference_change_flag::ReferenceChangeFlag;
use scheduler::config::SchedulerConfig;
use scheduler::Scheduler;
use start_crawler::StartCrawler;
use start_queries::StartQueries;
use telemetry_lake::change_flag::ChangeFlagStore;
use telemetry_lake::config::StreamConfig;
use telemetry_lake::lake_writer::S3Sink;
use telemetry_lake::providers::DynamoProviders;
use telemetry_lake::reference::{ReferenceCache, ReferenceTable};
use telemetry_lake::repartition_config::{
    CrawlerStatusConfig, StartCrawlerConfig, StartQueriesConfig, CRAWLER_WAIT_SECONDS,
    QUERY_WAIT_SECONDS,
};

use super::stack::{ids, Stack};
use crate::lambda_endpoint::LambdaEndpoint;
use crate::moto::{s3_client, sdk_config};

/// Where the local run departs from the template's environment, and why:
/// the reference change must be seen by the next batch, not a minute
/// later; the workflow's waits are seconds, not a minute.
pub const OVERRIDES: &[(&str, &str, &str)] = &[
    (ids::DEVICE_STATUS, "CHANGE_FLAG_CHECK_SECONDS", "0"),
    (ids::START_CRAWLER, CRAWLER_WAIT_SECONDS, "1"),
    (ids::START_CRAWLER, QUERY_WAIT_SECONDS, "1"),
];

/// The SDK's first retry backoff in the scheduler (as in its `main`).
const SCHEDULER_BACKOFF: Duration = Duration::from_millis(200);

/// A function's environment: the template's, with [`OVERRIDES`].
pub fn environment(stack: &Stack, function_id: &str) -> BTreeMap<String, String> {
    let overrides: Vec<(&str, &str)> = OVERRIDES
        .iter()
        .filter(|(id, _, _)| *id == function_id)
        .map(|(_, k, v)| (*k, *v))
        .collect();
    stack.environment(function_id, &overrides)
}

fn lookup(env: BTreeMap<String, String>) -> impl Fn(&str) -> Option<String> {
    move |k| env.get(k).cloned()
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
        let s3 = s3_client(&sdk);
        let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);

        let config = StreamConfig::from_lookup(lookup(environment(stack, ids::KINESIS_TO_PARQUET)))
            .context("kinesis-to-parquet's environment in the template")?;
        let sink = S3Sink::new(s3.clone(), &config.lake_bucket);
        let kinesis_to_parquet = KinesisToParquet::new(config, sink);

        let config =
            DeviceStatusConfig::from_lookup(lookup(environment(stack, ids::DEVICE_STATUS)))
                .context("device-status's environment in the template")?;
        let table = ReferenceTable {
            client: dynamodb.clone(),
            table: config.reference_table.clone(),
            key_attribute: config.reference_key_attribute.clone(),
            metrics: config.metrics.clone(),
        };
        let flag = ChangeFlagStore::new(s3.clone(), config.change_flag.clone());
        let cache = ReferenceCache::new(table, flag, config.change_flag_check);
        let sink = S3Sink::new(s3.clone(), &config.dead_letter_bucket);
        let device_status = DeviceStatus::new(&config, cache, dynamodb, sink)
            .context("device-status's configuration")?;

        let location = reference_change_flag::location_from_lookup(lookup(environment(
            stack,
            ids::REFERENCE_CHANGE_FLAG,
        )))
        .context("reference-change-flag's environment in the template")?;
        let reference_change_flag = ReferenceChangeFlag::new(ChangeFlagStore::new(s3, location));

        let config = SchedulerConfig::from_lookup(lookup(environment(stack, ids::SCHEDULER)))
            .context("the scheduler's environment in the template")?;
        let attempts = config.aws_max_attempts;
        let source = DynamoProviders::new(
            scheduler::dynamodb_client(&sdk, attempts, SCHEDULER_BACKOFF),
            &config.providers_table,
        );
        let sfn = scheduler::sfn_client(&sdk, attempts, SCHEDULER_BACKOFF);
        let scheduler = Scheduler::new(config, source, sfn);
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

    let config = StartCrawlerConfig::from_lookup(lookup(environment(stack, ids::START_CRAWLER)))
        .context("start-crawler's environment in the template")?;
    let sdk = clients.clone();
    lambda.register(&stack.name(ids::START_CRAWLER), move |input| {
        let (config, sdk) = (config.clone(), sdk.clone());
        async move {
            let glue = aws_sdk_glue::Client::new(&sdk().await);
            let plan = StartCrawler::new(config, glue).process(input).await?;
            Ok(serde_json::to_value(plan).unwrap_or_default())
        }
    });

    let config = CrawlerStatusConfig::from_lookup(lookup(environment(stack, ids::CRAWLER_STATUS)))
        .context("crawler-status's environment in the template")?;
    let sdk = clients.clone();
    lambda.register(&stack.name(ids::CRAWLER_STATUS), move |input| {
        let (config, sdk) = (config.clone(), sdk.clone());
        async move {
            let glue = aws_sdk_glue::Client::new(&sdk().await);
            Ok(CrawlerStatus::new(config, glue).process(input).await?)
        }
    });

    let config = StartQueriesConfig::from_lookup(lookup(environment(stack, ids::START_QUERIES)))
        .context("start-queries's environment in the template")?;
    let sdk = clients.clone();
    lambda.register(&stack.name(ids::START_QUERIES), move |input| {
        let (config, sdk) = (config.clone(), sdk.clone());
        async move {
            let athena = aws_sdk_athena::Client::new(&sdk().await);
            Ok(StartQueries::new(config, athena).process(input).await?)
        }
    });

    let sdk = clients;
    lambda.register(&stack.name(ids::QUERY_STATUS), move |input| {
        let sdk = sdk.clone();
        async move {
            let athena = aws_sdk_athena::Client::new(&sdk().await);
            Ok(QueryStatus::new(athena).process(input).await?)
        }
    });
    Ok(())
}
