//! When a provider runs: the due rule, the schedule slot, the deterministic
//! execution name of a provider's run in a slot, and stale-RUNNING detection.
//!
//! Pure functions over [`ProviderSettings`] and the scheduled time of the
//! EventBridge event (never the wall clock), so a late or retried scheduler
//! invocation decides exactly as an on-time one would.

use chrono::{DateTime, Duration, TimeZone, Utc};

use crate::scheduler::providers::{ProviderSettings, ProviderStatus};

/// Step Functions' longest execution name.
pub const MAX_EXECUTION_NAME: usize = 80;

/// What the scheduler does with one provider at one scheduled time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Start it: enabled, not running, and never succeeded or last succeeded
    /// at least `frequency_minutes` before the scheduled time.
    Due,
    /// RUNNING with this slot's own execution: the claim was written but the
    /// start may not have been (a crashed or retried run). Starting again
    /// with the same name is idempotent, so it is resumed.
    Resume,
    /// RUNNING for longer than the stale limit (or with no start time): ask
    /// Step Functions how its execution ended.
    Reconcile { execution_arn: String },
    /// Left alone, with the reason reported in the summary.
    Skip(SkipReason),
}

/// Why a provider is not started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    Disabled,
    /// Its last success is not yet `frequency_minutes` old; due at `due_at`.
    NotYetDue {
        due_at: DateTime<Utc>,
    },
    /// Its last success is after the scheduled time: a run finished after
    /// this (late) invocation was scheduled, or clocks disagree. Either way it
    /// has just run, so it is not due.
    SucceededAfterScheduledTime {
        last_success: DateTime<Utc>,
    },
    /// RUNNING within the stale limit.
    Running {
        since: Option<DateTime<Utc>>,
    },
    /// RUNNING without an execution ARN: nothing to reconcile with. Needs an
    /// operator (set the status back to IDLE or FAILED).
    RunningWithoutExecution,
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SkipReason::Disabled => write!(f, "disabled"),
            SkipReason::NotYetDue { due_at } => write!(f, "not due until {}", due_at.to_rfc3339()),
            SkipReason::SucceededAfterScheduledTime { last_success } => write!(
                f,
                "last success {} is after the scheduled time (a run finished since, or clock skew)",
                last_success.to_rfc3339()
            ),
            SkipReason::Running { since: Some(t) } => write!(f, "running since {}", t.to_rfc3339()),
            SkipReason::Running { since: None } => write!(f, "running"),
            SkipReason::RunningWithoutExecution => {
                write!(f, "status RUNNING but no execution_arn: needs an operator")
            }
        }
    }
}

/// The due rule alone: enabled, not RUNNING, and never succeeded or
/// `last_success + frequency_minutes <= scheduled`.
pub fn due(provider: &ProviderSettings, scheduled: DateTime<Utc>) -> Result<(), SkipReason> {
    if !provider.enabled {
        return Err(SkipReason::Disabled);
    }
    if provider.status == ProviderStatus::Running {
        return Err(SkipReason::Running {
            since: provider.execution_started_at,
        });
    }
    let Some(last) = provider.last_success else {
        return Ok(());
    };
    if last > scheduled {
        return Err(SkipReason::SucceededAfterScheduledTime { last_success: last });
    }
    let due_at = last + provider.frequency();
    if due_at <= scheduled {
        Ok(())
    } else {
        Err(SkipReason::NotYetDue { due_at })
    }
}

/// Everything the scheduler decides about one provider: the due rule, plus
/// what to do with a RUNNING one.
pub fn decide(
    provider: &ProviderSettings,
    scheduled: DateTime<Utc>,
    slot_execution_arn: &str,
    stale_after: Duration,
) -> Decision {
    if provider.status == ProviderStatus::Running {
        let Some(arn) = &provider.execution_arn else {
            return Decision::Skip(SkipReason::RunningWithoutExecution);
        };
        if arn == slot_execution_arn {
            return Decision::Resume;
        }
        if is_stale(provider.execution_started_at, scheduled, stale_after) {
            return Decision::Reconcile {
                execution_arn: arn.clone(),
            };
        }
    }
    match due(provider, scheduled) {
        Ok(()) => Decision::Due,
        Err(reason) => Decision::Skip(reason),
    }
}

/// A run is stale when it started at least `stale_after` before the
/// scheduled time, or its start time is unknown.
pub fn is_stale(
    started_at: Option<DateTime<Utc>>,
    scheduled: DateTime<Utc>,
    stale_after: Duration,
) -> bool {
    started_at.is_none_or(|t| t + stale_after <= scheduled)
}

/// The slot of a scheduled time: the time floored to the schedule period.
/// A period that is not a positive number of seconds is taken as one second.
pub fn slot(scheduled: DateTime<Utc>, period: Duration) -> DateTime<Utc> {
    let period = period.num_seconds().max(1);
    let secs = scheduled.timestamp();
    let floored = secs - secs.rem_euclid(period);
    Utc.timestamp_opt(floored, 0).single().unwrap_or(scheduled)
}

/// The execution name of `provider`'s run in `slot`: `{provider}-{slot}`,
/// with the slot as `YYYYMMDDTHHMMZ`.
///
/// Step Functions allows up to 80 characters and rejects whitespace,
/// brackets, wildcards and most punctuation; CloudWatch logging only likes
/// `A-Za-z0-9-_`. Any other character becomes `_`. When the provider name had
/// to be changed (replaced or cut to fit), a 64-bit FNV-1a hash of the
/// original name is appended as `-` and 16 hex digits, so two providers that
/// sanitise alike ("a.b", "a:b") still get different names. A name kept as
/// it is never ends that way: a provider literally named like a hashed name
/// (`a_b-` and the 16 digits of "a.b") is hashed too, so the two forms never
/// meet. The same inputs always give the same name.
pub fn execution_name(provider: &str, slot: DateTime<Utc>) -> String {
    const HASH_DIGITS: usize = 16;
    let suffix = format!("-{}", slot.format("%Y%m%dT%H%MZ"));
    let clean: String = provider
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let room = MAX_EXECUTION_NAME - suffix.len();
    let looks_hashed = clean.len() > HASH_DIGITS
        && clean.as_bytes()[clean.len() - HASH_DIGITS - 1] == b'-'
        && clean[clean.len() - HASH_DIGITS..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if clean == provider && clean.len() <= room && !clean.is_empty() && !looks_hashed {
        return format!("{clean}{suffix}");
    }
    let hash = format!(
        "-{:0width$x}",
        fnv1a(provider.as_bytes()),
        width = HASH_DIGITS
    );
    let keep = room - hash.len();
    // `clean` is ASCII, so any byte index is a character boundary.
    let head = &clean[..clean.len().min(keep)];
    format!("{head}{hash}{suffix}")
}

/// The ARN Step Functions gives an execution `name` of `state_machine_arn`.
pub fn execution_arn(state_machine_arn: &str, name: &str) -> String {
    format!(
        "{}:{name}",
        state_machine_arn.replacen(":stateMachine:", ":execution:", 1)
    )
}

/// 64-bit FNV-1a: tiny and stable across Rust versions (std's hasher is not).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::providers::ProviderSettings;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn provider(last_success: Option<&str>) -> ProviderSettings {
        ProviderSettings {
            provider: "acme".into(),
            enabled: true,
            frequency_minutes: 60,
            last_success: last_success.map(t),
            status: ProviderStatus::Succeeded,
            job_name: "etl-acme".into(),
            job_arguments: Default::default(),
            execution_arn: None,
            execution_started_at: None,
        }
    }

    const AT: &str = "2026-11-23T10:15:00Z";

    #[test]
    fn due_exactly_at_the_frequency() {
        assert_eq!(due(&provider(Some("2026-11-23T09:15:00Z")), t(AT)), Ok(()));
    }

    #[test]
    fn not_due_one_second_before_the_frequency() {
        assert_eq!(
            due(&provider(Some("2026-11-23T09:15:01Z")), t(AT)),
            Err(SkipReason::NotYetDue {
                due_at: t("2026-11-23T10:15:01Z")
            })
        );
    }

    #[test]
    fn due_when_never_succeeded() {
        assert_eq!(due(&provider(None), t(AT)), Ok(()));
    }

    #[test]
    fn a_last_success_after_the_scheduled_time_is_not_due() {
        let p = provider(Some("2026-11-23T10:15:01Z"));
        assert_eq!(
            due(&p, t(AT)),
            Err(SkipReason::SucceededAfterScheduledTime {
                last_success: t("2026-11-23T10:15:01Z")
            })
        );
        // Equal to the scheduled time is simply "just ran".
        let p = provider(Some(AT));
        assert!(matches!(due(&p, t(AT)), Err(SkipReason::NotYetDue { .. })));
    }

    #[test]
    fn disabled_and_running_are_never_due() {
        let mut p = provider(None);
        p.enabled = false;
        assert_eq!(due(&p, t(AT)), Err(SkipReason::Disabled));
        let mut p = provider(None);
        p.status = ProviderStatus::Running;
        assert_eq!(due(&p, t(AT)), Err(SkipReason::Running { since: None }));
    }

    #[test]
    fn failed_providers_are_due_by_their_last_success() {
        let mut p = provider(Some("2026-11-23T10:00:00Z"));
        p.status = ProviderStatus::Failed;
        assert!(due(&p, t(AT)).is_err());
        p.last_success = None;
        assert_eq!(due(&p, t(AT)), Ok(()));
    }

    #[test]
    fn running_providers_are_resumed_reconciled_or_left() {
        let stale = Duration::minutes(60);
        let own = "arn:aws:states:us-east-1:1:execution:sm:acme-20261123T1015Z";
        let mut p = provider(None);
        p.status = ProviderStatus::Running;
        assert_eq!(
            decide(&p, t(AT), own, stale),
            Decision::Skip(SkipReason::RunningWithoutExecution)
        );
        p.execution_arn = Some(own.into());
        assert_eq!(decide(&p, t(AT), own, stale), Decision::Resume);
        p.execution_arn = Some("arn:old".into());
        p.execution_started_at = Some(t("2026-11-23T09:15:01Z"));
        assert_eq!(
            decide(&p, t(AT), own, stale),
            Decision::Skip(SkipReason::Running {
                since: Some(t("2026-11-23T09:15:01Z"))
            })
        );
        p.execution_started_at = Some(t("2026-11-23T09:15:00Z"));
        assert_eq!(
            decide(&p, t(AT), own, stale),
            Decision::Reconcile {
                execution_arn: "arn:old".into()
            }
        );
        p.execution_started_at = None;
        assert!(matches!(
            decide(&p, t(AT), own, stale),
            Decision::Reconcile { .. }
        ));
    }

    #[test]
    fn slots_floor_to_the_period() {
        let q = Duration::minutes(15);
        assert_eq!(
            slot(t("2026-11-23T10:29:59Z"), q),
            t("2026-11-23T10:15:00Z")
        );
        assert_eq!(
            slot(t("2026-11-23T10:30:00Z"), q),
            t("2026-11-23T10:30:00Z")
        );
        assert_eq!(
            slot(t("2026-11-23T10:07:42.5Z"), Duration::minutes(5)),
            t("2026-11-23T10:05:00Z")
        );
    }

    #[test]
    fn plain_names_are_kept() {
        let s = t("2026-11-23T10:15:00Z");
        assert_eq!(execution_name("acme_01-x", s), "acme_01-x-20261123T1015Z");
    }

    #[test]
    fn odd_characters_are_replaced_and_disambiguated() {
        let s = t("2026-11-23T10:15:00Z");
        let a = execution_name("acme.eu/west 1", s);
        let b = execution_name("acme:eu/west 1", s);
        assert!(a.starts_with("acme_eu_west_1-"), "{a}");
        assert!(a.ends_with("-20261123T1015Z"), "{a}");
        assert_ne!(a, b);
        assert!(a
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert!(execution_name("zürich", s).is_ascii());
        assert_ne!(execution_name("", s), "-20261123T1015Z");
    }

    #[test]
    fn a_name_that_looks_hashed_never_meets_the_name_it_looks_like() {
        let s = t("2026-11-23T10:15:00Z");
        for odd in ["a.b", "a:b", "acme eu", "zürich", ""] {
            let hashed = execution_name(odd, s);
            let provider = hashed.strip_suffix("-20261123T1015Z").unwrap();
            // A provider named exactly like the hashed form of `odd`.
            assert_ne!(
                execution_name(provider, s),
                hashed,
                "{odd:?} and {provider:?}"
            );
        }
        // A plain name ending in a dash and other digits is kept.
        assert_eq!(
            execution_name("sensor-2026", s),
            "sensor-2026-20261123T1015Z"
        );
    }

    #[test]
    fn long_names_fit_in_80_characters_and_stay_distinct() {
        let s = t("2026-11-23T10:15:00Z");
        let long_a = "p".repeat(200);
        let long_b = format!("{}q", "p".repeat(199));
        let a = execution_name(&long_a, s);
        let b = execution_name(&long_b, s);
        assert_eq!(a.len(), MAX_EXECUTION_NAME);
        assert_eq!(b.len(), MAX_EXECUTION_NAME);
        assert_ne!(a, b);
        assert!(a.ends_with("-20261123T1015Z"));
        let exactly = "p".repeat(MAX_EXECUTION_NAME - 15);
        assert_eq!(
            execution_name(&exactly, s),
            format!("{exactly}-20261123T1015Z")
        );
    }

    #[test]
    fn names_are_deterministic() {
        let s = t("2026-11-23T10:15:00Z");
        assert_eq!(execution_name("a b", s), execution_name("a b", s));
        assert_eq!(
            execution_name("a b", s),
            execution_name("a b", t("2026-11-23T10:15:00Z"))
        );
        assert_ne!(
            execution_name("a", s),
            execution_name("a", t("2026-11-23T10:30:00Z"))
        );
    }

    #[test]
    fn execution_arns_follow_the_state_machine() {
        assert_eq!(
            execution_arn("arn:aws:states:us-east-1:123:stateMachine:etl", "x-1"),
            "arn:aws:states:us-east-1:123:execution:etl:x-1"
        );
    }
}
