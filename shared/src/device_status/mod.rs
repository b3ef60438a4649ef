//! The device-status pipeline: a reading's status from its ranges
//! ([`status`]), sliding windows ([`windows`]) and their DynamoDB store
//! ([`window_store`]), the reference data and its cache ([`reference`]),
//! the reference table's change flag ([`change_flag`]) and the function's
//! configuration ([`config`]).

pub mod change_flag;
pub mod config;
pub mod reference;
pub mod status;
pub mod window_store;
pub mod windows;
