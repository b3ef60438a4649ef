//! The repartition workflow: the days a run covers ([`dates`]), the Athena
//! queries and their tokens ([`queries`]), the tasks' configuration
//! ([`config`]) and the error types the state machine matches
//! ([`task_error`]).

pub mod config;
pub mod dates;
pub mod queries;
pub mod task_error;
