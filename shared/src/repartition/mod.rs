//! The repartition workflow: the days a run covers ([`dates`]), the Athena
//! queries and their tokens ([`queries`]), the tasks' configuration
//! ([`config`]), the claiming and emptying of the days a run writes
//! ([`target`]) and the error types the state machine matches
//! ([`task_error`]).

pub mod config;
pub mod dates;
pub mod queries;
pub mod target;
pub mod task_error;
