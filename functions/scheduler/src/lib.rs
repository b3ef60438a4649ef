//! The per-provider scheduler: on each EventBridge tick, starts one
//! provider-etl execution per provider that is due, and reconciles providers
//! that have been RUNNING for too long.
//!
//! # Never twice
//!
//! For each due provider, in this order:
//!
//! 1. **Claim**: a conditional UpdateItem moves the provider to RUNNING and
//!    records the execution ARN it is about to start, provided its status is
//!    still the one read, it is not RUNNING and no execution is recorded. Of
//!    two overlapping runs only one claim succeeds; the other reports the
//!    provider as skipped.
//! 2. **Start** the execution named `{provider}-{slot}` (see
//!    `telemetry_lake::scheduler::schedule::execution_name`). The name is deterministic,
//!    so Step Functions itself refuses a second execution for the same
//!    provider and slot, whoever asks: a retried invocation, or a run that
//!    claimed after another run's execution had already finished.
//!    `ExecutionAlreadyExists` is therefore "started"; when that execution has
//!    already ended, its outcome is written back to the item (conditioned on
//!    the ARN) so the claim does not linger.
//! 3. If the start **fails for good** (the SDK's retries exhausted), the
//!    execution is looked up first, since a timed-out call may have started
//!    it; only when it does not exist is the claim released (conditioned on
//!    the ARN still being ours) and the provider reported as failed.
//!
//! Claiming first means a crash between claim and start leaves a RUNNING
//! item whose ARN names this slot's execution: a retried invocation resumes
//! it (StartExecution again, idempotent by name), and otherwise stale-RUNNING
//! reconciliation finds that the execution does not exist and marks the
//! provider FAILED, so it is due again. Starting first instead could leave an
//! execution running that no item points at.

use std::time::Instant;

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt};
use lambda_runtime::LambdaEvent;
use serde::Serialize;
use telemetry_lake::scheduler::providers::{
    check_job_arguments, DynamoProviders, ProviderError, ProviderSettings, ProviderSource,
    SourceError, Written,
};
use telemetry_lake::scheduler::schedule::{decide, execution_arn, execution_name, slot, Decision};

use telemetry_lake::metrics::{self, Invocation, MetricsOut};
use telemetry_lake::scheduler::config::SchedulerConfig;
use telemetry_lake::scheduler::executions::{
    describe, execution_input, outcome_status, show, start, Execution, Start,
};

/// The function's state, built once per container.
pub struct Scheduler<S> {
    config: SchedulerConfig,
    source: S,
    sfn: aws_sdk_sfn::Client,
    metrics: MetricsOut,
}

/// A provider whose execution was started (or found already running).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Started {
    pub provider: String,
    pub execution_arn: String,
    /// `started`, `already running` (ExecutionAlreadyExists) or `resumed`.
    pub how: &'static str,
}

/// A provider left alone, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    pub provider: String,
    pub reason: String,
}

/// A provider that could not be handled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failed {
    /// The provider, or `?` for an item without one.
    pub provider: String,
    pub error: String,
    /// True for the world's fault (AWS calls that failed after retries),
    /// false for the item's (bad settings): only the former fail the
    /// invocation so Lambda retries it.
    pub retryable: bool,
}

/// A RUNNING provider whose finished execution was written back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reconciled {
    pub provider: String,
    pub execution_arn: String,
    pub status: &'static str,
}

/// A provider RUNNING past the stale limit whose execution still runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stuck {
    pub provider: String,
    pub execution_arn: String,
    pub since: Option<DateTime<Utc>>,
}

/// What one tick did; returned and logged.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ScheduleSummary {
    pub scheduled_time: Option<DateTime<Utc>>,
    pub slot: Option<DateTime<Utc>>,
    /// Providers the due rule selected (before claiming).
    pub due: Vec<String>,
    pub started: Vec<Started>,
    pub skipped: Vec<Skipped>,
    pub failed: Vec<Failed>,
    pub reconciled: Vec<Reconciled>,
    pub stuck: Vec<Stuck>,
}

/// The tick could not be handled at all.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error("the event has no time: the scheduled time decides which providers are due")]
    NoScheduledTime,
    #[error("cannot read the providers: {0}")]
    Source(#[from] SourceError),
    #[error("{} provider(s) failed for a reason worth retrying: {}", .0.len(), .0.iter().map(|f| format!("{}: {}", f.provider, f.error)).collect::<Vec<_>>().join("; "))]
    Incomplete(Vec<Failed>),
}

impl From<SchedulerError> for lambda_runtime::Diagnostic {
    /// `NonRetryable` for an event without a time; `Retryable` otherwise
    /// (Lambda's asynchronous retries re-run the tick, which is safe).
    fn from(e: SchedulerError) -> Self {
        let error_type = match e {
            SchedulerError::NoScheduledTime => "NonRetryable",
            SchedulerError::Source(_) | SchedulerError::Incomplete(_) => "Retryable",
        };
        lambda_runtime::Diagnostic {
            error_type: error_type.into(),
            error_message: e.to_string(),
        }
    }
}

/// One provider's result.
enum Outcome {
    Started(Started),
    Skipped(Skipped),
    Failed(Failed),
    Reconciled(Reconciled),
    Stuck(Stuck),
}

/// Work for one provider, decided up front.
enum Task {
    Start(ProviderSettings),
    Resume(ProviderSettings),
    Reconcile(ProviderSettings, String),
}

/// The SDK's first retry backoff of the scheduler's clients; it doubles
/// (with jitter) per retry.
pub const INITIAL_BACKOFF: std::time::Duration = std::time::Duration::from_secs(1);

impl Scheduler<DynamoProviders> {
    /// The function as it runs in Lambda and in the local run: the
    /// configuration read through `env`, providers in DynamoDB, executions
    /// in Step Functions, both clients retrying `AWS_MAX_ATTEMPTS` times.
    pub fn load(
        env: impl Fn(&str) -> Option<String>,
        aws: &aws_config::SdkConfig,
    ) -> Result<Self, telemetry_lake::config::ConfigError> {
        let metrics = MetricsOut::from_env(&env, "scheduler");
        let config = SchedulerConfig::from_lookup(env)?;
        let attempts = config.aws_max_attempts;
        let source = DynamoProviders::new(
            dynamodb_client(aws, attempts, INITIAL_BACKOFF),
            &config.providers_table,
        );
        let sfn = sfn_client(aws, attempts, INITIAL_BACKOFF);
        Ok(Scheduler::new(config, source, sfn).with_metrics(metrics))
    }
}

impl<S: ProviderSource> Scheduler<S> {
    pub fn new(config: SchedulerConfig, source: S, sfn: aws_sdk_sfn::Client) -> Self {
        Scheduler {
            config,
            source,
            sfn,
            metrics: MetricsOut::from_env(|_| None, "scheduler"),
        }
    }

    /// The same function writing its metrics to `metrics`.
    pub fn with_metrics(mut self, metrics: MetricsOut) -> Self {
        self.metrics = metrics;
        self
    }

    /// Handles one EventBridge scheduled event. Fails (so Lambda retries the
    /// tick, which is safe: see the module docs) when the providers cannot
    /// be read or an AWS call failed after its retries; bad provider items
    /// are only reported.
    pub async fn handle(
        &self,
        event: LambdaEvent<EventBridgeEvent>,
    ) -> Result<ScheduleSummary, SchedulerError> {
        let mut invocation = Invocation::start(&event.context.request_id);
        let scheduled = event.payload.time.ok_or(SchedulerError::NoScheduledTime)?;
        let summary = self.process(scheduled).await?;
        invocation
            .count(metrics::PROVIDERS_DUE, summary.due.len())
            .count(metrics::PROVIDERS_STARTED, summary.started.len())
            .count(metrics::PROVIDERS_SKIPPED, summary.skipped.len())
            .count(metrics::PROVIDERS_RECONCILED, summary.reconciled.len())
            .count(metrics::PROVIDERS_FAILED, summary.failed.len());
        self.metrics.emit(&invocation);
        let retryable: Vec<Failed> = summary
            .failed
            .iter()
            .filter(|f| f.retryable)
            .cloned()
            .collect();
        if retryable.is_empty() {
            Ok(summary)
        } else {
            Err(SchedulerError::Incomplete(retryable))
        }
    }

    /// Decides and acts for every provider at `scheduled`.
    pub async fn process(&self, scheduled: DateTime<Utc>) -> Result<ScheduleSummary, SourceError> {
        let clock = Instant::now();
        let slot = slot(scheduled, self.config.schedule_period);
        let mut summary = ScheduleSummary {
            scheduled_time: Some(scheduled),
            slot: Some(slot),
            ..ScheduleSummary::default()
        };
        let mut tasks = Vec::new();
        for read in self.source.providers().await? {
            let allowed = &self.config.provider_job_arguments;
            let usable = read.and_then(|p| check_job_arguments(&p, allowed).map(|()| p));
            let provider = match usable {
                Ok(p) => p,
                Err(e) => {
                    summary.failed.push(self.unusable(&e).await);
                    continue;
                }
            };
            let own_arn = self.arn_for(&provider, slot);
            match decide(
                &provider,
                scheduled,
                &own_arn,
                self.config.stale_running_after,
            ) {
                Decision::Due => {
                    summary.due.push(provider.provider.clone());
                    tasks.push(Task::Start(provider));
                }
                Decision::Resume => tasks.push(Task::Resume(provider)),
                Decision::Reconcile { execution_arn } => {
                    tasks.push(Task::Reconcile(provider, execution_arn))
                }
                Decision::Skip(reason) => summary.skipped.push(Skipped {
                    provider: provider.provider,
                    reason: reason.to_string(),
                }),
            }
        }

        let outcomes: Vec<Outcome> = stream::iter(tasks)
            .map(|task| self.run(task, slot))
            .buffer_unordered(self.config.start_concurrency)
            .collect()
            .await;
        for outcome in outcomes {
            match outcome {
                Outcome::Started(s) => summary.started.push(s),
                Outcome::Skipped(s) => summary.skipped.push(s),
                Outcome::Failed(f) => summary.failed.push(f),
                Outcome::Reconciled(r) => summary.reconciled.push(r),
                Outcome::Stuck(s) => summary.stuck.push(s),
            }
        }
        summary.due.sort();
        summary.started.sort_by(|a, b| a.provider.cmp(&b.provider));
        summary.skipped.sort_by(|a, b| a.provider.cmp(&b.provider));
        summary.failed.sort_by(|a, b| a.provider.cmp(&b.provider));
        summary
            .reconciled
            .sort_by(|a, b| a.provider.cmp(&b.provider));
        summary.stuck.sort_by(|a, b| a.provider.cmp(&b.provider));
        log(&summary, clock);
        Ok(summary)
    }

    /// A provider that cannot be used: neither started nor reconciled, and
    /// the reason is recorded on its item (when it has a key) for whoever
    /// looks at it there.
    async fn unusable(&self, e: &ProviderError) -> Failed {
        let provider = match e {
            ProviderError::Attribute { provider, .. } => provider.clone(),
            ProviderError::NoKey { .. } => "?".into(),
        };
        if let ProviderError::Attribute { .. } = e {
            let recorded = self
                .source
                .record_unusable(&provider, &e.to_string(), Utc::now())
                .await;
            if let Err(write) = recorded {
                tracing::warn!(provider = %provider, error = %write, "could not record why the provider is unusable");
            }
        }
        Failed {
            provider,
            error: e.to_string(),
            retryable: false,
        }
    }

    fn arn_for(&self, provider: &ProviderSettings, slot: DateTime<Utc>) -> String {
        execution_arn(
            &self.config.state_machine_arn,
            &execution_name(&provider.provider, slot),
        )
    }

    async fn run(&self, task: Task, slot: DateTime<Utc>) -> Outcome {
        match task {
            Task::Start(p) => self.claim_and_start(p, slot).await,
            Task::Resume(p) => self.resume(p, slot).await,
            Task::Reconcile(p, arn) => self.reconcile(p, arn).await,
        }
    }

    /// Claim, start, and on a lasting failure release (see the module docs).
    async fn claim_and_start(&self, p: ProviderSettings, slot: DateTime<Utc>) -> Outcome {
        let name = execution_name(&p.provider, slot);
        let arn = execution_arn(&self.config.state_machine_arn, &name);
        match self.source.claim(&p, &arn, Utc::now()).await {
            Ok(Written::Yes) => {}
            Ok(Written::ConditionFailed) => {
                return skipped(
                    &p,
                    "claimed by another scheduler run (status changed since it was read)".into(),
                );
            }
            Err(e) => return failed(&p, format!("claim: {e}")),
        }
        match start(&self.sfn, &self.config.state_machine_arn, &name, execution_input(&p)).await {
            Ok(Start::Started { execution_arn }) => started(&p, execution_arn, "started"),
            Ok(Start::AlreadyExists) => self.already_exists(p, arn).await,
            Err(start_error) => match describe(&self.sfn, &arn).await {
                // The failed call may have started it after all.
                Ok(Execution::Running | Execution::Ended(_)) => self.already_exists(p, arn).await,
                Ok(Execution::DoesNotExist) => {
                    let error = format!("could not start its execution: {start_error}");
                    match self.source.release(&p.provider, &arn, p.status, &error).await {
                        Ok(_) => failed(&p, error),
                        Err(e) => failed(&p, format!("{error}; and the claim stays: {e}")),
                    }
                }
                Err(e) => failed(
                    &p,
                    format!("{start_error}; whether it started is unknown ({e}); the claim stays until it is reconciled"),
                ),
            },
        }
    }

    /// This slot's execution exists: running means started; ended means a
    /// run for this slot already happened, so its outcome goes back on the
    /// item instead of starting another.
    async fn already_exists(&self, p: ProviderSettings, arn: String) -> Outcome {
        match describe(&self.sfn, &arn).await {
            Ok(Execution::Running) => started(&p, arn, "already running"),
            Ok(Execution::Ended(outcome)) => {
                match self
                    .source
                    .record_outcome(&p.provider, &arn, &outcome)
                    .await
                {
                    Ok(_) => skipped(
                        &p,
                        format!(
                            "this slot's execution already ran and ended {}; next slot",
                            outcome_status(&outcome)
                        ),
                    ),
                    Err(e) => failed(&p, format!("recording its ended execution: {e}")),
                }
            }
            Ok(Execution::DoesNotExist) => failed(
                &p,
                format!("StartExecution said {arn} exists but DescribeExecution does not find it"),
            ),
            Err(e) => failed(&p, e),
        }
    }

    /// RUNNING with this slot's ARN: start it again (idempotent by name).
    async fn resume(&self, p: ProviderSettings, slot: DateTime<Utc>) -> Outcome {
        let name = execution_name(&p.provider, slot);
        let arn = execution_arn(&self.config.state_machine_arn, &name);
        match start(
            &self.sfn,
            &self.config.state_machine_arn,
            &name,
            execution_input(&p),
        )
        .await
        {
            Ok(Start::Started { execution_arn }) => started(&p, execution_arn, "resumed"),
            Ok(Start::AlreadyExists) => self.already_exists(p, arn).await,
            Err(e) => failed(&p, e),
        }
    }

    /// RUNNING past the stale limit: write back how its execution ended.
    async fn reconcile(&self, p: ProviderSettings, arn: String) -> Outcome {
        let outcome = match describe(&self.sfn, &arn).await {
            Ok(Execution::Running) => {
                return Outcome::Stuck(Stuck {
                    provider: p.provider,
                    execution_arn: arn,
                    since: p.execution_started_at,
                })
            }
            Ok(Execution::Ended(outcome)) => outcome,
            Ok(Execution::DoesNotExist) => telemetry_lake::scheduler::providers::RunOutcome::Failed {
                error: "ExecutionDoesNotExist".into(),
                cause: format!(
                    "the provider was claimed for {arn} (at {}) but that execution was never started",
                    p.execution_started_at.map(show).unwrap_or_else(|| "an unknown time".into())
                ),
                at: Utc::now(),
            },
            Err(e) => return failed(&p, e),
        };
        match self
            .source
            .record_outcome(&p.provider, &arn, &outcome)
            .await
        {
            Ok(Written::Yes) => Outcome::Reconciled(Reconciled {
                provider: p.provider,
                execution_arn: arn,
                status: outcome_status(&outcome),
            }),
            Ok(Written::ConditionFailed) => skipped(
                &p,
                "its execution was already recorded (by the execution or another run)".into(),
            ),
            Err(e) => failed(&p, format!("recording its ended execution: {e}")),
        }
    }
}

fn started(p: &ProviderSettings, execution_arn: String, how: &'static str) -> Outcome {
    Outcome::Started(Started {
        provider: p.provider.clone(),
        execution_arn,
        how,
    })
}

fn skipped(p: &ProviderSettings, reason: String) -> Outcome {
    Outcome::Skipped(Skipped {
        provider: p.provider.clone(),
        reason,
    })
}

fn failed(p: &ProviderSettings, error: String) -> Outcome {
    Outcome::Failed(Failed {
        provider: p.provider.clone(),
        error,
        retryable: true,
    })
}

fn log(summary: &ScheduleSummary, clock: Instant) {
    for f in &summary.failed {
        tracing::error!(provider = %f.provider, error = %f.error, retryable = f.retryable, "provider failed");
    }
    for s in &summary.stuck {
        tracing::warn!(provider = %s.provider, execution_arn = %s.execution_arn, "provider RUNNING past the stale limit and its execution still runs");
    }
    tracing::info!(
        scheduled_time = %summary.scheduled_time.map(show).unwrap_or_default(),
        slot = %summary.slot.map(show).unwrap_or_default(),
        due = summary.due.len(),
        started = summary.started.len(),
        skipped = summary.skipped.len(),
        failed = summary.failed.len(),
        reconciled = summary.reconciled.len(),
        stuck = summary.stuck.len(),
        summary = %serde_json::to_string(summary).unwrap_or_default(),
        duration_ms = clock.elapsed().as_millis() as u64,
        "schedule tick"
    );
}

/// Builds the Step Functions client with an explicit retry policy: the
/// standard mode retries throttling (`ThrottlingException`) and transient
/// errors with exponential backoff and jitter, `max_attempts` in all.
pub fn sfn_client(
    sdk: &aws_config::SdkConfig,
    max_attempts: u32,
    initial_backoff: std::time::Duration,
) -> aws_sdk_sfn::Client {
    let conf = aws_sdk_sfn::config::Builder::from(sdk)
        .retry_config(retry_config(max_attempts, initial_backoff))
        .build();
    aws_sdk_sfn::Client::from_conf(conf)
}

/// The DynamoDB client, with the same retry policy.
pub fn dynamodb_client(
    sdk: &aws_config::SdkConfig,
    max_attempts: u32,
    initial_backoff: std::time::Duration,
) -> aws_sdk_dynamodb::Client {
    let conf = aws_sdk_dynamodb::config::Builder::from(sdk)
        .retry_config(retry_config(max_attempts, initial_backoff))
        .build();
    aws_sdk_dynamodb::Client::from_conf(conf)
}

fn retry_config(
    max_attempts: u32,
    initial_backoff: std::time::Duration,
) -> aws_config::retry::RetryConfig {
    aws_config::retry::RetryConfig::standard()
        .with_max_attempts(max_attempts)
        .with_initial_backoff(initial_backoff)
}
