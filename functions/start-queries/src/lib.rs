//! `start-queries`: the task of the repartition workflow that writes the
//! repartitioned table. In two phases, two states of the workflow:
//!
//! * `{"phase": "prepare", "from", "to", "run_id"}` (`ClaimAndClearDays`):
//!   claims the run's days for the execution `run_id` and empties them in
//!   the target table, its objects and its catalog partitions
//!   ([`telemetry_lake::repartition::target`]), so that `INSERT INTO`
//!   (which appends) writes each day once; with `LAKE_FORMAT` `iceberg` the
//!   days are claimed only (`MERGE INTO` replaces what a day holds). A day
//!   another running execution
//!   holds is the error `DayClaimed`. Output: `claimed_days`,
//!   `cleared_objects`, `cleared_partitions`.
//! * otherwise (`StartQueries`): renders the repartition SQL for the run's
//!   days, split into queries that each write at most the configured number
//!   of partitions, and starts them in the configured Athena workgroup.
//!   Input: the workflow's state with `from` and `to` (`YYYY-MM-DD`, as
//!   start-crawler wrote them; validated again here). Output: the same
//!   object with `queries` (id, days, token of each), `query_execution_ids`
//!   and `query_polls` = 0.
//!
//! The phases are separate states so that a retry of `StartQueries` never
//! empties what the queries it already started wrote.
//!
//! Each query's `ClientRequestToken` is the SHA-256 of the workgroup, the
//! run (`run_id`: the Step Functions execution) and its SQL, so when the
//! state machine retries this task after a partial failure the queries
//! already started are started with the same tokens, and Athena returns the
//! existing executions instead of running them again; a new execution
//! rerunning a day gets new tokens.

use lambda_runtime::{Diagnostic, LambdaEvent};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use telemetry_lake::metrics::{self, Invocation, MetricsOut};
use telemetry_lake::repartition::config::StartQueriesConfig;
use telemetry_lake::repartition::dates::{parse_date, DateRange};
use telemetry_lake::repartition::queries::LakeLayout;
use telemetry_lake::repartition::target::{clear_days, Cleared, DayClaims};
use telemetry_lake::repartition::task_error::{input_object, string_field, TaskError};

/// One started query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartedQuery {
    /// Athena's query execution id.
    pub id: String,
    /// First day it writes.
    pub from: chrono::NaiveDate,
    /// Last day it writes (inclusive).
    pub to: chrono::NaiveDate,
    /// The idempotency token it was started with.
    pub client_request_token: String,
}

/// What the `prepare` phase works with: the day claims and the target
/// table's catalog and objects.
pub struct Target {
    claims: DayClaims,
    glue: aws_sdk_glue::Client,
    s3: aws_sdk_s3::Client,
}

impl Target {
    /// The clients from `aws`, the claims in `claims_table`.
    pub fn new(aws: &aws_config::SdkConfig, claims_table: &str) -> Self {
        Target {
            claims: DayClaims::new(
                aws_sdk_dynamodb::Client::new(aws),
                aws_sdk_sfn::Client::new(aws),
                claims_table,
            ),
            glue: aws_sdk_glue::Client::new(aws),
            s3: telemetry_lake::lake::writer::s3_client(aws),
        }
    }
}

/// The function, built once per container.
pub struct StartQueries {
    config: StartQueriesConfig,
    athena: aws_sdk_athena::Client,
    target: Option<Target>,
    metrics: MetricsOut,
}

impl StartQueries {
    /// Prepares the function; [`StartQueries::with_target`] adds what the
    /// `prepare` phase needs.
    pub fn new(config: StartQueriesConfig, athena: aws_sdk_athena::Client) -> Self {
        StartQueries {
            config,
            athena,
            target: None,
            metrics: MetricsOut::from_env(|_| None, "start-queries"),
        }
    }

    /// The same, able to claim and empty days.
    pub fn with_target(mut self, target: Target) -> Self {
        self.target = Some(target);
        self
    }

    /// The same function writing its metrics to `metrics`.
    pub fn with_metrics(mut self, metrics: MetricsOut) -> Self {
        self.metrics = metrics;
        self
    }

    /// The function as it runs in Lambda and in the local run: the
    /// configuration read through `env`, the clients from `aws`.
    pub fn load(
        env: impl Fn(&str) -> Option<String>,
        aws: &aws_config::SdkConfig,
    ) -> Result<Self, telemetry_lake::config::ConfigError> {
        let metrics = MetricsOut::from_env(&env, "start-queries");
        let config = StartQueriesConfig::from_lookup(env)?;
        let target = Target::new(aws, &config.claims_table);
        Ok(Self::new(config, aws_sdk_athena::Client::new(aws))
            .with_target(target)
            .with_metrics(metrics))
    }

    /// Lambda entry point.
    pub async fn handle(&self, event: LambdaEvent<Value>) -> Result<Value, Diagnostic> {
        let mut invocation = Invocation::start(&event.context.request_id);
        let result = self.process(event.payload).await;
        if let Ok(state) = &result {
            // The prepare phase claims the days, the start phase starts
            // the queries.
            if let Some(days) = state["claimed_days"].as_array() {
                invocation.count(metrics::DAYS, days.len());
            }
            if let Some(ids) = state["query_execution_ids"].as_array() {
                invocation.count(metrics::QUERIES_STARTED, ids.len());
            }
        }
        self.metrics.emit(&invocation);
        result.map_err(|e| {
            tracing::error!(error = %e, error_type = e.error_type(), "start-queries failed");
            e.into()
        })
    }

    /// Runs the phase the input names.
    #[tracing::instrument(skip(self, input))]
    pub async fn process(&self, input: Value) -> Result<Value, TaskError> {
        let state = input_object(input)?;
        match string_field(&state, "phase")? {
            // Boxed: the claim's nested SDK futures would otherwise make the
            // handler's future type too deep for the compiler's layout limit.
            Some("prepare") => Box::pin(self.prepare(&state)).await,
            None | Some("start") => self.start(state).await,
            Some(other) => Err(TaskError::InvalidInput(format!(
                "`phase` must be \"prepare\" or \"start\", not {other:?}"
            ))),
        }
    }

    /// Claims the run's days and empties them in the target table.
    async fn prepare(&self, state: &serde_json::Map<String, Value>) -> Result<Value, TaskError> {
        let range = self.range(state)?;
        let run = string_field(state, "run_id")?
            .filter(|r| !r.is_empty())
            .ok_or_else(|| {
                TaskError::InvalidInput(
                    "`run_id` (the execution claiming the days) is missing".to_string(),
                )
            })?;
        let target = self.target.as_ref().ok_or(TaskError::NonRetryable {
            operation: "claiming the days",
            message: "start-queries was built without its target (StartQueries::with_target)"
                .to_string(),
        })?;
        let days = range.days();
        target.claims.claim(&days, run, chrono::Utc::now()).await?;
        let tables = self.config.repartition.tables();
        // MERGE INTO replaces a day's rows itself; INSERT INTO appends.
        let cleared = match self.config.layout {
            LakeLayout::Iceberg => Cleared::default(),
            LakeLayout::Hive => {
                clear_days(
                    &target.glue,
                    &target.s3,
                    &tables.database,
                    &tables.target,
                    &days,
                )
                .await?
            }
        };
        tracing::info!(
            days = days.len(),
            objects = cleared.objects,
            partitions = cleared.partitions,
            "days claimed and emptied"
        );
        Ok(json!({
            "claimed_days": days,
            "cleared_objects": cleared.objects,
            "cleared_partitions": cleared.partitions,
        }))
    }

    /// Starts the queries and returns the state with their ids added.
    async fn start(&self, mut state: serde_json::Map<String, Value>) -> Result<Value, TaskError> {
        let range = self.range(&state)?;
        let run = string_field(&state, "run_id")?.unwrap_or_default();
        let plan = self
            .config
            .repartition
            .plan(range, &self.config.workgroup, run)
            .map_err(|e| TaskError::NonRetryable {
                operation: "rendering the SQL",
                message: e.to_string(),
            })?;
        let mut started = Vec::with_capacity(plan.len());
        for query in plan {
            let out = self
                .athena
                .start_query_execution()
                .query_string(&query.sql)
                .client_request_token(&query.client_request_token)
                .work_group(&self.config.workgroup)
                .query_execution_context(
                    aws_sdk_athena::types::QueryExecutionContext::builder()
                        .database(&self.config.database)
                        .build(),
                )
                .send()
                .await
                .map_err(|e| TaskError::from_sdk("StartQueryExecution", &e))?;
            let id = out.query_execution_id().unwrap_or_default().to_string();
            tracing::info!(id = %id, from = %query.range.from, to = %query.range.to, "query started");
            started.push(StartedQuery {
                id,
                from: query.range.from,
                to: query.range.to,
                client_request_token: query.client_request_token,
            });
        }
        let ids: Vec<&str> = started.iter().map(|q| q.id.as_str()).collect();
        state.insert("query_execution_ids".into(), json!(ids));
        state.insert("queries".into(), json!(started));
        state.insert("query_polls".into(), json!(0));
        Ok(Value::Object(state))
    }

    fn range(&self, state: &serde_json::Map<String, Value>) -> Result<DateRange, TaskError> {
        let day = |field: &'static str| -> Result<chrono::NaiveDate, TaskError> {
            let text = string_field(state, field)?
                .ok_or_else(|| TaskError::InvalidInput(format!("`{field}` is missing")))?;
            parse_date(field, text).map_err(|e| TaskError::InvalidInput(e.to_string()))
        };
        let (from, to) = (day("from")?, day("to")?);
        if from > to {
            return Err(TaskError::InvalidInput(format!(
                "`from` ({from}) is after `to` ({to})"
            )));
        }
        let range = DateRange { from, to };
        if range.len_days() > u64::from(self.config.max_range_days) {
            return Err(TaskError::InvalidInput(format!(
                "the range {from}..{to} holds {} days, more than the {} allowed",
                range.len_days(),
                self.config.max_range_days
            )));
        }
        Ok(range)
    }
}
