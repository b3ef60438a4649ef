//! Tools around the suite: a telemetry generator, Lambda event building, a
//! moto server and a local Lambda endpoint for local runs and tests, and
//! reading the lake back.

pub mod bench;
pub mod event_source;
pub mod kinesis_event;
pub mod lake_reader;
pub mod lambda_endpoint;
pub mod moto;
pub mod proxy;
pub mod schema_inference;
pub mod telemetry;
