//! Errors of the Step Functions task functions, with the stable error types
//! the state machines' `Retry` and `Catch` match (`ErrorEquals`).
//!
//! * [`INVALID_INPUT`]: the execution's input is wrong; retrying cannot help.
//! * [`RETRYABLE`]: the world's fault (throttling, a timeout, a 5xx after the
//!   SDK's own retries); the state machine retries with backoff.
//! * [`NON_RETRYABLE`]: anything else (a missing crawler or workgroup, denied
//!   access); the state machine fails the execution.
//! * [`DAY_CLAIMED`]: a day of the run is being written by another running
//!   execution; the state machine fails this one, which writes nothing.

use std::error::Error as StdError;

use aws_sdk_glue::config::http::HttpResponse;
use aws_sdk_glue::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use lambda_runtime::Diagnostic;
use serde_json::{Map, Value};

/// Error type of bad input.
pub const INVALID_INPUT: &str = "InvalidInput";
/// Error type of transient failures.
pub const RETRYABLE: &str = "Retryable";
/// Error type of permanent failures.
pub const NON_RETRYABLE: &str = "NonRetryable";
/// Error type of a day another running execution is writing.
pub const DAY_CLAIMED: &str = "DayClaimed";

/// Service error codes that mean "try again later".
const TRANSIENT_CODES: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "InternalServerException",
    "InternalServiceException",
    "InternalFailure",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "OperationTimeoutException",
    "RequestTimeout",
];

/// Why a task failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskError {
    /// The input is invalid; the message names the field.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A transient failure of `operation`.
    #[error("{operation} failed (transient, retry): {message}")]
    Retryable {
        operation: &'static str,
        message: String,
    },
    /// A permanent failure of `operation`.
    #[error("{operation} failed: {message}")]
    NonRetryable {
        operation: &'static str,
        message: String,
    },
    /// `day` is claimed by `execution`, which is still running.
    #[error("{day} is being repartitioned by {execution}, which is still running")]
    DayClaimed { day: String, execution: String },
}

impl TaskError {
    /// The stable error type the state machine matches.
    pub fn error_type(&self) -> &'static str {
        match self {
            TaskError::InvalidInput(_) => INVALID_INPUT,
            TaskError::Retryable { .. } => RETRYABLE,
            TaskError::NonRetryable { .. } => NON_RETRYABLE,
            TaskError::DayClaimed { .. } => DAY_CLAIMED,
        }
    }

    /// Classifies an AWS SDK error of `operation`: throttling, service-side
    /// 5xx codes, timeouts and connection failures are retryable; a request
    /// that could not be built and other service errors are not.
    pub fn from_sdk<E>(operation: &'static str, err: &SdkError<E, HttpResponse>) -> Self
    where
        E: ProvideErrorMetadata + StdError + 'static,
    {
        let message = DisplayErrorContext(err).to_string();
        let retryable = match err {
            SdkError::ConstructionFailure(_) => false,
            // Any 5xx is the service's fault, whatever its code (as the SDK's
            // own retry classifier has it): a 500 with a code missing from
            // the list must not fail the workflow as NonRetryable.
            SdkError::ServiceError(service) => {
                service.raw().status().is_server_error()
                    || service
                        .err()
                        .code()
                        .is_some_and(|code| TRANSIENT_CODES.contains(&code))
            }
            _ => true,
        };
        if retryable {
            TaskError::Retryable { operation, message }
        } else {
            TaskError::NonRetryable { operation, message }
        }
    }
}

impl From<TaskError> for Diagnostic {
    fn from(err: TaskError) -> Self {
        Diagnostic {
            error_type: err.error_type().to_string(),
            error_message: err.to_string(),
        }
    }
}

/// A task's input as a JSON object (`null` counts as an empty one).
pub fn input_object(input: Value) -> Result<Map<String, Value>, TaskError> {
    match input {
        Value::Object(map) => Ok(map),
        Value::Null => Ok(Map::new()),
        other => Err(TaskError::InvalidInput(format!(
            "the input must be a JSON object, not {other}"
        ))),
    }
}

/// The string at `field`, `None` when it is absent or `null`.
pub fn string_field<'a>(
    object: &'a Map<String, Value>,
    field: &str,
) -> Result<Option<&'a str>, TaskError> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(TaskError::InvalidInput(format!(
            "`{field}` must be a string, not {other}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diagnostics_carry_the_stable_type() {
        let d: Diagnostic = TaskError::InvalidInput("`date` is \"x\"".into()).into();
        assert_eq!(d.error_type, "InvalidInput");
        assert_eq!(d.error_message, "invalid input: `date` is \"x\"");
        let d: Diagnostic = TaskError::Retryable {
            operation: "StartCrawler",
            message: "slow down".into(),
        }
        .into();
        assert_eq!(d.error_type, "Retryable");
    }

    #[test]
    fn inputs_must_be_objects_with_string_fields() {
        assert!(input_object(Value::Null).unwrap().is_empty());
        let err = input_object(serde_json::json!([1])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid input: the input must be a JSON object, not [1]"
        );
        let map = input_object(serde_json::json!({"date": 20260301, "to": "x"})).unwrap();
        assert_eq!(string_field(&map, "to"), Ok(Some("x")));
        assert_eq!(string_field(&map, "from"), Ok(None));
        assert_eq!(
            string_field(&map, "date").unwrap_err().to_string(),
            "invalid input: `date` must be a string, not 20260301"
        );
    }
}
