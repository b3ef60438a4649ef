//! `query-status`: asks Athena about each started query (one
//! `GetQueryExecution` per id; `BatchGetQueryExecution` would do it in one
//! call, but moto lacks it and a run has a handful of queries) and reduces
//! the answers to SUCCEEDED, FAILED (with each failed id and Athena's
//! reason) or RUNNING.
//!
//! Input: the workflow's state with `query_execution_ids` (and
//! `query_polls`, default 0). Output: the same object with `query_state`,
//! `queries_succeeded`, `queries_running`, `failed_queries`, `cause` (one
//! line naming each failed query and its reason, or `null`),
//! `stopped_queries` and `query_polls` + 1.
//!
//! When any query failed, the ones still queued or running are stopped
//! (`StopQueryExecution`, listed in `stopped_queries`): the run fails, and a
//! sibling left running would keep inserting rows for days the next run
//! writes again.

use futures::future::try_join_all;
use lambda_runtime::{Diagnostic, LambdaEvent};
use serde_json::{json, Value};
use telemetry_lake::metrics::{self, Invocation, MetricsOut};
use telemetry_lake::repartition::queries::{aggregate, OverallState, QueryState};
use telemetry_lake::repartition::task_error::{input_object, TaskError};

/// The function, built once per container.
pub struct QueryStatus {
    athena: aws_sdk_athena::Client,
    metrics: MetricsOut,
}

impl QueryStatus {
    /// Prepares the function.
    pub fn new(athena: aws_sdk_athena::Client) -> Self {
        QueryStatus {
            athena,
            metrics: MetricsOut::from_env(|_| None, "query-status"),
        }
    }

    /// The same function writing its metrics to `metrics`.
    pub fn with_metrics(mut self, metrics: MetricsOut) -> Self {
        self.metrics = metrics;
        self
    }

    /// The function as it runs in Lambda and in the local run: its only
    /// setting is where its metrics go, read through `env`; the Athena
    /// client from `aws`.
    pub fn load(env: impl Fn(&str) -> Option<String>, aws: &aws_config::SdkConfig) -> Self {
        Self::new(aws_sdk_athena::Client::new(aws))
            .with_metrics(MetricsOut::from_env(env, "query-status"))
    }

    /// Lambda entry point.
    pub async fn handle(&self, event: LambdaEvent<Value>) -> Result<Value, Diagnostic> {
        let mut invocation = Invocation::start(&event.context.request_id);
        let result = self.process(event.payload).await;
        if let Ok(state) = &result {
            let failed = state["failed_queries"].as_array().map_or(0, Vec::len);
            invocation
                .count(metrics::QUERY_POLLS, 1)
                .count(metrics::QUERIES_FAILED, failed);
        }
        self.metrics.emit(&invocation);
        result.map_err(|e| {
            tracing::error!(error = %e, error_type = e.error_type(), "query-status failed");
            e.into()
        })
    }

    /// Reads the queries' states and returns the state with the answer added.
    #[tracing::instrument(skip(self, input))]
    pub async fn process(&self, input: Value) -> Result<Value, TaskError> {
        let mut state = input_object(input)?;
        let ids = query_ids(state.get("query_execution_ids"))?;
        let polls = match state.get("query_polls") {
            None | Some(Value::Null) => 0,
            Some(v) => v.as_u64().ok_or_else(|| {
                TaskError::InvalidInput(format!("`query_polls` must be a whole number, not {v}"))
            })?,
        };
        let states = try_join_all(ids.iter().map(|id| self.query_state(id))).await?;
        let report = aggregate(&states);
        // A failed query fails the run: its siblings still queued or running
        // would go on inserting rows of a run that will be made again, so
        // they are stopped. A stop that fails is an error, so the state
        // machine retries this task, which polls and stops again.
        let stopped: Vec<&str> = if report.state == OverallState::Failed {
            states
                .iter()
                .filter(|s| matches!(s.state.as_str(), "QUEUED" | "RUNNING"))
                .map(|s| s.id.as_str())
                .collect()
        } else {
            Vec::new()
        };
        try_join_all(stopped.iter().map(|id| self.stop(id))).await?;
        tracing::info!(
            queries = states.len(),
            succeeded = report.succeeded,
            running = report.running,
            failed = report.failed.len(),
            stopped = stopped.len(),
            "queries polled"
        );
        state.insert("stopped_queries".into(), json!(stopped));
        state.insert("query_state".into(), json!(report.state));
        state.insert("queries_succeeded".into(), json!(report.succeeded));
        state.insert("queries_running".into(), json!(report.running));
        state.insert("failed_queries".into(), json!(report.failed));
        state.insert("cause".into(), json!(report.cause));
        state.insert("query_polls".into(), json!(polls + 1));
        Ok(Value::Object(state))
    }

    async fn stop(&self, id: &str) -> Result<(), TaskError> {
        self.athena
            .stop_query_execution()
            .query_execution_id(id)
            .send()
            .await
            .map_err(|e| TaskError::from_sdk("StopQueryExecution", &e))?;
        tracing::warn!(id, "query stopped: a sibling failed");
        Ok(())
    }

    async fn query_state(&self, id: &str) -> Result<QueryState, TaskError> {
        let out = self
            .athena
            .get_query_execution()
            .query_execution_id(id)
            .send()
            .await
            .map_err(|e| TaskError::from_sdk("GetQueryExecution", &e))?;
        let status = out.query_execution().and_then(|q| q.status());
        Ok(QueryState {
            id: id.to_string(),
            state: status
                .and_then(|s| s.state())
                .map_or("QUEUED", |s| s.as_str())
                .to_string(),
            reason: status
                .and_then(|s| s.state_change_reason())
                .map(str::to_string),
        })
    }
}

/// The non-empty list of query ids.
fn query_ids(value: Option<&Value>) -> Result<Vec<String>, TaskError> {
    let invalid = || {
        TaskError::InvalidInput(
            "`query_execution_ids` must be a non-empty list of query execution ids".to_string(),
        )
    };
    let list = value.and_then(Value::as_array).ok_or_else(invalid)?;
    let ids: Option<Vec<String>> = list
        .iter()
        .map(|v| v.as_str().filter(|s| !s.is_empty()).map(str::to_string))
        .collect();
    ids.filter(|ids| !ids.is_empty()).ok_or_else(invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_must_be_a_non_empty_list_of_strings() {
        assert_eq!(query_ids(Some(&json!(["a", "b"]))).unwrap(), ["a", "b"]);
        for bad in [json!([]), json!("a"), json!([1]), json!([""])] {
            assert!(query_ids(Some(&bad)).is_err(), "{bad}");
        }
        assert!(query_ids(None).is_err());
    }
}
