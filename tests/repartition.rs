//! The repartition workflow against moto: each task function on Glue and
//! Athena, the rendered SQL run in DuckDB over Parquet written by
//! `kinesis-to-parquet`, and the state machine executed by moto's Step
//! Functions interpreter with the real handlers behind its Lambda tasks.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, TimeZone, Utc};
use crawler_status::CrawlerStatus;
use http_body_util::Full;
use integration_tests::{
    athena_query_answer, create_event_time_table, create_state_machine, create_state_machine_from,
    create_table, create_workgroup, function_arn, moto, s3_client, sdk_config, sfn_harness,
    states_entered, test_metrics, unique, wait_for_execution, Fault, FaultProxy, StreamFunction,
    ICEBERG_REPARTITION_PATH, REGION, REPARTITION_PATH,
};
use kinesis_to_parquet::KinesisToParquet;
use lake_tools::kinesis_event::{sequence_number, stream_arn, StreamRecord};
use lake_tools::lake_reader;
use lambda_runtime::Diagnostic;
use lambda_runtime::LambdaEvent;
use query_status::QueryStatus;
use serde_json::{json, Value};
use start_crawler::StartCrawler;
use start_queries::{StartQueries, Target};
use telemetry_lake::config::vars::{
    ATHENA_WORKGROUP, CRAWLER_WAIT_SECONDS, DAY_CLAIMS_TABLE, GLUE_DATABASE, LAKE_FORMAT,
    LATE_ARRIVAL_DAYS, MAX_CRAWLER_POLLS, MAX_QUERY_POLLS, QUERY_WAIT_SECONDS, RAW_CRAWLER_NAME,
    REFERENCE_TABLE, SOURCE_TABLE, TARGET_TABLE, TRANSFORMED_CRAWLER_NAME,
};
use telemetry_lake::config::StreamConfig;
use telemetry_lake::lake::writer::S3Sink;
use telemetry_lake::repartition::config::{
    CrawlerStatusConfig, StartCrawlerConfig, StartQueriesConfig,
};
use telemetry_lake::repartition::dates::DateRange;
use telemetry_lake::repartition::queries::client_request_token;
use telemetry_lake::repartition::task_error::TaskError;

const DATABASE: &str = "telemetry";
const SOURCE: &str = "ventilator_metrics";
const TARGET: &str = "ventilator_metrics_by_event_time";
const REFERENCE: &str = "ventilator_reference";
const LAKE_PREFIX: &str = "raw/ventilator_metrics";

// ---------------------------------------------------------------- helpers --

async fn glue_client(endpoint: &str) -> aws_sdk_glue::Client {
    aws_sdk_glue::Client::new(&sdk_config(endpoint, REGION).await)
}

async fn athena_client(endpoint: &str) -> aws_sdk_athena::Client {
    aws_sdk_athena::Client::new(&sdk_config(endpoint, REGION).await)
}

/// Creates a crawler over the lake and returns its name.
async fn create_crawler(glue: &aws_sdk_glue::Client, prefix: &str) -> String {
    let name = unique(prefix);
    glue.create_crawler()
        .name(&name)
        .role("arn:aws:iam::123456789012:role/telemetry-lake-crawler")
        .database_name(DATABASE)
        .targets(
            aws_sdk_glue::types::CrawlerTargets::builder()
                .s3_targets(
                    aws_sdk_glue::types::S3Target::builder()
                        .path(format!("s3://lake/{LAKE_PREFIX}/"))
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .expect("create crawler");
    name
}

fn start_crawler_config(raw: &str, transformed: &str) -> StartCrawlerConfig {
    start_crawler_config_for(raw, transformed, "hive")
}

/// start-crawler with `LAKE_FORMAT` `layout`.
fn start_crawler_config_for(raw: &str, transformed: &str, layout: &str) -> StartCrawlerConfig {
    StartCrawlerConfig::from_lookup(|k| match k {
        LAKE_FORMAT => Some(layout.to_string()),
        RAW_CRAWLER_NAME => Some(raw.to_string()),
        TRANSFORMED_CRAWLER_NAME => Some(transformed.to_string()),
        CRAWLER_WAIT_SECONDS | QUERY_WAIT_SECONDS => Some("1".to_string()),
        MAX_CRAWLER_POLLS | MAX_QUERY_POLLS => Some("5".to_string()),
        _ => None,
    })
    .expect("start-crawler config")
}

fn crawler_status_config(raw: &str, transformed: &str) -> CrawlerStatusConfig {
    CrawlerStatusConfig::from_lookup(|k| match k {
        RAW_CRAWLER_NAME => Some(raw.to_string()),
        TRANSFORMED_CRAWLER_NAME => Some(transformed.to_string()),
        _ => None,
    })
    .expect("crawler-status config")
}

fn start_queries_config(workgroup: &str) -> StartQueriesConfig {
    start_queries_config_for(workgroup, TARGET, "day-claims")
}

/// start-queries writing `target`, claiming its days in `claims`.
fn start_queries_config_for(workgroup: &str, target: &str, claims: &str) -> StartQueriesConfig {
    start_queries_config_with(workgroup, target, claims, "hive")
}

/// [`start_queries_config_for`] with `LAKE_FORMAT` `layout`.
fn start_queries_config_with(
    workgroup: &str,
    target: &str,
    claims: &str,
    layout: &str,
) -> StartQueriesConfig {
    StartQueriesConfig::from_lookup(|k| match k {
        LAKE_FORMAT => Some(layout.to_string()),
        ATHENA_WORKGROUP => Some(workgroup.to_string()),
        GLUE_DATABASE => Some(DATABASE.to_string()),
        SOURCE_TABLE => Some(SOURCE.to_string()),
        TARGET_TABLE => Some(target.to_string()),
        REFERENCE_TABLE => Some(REFERENCE.to_string()),
        DAY_CLAIMS_TABLE => Some(claims.to_string()),
        _ => None,
    })
    .expect("start-queries config")
}

/// POSTs to moto's own API (`/moto-api/...`).
async fn moto_api(endpoint: &str, path: &str, body: Value) {
    let client: hyper_util::client::legacy::Client<_, Full<Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    let request = hyper::Request::post(format!("{endpoint}{path}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("moto api request");
    let response = client.request(request).await.expect("moto api");
    assert!(
        response.status().is_success(),
        "{path}: {}",
        response.status()
    );
}

/// Sets how moto advances Glue crawls and Athena queries (global to the
/// server): the query transition is reset to moto's default, immediate.
async fn set_crawl_transition(endpoint: &str, transition: Value) {
    set_transitions(endpoint, transition, json!({"progression": "immediate"})).await;
}

async fn set_transitions(endpoint: &str, crawl: Value, query: Value) {
    for (model, transition) in [("glue::crawl", crawl), ("athena::execution", query)] {
        moto_api(
            endpoint,
            "/moto-api/state-manager/set-transition",
            json!({"model_name": model, "transition": transition}),
        )
        .await;
    }
}

async fn crawler_state(glue: &aws_sdk_glue::Client, name: &str) -> (String, Option<String>) {
    let out = glue
        .get_crawler()
        .name(name)
        .send()
        .await
        .expect("get crawler");
    let c = out.crawler().expect("crawler");
    (
        c.state()
            .map(|s| s.as_str().to_string())
            .unwrap_or_default(),
        c.last_crawl()
            .and_then(|l| l.status())
            .map(|s| s.as_str().to_string()),
    )
}

fn d(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("test date")
}

// ------------------------------------------------------- handler tests --

#[tokio::test]
async fn yesterday_is_crawled_and_an_already_running_crawler_is_not_an_error() {
    let glue = glue_client(moto()).await;
    let raw = create_crawler(&glue, "raw").await;
    let f = StartCrawler::new(start_crawler_config(&raw, "unused"), glue.clone());

    // Started on 1 January at 06:00 UTC (07:00 in Brussels): yesterday is
    // the last day of the previous year.
    let plan = f
        .process(json!({"request": {}, "started_at": "2027-01-01T06:00:00Z"}))
        .await
        .expect("start crawler");
    // With the default LATE_ARRIVAL_DAYS (1), the day before it too.
    assert_eq!((plan.from, plan.to), (d("2026-12-30"), d("2026-12-31")));
    assert_eq!(plan.dates, [d("2026-12-30"), d("2026-12-31")]);
    assert!(!plan.already_running);
    assert_eq!(plan.crawler_name, raw);
    assert_eq!(plan.polling.crawler_wait_seconds, 1);
    assert_eq!(crawler_state(&glue, &raw).await.0, "RUNNING");

    // 1 March: yesterday is 28 February. The crawler is still running (moto
    // advances a crawl only when ListCrawls describes it): not an error.
    let plan = f
        .process(json!({"started_at": "2026-03-01T00:30:00+01:00"}))
        .await
        .expect("start a running crawler");
    assert_eq!(plan.dates, [d("2026-02-27"), d("2026-02-28")]);
    assert!(plan.already_running);
    assert_eq!(crawler_state(&glue, &raw).await.0, "RUNNING");

    // 23:30 UTC on 31 December is 1 January in Brussels.
    let plan = f
        .process(json!({"started_at": "2026-12-31T23:30:00Z"}))
        .await
        .expect("start crawler");
    assert_eq!(plan.dates, [d("2026-12-30"), d("2026-12-31")]);

    // Without late-arrival days, yesterday alone.
    let config = StartCrawlerConfig::from_lookup(|k| match k {
        RAW_CRAWLER_NAME => Some(raw.clone()),
        TRANSFORMED_CRAWLER_NAME => Some("unused".to_string()),
        LATE_ARRIVAL_DAYS => Some("0".to_string()),
        _ => None,
    })
    .expect("config");
    let plan = StartCrawler::new(config, glue.clone())
        .process(json!({"started_at": "2026-12-31T23:30:00Z"}))
        .await
        .expect("start crawler");
    assert_eq!(plan.dates, [d("2026-12-31")]);

    // An explicit range, the transformed crawler.
    let transformed = create_crawler(&glue, "transformed").await;
    let f = StartCrawler::new(start_crawler_config(&raw, &transformed), glue.clone());
    let plan = f
        .process(json!({"request": {"from": "2026-02-27", "to": "2026-03-02", "crawler": "transformed"}}))
        .await
        .expect("start transformed crawler");
    assert_eq!(plan.dates.len(), 4);
    assert_eq!(plan.crawler_name, transformed);
    assert!(!plan.already_running);
    assert_eq!(crawler_state(&glue, &transformed).await.0, "RUNNING");
}

#[tokio::test]
async fn invalid_dates_are_rejected_naming_the_input_and_nothing_is_started() {
    let glue = glue_client(moto()).await;
    let raw = create_crawler(&glue, "raw").await;
    let f = StartCrawler::new(start_crawler_config(&raw, "unused"), glue.clone());
    let cases = [
        (
            json!({"request": {"date": "2026-02-30"}}),
            "`date` is \"2026-02-30\": no such day",
        ),
        (
            json!({"date": "01/03/2026"}),
            "`date` is \"01/03/2026\": not of the form YYYY-MM-DD",
        ),
        (
            json!({"from": "2026-03-05", "to": "2026-03-01"}),
            "`from` (2026-03-05) is after `to` (2026-03-01)",
        ),
        (json!({"from": "2026-03-05"}), "`to` is missing"),
        (
            json!({"from": "2026-01-01", "to": "2026-03-01"}),
            "holds 60 days, more than the 31 allowed",
        ),
        (
            json!({"date": "2026-03-01", "form": "x"}),
            "unknown field `form`",
        ),
    ];
    for (input, message) in cases {
        let err = f.process(input.clone()).await.unwrap_err();
        assert_eq!(err.error_type(), "InvalidInput", "{input}");
        assert!(err.to_string().contains(message), "{input}: {err}");
        let diagnostic = Diagnostic::from(err);
        assert_eq!(diagnostic.error_type, "InvalidInput");
    }
    assert_eq!(
        crawler_state(&glue, &raw).await,
        ("READY".to_string(), None)
    );
}

#[tokio::test]
async fn a_missing_crawler_is_a_non_retryable_error() {
    let glue = glue_client(moto()).await;
    let f = StartCrawler::new(start_crawler_config("no-such-crawler", "x"), glue.clone());
    let err = f.process(json!({"date": "2026-03-01"})).await.unwrap_err();
    assert_eq!(err.error_type(), "NonRetryable", "{err}");
    assert!(err.to_string().contains("EntityNotFoundException"), "{err}");
    let status = CrawlerStatus::new(crawler_status_config("no-such-crawler", "x"), glue);
    let err = status.process(json!({})).await.unwrap_err();
    assert_eq!(err.error_type(), "NonRetryable", "{err}");
}

#[tokio::test]
async fn crawler_status_reports_never_ran_running_succeeded_and_cancelled() {
    let glue = glue_client(moto()).await;
    let raw = create_crawler(&glue, "raw").await;
    let transformed = create_crawler(&glue, "transformed").await;
    let f = CrawlerStatus::new(crawler_status_config(&raw, &transformed), glue.clone());
    let state = json!({"from": "2026-03-01", "to": "2026-03-01", "dates": ["2026-03-01"]});

    let out = f.process(state.clone()).await.expect("never ran");
    assert_eq!(out["crawler_state"], "READY");
    assert_eq!(out["last_crawl_status"], Value::Null);
    assert_eq!(out["crawler_polls"], 1);
    assert_eq!(
        out["dates"],
        json!(["2026-03-01"]),
        "the dates pass through"
    );

    glue.start_crawler().name(&raw).send().await.expect("start");
    let out = f.process(out).await.expect("running");
    assert_eq!(out["crawler_state"], "RUNNING");
    assert_eq!(out["crawler_polls"], 2);

    // One tick of moto's crawl (ListCrawls describes it): the crawl completes.
    glue.list_crawls()
        .crawler_name(&raw)
        .send()
        .await
        .expect("list crawls");
    let out = f.process(out).await.expect("done");
    assert_eq!(out["crawler_state"], "READY");
    assert_eq!(out["last_crawl_status"], "SUCCEEDED");
    assert_eq!(out["crawler_polls"], 3);
    assert_eq!(out["from"], "2026-03-01");

    // The transformed crawler, stopped by an operator: CANCELLED.
    glue.start_crawler()
        .name(&transformed)
        .send()
        .await
        .expect("start");
    glue.stop_crawler()
        .name(&transformed)
        .send()
        .await
        .expect("stop");
    glue.list_crawls()
        .crawler_name(&transformed)
        .send()
        .await
        .expect("list crawls");
    let out = f
        .process(json!({"crawler": "transformed"}))
        .await
        .expect("cancelled");
    assert_eq!(out["crawler_state"], "READY");
    assert_eq!(out["last_crawl_status"], "CANCELLED");

    let err = f.process(json!({"crawler": "lake"})).await.unwrap_err();
    assert_eq!(err.error_type(), "InvalidInput");
}

#[tokio::test]
async fn ten_days_start_three_queries_with_deterministic_tokens() {
    let athena = athena_client(moto()).await;
    let workgroup = create_workgroup(&athena, "repartition").await;
    let f = StartQueries::new(start_queries_config(&workgroup), athena.clone());
    let state =
        json!({"from": "2026-02-25", "to": "2026-03-06", "crawler_polls": 2, "run_id": "run-1"});

    let out = f.process(state.clone()).await.expect("start queries");
    assert_eq!(out["crawler_polls"], 2, "the state passes through");
    assert_eq!(out["query_polls"], 0);
    let queries = out["queries"].as_array().expect("queries").clone();
    let days: Vec<(&str, &str)> = queries
        .iter()
        .map(|q| (q["from"].as_str().unwrap(), q["to"].as_str().unwrap()))
        .collect();
    assert_eq!(
        days,
        [
            ("2026-02-25", "2026-02-28"),
            ("2026-03-01", "2026-03-04"),
            ("2026-03-05", "2026-03-06")
        ]
    );
    let repartition = &start_queries_config(&workgroup).repartition;
    for q in &queries {
        let id = q["id"].as_str().unwrap();
        let got = athena
            .get_query_execution()
            .query_execution_id(id)
            .send()
            .await
            .expect("get query execution");
        let exec = got.query_execution().expect("execution");
        let sql = exec.query().expect("query text");
        let range = DateRange {
            from: d(q["from"].as_str().unwrap()),
            to: d(q["to"].as_str().unwrap()),
        };
        assert_eq!(sql, repartition.render(range).unwrap());
        assert_eq!(exec.work_group(), Some(workgroup.as_str()));
        assert_eq!(
            exec.query_execution_context().and_then(|c| c.database()),
            Some(DATABASE)
        );
        // The token is the SHA-256 of the workgroup, the run and the SQL Athena got.
        assert_eq!(
            q["client_request_token"],
            client_request_token(&workgroup, "run-1", sql)
        );
        // At most 100 partitions: 24 per day.
        assert!(range.len_days() * 24 <= 100);
    }
    assert_eq!(out["query_execution_ids"].as_array().unwrap().len(), 3);

    // A retried start sends the same tokens. (Moto ignores the token and
    // creates new executions; Athena returns the existing ones.)
    let again = f.process(state.clone()).await.expect("start again");
    let tokens = |v: &Value| -> Vec<Value> {
        v["queries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|q| q["client_request_token"].clone())
            .collect()
    };
    assert_eq!(tokens(&again), tokens(&out));
    // Another run of the same days gets other tokens: it is a new query.
    let mut rerun = state;
    rerun["run_id"] = json!("run-2");
    let rerun = f.process(rerun).await.expect("rerun");
    assert!(tokens(&rerun)
        .iter()
        .zip(tokens(&out))
        .all(|(a, b)| *a != b));

    for bad in [
        json!({"from": "2026-02-30", "to": "2026-03-01"}),
        json!({"to": "2026-03-01"}),
    ] {
        let err = f.process(bad.clone()).await.unwrap_err();
        assert_eq!(err.error_type(), "InvalidInput", "{bad}");
    }
}

#[tokio::test]
async fn query_status_reports_succeeded_cancelled_and_failed_with_the_reason() {
    let athena = athena_client(moto()).await;
    let workgroup = create_workgroup(&athena, "repartition").await;
    let start = StartQueries::new(start_queries_config(&workgroup), athena.clone());
    let status = QueryStatus::new(athena.clone());

    // Moto runs no SQL; its queries succeed on the first GetQueryExecution.
    let state = start
        .process(json!({"from": "2026-03-01", "to": "2026-03-08"}))
        .await
        .expect("start");
    let out = status.process(state.clone()).await.expect("status");
    assert_eq!(out["query_state"], "SUCCEEDED");
    assert_eq!(out["queries_succeeded"], 2);
    assert_eq!(out["cause"], Value::Null);
    assert_eq!(out["stopped_queries"], json!([]));
    assert_eq!(out["query_polls"], 1);
    assert_eq!(out["from"], "2026-03-01");

    // A cancelled query (StopQueryExecution, which moto implements) fails the run.
    let state = start
        .process(json!({"from": "2026-03-09", "to": "2026-03-09"}))
        .await
        .expect("start");
    let id = state["query_execution_ids"][0]
        .as_str()
        .unwrap()
        .to_string();
    athena
        .stop_query_execution()
        .query_execution_id(&id)
        .send()
        .await
        .expect("stop");
    let out = status.process(state.clone()).await.expect("status");
    assert_eq!(out["query_state"], "FAILED");
    assert_eq!(out["failed_queries"][0]["id"], id.as_str());
    assert_eq!(out["failed_queries"][0]["state"], "CANCELLED");
    assert_eq!(
        out["cause"],
        format!("query {id} CANCELLED: no reason given")
    );

    // Moto never fails a query: Athena's FAILED answer, with its reason, is
    // injected for one GetQueryExecution by the proxy.
    let proxy = FaultProxy::start(moto()).await;
    proxy.inject(failed_query_fault(&id, "HIVE_BAD_DATA: Error parsing field value").times(1));
    let via_proxy = QueryStatus::new(athena_client(&proxy.endpoint).await);
    let out = via_proxy.process(state).await.expect("status");
    assert_eq!(out["query_state"], "FAILED");
    assert_eq!(
        out["cause"],
        format!("query {id} FAILED: HIVE_BAD_DATA: Error parsing field value")
    );
    assert_eq!(proxy.injected(), 1);

    let err = status
        .process(json!({"query_execution_ids": []}))
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "InvalidInput");
}

/// One query of a run fails while its sibling is still running: the
/// sibling is stopped (it would go on inserting rows the next run writes
/// again), and the run fails naming the failed query.
#[tokio::test]
async fn a_failed_query_stops_its_running_siblings() {
    let athena = athena_client(moto()).await;
    let workgroup = create_workgroup(&athena, "repartition").await;
    let state = StartQueries::new(start_queries_config(&workgroup), athena.clone())
        .process(json!({"from": "2026-03-01", "to": "2026-03-08"}))
        .await
        .expect("start");
    let ids: Vec<String> = state["query_execution_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 2);
    let proxy = FaultProxy::start(moto()).await;
    proxy.inject(
        athena_query_answer(
            &ids[0],
            "FAILED",
            "HIVE_BAD_DATA: Error parsing field value",
        )
        .body_contains(&ids[0]),
    );
    proxy.inject(athena_query_answer(&ids[1], "RUNNING", "").body_contains(&ids[1]));
    let out = QueryStatus::new(athena_client(&proxy.endpoint).await)
        .process(state)
        .await
        .expect("status");
    assert_eq!(out["query_state"], "FAILED");
    assert_eq!(out["queries_running"], 1);
    assert_eq!(out["stopped_queries"], json!([ids[1]]));
    // The stop reached Athena: the sibling is cancelled there.
    let sibling = athena
        .get_query_execution()
        .query_execution_id(&ids[1])
        .send()
        .await
        .expect("get");
    let state = sibling
        .query_execution()
        .and_then(|q| q.status())
        .and_then(|s| s.state())
        .map(|s| s.as_str().to_string());
    assert_eq!(state.as_deref(), Some("CANCELLED"));
}

#[tokio::test]
async fn throttled_athena_calls_become_retryable_errors() {
    let athena = athena_client(moto()).await;
    let workgroup = create_workgroup(&athena, "repartition").await;
    let state = StartQueries::new(start_queries_config(&workgroup), athena.clone())
        .process(json!({"from": "2026-03-01", "to": "2026-03-01"}))
        .await
        .expect("start");
    let proxy = FaultProxy::start(moto()).await;
    proxy.inject(Fault::aws_json(
        "AmazonAthena.GetQueryExecution",
        400,
        "ThrottlingException",
    ));
    let err = QueryStatus::new(athena_client(&proxy.endpoint).await)
        .process(state.clone())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            TaskError::Retryable {
                operation: "GetQueryExecution",
                ..
            }
        ),
        "{err}"
    );
    assert!(
        proxy.injected() >= 3,
        "the SDK retried first: {}",
        proxy.injected()
    );
    proxy.heal();
    let out = QueryStatus::new(athena_client(&proxy.endpoint).await)
        .process(state)
        .await
        .expect("after the throttling");
    assert_eq!(out["query_state"], "SUCCEEDED");
}

/// Athena's answer for a query that failed, with `reason`.
fn failed_query_fault(id: &str, reason: &str) -> Fault {
    athena_query_answer(id, "FAILED", reason)
}

// ------------------------------------------------------ the SQL in DuckDB --

/// One generated reading, and when it arrived on the stream.
#[derive(Debug, Clone)]
struct Reading {
    device: i64,
    event: NaiveDateTime,
    arrival: DateTime<Utc>,
    pressure: i64,
    o2: i64,
    volume: i64,
}

impl Reading {
    fn serial(&self) -> String {
        format!("SN-{:05}", self.device)
    }

    fn manufacturer(&self) -> &'static str {
        ["3M", "GE", "Vyaire"][(self.device % 3) as usize]
    }

    fn json(&self) -> String {
        json!({
            "ventilatorid": self.device,
            "eventtime": self.event.format("%Y-%m-%d %H:%M:%S").to_string(),
            "serialnumber": self.serial(),
            "pressurecontrol": self.pressure,
            "o2stats": self.o2,
            "minutevolume": self.volume,
            "manufacturer": self.manufacturer(),
        })
        .to_string()
    }
}

/// Normal ranges: (o2 min, max, pressure min, max, volume min, max).
fn reference() -> BTreeMap<i64, [i64; 6]> {
    BTreeMap::from([(1, [90, 100, 5, 30, 2, 10]), (2, [88, 100, 8, 25, 3, 9])])
}

/// Devices 1 and 2 (with reference rows) and 3 (without), a reading every
/// 7 minutes from 28 February 22:00 to 2 March 01:00, most arriving 20 s
/// later, some 40 minutes late; plus one reading of 1 March arriving on
/// 3 March (too late for the run of 1 March).
fn readings() -> Vec<Reading> {
    let start = d("2026-02-28").and_hms_opt(22, 0, 0).unwrap();
    let mut out = Vec::new();
    for device in 1..=3i64 {
        for i in 0..233i64 {
            let event = start + Duration::minutes(7 * i) + Duration::seconds(device);
            let late = i % 17 == 0;
            let arrival = Utc.from_utc_datetime(&event)
                + if late {
                    Duration::minutes(40)
                } else {
                    Duration::seconds(20)
                };
            let (o2, pressure, volume) = match i % 25 {
                0 => (80, 40, 15),     // all out of range
                5 | 15 => (95, 20, 6), // all in range
                _ => (
                    85 + (i * 7 + device * 3) % 16,
                    3 + (i * 5 + device) % 30,
                    1 + (i * 3 + device * 2) % 12,
                ),
            };
            out.push(Reading {
                device,
                event,
                arrival,
                pressure,
                o2,
                volume,
            });
        }
    }
    let event = d("2026-03-01").and_hms_opt(12, 3, 30).unwrap();
    out.push(Reading {
        device: 1,
        event,
        arrival: Utc.from_utc_datetime(&d("2026-03-03").and_hms_opt(9, 0, 0).unwrap()),
        pressure: 20,
        o2: 95,
        volume: 6,
    });
    out
}

/// The reference rows as SQL `VALUES`, in the reference table's columns.
fn reference_values() -> String {
    reference()
        .iter()
        .map(|(id, r)| {
            format!(
                "({id}, {}, {}, {}, {}, {}, {})",
                r[0], r[1], r[2], r[3], r[4], r[5]
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Asserts that the queried `rows` (device, event time, status, then the six
/// averages) are `expected`, in order.
fn assert_rows_are(rows: &[Value], expected: &[Expected]) {
    assert_eq!(
        rows.len(),
        expected.len(),
        "one row per device and event time"
    );
    for (row, (device, time, status, averages, _)) in rows.iter().zip(expected) {
        assert_eq!(row[0], *device, "{row}");
        assert_eq!(row[1], time.as_str(), "{row}");
        assert_eq!(row[2], status.as_str(), "{row}");
        for (k, want) in averages.iter().enumerate() {
            let got = row[3 + k].as_f64().expect("average");
            assert!(
                (got - want).abs() < 1e-9,
                "{row}: average {k} is {got}, expected {want}"
            );
        }
    }
}

/// What the SQL must produce for `day`, computed here from the readings.
/// Row: (device, eventtime, status, six averages, year, month, day, hour).
type Expected = (i64, String, String, [f64; 6], [i64; 4]);

fn expected_rows(all: &[Reading], day: NaiveDate, lookback_hours: i64) -> Vec<Expected> {
    expected_rows_of(all, day, lookback_hours, true)
}

/// [`expected_rows`], reading only the look-back's day to the day after by
/// arrival (the Hive layout's ingest partitions) or every reading (the
/// Iceberg table), one per device and event time.
fn expected_rows_of(
    all: &[Reading],
    day: NaiveDate,
    lookback_hours: i64,
    by_arrival: bool,
) -> Vec<Expected> {
    let range_start = day.and_hms_opt(0, 0, 0).unwrap();
    let range_end = range_start + Duration::days(1);
    let window_start = range_start - Duration::hours(lookback_hours);
    // The ingest days read: the look-back's day to the day after.
    let ingest_days: BTreeSet<NaiveDate> = [window_start.date(), day, range_end.date()].into();
    let mut out = Vec::new();
    for device in 1..=3 {
        let mut rs: Vec<&Reading> = all
            .iter()
            .filter(|r| r.device == device)
            .filter(|r| !by_arrival || ingest_days.contains(&r.arrival.date_naive()))
            .filter(|r| r.event >= window_start && r.event < range_end)
            .collect();
        rs.sort_by_key(|r| r.event);
        rs.dedup_by_key(|r| r.event);
        for (i, r) in rs.iter().enumerate() {
            if r.event < range_start {
                continue;
            }
            let avg = |n: usize, f: fn(&Reading) -> i64| {
                let from = (i + 1).saturating_sub(n);
                let xs = &rs[from..=i];
                xs.iter().map(|r| f(r) as f64).sum::<f64>() / xs.len() as f64
            };
            let status = match reference().get(&device) {
                None => "UNKNOWN",
                Some(&[o2_min, o2_max, p_min, p_max, v_min, v_max]) => {
                    let ins = [
                        (o2_min..=o2_max).contains(&r.o2),
                        (p_min..=p_max).contains(&r.pressure),
                        (v_min..=v_max).contains(&r.volume),
                    ];
                    if ins.iter().all(|x| *x) {
                        "GREEN"
                    } else if ins.iter().all(|x| !*x) {
                        "RED"
                    } else {
                        "ORANGE"
                    }
                }
            };
            use chrono::{Datelike, Timelike};
            out.push((
                device,
                r.event.format("%Y-%m-%d %H:%M:%S").to_string(),
                status.to_string(),
                [
                    avg(3, |r| r.o2),
                    avg(3, |r| r.pressure),
                    avg(3, |r| r.volume),
                    avg(20, |r| r.o2),
                    avg(20, |r| r.pressure),
                    avg(20, |r| r.volume),
                ],
                [
                    i64::from(r.event.year()),
                    i64::from(r.event.month()),
                    i64::from(r.event.day()),
                    i64::from(r.event.hour()),
                ],
            ));
        }
    }
    out
}

/// Writes the readings to a lake bucket on moto with the real stream
/// function (the Hive layout), in the order they arrived.
async fn write_lake(s3: &aws_sdk_s3::Client, bucket: &str, readings: &[Reading]) {
    let mut by_arrival: Vec<&Reading> = readings.iter().collect();
    by_arrival.sort_by_key(|r| (r.arrival, r.device));
    let config = StreamConfig {
        lake_prefix: LAKE_PREFIX.to_string(),
        dead_letter_prefix: "dead-letters/ventilator_metrics".to_string(),
        ..integration_tests::stream_config(bucket)
    };
    let f = KinesisToParquet::new(config, S3Sink::new(s3.clone(), bucket));
    write_readings(&f, &by_arrival, 0).await;
}

/// Copies the lake's objects into `dir`, keeping their keys.
async fn download_lake(s3: &aws_sdk_s3::Client, bucket: &str, dir: &std::path::Path) -> usize {
    download(s3, bucket, LAKE_PREFIX, dir).await
}

/// Copies the objects under `prefix` into `dir`, keeping their keys.
async fn download(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
    dir: &std::path::Path,
) -> usize {
    let objects = lake_reader::list(s3, bucket, prefix)
        .await
        .expect("list lake");
    for o in &objects {
        let bytes = lake_reader::get(s3, bucket, &o.key)
            .await
            .expect("get object");
        let path = dir.join(&o.key);
        std::fs::create_dir_all(path.parent().unwrap()).expect("mkdir");
        std::fs::write(&path, &bytes).expect("write object");
    }
    objects.len()
}

/// Runs `setup`, the rendered `statement` and `query` in DuckDB.
fn duckdb(dir: &std::path::Path, setup: &str, statement: &str, query: &str) -> Value {
    duckdb_with(dir, setup, statement, query, &[])
}

/// [`duckdb`] with more of `run_duckdb.py`'s options.
fn duckdb_with(
    dir: &std::path::Path,
    setup: &str,
    statement: &str,
    query: &str,
    options: &[&str],
) -> Value {
    let root = lake_tools::moto::repo_root();
    let files = [
        ("setup.sql", setup),
        ("statement.sql", statement),
        ("query.sql", query),
    ];
    for (name, text) in files {
        std::fs::write(dir.join(name), text).expect("write sql");
    }
    let out = std::process::Command::new(root.join(".venv/bin/python"))
        .arg(root.join("scripts/run_duckdb.py"))
        .args(files.map(|(name, _)| dir.join(name)))
        .args(options)
        .output()
        .expect("run .venv/bin/python (make setup installs duckdb)");
    assert!(
        out.status.success(),
        "duckdb failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("duckdb JSON")
}

#[tokio::test]
async fn the_rendered_sql_repartitions_the_lake_written_by_kinesis_to_parquet() {
    let sdk = sdk_config(moto(), REGION).await;
    let s3 = s3_client(&sdk);
    let bucket = unique("lake");
    s3.create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("bucket");
    let all = readings();
    write_lake(&s3, &bucket, &all).await;
    let dir = std::env::temp_dir().join(unique("repartition-duckdb"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let objects = download_lake(&s3, &bucket, &dir).await;
    assert!(objects > 24, "one object per arrival hour: {objects}");

    let day = d("2026-03-01");
    let sql = start_queries_config("wg")
        .repartition
        .render(DateRange::day(day))
        .expect("render");
    // The catalog as Athena sees it: the crawled lake (partition values as
    // strings, as Glue catalogues them), the reference table, and the
    // target table with its event-time partition columns last.
    let setup = format!(
        r#"
        CREATE SCHEMA {DATABASE};
        CREATE VIEW {DATABASE}.{SOURCE} AS
            SELECT * FROM read_parquet('{lake}/**/*.parquet', hive_partitioning = true, hive_types_autocast = false);
        CREATE TABLE {DATABASE}.{REFERENCE} (ventilatorid BIGINT, o2_stats_min BIGINT, o2_stats_max BIGINT,
            pressure_control_min BIGINT, pressure_control_max BIGINT, minute_volume_min BIGINT, minute_volume_max BIGINT);
        INSERT INTO {DATABASE}.{REFERENCE} VALUES {values};
        CREATE TABLE {DATABASE}.{TARGET} (ventilatorid BIGINT, eventtime TIMESTAMP, serialnumber VARCHAR,
            manufacturer VARCHAR, pressurecontrol BIGINT, o2stats BIGINT, minutevolume BIGINT, status VARCHAR,
            avg_o2stats_3 DOUBLE, avg_pressurecontrol_3 DOUBLE, avg_minutevolume_3 DOUBLE,
            avg_o2stats_20 DOUBLE, avg_pressurecontrol_20 DOUBLE, avg_minutevolume_20 DOUBLE,
            "year" BIGINT, "month" BIGINT, "day" BIGINT, "hour" BIGINT);
        "#,
        lake = dir.join(LAKE_PREFIX).display(),
        values = reference_values(),
    );
    let query = format!(
        r#"SELECT ventilatorid, strftime(eventtime, '%Y-%m-%d %H:%M:%S'), status,
            avg_o2stats_3, avg_pressurecontrol_3, avg_minutevolume_3,
            avg_o2stats_20, avg_pressurecontrol_20, avg_minutevolume_20,
            "year", "month", "day", "hour", serialnumber, manufacturer
           FROM {DATABASE}.{TARGET} ORDER BY ventilatorid, eventtime"#
    );
    let result = duckdb(&dir, &setup, &sql, &query);
    let rows = result["rows"].as_array().expect("rows");
    let expected = expected_rows(&all, day, 1);

    assert_rows_are(rows, &expected);
    let statuses: BTreeSet<&str> = expected.iter().map(|e| e.2.as_str()).collect();
    assert_eq!(statuses, ["GREEN", "ORANGE", "RED", "UNKNOWN"].into());
    for (row, (device, _, _, _, partition)) in rows.iter().zip(&expected) {
        let got: Vec<i64> = (9..13).map(|k| row[k].as_i64().unwrap()).collect();
        assert_eq!(got, partition, "{row}");
        assert_eq!(row[13], format!("SN-{device:05}"));
    }
    // Every row is of the day, in its 24 hourly partitions.
    let partitions: BTreeSet<Vec<i64>> = rows
        .iter()
        .map(|r| (9..13).map(|k| r[k].as_i64().unwrap()).collect())
        .collect();
    assert_eq!(partitions, (0..24).map(|h| vec![2026, 3, 1, h]).collect());
    // Readings of 1 March that arrived on 2 March are in; the one that
    // arrived on 3 March is not (its ingest day is not read).
    let written: BTreeSet<(i64, String)> = rows
        .iter()
        .map(|r| (r[0].as_i64().unwrap(), r[1].as_str().unwrap().to_string()))
        .collect();
    let of_day = |r: &&Reading| r.event.date() == day;
    let arrived_on = |r: &Reading, on: &str| r.arrival.date_naive() == d(on);
    let key = |r: &Reading| (r.device, r.event.format("%Y-%m-%d %H:%M:%S").to_string());
    let late: Vec<&Reading> = all
        .iter()
        .filter(of_day)
        .filter(|r| arrived_on(r, "2026-03-02"))
        .collect();
    assert!(
        !late.is_empty(),
        "the data has late arrivals across midnight"
    );
    assert!(late.iter().all(|r| written.contains(&key(r))));
    let too_late: Vec<&Reading> = all
        .iter()
        .filter(of_day)
        .filter(|r| arrived_on(r, "2026-03-03"))
        .collect();
    assert_eq!(too_late.len(), 1);
    assert!(!written.contains(&key(too_late[0])));
    // The first reading of the day averages over the two readings before
    // midnight (the look-back), not over itself alone.
    let first = rows.iter().find(|r| r[0] == 1).expect("device 1");
    let first_time =
        NaiveDateTime::parse_from_str(first[1].as_str().unwrap(), "%Y-%m-%d %H:%M:%S").unwrap();
    let mut last_three: Vec<&Reading> = all
        .iter()
        .filter(|r| r.device == 1 && r.event <= first_time && r.event.date() >= d("2026-02-28"))
        .collect();
    last_three.sort_by_key(|r| r.event);
    let last_three = &last_three[last_three.len() - 3..];
    assert!(last_three[..2]
        .iter()
        .all(|r| r.event.date() == d("2026-02-28")));
    let mean = last_three.iter().map(|r| r.o2 as f64).sum::<f64>() / 3.0;
    assert!((first[3].as_f64().unwrap() - mean).abs() < 1e-9, "{first}");
    std::fs::remove_dir_all(&dir).ok();
}

/// Puts `readings` through the stream function `f` (either layout) as one
/// Kinesis batch of shard 0, sequence numbers from `first`: every one a
/// good row.
async fn write_readings(f: &KinesisToParquet<S3Sink>, readings: &[&Reading], first: u64) {
    let records: Vec<StreamRecord> = readings
        .iter()
        .enumerate()
        .map(|(n, r)| StreamRecord {
            data: r.json().into_bytes(),
            partition_key: r.device.to_string(),
            arrival: r.arrival,
            sequence_number: sequence_number(0, first + n as u64),
        })
        .collect();
    let event = integration_tests::kinesis_event(
        &stream_arn(REGION, "ventilators"),
        "shardId-000000000000",
        &records,
    );
    let (summary, response) = f.invoke(&event).await.expect("invoked");
    assert_eq!((summary.good, summary.bad), (readings.len(), 0));
    assert!(response.batch_item_failures.is_empty());
}

/// The Iceberg layout's `MERGE INTO`, rendered by start-queries, run in
/// DuckDB over the data files kinesis-to-parquet committed (a fast-append
/// table: its data files are its rows). Run twice it leaves the rows of
/// one run; a reading that arrived two days late, committed after the
/// first run, is in the event-time table after the next run of its day,
/// with its neighbours' averages updated; a producer's resend of a reading
/// (same device and event time, a new sequence number) is one row.
#[tokio::test]
async fn the_merge_writes_each_reading_once_however_often_its_day_runs() {
    let (s3, bucket, database) = integration_tests::iceberg_lake("merge").await;
    let env = integration_tests::iceberg_env(&bucket, &database);
    let f = KinesisToParquet::load(|n| env.get(n).cloned(), &sdk_config(moto(), REGION).await)
        .await
        .expect("cold start creating the table");
    let all = readings();
    let day = d("2026-03-01");
    let (late, on_time): (Vec<&Reading>, Vec<&Reading>) = all
        .iter()
        .partition(|r| r.arrival.date_naive() == d("2026-03-03"));
    assert_eq!(late.len(), 1);
    let resend = on_time
        .iter()
        .copied()
        .find(|r| r.device == 2 && r.event.date() == day)
        .expect("a reading of device 2 on the day");
    let mut first_batch = on_time.clone();
    first_batch.push(resend);
    write_readings(&f, &first_batch, 0).await;

    let dir = std::env::temp_dir().join(unique("merge-duckdb"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let table_data = "warehouse/readings/data";
    let config = start_queries_config_with("wg", TARGET, "day-claims", "iceberg");
    let sql = config
        .repartition
        .render(DateRange::day(day))
        .expect("render");
    assert!(sql.starts_with("-- The event-time table") && sql.contains("MERGE INTO"));

    // The catalog as Athena sees it: the Iceberg table's rows, the
    // reference table, and the event-time table (kept from one run to the
    // next in a database file). Athena's session zone is UTC.
    let setup = format!(
        r#"
        SET TimeZone = 'UTC';
        CREATE SCHEMA IF NOT EXISTS {DATABASE};
        CREATE OR REPLACE VIEW {DATABASE}.{SOURCE} AS
            SELECT * FROM read_parquet('{data}/**/*.parquet', hive_partitioning = false);
        CREATE OR REPLACE TABLE {DATABASE}.{REFERENCE} (ventilatorid BIGINT, o2_stats_min BIGINT, o2_stats_max BIGINT,
            pressure_control_min BIGINT, pressure_control_max BIGINT, minute_volume_min BIGINT, minute_volume_max BIGINT);
        INSERT INTO {DATABASE}.{REFERENCE} VALUES {values};
        CREATE TABLE IF NOT EXISTS {DATABASE}.{TARGET} (ventilatorid BIGINT, eventtime TIMESTAMPTZ, serialnumber VARCHAR,
            manufacturer VARCHAR, pressurecontrol BIGINT, o2stats BIGINT, minutevolume BIGINT, status VARCHAR,
            avg_o2stats_3 DOUBLE, avg_pressurecontrol_3 DOUBLE, avg_minutevolume_3 DOUBLE,
            avg_o2stats_20 DOUBLE, avg_pressurecontrol_20 DOUBLE, avg_minutevolume_20 DOUBLE);
        "#,
        data = dir.join(table_data).display(),
        values = reference_values(),
    );
    let query = format!(
        r#"SELECT ventilatorid, strftime(eventtime, '%Y-%m-%d %H:%M:%S'), status,
            avg_o2stats_3, avg_pressurecontrol_3, avg_minutevolume_3,
            avg_o2stats_20, avg_pressurecontrol_20, avg_minutevolume_20
           FROM {DATABASE}.{TARGET} ORDER BY ventilatorid, eventtime"#
    );
    let database_file = dir.join("catalog.duckdb");
    let database_file = database_file.to_str().expect("a UTF-8 path");
    let run = |times: &str| {
        duckdb_with(
            &dir,
            &setup,
            &sql,
            &query,
            &["--database", database_file, "--times", times],
        )
    };
    let check = |result: &Value, readings: &[&Reading]| {
        let rows = result["rows"].as_array().expect("rows");
        let owned: Vec<Reading> = readings.iter().map(|r| (*r).clone()).collect();
        assert_rows_are(rows, &expected_rows_of(&owned, day, 1, false));
        rows.clone()
    };

    assert!(download(&s3, &bucket, table_data, &dir).await > 1);
    // The day run twice in one go (a double start), then once more.
    let once = check(&run("2"), &on_time);
    let statuses: BTreeSet<&str> = once.iter().filter_map(|r| r[2].as_str()).collect();
    assert_eq!(statuses, ["GREEN", "ORANGE", "RED", "UNKNOWN"].into());
    let late_key = (
        late[0].device,
        late[0].event.format("%Y-%m-%d %H:%M:%S").to_string(),
    );
    let has = |rows: &[Value], key: &(i64, String)| {
        rows.iter().any(|r| r[0] == key.0 && r[1] == key.1.as_str())
    };
    assert!(!has(&once, &late_key));
    assert_eq!(check(&run("1"), &on_time), once, "a rerun changes nothing");

    // The late reading arrives, is committed, and the day runs again.
    write_readings(&f, &late, first_batch.len() as u64).await;
    download(&s3, &bucket, table_data, &dir).await;
    let again = check(&run("1"), &all.iter().collect::<Vec<_>>());
    assert!(has(&again, &late_key));
    assert_eq!(again.len(), once.len() + 1);
    // Its neighbours' moving averages changed with it.
    let changed = once
        .iter()
        .filter(|r| !again.contains(r))
        .filter(|r| r[0] == late_key.0)
        .count();
    assert!(changed >= 2, "{changed} of device 1's rows changed");
    std::fs::remove_dir_all(&dir).ok();
}

// ------------------------------------------------- the state machine --

/// The state machine tests share one moto (crawl transitions are global to
/// it): they run one at a time.
static SFN_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What a test changes in the functions behind the Lambda tasks.
#[derive(Default, Clone)]
struct Hooks {
    /// Before each crawler poll, tick moto's crawl once (ListCrawls).
    tick_crawl: bool,
    /// At this crawler poll, an operator stops the crawl first.
    stop_crawl_at_poll: Option<usize>,
    /// The Glue endpoint start-crawler uses (default: moto).
    start_crawler_glue: Option<String>,
    /// start-crawler is configured with a crawler that does not exist.
    missing_raw_crawler: bool,
    /// The Athena endpoint query-status uses (default: moto).
    query_status_athena: Option<String>,
    /// start-crawler and start-queries with `LAKE_FORMAT` `iceberg`.
    iceberg: bool,
}

struct Workflow {
    sfn: aws_sdk_sfn::Client,
    glue: aws_sdk_glue::Client,
    athena: aws_sdk_athena::Client,
    s3: aws_sdk_s3::Client,
    dynamodb: aws_sdk_dynamodb::Client,
    arn: String,
    raw: String,
    transformed: String,
    workgroup: String,
    /// The repartitioned table (its own, at `s3://lake/transformed/{target}/`).
    target: String,
    /// The day claims table.
    claims: String,
    functions: [String; 4],
    /// The four functions' metrics documents, in their order.
    metrics: [telemetry_lake::metrics::Recorded; 4],
}

/// The bucket of the repartitioned tables of the state machine tests.
const TARGET_BUCKET: &str = "lake";

impl Workflow {
    /// Crawlers, a workgroup, the four real handlers registered on the
    /// Lambda endpoint under fresh names, and the state machine.
    async fn new(hooks: Hooks) -> Self {
        let h = sfn_harness();
        let moto = h.moto.endpoint.clone();
        let sdk = sdk_config(&moto, REGION).await;
        let (glue, athena) = (
            aws_sdk_glue::Client::new(&sdk),
            aws_sdk_athena::Client::new(&sdk),
        );
        let raw = create_crawler(&glue, "raw").await;
        let transformed = create_crawler(&glue, "transformed").await;
        let workgroup = create_workgroup(&athena, "repartition").await;
        let (s3, dynamodb) = (s3_client(&sdk), aws_sdk_dynamodb::Client::new(&sdk));
        let target = unique("by_event_time").replace('-', "_");
        let claims = unique("day-claims");
        create_target_table(&glue, &s3, &target).await;
        {
            use aws_sdk_dynamodb::types::{KeyType, ScalarAttributeType};
            create_table(
                &dynamodb,
                &claims,
                &[("day", ScalarAttributeType::S, KeyType::Hash)],
            )
            .await;
        }
        let functions = [
            "start-crawler",
            "crawler-status",
            "start-queries",
            "query-status",
        ]
        .map(unique);
        let (outs, metrics): (Vec<_>, Vec<_>) = functions.iter().map(|f| test_metrics(f)).unzip();
        let metrics: [telemetry_lake::metrics::Recorded; 4] =
            metrics.try_into().expect("four functions");
        let event = |input: Value| LambdaEvent::new(input, lambda_runtime::Context::default());

        let configured_raw = if hooks.missing_raw_crawler {
            "no-such-crawler"
        } else {
            raw.as_str()
        };
        let layout = if hooks.iceberg { "iceberg" } else { "hive" };
        let (cfg, ep) = (
            start_crawler_config_for(configured_raw, &transformed, layout),
            hooks.start_crawler_glue.clone().unwrap_or(moto.clone()),
        );
        let out = outs[0].clone();
        h.lambda.register(&functions[0], move |input| {
            let (cfg, ep, out) = (cfg.clone(), ep.clone(), out.clone());
            async move {
                let plan = StartCrawler::new(cfg, glue_client(&ep).await)
                    .with_metrics(out)
                    .handle(event(input))
                    .await?;
                Ok(serde_json::to_value(plan).unwrap_or_default())
            }
        });

        let (cfg, ep, name) = (
            crawler_status_config(&raw, &transformed),
            moto.clone(),
            raw.clone(),
        );
        let polls = Arc::new(AtomicUsize::new(0));
        let hooks2 = hooks.clone();
        let out = outs[1].clone();
        h.lambda.register(&functions[1], move |input| {
            let (cfg, ep, name, hooks) = (cfg.clone(), ep.clone(), name.clone(), hooks2.clone());
            let out = out.clone();
            let poll = polls.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                let glue = glue_client(&ep).await;
                let hook_error = |e: String| Diagnostic {
                    error_type: "TestHook".into(),
                    error_message: e,
                };
                if hooks.stop_crawl_at_poll == Some(poll) {
                    glue.stop_crawler()
                        .name(&name)
                        .send()
                        .await
                        .map_err(|e| hook_error(format!("{e:?}")))?;
                }
                if hooks.tick_crawl || hooks.stop_crawl_at_poll == Some(poll) {
                    glue.list_crawls()
                        .crawler_name(&name)
                        .send()
                        .await
                        .map_err(|e| hook_error(format!("{e:?}")))?;
                }
                CrawlerStatus::new(cfg, glue)
                    .with_metrics(out)
                    .handle(event(input))
                    .await
            }
        });

        let (cfg, ep) = (
            start_queries_config_with(&workgroup, &target, &claims, layout),
            moto.clone(),
        );
        let out = outs[2].clone();
        h.lambda.register(&functions[2], move |input| {
            let (cfg, ep, out) = (cfg.clone(), ep.clone(), out.clone());
            async move {
                let sdk = sdk_config(&ep, REGION).await;
                let target = Target::new(&sdk, &cfg.claims_table);
                StartQueries::new(cfg, aws_sdk_athena::Client::new(&sdk))
                    .with_target(target)
                    .with_metrics(out)
                    .handle(event(input))
                    .await
            }
        });

        let ep = hooks.query_status_athena.clone().unwrap_or(moto.clone());
        let out = outs[3].clone();
        h.lambda.register(&functions[3], move |input| {
            let (ep, out) = (ep.clone(), out.clone());
            async move {
                QueryStatus::new(athena_client(&ep).await)
                    .with_metrics(out)
                    .handle(event(input))
                    .await
            }
        });

        let sfn = aws_sdk_sfn::Client::new(&sdk);
        let arn = create_state_machine(
            &sfn,
            "repartition.asl.json",
            &unique("repartition"),
            &[
                (
                    "StartCrawlerFunctionArn",
                    function_arn(REGION, &functions[0]),
                ),
                (
                    "CrawlerStatusFunctionArn",
                    function_arn(REGION, &functions[1]),
                ),
                (
                    "StartQueriesFunctionArn",
                    function_arn(REGION, &functions[2]),
                ),
                (
                    "QueryStatusFunctionArn",
                    function_arn(REGION, &functions[3]),
                ),
            ],
        )
        .await;
        Workflow {
            sfn,
            glue,
            athena,
            s3,
            dynamodb,
            arn,
            raw,
            transformed,
            workgroup,
            target,
            claims,
            functions,
            metrics,
        }
    }

    /// Runs an execution to its end: (description, states entered).
    async fn run(
        &self,
        input: Value,
    ) -> (
        aws_sdk_sfn::operation::describe_execution::DescribeExecutionOutput,
        Vec<String>,
    ) {
        let exec = self
            .sfn
            .start_execution()
            .state_machine_arn(&self.arn)
            .name(unique("run"))
            .input(input.to_string())
            .send()
            .await
            .expect("start execution");
        let done = wait_for_execution(&self.sfn, &exec.execution_arn).await;
        let states = states_entered(&self.sfn, &exec.execution_arn).await;
        (done, states)
    }

    fn invocations(&self, function: usize) -> usize {
        sfn_harness().lambda.invocations(&self.functions[function])
    }

    /// Writes `key` (under the target table's location) with a few bytes.
    async fn put_target_object(&self, key: &str) {
        self.s3
            .put_object()
            .bucket(TARGET_BUCKET)
            .key(format!("transformed/{}/{key}", self.target))
            .body(b"PAR1".to_vec().into())
            .send()
            .await
            .expect("put target object");
    }

    /// The keys under the target table's location, relative to it.
    async fn target_objects(&self) -> Vec<String> {
        let prefix = format!("transformed/{}/", self.target);
        let out = self
            .s3
            .list_objects_v2()
            .bucket(TARGET_BUCKET)
            .prefix(&prefix)
            .send()
            .await
            .expect("list target");
        out.contents()
            .iter()
            .filter_map(|o| o.key()?.strip_prefix(&prefix).map(str::to_string))
            .collect()
    }

    /// Registers the partition (year, month, day, hour) of the target.
    async fn add_target_partition(&self, values: [&str; 4]) {
        self.glue
            .create_partition()
            .database_name(DATABASE)
            .table_name(&self.target)
            .partition_input(
                aws_sdk_glue::types::PartitionInput::builder()
                    .set_values(Some(values.iter().map(|v| v.to_string()).collect()))
                    .build(),
            )
            .send()
            .await
            .expect("create partition");
    }

    /// The target's partitions, as their values.
    async fn target_partitions(&self) -> BTreeSet<Vec<String>> {
        self.glue
            .get_partitions()
            .database_name(DATABASE)
            .table_name(&self.target)
            .send()
            .await
            .expect("get partitions")
            .partitions()
            .iter()
            .map(|p| p.values().to_vec())
            .collect()
    }

    /// The execution holding `day`'s claim.
    async fn claim_holder(&self, day: &str) -> Option<String> {
        let out = self
            .dynamodb
            .get_item()
            .table_name(&self.claims)
            .key(
                "day",
                aws_sdk_dynamodb::types::AttributeValue::S(day.into()),
            )
            .send()
            .await
            .expect("get claim");
        out.item()
            .and_then(|i| i.get("execution"))
            .and_then(|v| v.as_s().ok())
            .cloned()
    }
}

/// The database (once) and the Hive table `target`, partitioned by year,
/// month, day and hour, at `s3://lake/transformed/{target}/`.
async fn create_target_table(glue: &aws_sdk_glue::Client, s3: &aws_sdk_s3::Client, target: &str) {
    let _ = s3.create_bucket().bucket(TARGET_BUCKET).send().await;
    create_event_time_table(
        glue,
        DATABASE,
        target,
        &format!("s3://{TARGET_BUCKET}/transformed/{target}/"),
    )
    .await;
}

/// A state machine that only waits: its executions stay RUNNING for ten
/// minutes, holding whatever claims they are given.
async fn start_waiting_execution(sfn: &aws_sdk_sfn::Client) -> String {
    let arn = create_state_machine_from(
        sfn,
        &unique("waits"),
        r#"{"StartAt": "Wait", "States": {"Wait": {"Type": "Wait", "Seconds": 600, "End": true}}}"#,
    )
    .await;
    sfn.start_execution()
        .state_machine_arn(arn)
        .send()
        .await
        .expect("start the waiting execution")
        .execution_arn
}

fn output(done: &aws_sdk_sfn::operation::describe_execution::DescribeExecutionOutput) -> Value {
    serde_json::from_str(done.output.as_deref().unwrap_or("null")).expect("output JSON")
}

#[tokio::test]
async fn the_workflow_repartitions_a_day_with_the_real_handlers() {
    let _serial = SFN_LOCK.lock().await;
    set_crawl_transition(
        &sfn_harness().moto.endpoint,
        json!({"progression": "immediate"}),
    )
    .await;
    let w = Workflow::new(Hooks::default()).await;
    let (done, states) = w.run(json!({"date": "2026-03-01"})).await;
    assert_eq!(done.status.as_str(), "SUCCEEDED", "{done:?}");
    assert_eq!(states, REPARTITION_PATH);

    let out = output(&done);
    assert_eq!(out["dates"], json!(["2026-03-01"]));
    assert_eq!(out["last_crawl_status"], "SUCCEEDED");
    assert_eq!(out["query_state"], "SUCCEEDED");
    assert_eq!(
        out["transformed_crawl"]["crawler_name"],
        w.transformed.as_str()
    );
    // The query Athena got is the rendered SQL of that day.
    let id = out["query_execution_ids"][0].as_str().expect("query id");
    let got = w
        .athena
        .get_query_execution()
        .query_execution_id(id)
        .send()
        .await
        .expect("query");
    let sql = got.query_execution().and_then(|q| q.query()).expect("sql");
    assert!(
        sql.contains("a.eventtime >= TIMESTAMP '2026-03-01 00:00:00'"),
        "{sql}"
    );
    // Its token belongs to this execution.
    assert_eq!(out["run_id"], done.execution_arn.as_str());
    assert_eq!(
        out["queries"][0]["client_request_token"],
        client_request_token(&w.workgroup, &done.execution_arn, sql)
    );
    // Both crawlers ran.
    assert_eq!(
        crawler_state(&w.glue, &w.raw).await.1.as_deref(),
        Some("COMPLETED")
    );
    assert!(crawler_state(&w.glue, &w.transformed).await.1.is_some());
    assert_eq!(
        [
            w.invocations(0),
            w.invocations(1),
            w.invocations(2),
            w.invocations(3)
        ],
        [2, 1, 2, 1]
    );
    // Each task's metrics, one document per invocation: two crawlers
    // started, one poll of the raw crawl, one day claimed, one query
    // started and polled once, none failed.
    let metric = |function: usize, name: &str| -> Vec<f64> {
        integration_tests::emf_invocations(&w.metrics[function].lines())
            .iter()
            .map(|d| d.value(name))
            .collect()
    };
    assert_eq!(metric(0, "CrawlersStarted"), [1.0, 1.0]);
    assert_eq!(metric(1, "CrawlerPolls"), [1.0]);
    let start_queries = integration_tests::emf_invocations(&w.metrics[2].lines());
    assert_eq!(start_queries.len(), 2, "prepare, then start");
    assert_eq!(start_queries[0].value("Days"), 1.0);
    assert!(!start_queries[0].metrics.contains_key("QueriesStarted"));
    assert_eq!(start_queries[1].value("QueriesStarted"), 1.0);
    assert_eq!(metric(3, "QueryPolls"), [1.0]);
    assert_eq!(metric(3, "QueriesFailed"), [0.0]);
}

/// With the Iceberg layout: no crawler is started or waited for, the day
/// is claimed but nothing emptied, and the query is the `MERGE INTO` the
/// event-time table from the Iceberg readings table. Run again, the day
/// gets the same statement under a new token (a rerun is a new query; the
/// MERGE makes it change nothing, as its DuckDB test shows).
#[tokio::test]
async fn with_the_iceberg_layout_the_workflow_merges_without_crawling() {
    let _serial = SFN_LOCK.lock().await;
    set_transitions(
        &sfn_harness().moto.endpoint,
        json!({"progression": "immediate"}),
        json!({"progression": "immediate"}),
    )
    .await;
    let w = Workflow::new(Hooks {
        iceberg: true,
        ..Hooks::default()
    })
    .await;
    w.put_target_object("data/eventtime_day=2026-03-01/kept.parquet")
        .await;
    let mut statements = Vec::new();
    for _ in 0..2 {
        let (done, states) = w.run(json!({"date": "2026-03-01"})).await;
        assert_eq!(done.status.as_str(), "SUCCEEDED", "{done:?}");
        assert_eq!(states, ICEBERG_REPARTITION_PATH);
        let out = output(&done);
        assert_eq!(out["crawl"], false);
        assert_eq!(out["prepared"]["claimed_days"], json!(["2026-03-01"]));
        assert_eq!(out["prepared"]["cleared_objects"], 0);
        let id = out["query_execution_ids"][0].as_str().expect("query id");
        let got = w
            .athena
            .get_query_execution()
            .query_execution_id(id)
            .send()
            .await
            .expect("query");
        let sql = got
            .query_execution()
            .and_then(|q| q.query())
            .expect("sql")
            .to_string();
        assert!(
            sql.contains(&format!("MERGE INTO \"{DATABASE}\".\"{}\" AS t", w.target))
                && sql.contains(&format!("FROM \"{DATABASE}\".\"{SOURCE}\" AS d"))
                && sql.contains("d.eventtime >= TIMESTAMP '2026-02-28 23:00:00'")
                && !sql.contains("ingest_"),
            "{sql}"
        );
        let claim = w
            .dynamodb
            .get_item()
            .table_name(&w.claims)
            .key(
                "day",
                aws_sdk_dynamodb::types::AttributeValue::S("2026-03-01".into()),
            )
            .send()
            .await
            .expect("claim");
        assert_eq!(
            claim
                .item()
                .and_then(|i| i.get("execution"))
                .and_then(|v| v.as_s().ok()),
            Some(&done.execution_arn)
        );
        statements.push((sql, out["queries"][0]["client_request_token"].clone()));
    }
    assert_eq!(statements[0].0, statements[1].0);
    assert_ne!(statements[0].1, statements[1].1);
    // No crawler ran, and the event-time table's files were left alone.
    assert_eq!(crawler_state(&w.glue, &w.raw).await.1, None);
    assert_eq!(crawler_state(&w.glue, &w.transformed).await.1, None);
    assert_eq!(
        w.target_objects().await,
        ["data/eventtime_day=2026-03-01/kept.parquet"]
    );
    assert_eq!(
        [
            w.invocations(0),
            w.invocations(1),
            w.invocations(2),
            w.invocations(3)
        ],
        [2, 0, 4, 2]
    );
}

#[tokio::test]
async fn a_slow_crawl_is_polled_until_it_is_done() {
    let _serial = SFN_LOCK.lock().await;
    // The crawl completes on its third tick; each poll is one tick.
    set_crawl_transition(
        &sfn_harness().moto.endpoint,
        json!({"progression": "manual", "times": 3}),
    )
    .await;
    let w = Workflow::new(Hooks {
        tick_crawl: true,
        ..Hooks::default()
    })
    .await;
    let (done, states) = w
        .run(json!({"from": "2026-02-25", "to": "2026-03-06"}))
        .await;
    assert_eq!(done.status.as_str(), "SUCCEEDED", "{done:?}");
    let mut expected = vec!["StartCrawler", "IsCrawlNeeded"];
    for _ in 0..3 {
        expected.extend(["WaitForCrawler", "GetCrawlerStatus", "IsCrawlerDone"]);
    }
    // From ClaimAndClearDays to the end.
    expected.extend(REPARTITION_PATH[5..].iter().copied());
    assert_eq!(states, expected);
    let out = output(&done);
    assert_eq!(out["crawler_polls"], 3);
    assert_eq!(
        out["query_execution_ids"].as_array().unwrap().len(),
        3,
        "10 days, 3 queries"
    );
}

#[tokio::test]
async fn running_queries_are_polled_until_they_succeed() {
    let _serial = SFN_LOCK.lock().await;
    // Each GetQueryExecution moves a query one step: QUEUED, RUNNING, SUCCEEDED.
    set_transitions(
        &sfn_harness().moto.endpoint,
        json!({"progression": "immediate"}),
        json!({"progression": "manual", "times": 1}),
    )
    .await;
    let w = Workflow::new(Hooks::default()).await;
    let (done, states) = w
        .run(json!({"from": "2026-03-01", "to": "2026-03-02"}))
        .await;
    assert_eq!(done.status.as_str(), "SUCCEEDED", "{done:?}");
    let mut expected = vec![
        "StartCrawler",
        "IsCrawlNeeded",
        "WaitForCrawler",
        "GetCrawlerStatus",
        "IsCrawlerDone",
        "ClaimAndClearDays",
        "StartQueries",
    ];
    for _ in 0..2 {
        expected.extend(["WaitForQueries", "GetQueryStatus", "AreQueriesDone"]);
    }
    expected.extend([
        "IsTransformedCrawlNeeded",
        "StartTransformedCrawler",
        "Repartitioned",
    ]);
    assert_eq!(states, expected);
    assert_eq!(output(&done)["query_polls"], 2);
    assert_eq!(w.invocations(3), 2);
}

#[tokio::test]
async fn a_crawl_that_never_ends_fails_after_the_last_poll() {
    let _serial = SFN_LOCK.lock().await;
    set_crawl_transition(
        &sfn_harness().moto.endpoint,
        json!({"progression": "manual", "times": 1000}),
    )
    .await;
    let w = Workflow::new(Hooks {
        tick_crawl: true,
        ..Hooks::default()
    })
    .await;
    let (done, states) = w.run(json!({"date": "2026-03-01"})).await;
    assert_eq!(done.status.as_str(), "FAILED", "{done:?}");
    assert_eq!(done.error.as_deref(), Some("CrawlerTimedOut"));
    assert_eq!(
        states.iter().filter(|s| *s == "GetCrawlerStatus").count(),
        5,
        "{states:?}"
    );
    assert_eq!(states.last().map(String::as_str), Some("CrawlerTimedOut"));
    assert_eq!(w.invocations(2), 0, "no query started");
}

#[tokio::test]
async fn a_cancelled_crawl_fails_the_workflow() {
    let _serial = SFN_LOCK.lock().await;
    set_crawl_transition(
        &sfn_harness().moto.endpoint,
        json!({"progression": "manual", "times": 1}),
    )
    .await;
    // An operator stops the crawl before the second poll.
    let w = Workflow::new(Hooks {
        stop_crawl_at_poll: Some(2),
        ..Hooks::default()
    })
    .await;
    let (done, states) = w.run(json!({"date": "2026-03-01"})).await;
    assert_eq!(done.status.as_str(), "FAILED", "{done:?}");
    assert_eq!(done.error.as_deref(), Some("CrawlFailed"));
    assert_eq!(
        states,
        [
            "StartCrawler",
            "IsCrawlNeeded",
            "WaitForCrawler",
            "GetCrawlerStatus",
            "IsCrawlerDone",
            "WaitForCrawler",
            "GetCrawlerStatus",
            "IsCrawlerDone",
            "CrawlFailed"
        ]
    );
    assert_eq!(
        crawler_state(&w.glue, &w.raw).await.1.as_deref(),
        Some("STOPPED")
    );
    assert_eq!(w.invocations(2), 0, "no query started");
}

#[tokio::test]
async fn a_failed_query_fails_the_workflow_with_athenas_reason() {
    let _serial = SFN_LOCK.lock().await;
    set_crawl_transition(
        &sfn_harness().moto.endpoint,
        json!({"progression": "immediate"}),
    )
    .await;
    // Moto never fails a query: query-status's Athena client goes through a
    // proxy that answers the first GetQueryExecution with FAILED.
    let proxy = FaultProxy::start(&sfn_harness().moto.endpoint).await;
    proxy.inject(failed_query_fault("any", "HIVE_BAD_DATA: Error parsing field value").times(1));
    let w = Workflow::new(Hooks {
        query_status_athena: Some(proxy.endpoint.clone()),
        ..Hooks::default()
    })
    .await;
    let (done, states) = w.run(json!({"date": "2026-03-01"})).await;
    assert_eq!(done.status.as_str(), "FAILED", "{done:?}");
    assert_eq!(done.error.as_deref(), Some("QueryFailed"));
    let cause = done.cause.as_deref().unwrap_or_default();
    assert!(
        cause.starts_with("query ")
            && cause.ends_with(" FAILED: HIVE_BAD_DATA: Error parsing field value"),
        "{cause}"
    );
    // The happy path up to the query check, then the failure.
    assert_eq!(
        states,
        [&REPARTITION_PATH[..10], &["QueriesFailed"]].concat()
    );
    assert_eq!(proxy.injected(), 1);
    let polls = integration_tests::emf_invocations(&w.metrics[3].lines());
    assert_eq!(polls.len(), 1);
    assert_eq!(polls[0].value("QueriesFailed"), 1.0);
}

#[tokio::test]
async fn throttled_glue_is_retried_by_the_state_machine() {
    let _serial = SFN_LOCK.lock().await;
    set_crawl_transition(
        &sfn_harness().moto.endpoint,
        json!({"progression": "immediate"}),
    )
    .await;
    // StartCrawler is throttled three times: the SDK's own three attempts
    // fail, the function reports Retryable, and the state machine retries.
    let proxy = FaultProxy::start(&sfn_harness().moto.endpoint).await;
    proxy.inject(Fault::aws_json("AWSGlue.StartCrawler", 400, "ThrottlingException").times(3));
    let w = Workflow::new(Hooks {
        start_crawler_glue: Some(proxy.endpoint.clone()),
        ..Hooks::default()
    })
    .await;
    let (done, states) = w.run(json!({"date": "2026-03-01"})).await;
    assert_eq!(done.status.as_str(), "SUCCEEDED", "{done:?}");
    assert_eq!(proxy.injected(), 3);
    // Two invocations for the raw crawler (one retried), one for the transformed.
    assert_eq!(w.invocations(0), 3);
    assert_eq!(states.first().map(String::as_str), Some("StartCrawler"));
    assert_eq!(states.iter().filter(|s| *s == "StartCrawler").count(), 1);
}

#[tokio::test]
async fn invalid_input_fails_the_workflow_without_retries() {
    let _serial = SFN_LOCK.lock().await;
    let w = Workflow::new(Hooks::default()).await;
    let (done, states) = w.run(json!({"date": "2026-02-30"})).await;
    assert_eq!(done.status.as_str(), "FAILED", "{done:?}");
    assert_eq!(done.error.as_deref(), Some("InvalidInput"));
    assert!(
        done.cause
            .as_deref()
            .unwrap_or_default()
            .contains("`date` is \\\"2026-02-30\\\": no such day"),
        "{:?}",
        done.cause
    );
    assert_eq!(states, ["StartCrawler", "RejectInput"]);
    assert_eq!(w.invocations(0), 1);
    assert_eq!(
        crawler_state(&w.glue, &w.raw).await,
        ("READY".to_string(), None)
    );
}

#[tokio::test]
async fn a_permanent_task_error_fails_the_workflow_without_retries() {
    let _serial = SFN_LOCK.lock().await;
    let w = Workflow::new(Hooks {
        missing_raw_crawler: true,
        ..Hooks::default()
    })
    .await;
    let (done, states) = w.run(json!({})).await;
    assert_eq!(done.status.as_str(), "FAILED", "{done:?}");
    assert_eq!(done.error.as_deref(), Some("StartCrawlerFailed"));
    let cause = done.cause.as_deref().unwrap_or_default();
    assert!(
        cause.contains("NonRetryable") && cause.contains("EntityNotFoundException"),
        "{cause}"
    );
    assert_eq!(states, ["StartCrawler", "StartCrawlerFailed"]);
    assert_eq!(w.invocations(0), 1, "NonRetryable is not retried");
}

#[test]
fn every_task_retries_lambda_errors_and_retryable_and_catches_the_rest() {
    let root = lake_tools::moto::repo_root();
    let asl: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("statemachine/repartition.asl.json")).unwrap(),
    )
    .unwrap();
    let states = asl["States"].as_object().unwrap();
    let tasks: Vec<(&String, &Value)> =
        states.iter().filter(|(_, s)| s["Type"] == "Task").collect();
    assert_eq!(tasks.len(), 6);
    for (name, task) in tasks {
        let retried: BTreeSet<&str> = task["Retry"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| {
                r["ErrorEquals"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| e.as_str().unwrap())
            })
            .collect();
        for error in [
            "Lambda.ServiceException",
            "Lambda.AWSLambdaException",
            "Lambda.SdkClientException",
            "Lambda.TooManyRequestsException",
            "Retryable",
        ] {
            assert!(retried.contains(error), "{name} does not retry {error}");
        }
        assert!(task["Retry"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["BackoffRate"].as_f64() >= Some(2.0)));
        let catches = task["Catch"].as_array().unwrap();
        let last = catches.last().unwrap();
        assert_eq!(last["ErrorEquals"], json!(["States.ALL"]), "{name}");
        for c in catches {
            let target = c["Next"].as_str().unwrap();
            assert_eq!(
                states[target]["Type"], "Fail",
                "{name} catches into {target}"
            );
        }
    }
}

// ------------------------------------------------------------ template --

#[test]
fn the_template_fills_every_placeholder_of_the_asl_and_invokes_only_its_functions() {
    let root = lake_tools::moto::repo_root();
    let asl = std::fs::read_to_string(root.join("statemachine/repartition.asl.json")).unwrap();
    let placeholders: BTreeSet<&str> = asl
        .split("${")
        .skip(1)
        .filter_map(|rest| rest.split_once('}').map(|(name, _)| name))
        .collect();
    let template = std::fs::read_to_string(root.join("template.yaml")).unwrap();
    let block = |start: &str, end: &str| -> Vec<String> {
        let from = template
            .find(start)
            .unwrap_or_else(|| panic!("{start} not in template"));
        let rest = &template[from + start.len()..];
        rest[..rest.find(end).unwrap()]
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    };
    let substituted: BTreeSet<String> =
        block("DefinitionUri: statemachine/repartition.asl.json", "Role:")
            .iter()
            .filter_map(|l| l.split_once(": !GetAtt").map(|(k, _)| k.to_string()))
            .collect();
    let expected: BTreeSet<String> = placeholders.iter().map(|p| p.to_string()).collect();
    assert_eq!(substituted, expected);
    let invoked = block("Sid: InvokeTheTasks", "RepartitionStateMachine:");
    let functions: Vec<&String> = invoked
        .iter()
        .filter(|l| l.starts_with("- !GetAtt"))
        .collect();
    assert_eq!(functions.len(), 4, "{invoked:?}");
    for p in &placeholders {
        let function = p.trim_end_matches("Arn");
        assert!(
            functions
                .iter()
                .any(|f| f.contains(&format!("{function}.Arn"))),
            "{function}"
        );
    }
}

#[tokio::test]
async fn a_rerun_empties_its_days_first_and_a_day_another_run_is_writing_is_not_written_twice() {
    let _serial = SFN_LOCK.lock().await;
    set_crawl_transition(
        &sfn_harness().moto.endpoint,
        json!({"progression": "immediate"}),
    )
    .await;
    let w = Workflow::new(Hooks::default()).await;
    // What an earlier run of 2026-03-01 wrote, and a day after it.
    for key in [
        "year=2026/month=3/day=1/hour=0/first-run.parquet",
        "year=2026/month=3/day=1/hour=23/first-run.parquet",
        "year=2026/month=3/day=2/hour=0/next-day.parquet",
    ] {
        w.put_target_object(key).await;
    }
    for values in [
        ["2026", "3", "1", "0"],
        ["2026", "3", "1", "23"],
        ["2026", "3", "2", "0"],
    ] {
        w.add_target_partition(values).await;
    }

    // Another execution, still running, is writing the day.
    let holder = start_waiting_execution(&w.sfn).await;
    w.dynamodb
        .put_item()
        .table_name(&w.claims)
        .item(
            "day",
            aws_sdk_dynamodb::types::AttributeValue::S("2026-03-01".into()),
        )
        .item(
            "execution",
            aws_sdk_dynamodb::types::AttributeValue::S(holder.clone()),
        )
        .send()
        .await
        .expect("the holder's claim");
    let (done, states) = w.run(json!({"date": "2026-03-01"})).await;
    assert_eq!(done.status.as_str(), "FAILED", "{done:?}");
    assert_eq!(done.error.as_deref(), Some("DayClaimed"));
    let cause = done.cause.clone().unwrap_or_default();
    assert!(
        cause.contains("2026-03-01") && cause.contains(&holder),
        "{cause}"
    );
    assert_eq!(states.last().map(String::as_str), Some("DaysClaimed"));
    assert!(!states.iter().any(|s| s == "StartQueries"), "{states:?}");
    assert_eq!(w.target_objects().await.len(), 3, "nothing was emptied");
    assert_eq!(
        w.claim_holder("2026-03-01").await.as_deref(),
        Some(holder.as_str())
    );

    // Once it has ended, its claim is taken over and the day emptied
    // before the queries run.
    w.sfn
        .stop_execution()
        .execution_arn(&holder)
        .send()
        .await
        .expect("stop the holder");
    let (done, states) = w.run(json!({"date": "2026-03-01"})).await;
    assert_eq!(
        done.status.as_str(),
        "SUCCEEDED",
        "{:?} {:?}",
        done.error,
        done.cause
    );
    assert_eq!(states, REPARTITION_PATH);
    let out = output(&done);
    assert_eq!(out["prepared"]["claimed_days"], json!(["2026-03-01"]));
    assert_eq!(out["prepared"]["cleared_objects"], 2);
    assert_eq!(out["prepared"]["cleared_partitions"], 2);
    assert_eq!(
        w.target_objects().await,
        ["year=2026/month=3/day=2/hour=0/next-day.parquet"]
    );
    assert_eq!(
        w.target_partitions().await,
        BTreeSet::from([vec!["2026".to_string(), "3".into(), "2".into(), "0".into()]])
    );
    assert_eq!(
        w.claim_holder("2026-03-01").await.as_deref(),
        Some(done.execution_arn.as_str())
    );

    // A rerun of the day (its claim held by an ended run) empties what the
    // last one wrote again: its INSERT INTO never appends to it.
    w.put_target_object("year=2026/month=3/day=1/hour=5/second-run.parquet")
        .await;
    let (again, _) = w.run(json!({"date": "2026-03-01"})).await;
    assert_eq!(again.status.as_str(), "SUCCEEDED", "{again:?}");
    assert_eq!(output(&again)["prepared"]["cleared_objects"], 1);
    assert_eq!(w.target_objects().await.len(), 1);
}
