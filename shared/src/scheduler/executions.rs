//! The Step Functions side: starting a provider's execution by name and
//! reading how an execution ended.

use crate::scheduler::providers::{ProviderSettings, RunOutcome};
use aws_sdk_sfn::types::ExecutionStatus;
use aws_smithy_types::error::display::DisplayErrorContext;
use chrono::{DateTime, TimeZone, Utc};
use serde_json::json;

/// The input of a provider-etl execution. Deterministic (arguments sorted),
/// so restarting the same name with the same settings is idempotent.
pub fn execution_input(provider: &ProviderSettings) -> String {
    json!({
        "provider": provider.provider,
        "job_name": provider.job_name,
        "job_arguments": provider.job_arguments,
    })
    .to_string()
}

/// What StartExecution did.
#[derive(Debug)]
pub enum Start {
    Started {
        execution_arn: String,
    },
    /// An execution with this name exists (running, or finished).
    AlreadyExists,
}

/// What DescribeExecution said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Execution {
    Running,
    Ended(RunOutcome),
    DoesNotExist,
}

/// Starts `name` with `input` on `state_machine_arn`.
pub async fn start(
    sfn: &aws_sdk_sfn::Client,
    state_machine_arn: &str,
    name: &str,
    input: String,
) -> Result<Start, String> {
    match sfn
        .start_execution()
        .state_machine_arn(state_machine_arn)
        .name(name)
        .input(input)
        .send()
        .await
    {
        Ok(out) => Ok(Start::Started {
            execution_arn: out.execution_arn,
        }),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_execution_already_exists()) =>
        {
            Ok(Start::AlreadyExists)
        }
        Err(e) => Err(format!("StartExecution {name}: {}", DisplayErrorContext(e))),
    }
}

/// How `execution_arn` stands. A finished execution's outcome is what the
/// provider item should say: SUCCEEDED with the stop time as the last
/// success, anything else FAILED with the execution's error and cause.
pub async fn describe(sfn: &aws_sdk_sfn::Client, execution_arn: &str) -> Result<Execution, String> {
    let out = match sfn
        .describe_execution()
        .execution_arn(execution_arn)
        .send()
        .await
    {
        Ok(out) => out,
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_execution_does_not_exist()) =>
        {
            return Ok(Execution::DoesNotExist);
        }
        Err(e) => {
            return Err(format!(
                "DescribeExecution {execution_arn}: {}",
                DisplayErrorContext(e)
            ))
        }
    };
    let stopped = out
        .stop_date()
        .and_then(|d| Utc.timestamp_opt(d.secs(), d.subsec_nanos()).single());
    Ok(match out.status() {
        ExecutionStatus::Running => Execution::Running,
        ExecutionStatus::Succeeded => Execution::Ended(RunOutcome::Succeeded {
            at: stopped.unwrap_or_else(Utc::now),
        }),
        // FAILED, TIMED_OUT, ABORTED, PENDING_REDRIVE: recorded as the state
        // machine's own failure write would, error name and cause.
        other => Execution::Ended(RunOutcome::Failed {
            error: match out.error() {
                Some(e) if !e.is_empty() => e.to_string(),
                _ => format!("Execution{}", pascal(other.as_str())),
            },
            cause: match out.cause() {
                Some(c) if !c.is_empty() => c.to_string(),
                _ => format!("the execution ended {}", other.as_str()),
            },
            at: stopped.unwrap_or_else(Utc::now),
        }),
    })
}

/// `TIMED_OUT` → `TimedOut`.
fn pascal(status: &str) -> String {
    status
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_string() + &c.as_str().to_lowercase())
                .unwrap_or_default()
        })
        .collect()
}

/// The status word of an outcome, for the summary.
pub fn outcome_status(outcome: &RunOutcome) -> &'static str {
    match outcome {
        RunOutcome::Succeeded { .. } => "SUCCEEDED",
        RunOutcome::Failed { .. } => "FAILED",
    }
}

/// `t` as RFC 3339, for messages.
pub fn show(t: DateTime<Utc>) -> String {
    crate::scheduler::providers::format_time(t)
}

#[cfg(test)]
mod tests {
    #[test]
    fn statuses_become_error_names() {
        assert_eq!(super::pascal("TIMED_OUT"), "TimedOut");
        assert_eq!(super::pascal("ABORTED"), "Aborted");
    }
}
