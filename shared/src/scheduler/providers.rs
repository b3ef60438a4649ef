//! Provider settings: one item per data provider, saying how often its Glue
//! job runs, when it last succeeded and whether a run is under way.
//!
//! The scheduler reads and claims providers through [`ProviderSource`];
//! [`DynamoProviders`] (a DynamoDB table keyed by `provider`) is the default.
//! An HTTP settings API like the one the seed article reads could implement
//! the same trait.
//!
//! | attribute              | type   | meaning                                              |
//! |------------------------|--------|------------------------------------------------------|
//! | `provider`             | S      | key; passed to the job as `--provider`               |
//! | `enabled`              | BOOL   | required                                             |
//! | `frequency_minutes`    | N      | required, a positive whole number                    |
//! | `job_name`             | S      | required, the provider's Glue job                    |
//! | `job_arguments`        | M of S | optional extra job arguments (`--key` → value)       |
//! | `status`               | S      | IDLE (default), RUNNING, SUCCEEDED, FAILED           |
//! | `last_success`         | S      | RFC 3339; absent when it never succeeded             |
//! | `execution_arn`        | S      | the running execution (set with RUNNING)             |
//! | `execution_started_at` | S      | RFC 3339, when the scheduler claimed it              |
//! | `last_error`, `last_error_cause`, `last_failure` | S | why and when the last run failed |

use std::collections::{BTreeMap, HashMap};
use std::future::Future;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_smithy_types::error::display::DisplayErrorContext;
use chrono::{DateTime, Duration, Utc};

/// Attribute names, in one place (the state machine writes the same ones).
pub mod attr {
    pub const PROVIDER: &str = "provider";
    pub const ENABLED: &str = "enabled";
    pub const FREQUENCY_MINUTES: &str = "frequency_minutes";
    pub const JOB_NAME: &str = "job_name";
    pub const JOB_ARGUMENTS: &str = "job_arguments";
    pub const STATUS: &str = "status";
    pub const LAST_SUCCESS: &str = "last_success";
    pub const EXECUTION_ARN: &str = "execution_arn";
    pub const EXECUTION_STARTED_AT: &str = "execution_started_at";
    pub const LAST_ERROR: &str = "last_error";
    pub const LAST_ERROR_CAUSE: &str = "last_error_cause";
    pub const LAST_FAILURE: &str = "last_failure";
}

/// A DynamoDB item.
pub type Item = HashMap<String, AttributeValue>;

/// Where a provider is in its cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderStatus {
    Idle,
    Running,
    Succeeded,
    Failed,
}

impl ProviderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderStatus::Idle => "IDLE",
            ProviderStatus::Running => "RUNNING",
            ProviderStatus::Succeeded => "SUCCEEDED",
            ProviderStatus::Failed => "FAILED",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "IDLE" => ProviderStatus::Idle,
            "RUNNING" => ProviderStatus::Running,
            "SUCCEEDED" => ProviderStatus::Succeeded,
            "FAILED" => ProviderStatus::Failed,
            _ => return None,
        })
    }
}

/// One provider's settings and state, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderSettings {
    pub provider: String,
    pub enabled: bool,
    /// Minutes between the last success and the next run; always positive.
    pub frequency_minutes: u32,
    pub last_success: Option<DateTime<Utc>>,
    pub status: ProviderStatus,
    pub job_name: String,
    pub job_arguments: BTreeMap<String, String>,
    pub execution_arn: Option<String>,
    pub execution_started_at: Option<DateTime<Utc>>,
}

impl ProviderSettings {
    pub fn frequency(&self) -> Duration {
        Duration::minutes(i64::from(self.frequency_minutes))
    }
}

/// A provider item that cannot be used. It is reported; the others go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    #[error("provider {provider:?}: attribute {attribute} {reason}")]
    Attribute {
        provider: String,
        attribute: &'static str,
        reason: String,
    },
    #[error("an item has no string attribute provider (its attributes: {attributes})")]
    NoKey { attributes: String },
}

/// The provider store could not be read or written (the world's fault:
/// throttling that outlasted the SDK's retries, permissions, a missing table).
#[derive(Debug, thiserror::Error)]
#[error("{operation} on {store} failed: {message}")]
pub struct SourceError {
    pub operation: &'static str,
    pub store: String,
    pub message: String,
}

/// How a run ended, to record on its provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    Succeeded {
        at: DateTime<Utc>,
    },
    /// `error` and `cause` as the state machine records them: the error
    /// name (`Glue.EntityNotFoundException`, `States.Timeout`, ...) and its
    /// cause; `at` is when it ended.
    Failed {
        error: String,
        cause: String,
        at: DateTime<Utc>,
    },
}

/// Whether a conditional write took effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    Yes,
    /// The item was not in the state the write expected: another scheduler
    /// run or the state machine got there first.
    ConditionFailed,
}

/// Where provider settings live, and the conditional writes that keep two
/// scheduler runs from starting a provider twice.
pub trait ProviderSource: Send + Sync {
    /// Every provider, each parsed or with the reason it cannot be used.
    fn providers(
        &self,
    ) -> impl Future<Output = Result<Vec<Result<ProviderSettings, ProviderError>>, SourceError>> + Send;

    /// Moves `read` to RUNNING with `execution_arn`, provided its status is
    /// still the one read and no execution is recorded on it.
    fn claim(
        &self,
        read: &ProviderSettings,
        execution_arn: &str,
        started_at: DateTime<Utc>,
    ) -> impl Future<Output = Result<Written, SourceError>> + Send;

    /// Undoes a claim whose execution could not be started: back to
    /// `restore` with `error`, provided `execution_arn` is still the claim.
    fn release(
        &self,
        provider: &str,
        execution_arn: &str,
        restore: ProviderStatus,
        error: &str,
    ) -> impl Future<Output = Result<Written, SourceError>> + Send;

    /// Records why a provider's item cannot be used (`last_error`
    /// `InvalidProviderSettings`, the reason as `last_error_cause`, and
    /// `last_failure`), unless that reason is already recorded; the status
    /// is left as it is.
    fn record_unusable(
        &self,
        provider: &str,
        reason: &str,
        at: DateTime<Utc>,
    ) -> impl Future<Output = Result<Written, SourceError>> + Send;

    /// Records how `execution_arn` ended, provided it is still the
    /// provider's execution.
    fn record_outcome(
        &self,
        provider: &str,
        execution_arn: &str,
        outcome: &RunOutcome,
    ) -> impl Future<Output = Result<Written, SourceError>> + Send;
}

/// The error name recorded on an item that cannot be used.
pub const INVALID_SETTINGS: &str = "InvalidProviderSettings";

/// Checks that a provider sets only the job arguments `allowed`: any other
/// key could reach the Glue job's own parameters (`--extra-py-files`,
/// `--conf`, ...) and run code as its role.
pub fn check_job_arguments(
    p: &ProviderSettings,
    allowed: &std::collections::BTreeSet<String>,
) -> Result<(), ProviderError> {
    let refused: Vec<&str> = p
        .job_arguments
        .keys()
        .filter(|k| !allowed.contains(*k))
        .map(String::as_str)
        .collect();
    if refused.is_empty() {
        return Ok(());
    }
    let allowed = if allowed.is_empty() {
        "none".to_string()
    } else {
        allowed.iter().cloned().collect::<Vec<_>>().join(", ")
    };
    Err(ProviderError::Attribute {
        provider: p.provider.clone(),
        attribute: attr::JOB_ARGUMENTS,
        reason: format!(
            "sets {}, which a provider may not set (allowed: {allowed}; the list is \
             {})",
            refused.join(", "),
            crate::config::vars::PROVIDER_JOB_ARGUMENTS
        ),
    })
}

// ------------------------------------------------------------------ parsing

/// Parses one provider item.
pub fn parse_item(item: &Item) -> Result<ProviderSettings, ProviderError> {
    let provider = match item.get(attr::PROVIDER) {
        Some(AttributeValue::S(s)) if !s.is_empty() => s.clone(),
        _ => {
            let mut names: Vec<&str> = item.keys().map(String::as_str).collect();
            names.sort_unstable();
            return Err(ProviderError::NoKey {
                attributes: names.join(", "),
            });
        }
    };
    let p = Parser {
        provider: &provider,
        item,
    };
    let status = match p.opt_string(attr::STATUS)? {
        None => ProviderStatus::Idle,
        Some(s) => ProviderStatus::parse(&s).ok_or_else(|| {
            p.err(
                attr::STATUS,
                format!("is {s:?}, not one of IDLE, RUNNING, SUCCEEDED, FAILED"),
            )
        })?,
    };
    Ok(ProviderSettings {
        enabled: p.bool(attr::ENABLED)?,
        frequency_minutes: p.frequency()?,
        last_success: p.opt_time(attr::LAST_SUCCESS)?,
        status,
        job_name: p
            .opt_string(attr::JOB_NAME)?
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| p.err(attr::JOB_NAME, "is missing or empty".into()))?,
        job_arguments: p.arguments()?,
        execution_arn: p.opt_string(attr::EXECUTION_ARN)?,
        execution_started_at: p.opt_time(attr::EXECUTION_STARTED_AT)?,
        provider,
    })
}

struct Parser<'a> {
    provider: &'a str,
    item: &'a Item,
}

impl Parser<'_> {
    fn err(&self, attribute: &'static str, reason: String) -> ProviderError {
        ProviderError::Attribute {
            provider: self.provider.to_string(),
            attribute,
            reason,
        }
    }

    fn opt_string(&self, name: &'static str) -> Result<Option<String>, ProviderError> {
        match self.item.get(name) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::S(s)) => Ok(Some(s.clone())),
            Some(other) => Err(self.err(name, format!("is {}, not a string", kind(other)))),
        }
    }

    fn opt_time(&self, name: &'static str) -> Result<Option<DateTime<Utc>>, ProviderError> {
        self.opt_string(name)?
            .map(|s| {
                DateTime::parse_from_rfc3339(&s)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|e| self.err(name, format!("{s:?} is not an RFC 3339 time ({e})")))
            })
            .transpose()
    }

    fn bool(&self, name: &'static str) -> Result<bool, ProviderError> {
        match self.item.get(name) {
            Some(AttributeValue::Bool(b)) => Ok(*b),
            None => Err(self.err(name, "is missing".into())),
            Some(other) => Err(self.err(name, format!("is {}, not a boolean", kind(other)))),
        }
    }

    fn frequency(&self) -> Result<u32, ProviderError> {
        let name = attr::FREQUENCY_MINUTES;
        let text = match self.item.get(name) {
            Some(AttributeValue::N(n)) => n,
            None => return Err(self.err(name, "is missing".into())),
            Some(other) => {
                return Err(self.err(name, format!("is {}, not a number", kind(other))));
            }
        };
        match text.trim().parse::<i64>() {
            Ok(n) if n > 0 => u32::try_from(n)
                .map_err(|_| self.err(name, format!("is {n}, more than {} minutes", u32::MAX))),
            Ok(n) => Err(self.err(
                name,
                format!("is {n}; it must be a positive number of minutes"),
            )),
            Err(_) => Err(self.err(name, format!("is {text}, not a whole number of minutes"))),
        }
    }

    fn arguments(&self) -> Result<BTreeMap<String, String>, ProviderError> {
        let name = attr::JOB_ARGUMENTS;
        match self.item.get(name) {
            None | Some(AttributeValue::Null(_)) => Ok(BTreeMap::new()),
            Some(AttributeValue::M(m)) => m
                .iter()
                .map(|(k, v)| match v {
                    AttributeValue::S(s) => Ok((k.clone(), s.clone())),
                    other => Err(self.err(
                        name,
                        format!("has {k:?} as {}; job arguments are strings", kind(other)),
                    )),
                })
                .collect(),
            Some(other) => Err(self.err(name, format!("is {}, not a map", kind(other)))),
        }
    }
}

fn kind(v: &AttributeValue) -> &'static str {
    match v {
        AttributeValue::B(_) => "binary",
        AttributeValue::Bool(_) => "a boolean",
        AttributeValue::Bs(_) => "a binary set",
        AttributeValue::L(_) => "a list",
        AttributeValue::M(_) => "a map",
        AttributeValue::N(_) => "a number",
        AttributeValue::Ns(_) => "a number set",
        AttributeValue::Null(_) => "null",
        AttributeValue::S(_) => "a string",
        AttributeValue::Ss(_) => "a string set",
        _ => "of an unknown type",
    }
}

// ----------------------------------------------------------------- DynamoDB

/// Providers in a DynamoDB table keyed by `provider` (a string).
#[derive(Debug, Clone)]
pub struct DynamoProviders {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoProviders {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        DynamoProviders {
            client,
            table: table.into(),
        }
    }

    fn error<E>(&self, operation: &'static str, e: E) -> SourceError
    where
        E: std::error::Error + 'static,
    {
        SourceError {
            operation,
            store: format!("table {}", self.table),
            message: DisplayErrorContext(e).to_string(),
        }
    }

    /// A conditional UpdateItem: `ConditionFailed` when the condition did not hold.
    async fn update(
        &self,
        operation: &'static str,
        provider: &str,
        update: &str,
        condition: &str,
        values: Vec<(&str, AttributeValue)>,
    ) -> Result<Written, SourceError> {
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(attr::PROVIDER, AttributeValue::S(provider.to_string()))
            .update_expression(update)
            .condition_expression(condition);
        if update.contains("#status") || condition.contains("#status") {
            request = request.expression_attribute_names("#status", attr::STATUS);
        }
        for (name, value) in values {
            request = request.expression_attribute_values(name, value);
        }
        match request.send().await {
            Ok(_) => Ok(Written::Yes),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(Written::ConditionFailed)
            }
            Err(e) => Err(self.error(operation, e)),
        }
    }
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

/// RFC 3339 with millisecond precision and `Z`, as the items store times.
pub fn format_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl ProviderSource for DynamoProviders {
    async fn providers(&self) -> Result<Vec<Result<ProviderSettings, ProviderError>>, SourceError> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| self.error("Scan", e))?;
            out.extend(page.items().iter().map(parse_item));
            start = page.last_evaluated_key;
            if start.is_none() {
                return Ok(out);
            }
        }
    }

    async fn claim(
        &self,
        read: &ProviderSettings,
        execution_arn: &str,
        started_at: DateTime<Utc>,
    ) -> Result<Written, SourceError> {
        let condition = "(attribute_not_exists(#status) OR #status = :read_status) \
                         AND #status <> :running AND attribute_not_exists(execution_arn)";
        let values = vec![
            (":running", s("RUNNING")),
            (":read_status", s(read.status.as_str())),
            (":arn", s(execution_arn)),
            (":started", s(format_time(started_at))),
        ];
        self.update(
            "UpdateItem (claim)",
            &read.provider,
            "SET #status = :running, execution_arn = :arn, execution_started_at = :started",
            condition,
            values,
        )
        .await
    }

    async fn release(
        &self,
        provider: &str,
        execution_arn: &str,
        restore: ProviderStatus,
        error: &str,
    ) -> Result<Written, SourceError> {
        self.update(
            "UpdateItem (release)",
            provider,
            "SET #status = :restore, last_error = :error \
             REMOVE execution_arn, execution_started_at",
            "execution_arn = :arn",
            vec![
                (":restore", s(restore.as_str())),
                (":error", s(error)),
                (":arn", s(execution_arn)),
            ],
        )
        .await
    }

    async fn record_unusable(
        &self,
        provider: &str,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<Written, SourceError> {
        self.update(
            "UpdateItem (unusable)",
            provider,
            "SET last_error = :error, last_error_cause = :cause, last_failure = :at",
            "attribute_exists(provider) AND \
             (attribute_not_exists(last_error_cause) OR last_error_cause <> :cause)",
            vec![
                (":error", s(INVALID_SETTINGS)),
                (":cause", s(reason)),
                (":at", s(format_time(at))),
            ],
        )
        .await
    }

    async fn record_outcome(
        &self,
        provider: &str,
        execution_arn: &str,
        outcome: &RunOutcome,
    ) -> Result<Written, SourceError> {
        let (update, mut values) = match outcome {
            RunOutcome::Succeeded { at } => (
                "SET #status = :status, last_success = :at \
                 REMOVE execution_arn, execution_started_at, last_error, last_error_cause",
                vec![(":status", s("SUCCEEDED")), (":at", s(format_time(*at)))],
            ),
            RunOutcome::Failed { error, cause, at } => (
                "SET #status = :status, last_error = :error, last_error_cause = :cause, \
                 last_failure = :at REMOVE execution_arn, execution_started_at",
                vec![
                    (":status", s("FAILED")),
                    (":error", s(error.clone())),
                    (":cause", s(cause.clone())),
                    (":at", s(format_time(*at))),
                ],
            ),
        };
        values.push((":arn", s(execution_arn)));
        self.update(
            "UpdateItem (outcome)",
            provider,
            update,
            "execution_arn = :arn",
            values,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(pairs: &[(&str, AttributeValue)]) -> Item {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    fn base() -> Vec<(&'static str, AttributeValue)> {
        vec![
            (attr::PROVIDER, s("acme")),
            (attr::ENABLED, AttributeValue::Bool(true)),
            (attr::FREQUENCY_MINUTES, AttributeValue::N("60".into())),
            (attr::JOB_NAME, s("etl-acme")),
        ]
    }

    fn with(extra: (&'static str, AttributeValue)) -> Item {
        let mut pairs = base();
        pairs.retain(|(k, _)| *k != extra.0);
        pairs.push(extra);
        item(&pairs)
    }

    fn error_of(item: &Item) -> String {
        parse_item(item).unwrap_err().to_string()
    }

    #[test]
    fn a_minimal_item_is_an_idle_provider_that_never_ran() {
        let p = parse_item(&item(&base())).unwrap();
        assert_eq!(p.provider, "acme");
        assert_eq!(p.status, ProviderStatus::Idle);
        assert_eq!(p.last_success, None);
        assert_eq!(p.frequency_minutes, 60);
        assert!(p.job_arguments.is_empty());
    }

    #[test]
    fn every_attribute_is_read() {
        let mut pairs = base();
        pairs.extend([
            (attr::STATUS, s("RUNNING")),
            (attr::LAST_SUCCESS, s("2026-11-23T09:00:00.250+01:00")),
            (attr::EXECUTION_ARN, s("arn:x")),
            (attr::EXECUTION_STARTED_AT, s("2026-11-23T10:00:00Z")),
            (
                attr::JOB_ARGUMENTS,
                AttributeValue::M([("--region".to_string(), s("eu"))].into()),
            ),
        ]);
        let p = parse_item(&item(&pairs)).unwrap();
        assert_eq!(p.status, ProviderStatus::Running);
        assert_eq!(
            p.last_success.map(format_time).as_deref(),
            Some("2026-11-23T08:00:00.250Z")
        );
        assert_eq!(p.execution_arn.as_deref(), Some("arn:x"));
        assert_eq!(p.job_arguments["--region"], "eu");
    }

    #[test]
    fn zero_negative_or_missing_frequency_is_rejected_naming_provider_and_attribute() {
        for n in ["0", "-15"] {
            let e = error_of(&with((
                attr::FREQUENCY_MINUTES,
                AttributeValue::N(n.into()),
            )));
            assert_eq!(
                e,
                format!("provider \"acme\": attribute frequency_minutes is {n}; it must be a positive number of minutes")
            );
        }
        let e = error_of(&with((
            attr::FREQUENCY_MINUTES,
            AttributeValue::N("1.5".into()),
        )));
        assert!(
            e.contains("\"acme\"") && e.contains("frequency_minutes"),
            "{e}"
        );
        let e = error_of(&with((attr::FREQUENCY_MINUTES, s("60"))));
        assert!(e.contains("frequency_minutes is a string"), "{e}");
        let mut pairs = base();
        pairs.retain(|(k, _)| *k != attr::FREQUENCY_MINUTES);
        assert_eq!(
            error_of(&item(&pairs)),
            "provider \"acme\": attribute frequency_minutes is missing"
        );
    }

    #[test]
    fn malformed_last_success_is_rejected_naming_provider_and_attribute() {
        let e = error_of(&with((
            attr::LAST_SUCCESS,
            s("Tue, 08 Nov 2022 15:47:17 GMT"),
        )));
        assert!(
            e.starts_with("provider \"acme\": attribute last_success \"Tue, 08 Nov 2022"),
            "{e}"
        );
        let e = error_of(&with((attr::LAST_SUCCESS, AttributeValue::N("1".into()))));
        assert!(e.contains("last_success is a number"), "{e}");
    }

    #[test]
    fn other_bad_attributes_name_themselves() {
        assert!(error_of(&with((attr::STATUS, s("running")))).contains("attribute status"));
        assert!(error_of(&with((attr::ENABLED, s("yes")))).contains("attribute enabled"));
        assert!(error_of(&with((attr::JOB_NAME, s(" ")))).contains("attribute job_name"));
        let args = AttributeValue::M([("--n".to_string(), AttributeValue::N("1".into()))].into());
        assert!(error_of(&with((attr::JOB_ARGUMENTS, args))).contains("\"--n\""));
        let e = error_of(&item(&[(attr::ENABLED, AttributeValue::Bool(true))]));
        assert!(
            e.contains("no string attribute provider") && e.contains("enabled"),
            "{e}"
        );
    }
}
