//! Tools around the suite: a telemetry generator, CloudWatch Logs envelopes,
//! Lambda event building, the benchmark workloads (`bench`), a checker and
//! diagram renderer of the state machines (`asl`), a moto server, a local Lambda endpoint and event source
//! mappings, a reader of `template.yaml`, the local end-to-end run,
//! reading the lake back, and replaying failed stream batches (`replay`).

pub mod asl;
pub mod bench;
pub mod cloudwatch_logs;
pub mod cost;
pub mod dead_letter_replay;
pub mod dynamodb_stream;
pub mod event_source;
pub mod function_process;
pub mod iceberg_reader;
pub mod kinesis_event;
pub mod lake_reader;
pub mod lambda_endpoint;
pub mod local_run;
pub mod moto;
pub mod proxy;
pub mod replay;
pub mod request_count;
pub mod runtime;
pub mod schema_inference;
pub mod smoke;
pub mod step_functions;
pub mod telemetry;
pub mod template;
