//! `start-queries`: renders the repartition SQL for the run's days, split
//! into queries that each write at most the configured number of partitions,
//! and starts them in the configured Athena workgroup.
//!
//! Input: the workflow's state with `from` and `to` (`YYYY-MM-DD`, as
//! start-crawler wrote them; validated again here). Output: the same object
//! with `queries` (id, days, token of each), `query_execution_ids` and
//! `query_polls` = 0.
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
use telemetry_lake::repartition::config::StartQueriesConfig;
use telemetry_lake::repartition::dates::{parse_date, DateRange};
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

/// The function, built once per container.
pub struct StartQueries {
    config: StartQueriesConfig,
    athena: aws_sdk_athena::Client,
}

impl StartQueries {
    /// Prepares the function.
    pub fn new(config: StartQueriesConfig, athena: aws_sdk_athena::Client) -> Self {
        StartQueries { config, athena }
    }

    /// The function as it runs in Lambda and in the local run: the
    /// configuration read through `env`, the clients from `aws`.
    pub fn load(
        env: impl Fn(&str) -> Option<String>,
        aws: &aws_config::SdkConfig,
    ) -> Result<Self, telemetry_lake::config::ConfigError> {
        Ok(Self::new(
            StartQueriesConfig::from_lookup(env)?,
            aws_sdk_athena::Client::new(aws),
        ))
    }

    /// Lambda entry point.
    pub async fn handle(&self, event: LambdaEvent<Value>) -> Result<Value, Diagnostic> {
        self.process(event.payload).await.map_err(|e| {
            tracing::error!(error = %e, error_type = e.error_type(), "start-queries failed");
            e.into()
        })
    }

    /// Starts the queries and returns the state with their ids added.
    #[tracing::instrument(skip(self, input))]
    pub async fn process(&self, input: Value) -> Result<Value, TaskError> {
        let mut state = input_object(input)?;
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
