//! Every function under injected faults: throttling with
//! each service's own error shape, 500, 503, an answer later than the
//! client's attempt timeout (the request still reaches moto afterwards) and a
//! dropped connection, through the fault proxy between the SDK and moto.
//!
//! For each function and each kind of fault, two phases:
//! * transient (the first attempt of every call fails): the SDK's retries
//!   absorb it and the end state is exactly the fault-free one;
//! * persistent (every call fails): the error surfaces the way Lambda or the
//!   state machine retries it (batchItemFailures, a `Retryable` error type,
//!   a failed tick); after healing, the retry ends in the fault-free state,
//!   with nothing lost and nothing duplicated, even when timed-out requests
//!   were applied by moto after the client gave up.

use std::collections::BTreeMap;

use aws_lambda_events::event::dynamodb::Event as DynamoDbEvent;
use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_sdk_dynamodb::types::{AttributeValue, KeyType, ScalarAttributeType};
use chrono::{TimeZone, Utc};
use crawler_status::CrawlerStatus;
use integration_tests::{
    create_state_machine_from, create_workgroup, failures, lake_i64_column, moto, s3_client,
    sdk_config, sdk_config_with, unique, DeviceStatusRig, FaultKind, FaultProxy, StreamFunction,
    ATTEMPT_TIMEOUT, FAULT_DELAY, REGION,
};
use kinesis_to_parquet::KinesisToParquet;
use lake_tools::kinesis_event::{sequence_number, stream_arn, StreamRecord};
use lambda_runtime::{Context, Diagnostic, LambdaEvent};
use query_status::QueryStatus;
use reference_change_flag::ReferenceChangeFlag;
use serde_json::json;
use start_crawler::StartCrawler;
use start_queries::{StartQueries, Target};
use telemetry_lake::config::vars::{
    ATHENA_WORKGROUP, DAY_CLAIMS_TABLE, GLUE_DATABASE, RAW_CRAWLER_NAME,
    REFERENCE_TABLE as ATHENA_REFERENCE_TABLE, SOURCE_TABLE, TARGET_TABLE,
    TRANSFORMED_CRAWLER_NAME,
};
use telemetry_lake::config::StreamConfig;
use telemetry_lake::device_status::change_flag::{ChangeFlagStore, FlagLocation};
use telemetry_lake::lake::writer::S3Sink;
use telemetry_lake::repartition::config::{
    CrawlerStatusConfig, StartCrawlerConfig, StartQueriesConfig,
};
use telemetry_lake::repartition::task_error::TaskError;

/// SDK attempts per call: the transient phase fails one in two calls, so a
/// call succeeds by its second attempt.
const ATTEMPTS: u32 = 3;

/// Runs `case` for every kind of fault at once: each kind has its own
/// proxy, clients, bucket and tables, so the cases share only moto.
async fn every_kind<F, Fut>(case: F)
where
    F: Fn(FaultKind) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    futures::future::join_all(FaultKind::ALL.map(case)).await;
}

/// Waits until every delayed request has reached moto, so the state read
/// next is final (quiescence, not a timed assertion).
async fn settle() {
    tokio::time::sleep(FAULT_DELAY + std::time::Duration::from_millis(400)).await;
}

/// A ventilator reading on 2026-11-23 as a JSON payload.
fn reading(id: i64, time: &str, o2: i64) -> Vec<u8> {
    integration_tests::reading_on("2026-11-23", id, time, o2)
}

/// A Kinesis event of `payloads` on shard 0 from sequence `first`, the
/// first half arriving at 10:xx and the rest at 11:xx (two runs).
fn kinesis_event(first: u64, payloads: &[Vec<u8>]) -> Vec<u8> {
    let records: Vec<StreamRecord> = payloads
        .iter()
        .enumerate()
        .map(|(i, data)| StreamRecord {
            data: data.clone(),
            partition_key: "pk".into(),
            arrival: Utc
                .with_ymd_and_hms(2026, 11, 23, 10 + u32::from(i >= payloads.len() / 2), 30, 0)
                .unwrap(),
            sequence_number: sequence_number(0, first + i as u64),
        })
        .collect();
    integration_tests::kinesis_event(
        &stream_arn(REGION, "telemetry"),
        "shardId-000000000000",
        &records,
    )
}

// ----------------------------------------------------- kinesis-to-parquet --

#[tokio::test]
async fn kinesis_to_parquet_loses_and_duplicates_nothing_under_every_fault() {
    let direct = &s3_client(&sdk_config(moto(), REGION).await);
    every_kind(|kind| async move {
        let bucket = unique("rel-k2p");
        direct
            .create_bucket()
            .bucket(&bucket)
            .send()
            .await
            .expect("bucket");
        let proxy = FaultProxy::start(moto()).await;
        let sdk = sdk_config_with(&proxy.endpoint, ATTEMPTS, ATTEMPT_TIMEOUT).await;
        let config = StreamConfig {
            // One PUT at a time: which call a fault hits is known.
            write_concurrency: 1,
            ..integration_tests::stream_config(&bucket)
        };
        let f = KinesisToParquet::new(config, S3Sink::new(s3_client(&sdk), &bucket));
        let batch = |first: u64, ids: std::ops::RangeInclusive<i64>| {
            let mut payloads: Vec<Vec<u8>> = ids.map(|id| reading(id, "10:00:00", 95)).collect();
            payloads.insert(1, b"{not json".to_vec());
            kinesis_event(first, &payloads)
        };

        // Transient: the first attempt of every PUT fails; the SDK retries
        // each once.
        proxy.inject(kind.s3("PUT", &bucket).first_attempts());
        let (_, response) = f.invoke(&batch(0, 1..=6)).await.expect("handler");
        assert!(failures(&response).is_empty(), "{kind:?}: {response:?}");
        assert!(proxy.injected() >= 2, "{kind:?}");

        // Persistent: every PUT fails; Lambda is told to retry from the
        // batch's first record.
        proxy.heal();
        proxy.inject(kind.s3("PUT", &bucket));
        let second = batch(7, 7..=12);
        let (_, response) = f.invoke(&second).await.expect("handler");
        assert_eq!(
            failures(&response),
            [sequence_number(0, 7)],
            "{kind:?}: the earliest unwritten run"
        );

        // Healed: Lambda's retry from the checkpoint writes each row once,
        // over whatever the timed-out PUTs left.
        settle().await;
        proxy.heal();
        let (_, response) = f.invoke(&second).await.expect("handler");
        assert!(failures(&response).is_empty(), "{kind:?}");
        settle().await;
        let mut ids = lake_i64_column(direct, &bucket, "raw/v/", 0).await;
        ids.sort_unstable();
        assert_eq!(ids, (1..=12).collect::<Vec<i64>>(), "{kind:?}");
        let letters = lake_tools::lake_reader::list(direct, &bucket, "dead-letters/v/")
            .await
            .expect("list");
        assert_eq!(
            letters.len(),
            2,
            "{kind:?}: one dead-letter object per batch"
        );
    })
    .await;
}

// ----------------------------------------------------------- device-status --

#[tokio::test]
async fn device_status_counts_each_reading_once_under_every_dynamodb_fault() {
    every_kind(|kind| async move {
        let proxy = FaultProxy::start(moto()).await;
        let rig =
            DeviceStatusRig::new(&proxy.endpoint, ATTEMPTS, ATTEMPT_TIMEOUT, (90.0, 100.0)).await;
        let f = &rig.function;
        // Readings of device 1 at 10:01:xx: each in the windows starting
        // 09:55 and 10:00.
        let event = |first: u64, o2: &[i64]| {
            let payloads: Vec<Vec<u8>> = o2
                .iter()
                .enumerate()
                .map(|(i, v)| reading(1, &format!("10:01:{:02}", first as usize + i), *v))
                .collect();
            kinesis_event(first, &payloads)
        };

        // Transient faults on the window reads and writes and the reference
        // scan: absorbed by the SDK.
        for op in ["BatchGetItem", "UpdateItem", "Scan"] {
            proxy.inject(
                kind.json(&format!("DynamoDB_20120810.{op}"))
                    .first_attempts(),
            );
        }
        let response = f
            .invoke(&event(0, &[91, 92, 93]))
            .await
            .expect("transient faults are absorbed");
        assert!(failures(&response.1).is_empty(), "{kind:?}: {response:?}");
        assert!(proxy.injected() >= 2, "{kind:?}");

        // Persistent faults on the window writes: the batch is reported from
        // its first record; timed-out writes may still land afterwards.
        proxy.heal();
        proxy.inject(kind.json("DynamoDB_20120810.UpdateItem"));
        let second = event(3, &[94, 95]);
        let response = f
            .invoke(&second)
            .await
            .expect("batch failures, not an error");
        assert_eq!(failures(&response.1), [sequence_number(0, 3)], "{kind:?}");

        // Healed: the retry counts each reading exactly once.
        settle().await;
        proxy.heal();
        let response = f.invoke(&second).await.expect("retry");
        assert!(failures(&response.1).is_empty(), "{kind:?}");
        let sum = f64::from(91 + 92 + 93 + 94 + 95);
        let want: BTreeMap<(String, String), (u64, f64)> =
            ["2026-11-23T09:55:00Z", "2026-11-23T10:00:00Z"]
                .iter()
                .map(|start| (("1#GREEN".to_string(), start.to_string()), (5, sum)))
                .collect();
        let got = rig.windows().await;
        assert_eq!(got, want, "{kind:?}");
    })
    .await;
}

// --------------------------------------------------- reference-change-flag --

#[tokio::test]
async fn the_change_flag_is_published_under_every_s3_fault() {
    let direct = s3_client(&sdk_config(moto(), REGION).await);
    let change: DynamoDbEvent = serde_json::from_value(json!({"Records": [{
        "eventID": "1", "eventName": "MODIFY", "awsRegion": REGION,
        "dynamodb": {"Keys": {"ventilatorid": {"N": "7"}}, "SizeBytes": 1}
    }]}))
    .expect("stream event");
    let (direct, change) = (&direct, &change);
    every_kind(|kind| async move {
        let bucket = unique("rel-flag");
        direct
            .create_bucket()
            .bucket(&bucket)
            .send()
            .await
            .expect("bucket");
        let location = FlagLocation {
            bucket: bucket.clone(),
            key: "reference/change-flag.json".into(),
        };
        let proxy = FaultProxy::start(moto()).await;
        let faulty = s3_client(&sdk_config_with(&proxy.endpoint, ATTEMPTS, ATTEMPT_TIMEOUT).await);
        let f = ReferenceChangeFlag::new(ChangeFlagStore::new(faulty, location.clone()));
        let read = || async {
            ChangeFlagStore::new(direct.clone(), location.clone())
                .read()
                .await
                .expect("read flag")
                .expect("a flag")
                .1
        };

        proxy.inject(kind.s3("*", "change-flag").first_attempts());
        f.process(change)
            .await
            .expect("transient faults are absorbed");
        settle().await;
        let flag = read().await;
        assert_eq!(
            (flag.version, flag.changed_keys.clone()),
            (1, vec!["7".into()]),
            "{kind:?}"
        );

        // Persistent: the function fails, so the stream retries the record.
        proxy.heal();
        proxy.inject(kind.s3("*", "change-flag"));
        f.process(change)
            .await
            .expect_err("persistent faults surface");
        settle().await;
        proxy.heal();
        f.process(change).await.expect("the retry publishes");
        let flag = read().await;
        // A timed-out conditional PUT that moto applied late is one extra
        // version: consumers reload once more, never miss a change.
        let most = if kind == FaultKind::Timeout { 3 } else { 2 };
        assert!(
            (2..=most).contains(&flag.version),
            "{kind:?}: version {}",
            flag.version
        );
        assert_eq!(flag.changed_keys, vec!["7".to_string()], "{kind:?}");
    })
    .await;
}

// ------------------------------------------------- repartition task functions --

async fn crawler(glue: &aws_sdk_glue::Client) -> String {
    let name = unique("rel-crawler");
    glue.create_crawler()
        .name(&name)
        .role("arn:aws:iam::123456789012:role/crawler")
        .database_name("telemetry")
        .targets(
            aws_sdk_glue::types::CrawlerTargets::builder()
                .s3_targets(
                    aws_sdk_glue::types::S3Target::builder()
                        .path("s3://lake/raw/")
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .expect("create crawler");
    name
}

fn assert_retryable(err: &TaskError, operation: &str, kind: FaultKind) {
    match err {
        TaskError::Retryable { operation: op, .. } => assert_eq!(*op, operation, "{kind:?}"),
        other => panic!("{kind:?}: {operation} gave {other}, not Retryable"),
    }
    assert_eq!(Diagnostic::from(err.clone()).error_type, "Retryable");
}

#[tokio::test]
async fn glue_tasks_retry_and_report_retryable_under_every_fault() {
    let glue = &aws_sdk_glue::Client::new(&sdk_config(moto(), REGION).await);
    every_kind(|kind| async move {
        let (raw, transformed) = (crawler(glue).await, crawler(glue).await);
        let proxy = FaultProxy::start(moto()).await;
        let faulty = aws_sdk_glue::Client::new(
            &sdk_config_with(&proxy.endpoint, ATTEMPTS, ATTEMPT_TIMEOUT).await,
        );
        let lookup = |k: &str| match k {
            RAW_CRAWLER_NAME => Some(raw.clone()),
            TRANSFORMED_CRAWLER_NAME => Some(transformed.clone()),
            _ => None,
        };
        let start = StartCrawler::new(
            StartCrawlerConfig::from_lookup(lookup).expect("config"),
            faulty.clone(),
        );
        let status = CrawlerStatus::new(
            CrawlerStatusConfig::from_lookup(lookup).expect("config"),
            faulty.clone(),
        );
        let state = |name: &str| {
            let glue = glue.clone();
            let name = name.to_string();
            async move {
                glue.get_crawler()
                    .name(name)
                    .send()
                    .await
                    .expect("get crawler")
                    .crawler
                    .and_then(|c| c.state)
                    .map(|s| s.as_str().to_string())
            }
        };

        // start-crawler: transient faults absorbed, the crawler runs once.
        proxy.inject(kind.json("AWSGlue.StartCrawler").first_attempts());
        let plan = start
            .process(json!({"date": "2026-03-01"}))
            .await
            .expect("transient faults are absorbed");
        assert!(
            !plan.already_running || kind == FaultKind::Timeout,
            "{kind:?}"
        );
        settle().await;
        assert_eq!(state(&raw).await.as_deref(), Some("RUNNING"), "{kind:?}");

        // Persistent: Retryable, for the state machine's Retry; after
        // healing the retry starts the transformed crawler.
        proxy.heal();
        proxy.inject(kind.json("AWSGlue.StartCrawler"));
        let input = json!({"request": {"date": "2026-03-01", "crawler": "transformed"}});
        let err = start.process(input.clone()).await.expect_err("persistent");
        assert_retryable(&err, "StartCrawler", kind);
        settle().await;
        proxy.heal();
        start.process(input).await.expect("retry");
        assert_eq!(
            state(&transformed).await.as_deref(),
            Some("RUNNING"),
            "{kind:?}"
        );

        // crawler-status: the same two phases on GetCrawler.
        proxy.inject(kind.json("AWSGlue.GetCrawler").first_attempts());
        let out = status
            .process(json!({"crawler_polls": 1}))
            .await
            .expect("transient faults are absorbed");
        assert_eq!(
            (out["crawler_state"].as_str(), out["crawler_polls"].as_u64()),
            (Some("RUNNING"), Some(2))
        );
        proxy.heal();
        proxy.inject(kind.json("AWSGlue.GetCrawler"));
        let err = status.process(json!({})).await.expect_err("persistent");
        assert_retryable(&err, "GetCrawler", kind);
        proxy.heal();
    })
    .await;
}

#[tokio::test]
async fn athena_tasks_retry_and_report_retryable_under_every_fault() {
    let athena = &aws_sdk_athena::Client::new(&sdk_config(moto(), REGION).await);
    every_kind(|kind| async move {
        let workgroup = create_workgroup(athena, "rel-wg").await;
        let config = StartQueriesConfig::from_lookup(|k| match k {
            ATHENA_WORKGROUP => Some(workgroup.clone()),
            GLUE_DATABASE => Some("telemetry".into()),
            SOURCE_TABLE => Some("raw".into()),
            TARGET_TABLE => Some("hourly".into()),
            ATHENA_REFERENCE_TABLE => Some("devices".into()),
            DAY_CLAIMS_TABLE => Some("claims".into()),
            _ => None,
        })
        .expect("config");
        let proxy = FaultProxy::start(moto()).await;
        let faulty = aws_sdk_athena::Client::new(
            &sdk_config_with(&proxy.endpoint, ATTEMPTS, ATTEMPT_TIMEOUT).await,
        );
        let start = StartQueries::new(config, faulty.clone());
        let status = QueryStatus::new(faulty);
        let input = json!({"from": "2026-03-01", "to": "2026-03-08", "run_id": "run-1"});

        // start-queries: transient faults absorbed; the tokens are the same
        // on every attempt (what makes a retried start idempotent in AWS).
        proxy.inject(
            kind.json("AmazonAthena.StartQueryExecution")
                .first_attempts(),
        );
        let out = start.process(input.clone()).await.unwrap_or_else(|e| {
            panic!("{kind:?} transient, after {} faults: {e}", proxy.injected())
        });
        let ids = out["query_execution_ids"].as_array().map_or(0, Vec::len);
        assert_eq!(ids, 2, "{kind:?}: {out}");

        // Persistent: Retryable; healed, the retry starts the same queries
        // with the same tokens.
        proxy.heal();
        proxy.inject(kind.json("AmazonAthena.StartQueryExecution"));
        let err = start.process(input.clone()).await.expect_err("persistent");
        assert_retryable(&err, "StartQueryExecution", kind);
        proxy.heal();
        let again = start.process(input).await.expect("retry");
        // Moto ignores the token (new ids); AWS would return the same queries.
        let tokens = |v: &serde_json::Value| -> Vec<String> {
            v["queries"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|q| q["client_request_token"].to_string())
                .collect()
        };
        assert_eq!(tokens(&again), tokens(&out), "{kind:?}: same tokens");
        assert_eq!(tokens(&out).len(), 2, "{kind:?}");

        // query-status: the same two phases on GetQueryExecution.
        proxy.inject(kind.json("AmazonAthena.GetQueryExecution").first_attempts());
        let done = status.process(out.clone()).await.expect("transient");
        assert_eq!(done["query_state"], "SUCCEEDED", "{kind:?}: {done}");
        proxy.heal();
        proxy.inject(kind.json("AmazonAthena.GetQueryExecution"));
        let err = status.process(out).await.expect_err("persistent");
        assert_retryable(&err, "GetQueryExecution", kind);
        settle().await;
    })
    .await;
}

#[tokio::test]
async fn claiming_and_emptying_days_retries_and_reports_retryable_under_every_fault() {
    let sdk = sdk_config(moto(), REGION).await;
    let (glue, s3, ddb, athena) = (
        aws_sdk_glue::Client::new(&sdk),
        s3_client(&sdk),
        aws_sdk_dynamodb::Client::new(&sdk),
        aws_sdk_athena::Client::new(&sdk),
    );
    let (glue, s3, ddb, athena) = (&glue, &s3, &ddb, &athena);
    every_kind(|kind| async move {
        let (table, claims, bucket) = (
            unique("rel_hourly").replace('-', "_"),
            unique("rel-claims"),
            unique("rel-target"),
        );
        s3.create_bucket()
            .bucket(&bucket)
            .send()
            .await
            .expect("bucket");
        integration_tests::create_event_time_table(
            glue,
            "telemetry",
            &table,
            &format!("s3://{bucket}/by_event_time/"),
        )
        .await;
        integration_tests::create_table(
            ddb,
            &claims,
            &[("day", ScalarAttributeType::S, KeyType::Hash)],
        )
        .await;
        let write_day = || async {
            for hour in [0, 12] {
                s3.put_object()
                    .bucket(&bucket)
                    .key(format!(
                        "by_event_time/year=2026/month=3/day=1/hour={hour}/f.parquet"
                    ))
                    .body(b"PAR1".to_vec().into())
                    .send()
                    .await
                    .expect("put");
            }
        };
        let objects = || async {
            s3.list_objects_v2()
                .bucket(&bucket)
                .send()
                .await
                .expect("list")
                .key_count()
                .unwrap_or_default()
        };
        let config = StartQueriesConfig::from_lookup(|k| match k {
            ATHENA_WORKGROUP => Some("unused".into()),
            GLUE_DATABASE => Some("telemetry".into()),
            SOURCE_TABLE => Some("raw".into()),
            TARGET_TABLE => Some(table.clone()),
            ATHENA_REFERENCE_TABLE => Some("devices".into()),
            DAY_CLAIMS_TABLE => Some(claims.clone()),
            _ => None,
        })
        .expect("config");
        let proxy = FaultProxy::start(moto()).await;
        let faulty = sdk_config_with(&proxy.endpoint, ATTEMPTS, ATTEMPT_TIMEOUT).await;
        let start = StartQueries::new(config.clone(), athena.clone())
            .with_target(Target::new(&faulty, &config.claims_table));
        let input = json!({"phase": "prepare", "from": "2026-03-01", "to": "2026-03-01",
                           "run_id": "arn:aws:states:us-east-1:123456789012:execution:r:1"});

        // Transient faults on the claim, the listing, the deletes and the
        // partitions: absorbed; the day is claimed and emptied.
        write_day().await;
        for rule in [
            kind.json("DynamoDB_20120810.PutItem"),
            kind.s3("GET", "list-type=2"),
            kind.s3("POST", "delete"),
            kind.json("AWSGlue.BatchDeletePartition"),
        ] {
            proxy.inject(rule.first_attempts());
        }
        let out = start.process(input.clone()).await.unwrap_or_else(|e| {
            panic!("{kind:?} transient, after {} faults: {e}", proxy.injected())
        });
        assert_eq!(out["cleared_objects"], 2, "{kind:?}: {out}");
        assert_eq!(objects().await, 0, "{kind:?}");

        // Persistent: Retryable, nothing lost; healed, the retry (the same
        // execution's claim) empties what is there.
        proxy.heal();
        write_day().await;
        proxy.inject(kind.s3("POST", "delete"));
        let err = start.process(input.clone()).await.expect_err("persistent");
        assert_retryable(&err, "DeleteObjects", kind);
        proxy.heal();
        let again = start.process(input).await.expect("retry");
        assert_eq!(again["cleared_objects"], 2, "{kind:?}: {again}");
        assert_eq!(objects().await, 0, "{kind:?}");
        settle().await;
    })
    .await;
}

// ---------------------------------------------------------------- scheduler --

#[tokio::test]
async fn the_scheduler_starts_each_due_provider_once_under_every_fault() {
    let sdk = sdk_config(moto(), REGION).await;
    let (ddb, sfn) = (
        aws_sdk_dynamodb::Client::new(&sdk),
        aws_sdk_sfn::Client::new(&sdk),
    );
    let event: EventBridgeEvent =
        serde_json::from_str(include_str!("fixtures/scheduled_event.json")).expect("fixture");
    let (ddb, sfn, event) = (&ddb, &sfn, &event);
    every_kind(|kind| async move {
        let table = unique("rel-providers");
        integration_tests::create_table(
            ddb,
            &table,
            &[("provider", ScalarAttributeType::S, KeyType::Hash)],
        )
        .await;
        for name in ["alpha", "beta"] {
            ddb.put_item()
                .table_name(&table)
                .item("provider", AttributeValue::S(name.into()))
                .item("enabled", AttributeValue::Bool(true))
                .item("frequency_minutes", AttributeValue::N("60".into()))
                .item("job_name", AttributeValue::S(format!("{name}-job")))
                .send()
                .await
                .expect("provider");
        }
        // moto here does not run executions: a started one stays RUNNING.
        let machine = create_state_machine_from(
            sfn,
            &unique("rel-etl"),
            r#"{"StartAt":"Done","States":{"Done":{"Type":"Succeed"}}}"#,
        )
        .await;
        let proxy = FaultProxy::start(moto()).await;
        let faulty = sdk_config_with(&proxy.endpoint, ATTEMPTS, ATTEMPT_TIMEOUT).await;
        let config = telemetry_lake::scheduler::config::SchedulerConfig {
            providers_table: table.clone(),
            state_machine_arn: machine.clone(),
            schedule_period: chrono::Duration::minutes(15),
            stale_running_after: chrono::Duration::minutes(120),
            start_concurrency: 1,
            aws_max_attempts: ATTEMPTS,
            provider_job_arguments: Default::default(),
        };
        let backoff = std::time::Duration::from_millis(10);
        let s = scheduler::Scheduler::new(
            config.clone(),
            telemetry_lake::scheduler::providers::DynamoProviders::new(
                scheduler::dynamodb_client(&faulty, ATTEMPTS, backoff),
                &table,
            ),
            scheduler::sfn_client(&faulty, ATTEMPTS, backoff),
        );
        let executions = || async {
            let mut names: Vec<String> = sfn
                .list_executions()
                .state_machine_arn(&machine)
                .send()
                .await
                .expect("list executions")
                .executions
                .into_iter()
                .map(|e| e.name)
                .collect();
            names.sort();
            names
        };

        // Persistent faults on StartExecution: the tick fails (Lambda's
        // async retry or the next tick picks it up), nothing runs.
        proxy.inject(kind.json("AWSStepFunctions.StartExecution"));
        let err = s
            .handle(LambdaEvent::new(event.clone(), Context::default()))
            .await
            .expect_err("a tick whose starts fail is an error");
        assert_eq!(Diagnostic::from(err).error_type, "Retryable", "{kind:?}");
        settle().await;

        // Transient faults on every DynamoDB and Step Functions call: the
        // retried tick starts each provider exactly once.
        proxy.heal();
        for target in ["DynamoDB_20120810.", "AWSStepFunctions.StartExecution"] {
            proxy.inject(kind.json(target).first_attempts());
        }
        s.handle(LambdaEvent::new(event.clone(), Context::default()))
            .await
            .expect("transient faults are absorbed");
        settle().await;
        // A second tick in the same slot starts nothing new.
        proxy.heal();
        s.handle(LambdaEvent::new(event.clone(), Context::default()))
            .await
            .expect("second tick");
        let names = executions().await;
        assert_eq!(names.len(), 2, "{kind:?}: {names:?}");
        for (name, provider) in names.iter().zip(["alpha", "beta"]) {
            assert!(
                name.starts_with(&format!("{provider}-")),
                "{kind:?}: {name}"
            );
        }
        for provider in ["alpha", "beta"] {
            let item = ddb
                .get_item()
                .table_name(&table)
                .key("provider", AttributeValue::S(provider.into()))
                .consistent_read(true)
                .send()
                .await
                .expect("item")
                .item
                .expect("provider item");
            assert_eq!(
                item["status"].as_s().ok().map(String::as_str),
                Some("RUNNING"),
                "{kind:?}"
            );
            let arn = item["execution_arn"].as_s().expect("execution arn");
            assert!(
                names.iter().any(|n| arn.ends_with(&format!(":{n}"))),
                "{kind:?}: {arn}"
            );
        }
    })
    .await;
}
