//! The scheduler and the provider-etl state machine on moto, with the state
//! machine really executing (Glue jobs run, items are updated by the ASL):
//! which providers start, what their items say afterwards, and that no
//! provider is started twice for a slot, whatever is retried or overlaps.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration as StdDuration;

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType,
};
use chrono::{DateTime, Duration, DurationRound, Utc};
use integration_tests::{
    create_state_machine, create_state_machine_from, sdk_config, sfn_harness, states_entered,
    unique, wait_for_execution, Fault, FaultProxy, REGION,
};
use lambda_runtime::{Context, Diagnostic, LambdaEvent};
use scheduler::{dynamodb_client, sfn_client, ScheduleSummary, Scheduler};
use serde_json::json;
use telemetry_lake::scheduler::config::SchedulerConfig;
use telemetry_lake::scheduler::providers::{format_time, DynamoProviders};
use telemetry_lake::scheduler::schedule::{execution_arn, execution_name, slot};

const ASL: &str = "provider-etl.asl.json";
const SCHEDULED_EVENT: &str = include_str!("fixtures/scheduled_event.json");
/// The SDK's retries are real but quick here.
const BACKOFF: StdDuration = StdDuration::from_millis(10);

/// A providers table and a provider-etl state machine of one test.
struct Env {
    ddb: aws_sdk_dynamodb::Client,
    sfn: aws_sdk_sfn::Client,
    glue: aws_sdk_glue::Client,
    table: String,
    state_machine_arn: String,
}

impl Env {
    async fn new(prefix: &str) -> Self {
        let sdk = sdk_config(&sfn_harness().moto.endpoint, REGION).await;
        let ddb = aws_sdk_dynamodb::Client::new(&sdk);
        let sfn = aws_sdk_sfn::Client::new(&sdk);
        let glue = aws_sdk_glue::Client::new(&sdk);
        let table = unique(&format!("{prefix}-providers"));
        ddb.create_table()
            .table_name(&table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name("provider")
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .unwrap(),
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name("provider")
                    .key_type(KeyType::Hash)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .expect("create providers table");
        let state_machine_arn = create_state_machine(
            &sfn,
            ASL,
            &unique(&format!("{prefix}-etl")),
            &[("ProvidersTableName", table.clone())],
        )
        .await;
        Env {
            ddb,
            sfn,
            glue,
            table,
            state_machine_arn,
        }
    }

    fn config(&self) -> SchedulerConfig {
        SchedulerConfig {
            providers_table: self.table.clone(),
            state_machine_arn: self.state_machine_arn.clone(),
            schedule_period: Duration::minutes(15),
            stale_running_after: Duration::minutes(120),
            start_concurrency: 4,
            aws_max_attempts: 3,
            provider_job_arguments: ["--region".to_string()].into(),
        }
    }

    /// The scheduler, its AWS calls going to `endpoint` (moto or a proxy).
    async fn scheduler(&self, endpoint: &str) -> Scheduler<DynamoProviders> {
        let sdk = sdk_config(endpoint, REGION).await;
        let config = self.config();
        let source = DynamoProviders::new(
            dynamodb_client(&sdk, config.aws_max_attempts, BACKOFF),
            &self.table,
        );
        let sfn = sfn_client(&sdk, config.aws_max_attempts, BACKOFF);
        Scheduler::new(config, source, sfn)
    }

    async fn moto_scheduler(&self) -> Scheduler<DynamoProviders> {
        self.scheduler(&sfn_harness().moto.endpoint).await
    }

    /// A Glue job that exists (moto runs it STARTING → RUNNING → SUCCEEDED).
    async fn glue_job(&self, name: &str) {
        self.glue
            .create_job()
            .name(name)
            .role("arn:aws:iam::123456789012:role/glue")
            .command(
                aws_sdk_glue::types::JobCommand::builder()
                    .name("glueetl")
                    .script_location("s3://scripts/etl.py")
                    .build(),
            )
            .send()
            .await
            .expect("create glue job");
    }

    async fn put(&self, item: HashMap<String, AttributeValue>) {
        self.ddb
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .expect("put provider");
    }

    async fn item(&self, provider: &str) -> HashMap<String, AttributeValue> {
        self.ddb
            .get_item()
            .table_name(&self.table)
            .key("provider", AttributeValue::S(provider.into()))
            .consistent_read(true)
            .send()
            .await
            .expect("get provider")
            .item
            .unwrap_or_else(|| panic!("no item for {provider}"))
    }

    /// Every execution of the state machine, as (name, ARN), sorted by name.
    async fn executions(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .sfn
            .list_executions()
            .state_machine_arn(&self.state_machine_arn)
            .send()
            .await
            .expect("list executions")
            .executions
            .into_iter()
            .map(|e| (e.name, e.execution_arn))
            .collect();
        out.sort();
        out
    }

    async fn job_run_arguments(&self, job: &str) -> Vec<HashMap<String, String>> {
        self.glue
            .get_job_runs()
            .job_name(job)
            .send()
            .await
            .expect("get job runs")
            .job_runs
            .unwrap_or_default()
            .into_iter()
            .map(|r| r.arguments.unwrap_or_default())
            .collect()
    }
}

/// A provider item: enabled, hourly, its own job, `extra` attributes on top.
fn provider(
    name: &str,
    job: &str,
    extra: &[(&str, AttributeValue)],
) -> HashMap<String, AttributeValue> {
    let mut item: HashMap<String, AttributeValue> = [
        ("provider", s(name)),
        ("enabled", AttributeValue::Bool(true)),
        ("frequency_minutes", AttributeValue::N("60".into())),
        ("job_name", s(job)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    for (k, v) in extra {
        item.insert(k.to_string(), v.clone());
    }
    item
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_string())
}

fn text(item: &HashMap<String, AttributeValue>, name: &str) -> Option<String> {
    item.get(name).and_then(|v| v.as_s().ok()).cloned()
}

fn time(item: &HashMap<String, AttributeValue>, name: &str) -> Option<DateTime<Utc>> {
    text(item, name).map(|t| {
        DateTime::parse_from_rfc3339(&t)
            .unwrap_or_else(|e| panic!("{name} {t:?}: {e}"))
            .with_timezone(&Utc)
    })
}

/// Now, to the second: a scheduled time the ASL's last_success follows.
fn now() -> DateTime<Utc> {
    Utc::now().duration_trunc(Duration::seconds(1)).unwrap()
}

fn started_names(summary: &ScheduleSummary) -> Vec<&str> {
    summary
        .started
        .iter()
        .map(|s| s.provider.as_str())
        .collect()
}

fn skip_reason<'a>(summary: &'a ScheduleSummary, provider: &str) -> &'a str {
    summary
        .skipped
        .iter()
        .find(|s| s.provider == provider)
        .map(|s| s.reason.as_str())
        .unwrap_or_else(|| panic!("{provider} not skipped: {summary:#?}"))
}

async fn wait_all(env: &Env, executions: &[(String, String)]) -> Vec<String> {
    let mut statuses = Vec::new();
    for (_, arn) in executions {
        let done = wait_for_execution(&env.sfn, arn).await;
        statuses.push(done.status.as_str().to_string());
    }
    statuses
}

// ------------------------------------------------------------------ tests --

#[tokio::test]
async fn only_due_and_never_run_providers_start_and_end_succeeded() {
    let env = Env::new("five").await;
    let at = now();
    let hours_ago = |h: i64| s(&format_time(at - Duration::hours(h)));
    for job in [
        "job-due",
        "job-not-due",
        "job-running",
        "job-disabled",
        "job-never",
    ] {
        env.glue_job(&format!("{}-{job}", env.table)).await;
    }
    let job = |j: &str| format!("{}-{j}", env.table);
    let other_run = "arn:aws:states:us-east-1:123456789012:execution:elsewhere:running-1";
    let not_due_last = format_time(at - Duration::minutes(59));
    env.put(provider(
        "due",
        &job("job-due"),
        &[
            ("status", s("SUCCEEDED")),
            ("last_success", hours_ago(2)),
            (
                "job_arguments",
                AttributeValue::M([("--region".to_string(), s("eu-west-1"))].into()),
            ),
        ],
    ))
    .await;
    env.put(provider(
        "not-due",
        &job("job-not-due"),
        &[
            ("status", s("SUCCEEDED")),
            ("last_success", s(&not_due_last)),
        ],
    ))
    .await;
    env.put(provider(
        "running",
        &job("job-running"),
        &[
            ("status", s("RUNNING")),
            ("last_success", hours_ago(5)),
            ("execution_arn", s(other_run)),
            (
                "execution_started_at",
                s(&format_time(at - Duration::minutes(10))),
            ),
        ],
    ))
    .await;
    env.put(provider(
        "disabled",
        &job("job-disabled"),
        &[
            ("enabled", AttributeValue::Bool(false)),
            ("last_success", hours_ago(9)),
        ],
    ))
    .await;
    env.put(provider("never-run", &job("job-never"), &[])).await;

    let scheduler = env.moto_scheduler().await;
    let summary = scheduler.process(at).await.expect("first tick");
    assert_eq!(summary.due, ["due", "never-run"], "{summary:#?}");
    assert_eq!(started_names(&summary), ["due", "never-run"]);
    assert!(summary.started.iter().all(|s| s.how == "started"));
    assert!(summary.failed.is_empty() && summary.reconciled.is_empty());
    assert!(skip_reason(&summary, "not-due").starts_with("not due until"));
    assert!(skip_reason(&summary, "running").starts_with("running since"));
    assert_eq!(skip_reason(&summary, "disabled"), "disabled");

    // Exactly two executions, named after provider and slot.
    let slot = slot(at, Duration::minutes(15));
    let executions = env.executions().await;
    let names: Vec<&str> = executions.iter().map(|(n, _)| n.as_str()).collect();
    let mut expected = vec![
        execution_name("due", slot),
        execution_name("never-run", slot),
    ];
    expected.sort();
    assert_eq!(names, expected);
    assert_eq!(
        wait_all(&env, &executions).await,
        ["SUCCEEDED", "SUCCEEDED"]
    );
    assert_eq!(
        states_entered(&env.sfn, &executions[0].1).await,
        [
            "AddProviderArgument",
            "RunProviderJob",
            "RecordSuccess",
            "ProviderEtlSucceeded"
        ]
    );

    for p in ["due", "never-run"] {
        let item = env.item(p).await;
        assert_eq!(
            text(&item, "status").as_deref(),
            Some("SUCCEEDED"),
            "{p}: {item:?}"
        );
        let last = time(&item, "last_success").expect("last_success");
        assert!(last >= at, "{p}: last_success {last} is not new");
        assert!(!item.contains_key("execution_arn"), "{p}: {item:?}");
        assert!(!item.contains_key("execution_started_at"), "{p}: {item:?}");
    }
    // The job got its provider and the item's own arguments.
    let runs = env.job_run_arguments(&job("job-due")).await;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].get("--provider").map(String::as_str), Some("due"));
    assert_eq!(
        runs[0].get("--region").map(String::as_str),
        Some("eu-west-1")
    );
    // The others are as they were.
    let item = env.item("not-due").await;
    assert_eq!(text(&item, "last_success"), Some(not_due_last));
    let item = env.item("running").await;
    assert_eq!(text(&item, "status").as_deref(), Some("RUNNING"));
    assert_eq!(text(&item, "execution_arn").as_deref(), Some(other_run));
    assert!(env.job_run_arguments(&job("job-disabled")).await.is_empty());

    // The same slot again (a retried or duplicated tick): nothing new.
    let again = scheduler.process(at).await.expect("second tick");
    assert!(
        again.due.is_empty() && again.started.is_empty(),
        "{again:#?}"
    );
    assert!(skip_reason(&again, "due").contains("after the scheduled time"));
    assert_eq!(env.executions().await, executions);
}

#[tokio::test]
async fn a_failing_job_ends_failed_with_its_error_recorded_and_is_not_rerun_in_its_slot() {
    let env = Env::new("fail").await;
    let at = now();
    let missing_job = format!("{}-no-such-job", env.table);
    env.put(provider("broken", &missing_job, &[])).await;

    let scheduler = env.moto_scheduler().await;
    let summary = scheduler.process(at).await.expect("tick");
    assert_eq!(started_names(&summary), ["broken"]);
    let executions = env.executions().await;
    assert_eq!(executions.len(), 1);
    let done = wait_for_execution(&env.sfn, &executions[0].1).await;
    assert_eq!(done.status.as_str(), "FAILED");
    assert_eq!(done.error.as_deref(), Some("Glue.EntityNotFoundException"));
    assert_eq!(
        states_entered(&env.sfn, &executions[0].1).await,
        [
            "AddProviderArgument",
            "RunProviderJob",
            "RecordFailure",
            "ProviderEtlFailed"
        ]
    );
    let item = env.item("broken").await;
    assert_eq!(text(&item, "status").as_deref(), Some("FAILED"));
    assert_eq!(
        text(&item, "last_error").as_deref(),
        Some("Glue.EntityNotFoundException")
    );
    let cause = text(&item, "last_error_cause").unwrap_or_default();
    assert!(cause.contains(&missing_job), "cause: {cause}");
    assert!(time(&item, "last_failure").is_some_and(|t| t >= at));
    assert!(!item.contains_key("execution_arn") && !item.contains_key("last_success"));

    // Still due (it never succeeded), but its slot has had its execution: the
    // claim is taken, StartExecution says it exists and has ended, and the
    // item goes back to FAILED without a second run.
    let again = scheduler.process(at).await.expect("second tick");
    assert_eq!(again.due, ["broken"]);
    assert!(again.started.is_empty(), "{again:#?}");
    assert_eq!(
        skip_reason(&again, "broken"),
        "this slot's execution already ran and ended FAILED; next slot"
    );
    assert_eq!(env.executions().await, executions);
    let item = env.item("broken").await;
    assert_eq!(text(&item, "status").as_deref(), Some("FAILED"));
    assert_eq!(
        text(&item, "last_error").as_deref(),
        Some("Glue.EntityNotFoundException")
    );
    assert!(!item.contains_key("execution_arn"), "{item:?}");
}

#[tokio::test]
async fn overlapping_ticks_start_each_provider_once() {
    let env = Env::new("overlap").await;
    let at = now();
    let names = ["p1", "p2", "p3", "p4", "p5", "p6"];
    for p in names {
        let job = format!("{}-{p}", env.table);
        env.glue_job(&job).await;
        env.put(provider(p, &job, &[])).await;
    }
    let (a, b) = (env.moto_scheduler().await, env.moto_scheduler().await);
    let (ra, rb) = tokio::join!(a.process(at), b.process(at));
    let (ra, rb) = (ra.expect("tick a"), rb.expect("tick b"));
    assert!(
        ra.failed.is_empty() && rb.failed.is_empty(),
        "{ra:#?} {rb:#?}"
    );
    // Every provider is started by at least one tick (the other skips it, or
    // finds the execution already there).
    for p in names {
        assert!(
            started_names(&ra).contains(&p) || started_names(&rb).contains(&p),
            "{p}: {ra:#?} {rb:#?}"
        );
    }
    let executions = env.executions().await;
    let slot = slot(at, Duration::minutes(15));
    let got: Vec<&str> = executions.iter().map(|(n, _)| n.as_str()).collect();
    let want: Vec<String> = names.iter().map(|p| execution_name(p, slot)).collect();
    assert_eq!(got, want);
    assert!(wait_all(&env, &executions)
        .await
        .iter()
        .all(|s| s == "SUCCEEDED"));
    for p in names {
        let runs = env.job_run_arguments(&format!("{}-{p}", env.table)).await;
        assert_eq!(runs.len(), 1, "{p} ran its job {} times", runs.len());
    }
}

/// A late tick of the previous slot overlapping the current one: their
/// execution names differ, so only the claim keeps a provider from starting
/// twice.
#[tokio::test]
async fn a_late_tick_overlapping_the_next_one_starts_each_provider_once() {
    let env = Env::new("late").await;
    let at = now();
    let names = ["q1", "q2", "q3", "q4", "q5", "q6"];
    for p in names {
        let job = format!("{}-{p}", env.table);
        env.glue_job(&job).await;
        env.put(provider(p, &job, &[])).await;
    }
    let (late, current) = (env.moto_scheduler().await, env.moto_scheduler().await);
    let (rl, rc) = tokio::join!(
        late.process(at - Duration::minutes(15)),
        current.process(at)
    );
    let (rl, rc) = (rl.expect("late tick"), rc.expect("current tick"));
    assert!(
        rl.failed.is_empty() && rc.failed.is_empty(),
        "{rl:#?} {rc:#?}"
    );
    assert_eq!(
        rl.started.len() + rc.started.len(),
        names.len(),
        "{rl:#?} {rc:#?}"
    );
    let executions = env.executions().await;
    assert_eq!(executions.len(), names.len(), "{executions:#?}");
    for p in names {
        let theirs = executions
            .iter()
            .filter(|(n, _)| n.starts_with(&format!("{p}-")))
            .count();
        assert_eq!(theirs, 1, "{p}: {executions:#?}");
    }
    assert!(wait_all(&env, &executions)
        .await
        .iter()
        .all(|s| s == "SUCCEEDED"));
    for p in names {
        let runs = env.job_run_arguments(&format!("{}-{p}", env.table)).await;
        assert_eq!(runs.len(), 1, "{p} ran its job {} times", runs.len());
    }
}

/// The claim tests above rely on DynamoDB's conditional writes being atomic.
/// Moto's are not on their own (it answers each request on its own thread
/// and checks a condition before it writes, unlocked); the project's moto
/// launcher makes each item operation atomic. Here many claims of one item at
/// once: in every round exactly one wins and the item names it.
#[tokio::test]
async fn concurrent_conditional_writes_on_moto_let_exactly_one_through() {
    let env = Env::new("atomic").await;
    for round in 0..40 {
        let key = format!("round-{round}");
        let mut claims = tokio::task::JoinSet::new();
        for who in 0..8 {
            let update = env
                .ddb
                .update_item()
                .table_name(&env.table)
                .key("provider", s(&key))
                .update_expression("SET claimed_by = :who")
                .condition_expression("attribute_not_exists(claimed_by)")
                .expression_attribute_values(":who", s(&who.to_string()));
            claims.spawn(async move { (who, update.send().await) });
        }
        let mut winners = Vec::new();
        while let Some(joined) = claims.join_next().await {
            match joined.expect("claim task") {
                (who, Ok(_)) => winners.push(who.to_string()),
                (_, Err(e)) => assert!(
                    e.as_service_error()
                        .is_some_and(|e| e.is_conditional_check_failed_exception()),
                    "round {round}: {e:?}"
                ),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: {winners:?}");
        let item = env
            .ddb
            .get_item()
            .table_name(&env.table)
            .key("provider", s(&key))
            .consistent_read(true)
            .send()
            .await
            .expect("get item")
            .item
            .unwrap_or_default();
        assert_eq!(text(&item, "claimed_by"), Some(winners[0].clone()));
    }
}

#[tokio::test]
async fn a_throttled_start_is_retried_and_starts_once() {
    let env = Env::new("throttle").await;
    let at = now();
    let job = format!("{}-job", env.table);
    env.glue_job(&job).await;
    env.put(provider("throttled", &job, &[])).await;
    let proxy = FaultProxy::start(&sfn_harness().moto.endpoint).await;
    proxy.inject(
        Fault::aws_json(
            "AWSStepFunctions.StartExecution",
            400,
            "ThrottlingException",
        )
        .times(1),
    );

    let summary = env
        .scheduler(&proxy.endpoint)
        .await
        .process(at)
        .await
        .expect("tick");
    assert_eq!(proxy.injected(), 1);
    assert_eq!(started_names(&summary), ["throttled"], "{summary:#?}");
    let executions = env.executions().await;
    assert_eq!(executions.len(), 1);
    assert_eq!(wait_all(&env, &executions).await, ["SUCCEEDED"]);
    assert_eq!(env.job_run_arguments(&job).await.len(), 1);
}

#[tokio::test]
async fn a_start_that_keeps_failing_releases_the_claim_and_fails_the_tick() {
    let env = Env::new("denied").await;
    let job = format!("{}-job", env.table);
    env.glue_job(&job).await;
    env.put(provider(
        "unlucky",
        &job,
        &[
            ("status", s("FAILED")),
            ("last_success", s("2026-11-22T00:00:00.000Z")),
        ],
    ))
    .await;
    let proxy = FaultProxy::start(&sfn_harness().moto.endpoint).await;
    proxy.inject(Fault::aws_json(
        "AWSStepFunctions.StartExecution",
        400,
        "ThrottlingException",
    ));
    let event: EventBridgeEvent = serde_json::from_str(SCHEDULED_EVENT).expect("fixture");
    let (metrics, recorded) = integration_tests::test_metrics("stack-Scheduler-1");
    let scheduler = env.scheduler(&proxy.endpoint).await.with_metrics(metrics);

    let err = scheduler
        .handle(LambdaEvent::new(event.clone(), Context::default()))
        .await
        .expect_err("a provider that could not start fails the tick");
    // Every configured attempt was made.
    assert_eq!(proxy.injected(), 3);
    let diagnostic = Diagnostic::from(err);
    assert_eq!(diagnostic.error_type, "Retryable");
    assert!(
        diagnostic.error_message.contains("unlucky")
            && diagnostic.error_message.contains("ThrottlingException"),
        "{}",
        diagnostic.error_message
    );
    assert!(env.executions().await.is_empty());
    // The claim is undone: back to FAILED, with why, and no execution.
    let item = env.item("unlucky").await;
    assert_eq!(text(&item, "status").as_deref(), Some("FAILED"));
    assert!(!item.contains_key("execution_arn") && !item.contains_key("execution_started_at"));
    let error = text(&item, "last_error").unwrap_or_default();
    assert!(
        error.starts_with("could not start its execution"),
        "{error}"
    );

    // Lambda retries the tick once Step Functions recovers: it starts.
    proxy.heal();
    let summary = scheduler
        .handle(LambdaEvent::new(event, Context::default()))
        .await
        .expect("retried tick");
    assert_eq!(started_names(&summary), ["unlucky"]);
    let executions = env.executions().await;
    assert_eq!(
        executions[0].0,
        execution_name(
            "unlucky",
            DateTime::parse_from_rfc3339("2026-11-23T10:15:00Z")
                .unwrap()
                .into()
        )
    );
    assert_eq!(wait_all(&env, &executions).await, ["SUCCEEDED"]);

    // One document per tick: the failed one, then the one that started it.
    let ticks = integration_tests::emf_invocations(&recorded.lines());
    let counts: Vec<[f64; 5]> = ticks
        .iter()
        .map(|t| {
            [
                "ProvidersDue",
                "ProvidersStarted",
                "ProvidersSkipped",
                "ProvidersReconciled",
                "ProvidersFailed",
            ]
            .map(|m| t.value(m))
        })
        .collect();
    assert_eq!(
        counts,
        [[1.0, 0.0, 0.0, 0.0, 1.0], [1.0, 1.0, 0.0, 0.0, 0.0]]
    );
    assert!(ticks.iter().all(|t| t.function == "stack-Scheduler-1"));
}

#[tokio::test]
async fn bad_provider_items_are_reported_and_the_others_go_on() {
    let env = Env::new("bad").await;
    let at = now();
    let job = format!("{}-job", env.table);
    env.glue_job(&job).await;
    env.put(provider("good", &job, &[])).await;
    env.put(provider(
        "zero",
        &job,
        &[("frequency_minutes", AttributeValue::N("0".into()))],
    ))
    .await;
    env.put(provider(
        "garbled",
        &job,
        &[("last_success", s("Tue, 08 Nov 2022 15:47:17 GMT"))],
    ))
    .await;

    let summary = env.moto_scheduler().await.process(at).await.expect("tick");
    assert_eq!(started_names(&summary), ["good"]);
    let failed: BTreeMap<&str, &str> = summary
        .failed
        .iter()
        .map(|f| (f.provider.as_str(), f.error.as_str()))
        .collect();
    assert_eq!(
        failed["zero"],
        "provider \"zero\": attribute frequency_minutes is 0; it must be a positive number of minutes"
    );
    assert!(failed["garbled"].starts_with("provider \"garbled\": attribute last_success"));
    assert!(summary.failed.iter().all(|f| !f.retryable));
    assert_eq!(wait_all(&env, &env.executions().await).await, ["SUCCEEDED"]);
}

#[tokio::test]
async fn job_arguments_outside_the_allow_list_are_refused_and_recorded_on_the_item() {
    let env = Env::new("args").await;
    let at = now();
    let job = format!("{}-job", env.table);
    env.glue_job(&job).await;
    let args = |pairs: &[(&str, &str)]| {
        AttributeValue::M(pairs.iter().map(|(k, v)| (k.to_string(), s(v))).collect())
    };
    env.put(provider(
        "allowed",
        &job,
        &[("job_arguments", args(&[("--region", "eu-west-1")]))],
    ))
    .await;
    env.put(provider(
        "hostile",
        &job,
        &[(
            "job_arguments",
            args(&[
                ("--region", "eu-west-1"),
                ("--extra-py-files", "s3://elsewhere/run.py"),
                ("--conf", "spark.driver.extraJavaOptions=-javaagent:x"),
            ]),
        )],
    ))
    .await;

    let summary = env.moto_scheduler().await.process(at).await.expect("tick");
    assert_eq!(started_names(&summary), ["allowed"]);
    assert_eq!(summary.failed.len(), 1, "{:?}", summary.failed);
    let refused = &summary.failed[0];
    assert_eq!(refused.provider, "hostile");
    assert!(!refused.retryable);
    assert!(
        refused
            .error
            .contains("sets --conf, --extra-py-files, which a provider may not set")
            && refused.error.contains("allowed: --region"),
        "{}",
        refused.error
    );
    // The reason is on the item, which is otherwise untouched.
    let item = env.item("hostile").await;
    assert_eq!(
        text(&item, "last_error").as_deref(),
        Some("InvalidProviderSettings")
    );
    assert_eq!(text(&item, "last_error_cause"), Some(refused.error.clone()));
    assert_eq!(text(&item, "status"), None);
    assert_eq!(text(&item, "execution_arn"), None);
    let first_recorded = text(&item, "last_failure").expect("last_failure");
    // The next tick refuses it again without rewriting the same reason.
    let again = env
        .moto_scheduler()
        .await
        .process(at + Duration::minutes(15))
        .await
        .expect("next tick");
    assert_eq!(again.failed.len(), 1);
    assert_eq!(
        text(&env.item("hostile").await, "last_failure"),
        Some(first_recorded)
    );
    // Only the allowed provider's job ran, with its argument.
    let executions = env.executions().await;
    assert_eq!(executions.len(), 1, "{executions:?}");
    assert!(executions[0].0.starts_with("allowed"), "{executions:?}");
}

#[tokio::test]
async fn stale_running_providers_are_reconciled_with_their_executions() {
    let env = Env::new("stale").await;
    let at = now();
    let long_ago = s(&format_time(at - Duration::hours(4)));
    // Executions of other machines stand in for runs whose own writes were
    // lost: one that finished, one that is still running.
    let done_sm = create_state_machine_from(
        &env.sfn,
        &unique("stale-done"),
        &json!({"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": true}}}).to_string(),
    )
    .await;
    let failing_sm = create_state_machine_from(
        &env.sfn,
        &unique("stale-failing"),
        &json!({"StartAt": "Boom", "States": {"Boom": {"Type": "Fail", "Error": "Boom", "Cause": "it broke"}}})
            .to_string(),
    )
    .await;
    let slow_sm = create_state_machine_from(
        &env.sfn,
        &unique("stale-slow"),
        &json!({"StartAt": "Sleep", "States": {"Sleep": {"Type": "Wait", "Seconds": 3600, "End": true}}})
            .to_string(),
    )
    .await;
    let start = |sm: String| {
        let sfn = env.sfn.clone();
        async move {
            sfn.start_execution()
                .state_machine_arn(sm)
                .input("{}")
                .send()
                .await
                .expect("start")
                .execution_arn
        }
    };
    let finished = start(done_sm).await;
    let finished_stop = wait_for_execution(&env.sfn, &finished)
        .await
        .stop_date
        .expect("stop date");
    let failed = start(failing_sm).await;
    assert_eq!(
        wait_for_execution(&env.sfn, &failed).await.status.as_str(),
        "FAILED"
    );
    let slow = start(slow_sm).await;
    let never_started = execution_arn(&env.state_machine_arn, "claimed-then-crashed");
    for (p, arn) in [
        ("finished", &finished),
        ("failed", &failed),
        ("slow", &slow),
        ("lost", &never_started),
    ] {
        env.put(provider(
            p,
            "job",
            &[
                ("status", s("RUNNING")),
                ("execution_arn", s(arn)),
                ("execution_started_at", long_ago.clone()),
            ],
        ))
        .await;
    }

    let summary = env.moto_scheduler().await.process(at).await.expect("tick");
    let reconciled: Vec<(&str, &str)> = summary
        .reconciled
        .iter()
        .map(|r| (r.provider.as_str(), r.status))
        .collect();
    assert_eq!(
        reconciled,
        [
            ("failed", "FAILED"),
            ("finished", "SUCCEEDED"),
            ("lost", "FAILED")
        ],
        "{summary:#?}"
    );
    assert_eq!(summary.stuck.len(), 1);
    assert_eq!(summary.stuck[0].provider, "slow");
    assert!(summary.started.is_empty() && summary.failed.is_empty());

    let item = env.item("finished").await;
    assert_eq!(text(&item, "status").as_deref(), Some("SUCCEEDED"));
    let last = time(&item, "last_success").expect("last_success");
    assert_eq!(last.timestamp_millis(), finished_stop.to_millis().unwrap());
    assert!(!item.contains_key("execution_arn"));
    let item = env.item("failed").await;
    assert_eq!(text(&item, "status").as_deref(), Some("FAILED"));
    assert_eq!(text(&item, "last_error").as_deref(), Some("Boom"));
    assert_eq!(text(&item, "last_error_cause").as_deref(), Some("it broke"));
    assert!(time(&item, "last_failure").is_some());
    assert!(!item.contains_key("execution_arn"));
    let item = env.item("lost").await;
    assert_eq!(text(&item, "status").as_deref(), Some("FAILED"));
    assert_eq!(
        text(&item, "last_error").as_deref(),
        Some("ExecutionDoesNotExist")
    );
    assert!(!item.contains_key("execution_arn"));
    let item = env.item("slow").await;
    assert_eq!(text(&item, "status").as_deref(), Some("RUNNING"));
    assert_eq!(text(&item, "execution_arn"), Some(slow.clone()));
    env.sfn
        .stop_execution()
        .execution_arn(&slow)
        .send()
        .await
        .expect("stop slow");
}

#[tokio::test]
async fn a_claim_whose_start_was_lost_is_resumed_in_its_slot() {
    let env = Env::new("resume").await;
    let at = now();
    let job = format!("{}-job", env.table);
    env.glue_job(&job).await;
    // What a tick that crashed between claim and start leaves behind.
    let name = execution_name("crashed", slot(at, Duration::minutes(15)));
    let arn = execution_arn(&env.state_machine_arn, &name);
    env.put(provider(
        "crashed",
        &job,
        &[
            ("status", s("RUNNING")),
            ("execution_arn", s(&arn)),
            ("execution_started_at", s(&format_time(at))),
        ],
    ))
    .await;

    let summary = env.moto_scheduler().await.process(at).await.expect("tick");
    assert_eq!(summary.started.len(), 1, "{summary:#?}");
    assert_eq!(summary.started[0].how, "resumed");
    assert_eq!(summary.started[0].execution_arn, arn);
    assert_eq!(env.executions().await, [(name, arn.clone())]);
    assert_eq!(
        wait_for_execution(&env.sfn, &arn).await.status.as_str(),
        "SUCCEEDED"
    );
    let item = env.item("crashed").await;
    assert_eq!(text(&item, "status").as_deref(), Some("SUCCEEDED"));
}

#[test]
fn the_template_and_the_state_machine_agree_with_the_code() {
    let root = lake_tools::moto::repo_root();
    let asl = std::fs::read_to_string(root.join("statemachine").join(ASL)).expect("ASL");
    let template = std::fs::read_to_string(root.join("template.yaml")).expect("template");
    // Every placeholder of the ASL is substituted by the template.
    let section = &template[template
        .find("  ProviderEtlStateMachine:\n")
        .expect("state machine in template")..];
    let substitutions = &section[section
        .find("DefinitionSubstitutions:")
        .expect("substitutions")..];
    for (i, _) in asl.match_indices("${") {
        let key = &asl[i + 2..i + asl[i..].find('}').expect("closing brace")];
        assert!(
            substitutions.contains(&format!("\n        {key}:")),
            "${{{key}}} has no DefinitionSubstitution"
        );
    }
    assert!(section.contains(&format!("DefinitionUri: statemachine/{ASL}")));
    // The state machine writes the attributes the scheduler reads.
    use telemetry_lake::scheduler::providers::attr;
    for name in [
        attr::PROVIDER,
        attr::STATUS,
        attr::LAST_SUCCESS,
        attr::EXECUTION_ARN,
        attr::EXECUTION_STARTED_AT,
        attr::LAST_ERROR,
        attr::LAST_ERROR_CAUSE,
    ] {
        assert!(asl.contains(name), "the ASL never writes {name}");
    }
    // The function names executions by the period its schedule runs at.
    assert!(template.contains("Schedule: !Sub \"rate(${SchedulePeriodMinutes} minutes)\""));
    assert!(template.contains("SCHEDULE_PERIOD_MINUTES: !Ref SchedulePeriodMinutes"));
}

#[tokio::test]
async fn an_execution_that_is_not_the_items_own_never_overwrites_it() {
    let env = Env::new("unclaimed").await;
    let job = format!("{}-job", env.table);
    env.glue_job(&job).await;
    let owner = "arn:aws:states:us-east-1:123456789012:execution:elsewhere:owner";
    env.put(provider(
        "taken",
        &job,
        &[("status", s("RUNNING")), ("execution_arn", s(owner))],
    ))
    .await;
    // Started by hand, not by the scheduler: the item names another run.
    let input = json!({"provider": "taken", "job_name": job, "job_arguments": {}});
    let arn = env
        .sfn
        .start_execution()
        .state_machine_arn(&env.state_machine_arn)
        .name("by-hand")
        .input(input.to_string())
        .send()
        .await
        .expect("start")
        .execution_arn;
    let done = wait_for_execution(&env.sfn, &arn).await;
    assert_eq!(done.status.as_str(), "FAILED");
    assert_eq!(done.error.as_deref(), Some("ProviderNoLongerClaimed"));
    assert_eq!(
        states_entered(&env.sfn, &arn).await,
        [
            "AddProviderArgument",
            "RunProviderJob",
            "RecordSuccess",
            "ProviderNoLongerClaimed"
        ]
    );
    let item = env.item("taken").await;
    assert_eq!(text(&item, "status").as_deref(), Some("RUNNING"));
    assert_eq!(text(&item, "execution_arn").as_deref(), Some(owner));
    assert!(!item.contains_key("last_success"));
}

#[tokio::test]
async fn an_event_without_a_time_is_rejected_without_touching_a_provider() {
    let env = Env::new("notime").await;
    env.put(provider("untouched", "job", &[])).await;
    let mut event: serde_json::Value = serde_json::from_str(SCHEDULED_EVENT).expect("fixture");
    event.as_object_mut().expect("object").remove("time");
    let event: EventBridgeEvent = serde_json::from_value(event).expect("event");
    let err = env
        .moto_scheduler()
        .await
        .handle(LambdaEvent::new(event, Context::default()))
        .await
        .expect_err("no scheduled time");
    let diagnostic = Diagnostic::from(err);
    assert_eq!(diagnostic.error_type, "NonRetryable");
    assert!(
        diagnostic.error_message.contains("no time"),
        "{}",
        diagnostic.error_message
    );
    assert!(env.executions().await.is_empty());
    assert!(!env.item("untouched").await.contains_key("status"));
}
