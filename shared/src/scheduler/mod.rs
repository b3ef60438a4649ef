//! The per-provider scheduler: provider items and their DynamoDB store
//! ([`providers`]), when a provider is due ([`schedule`]), its provider-etl
//! executions in Step Functions ([`executions`]) and the function's
//! configuration ([`config`]).

pub mod config;
pub mod executions;
pub mod providers;
pub mod schedule;
