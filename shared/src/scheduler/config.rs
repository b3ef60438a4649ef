//! The scheduler's configuration, read from the environment at cold start.
//! A missing or malformed value fails the cold start naming the variable.

use crate::config::env::{positive, required};
use crate::config::vars::*;
use crate::config::ConfigError;
use chrono::Duration;
use std::collections::BTreeSet;

pub const DEFAULT_SCHEDULE_PERIOD_MINUTES: usize = 15;
pub const DEFAULT_STALE_RUNNING_MINUTES: usize = 180;
pub const DEFAULT_START_CONCURRENCY: usize = 8;
pub const DEFAULT_AWS_MAX_ATTEMPTS: usize = 5;

/// Configuration of the scheduler.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// The providers table ([`PROVIDERS_TABLE`]).
    pub providers_table: String,
    /// The state machine each due provider is started on ([`STATE_MACHINE_ARN`]).
    pub state_machine_arn: String,
    /// The schedule's period ([`SCHEDULE_PERIOD_MINUTES`], default 15).
    pub schedule_period: Duration,
    /// How long RUNNING is normal ([`STALE_RUNNING_MINUTES`], default 180).
    pub stale_running_after: Duration,
    /// Providers handled at once ([`START_CONCURRENCY`], default 8).
    pub start_concurrency: usize,
    /// Attempts per AWS call ([`AWS_MAX_ATTEMPTS`], default 5): throttling
    /// and transient errors are retried with exponential backoff and jitter.
    pub aws_max_attempts: u32,
    /// The job arguments a provider's item may set
    /// ([`PROVIDER_JOB_ARGUMENTS`], comma-separated, default none). A
    /// provider whose `job_arguments` has any other key is not started.
    pub provider_job_arguments: BTreeSet<String>,
}

/// Glue job parameters that load or run code, or choose what runs, as the
/// job's role: no provider may set them, whatever the allow-list says.
pub const CODE_RUNNING_JOB_ARGUMENTS: &[&str] = &[
    "--additional-python-modules",
    "--class",
    "--conf",
    "--extra-files",
    "--extra-jars",
    "--extra-py-files",
    "--job-language",
    "--python-modules-installer-option",
    "--scriptLocation",
    "--user-jars-first",
];

/// The argument the state machine sets itself.
pub const PROVIDER_ARGUMENT: &str = "--provider";

/// Reads the allow-list of provider job arguments: each `--name`, none of
/// them a parameter that runs code or the `--provider` the state machine
/// sets.
fn job_arguments(text: Option<String>) -> Result<BTreeSet<String>, ConfigError> {
    let invalid = |reason: String| ConfigError::Invalid {
        name: PROVIDER_JOB_ARGUMENTS,
        reason,
    };
    let mut out = BTreeSet::new();
    for name in text.iter().flat_map(|t| t.split(',')).map(str::trim) {
        if name.is_empty() {
            continue;
        }
        if !name.starts_with("--") || name.len() < 3 || name.contains(char::is_whitespace) {
            return Err(invalid(format!(
                "{name:?} is not a job argument name (--name)"
            )));
        }
        if CODE_RUNNING_JOB_ARGUMENTS.contains(&name) {
            return Err(invalid(format!(
                "{name} loads or runs code as the job's role; no provider may set it"
            )));
        }
        if name == PROVIDER_ARGUMENT {
            return Err(invalid(format!("{name} is set by the state machine")));
        }
        out.insert(name.to_string());
    }
    Ok(out)
}

impl SchedulerConfig {
    /// Reads the configuration through `get`, which returns a variable's value.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let positive = |name: &'static str, default: usize| match positive(&get, name, default)? {
            n if n <= 100_000 => Ok(n),
            n => Err(ConfigError::Invalid {
                name,
                reason: format!("{n} is more than 100000"),
            }),
        };
        let minutes = |n: usize| Duration::minutes(n as i64);
        Ok(SchedulerConfig {
            providers_table: required(&get, PROVIDERS_TABLE)?,
            state_machine_arn: required(&get, STATE_MACHINE_ARN)?,
            schedule_period: minutes(positive(
                SCHEDULE_PERIOD_MINUTES,
                DEFAULT_SCHEDULE_PERIOD_MINUTES,
            )?),
            stale_running_after: minutes(positive(
                STALE_RUNNING_MINUTES,
                DEFAULT_STALE_RUNNING_MINUTES,
            )?),
            start_concurrency: positive(START_CONCURRENCY, DEFAULT_START_CONCURRENCY)?,
            aws_max_attempts: positive(AWS_MAX_ATTEMPTS, DEFAULT_AWS_MAX_ATTEMPTS)? as u32,
            provider_job_arguments: job_arguments(get(PROVIDER_JOB_ARGUMENTS))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::config::env::lookup_from as lookup;

    #[test]
    fn defaults_apply() {
        let c = SchedulerConfig::from_lookup(lookup(&[
            (PROVIDERS_TABLE, "t"),
            (STATE_MACHINE_ARN, "arn:sm"),
        ]))
        .unwrap();
        assert_eq!(c.schedule_period, Duration::minutes(15));
        assert_eq!(c.stale_running_after, Duration::minutes(180));
        assert_eq!(c.start_concurrency, 8);
        assert_eq!(c.aws_max_attempts, 5);
        assert!(c.provider_job_arguments.is_empty());
    }

    #[test]
    fn the_job_argument_allow_list_cannot_name_code_or_the_provider() {
        let read = |list: &str| {
            SchedulerConfig::from_lookup(lookup(&[
                (PROVIDERS_TABLE, "t"),
                (STATE_MACHINE_ARN, "arn:sm"),
                (PROVIDER_JOB_ARGUMENTS, list),
            ]))
        };
        let c = read(" --region, --source_path ,").unwrap();
        assert_eq!(
            c.provider_job_arguments.into_iter().collect::<Vec<_>>(),
            ["--region", "--source_path"]
        );
        for bad in CODE_RUNNING_JOB_ARGUMENTS
            .iter()
            .chain(&[PROVIDER_ARGUMENT])
        {
            let e = read(&format!("--region,{bad}")).unwrap_err().to_string();
            assert!(e.contains(PROVIDER_JOB_ARGUMENTS) && e.contains(bad), "{e}");
        }
        let e = read("region").unwrap_err().to_string();
        assert!(e.contains("is not a job argument name"), "{e}");
    }

    #[test]
    fn errors_name_the_variable() {
        let e = SchedulerConfig::from_lookup(lookup(&[(PROVIDERS_TABLE, "t")])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "environment variable STATE_MACHINE_ARN is not set"
        );
        let e = SchedulerConfig::from_lookup(lookup(&[
            (PROVIDERS_TABLE, "t"),
            (STATE_MACHINE_ARN, "arn:sm"),
            (SCHEDULE_PERIOD_MINUTES, "0"),
        ]))
        .unwrap_err();
        assert!(e.to_string().contains(SCHEDULE_PERIOD_MINUTES), "{e}");
    }
}
