//! A smoke test of a running stack, from its outputs: puts a few hundred
//! generated readings on the stream, waits for every one of them in the
//! lake and for their devices in the windows table, runs the repartition
//! for their day, and reports what it found and how long each stage took.
//! Anything missing when its wait runs out is an error.
//!
//! The readings are of devices `990001..` with a serial number unique to
//! the run (`SMOKE-<millis>`), so they are told apart from real traffic;
//! the devices have no reference ranges, so their windows are UNKNOWN.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use chrono::Utc;
use serde::Serialize;

use crate::kinesis_event::{put_records, PUT_RECORDS_MAX};
use crate::lake_reader;

/// What the smoke test needs of the stack, by its output names.
#[derive(Debug, Clone)]
pub struct Targets {
    pub stream: String,
    pub lake_bucket: String,
    pub lake_prefix: String,
    pub windows_table: String,
    pub repartition: String,
}

impl Targets {
    /// From the stack's outputs (`StreamName`, `LakeBucketName`, `LakeUri`,
    /// `DeviceStatusWindowsTableName`, `RepartitionStateMachineArn`).
    pub fn from_outputs(outputs: &BTreeMap<String, String>) -> Result<Self> {
        let get = |name: &str| {
            outputs
                .get(name)
                .cloned()
                .with_context(|| format!("the stack has no output {name}"))
        };
        let bucket = get("LakeBucketName")?;
        let lake_uri = get("LakeUri")?;
        let lake_prefix = lake_uri
            .strip_prefix(&format!("s3://{bucket}/"))
            .with_context(|| format!("LakeUri {lake_uri} is not in s3://{bucket}/"))?
            .to_string();
        Ok(Targets {
            stream: get("StreamName")?,
            lake_bucket: bucket,
            lake_prefix,
            windows_table: get("DeviceStatusWindowsTableName")?,
            repartition: get("RepartitionStateMachineArn")?,
        })
    }
}

/// One stage: what it found and how long it took.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Stage {
    pub name: String,
    pub found: String,
    pub seconds: f64,
}

/// Devices of the smoke readings.
const FIRST_DEVICE: i64 = 990_001;
const DEVICES: i64 = 5;

/// Runs the smoke test: `readings` readings, each wait at most `wait`.
pub async fn run(
    sdk: &aws_config::SdkConfig,
    targets: &Targets,
    readings: usize,
    wait: Duration,
) -> Result<Vec<Stage>> {
    let s3 = crate::moto::s3_client(sdk);
    let kinesis = aws_sdk_kinesis::Client::new(sdk);
    let ddb = aws_sdk_dynamodb::Client::new(sdk);
    let sfn = aws_sdk_sfn::Client::new(sdk);
    s3.head_bucket()
        .bucket(&targets.lake_bucket)
        .send()
        .await
        .with_context(|| {
            format!(
                "the lake bucket {} does not exist or cannot be read",
                targets.lake_bucket
            )
        })?;
    let mut stages = Vec::new();
    let serial = format!("SMOKE-{}", Utc::now().timestamp_millis());
    let now = Utc::now();
    let started = Instant::now();
    let records: Vec<(String, Vec<u8>)> = (0..readings)
        .map(|i| {
            let device = FIRST_DEVICE + (i as i64 % DEVICES);
            let time = now - chrono::Duration::seconds(i as i64);
            let doc = serde_json::json!({
                "ventilatorid": device,
                "eventtime": time.format("%Y-%m-%d %H:%M:%S").to_string(),
                "serialnumber": serial,
                "pressurecontrol": 15, "o2stats": 95, "minutevolume": 6,
                "manufacturer": "smoke"
            });
            (device.to_string(), doc.to_string().into_bytes())
        })
        .collect();
    for chunk in records.chunks(PUT_RECORDS_MAX) {
        put_records(&kinesis, &targets.stream, chunk.to_vec()).await?;
    }
    stages.push(stage(
        "put on the stream",
        format!("{readings} readings"),
        started,
    ));

    let started = Instant::now();
    let mut rows = 0;
    while rows < readings && started.elapsed() < wait {
        rows = lake_rows(&s3, targets, &serial).await?;
        if rows < readings {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    stages.push(stage(
        "in the lake",
        format!("{rows} of {readings} rows"),
        started,
    ));
    if rows < readings {
        bail!("only {rows} of the {readings} smoke readings reached the lake in {wait:?}");
    }

    let started = Instant::now();
    let mut devices = 0;
    while devices < DEVICES && started.elapsed() < wait {
        devices = 0;
        for device in FIRST_DEVICE..FIRST_DEVICE + DEVICES {
            let out = ddb
                .query()
                .table_name(&targets.windows_table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(
                    ":pk",
                    aws_sdk_dynamodb::types::AttributeValue::S(device.to_string()),
                )
                .send()
                .await
                .with_context(|| format!("querying {}", targets.windows_table))?;
            if out.count() > 0 {
                devices += 1;
            }
        }
        if devices < DEVICES {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    stages.push(stage(
        "in the windows table",
        format!("{devices} of {DEVICES} devices"),
        started,
    ));
    if devices < DEVICES {
        bail!("only {devices} of the {DEVICES} smoke devices have windows after {wait:?}");
    }

    let started = Instant::now();
    let day = now.date_naive().to_string();
    let execution = sfn
        .start_execution()
        .state_machine_arn(&targets.repartition)
        .name(format!("smoke-{}", serial.to_lowercase()))
        .input(serde_json::json!({ "date": day }).to_string())
        .send()
        .await
        .context("starting the repartition")?
        .execution_arn;
    let done = crate::step_functions::wait_for_execution(&sfn, &execution, wait).await?;
    let status = done.status.as_str().to_string();
    stages.push(stage("repartition", format!("{day}: {status}"), started));
    if status != "SUCCEEDED" {
        bail!(
            "the repartition of {day} ended {status}: {:?}",
            done.cause()
        );
    }
    Ok(stages)
}

fn stage(name: &str, found: String, started: Instant) -> Stage {
    Stage {
        name: name.to_string(),
        found,
        seconds: started.elapsed().as_secs_f64(),
    }
}

/// Rows of the lake whose serial number is `serial`.
async fn lake_rows(s3: &aws_sdk_s3::Client, targets: &Targets, serial: &str) -> Result<usize> {
    use arrow_array::cast::AsArray;
    let mut rows = 0;
    for o in lake_reader::list(s3, &targets.lake_bucket, &targets.lake_prefix).await? {
        if !o.key.ends_with(".parquet") {
            continue;
        }
        let bytes = lake_reader::get(s3, &targets.lake_bucket, &o.key).await?;
        for batch in lake_reader::parquet_batches(bytes)? {
            let Some(column) = batch.column_by_name("serialnumber") else {
                continue;
            };
            let Some(serials) = column.as_string_opt::<i32>() else {
                continue;
            };
            rows += serials.iter().filter(|s| *s == Some(serial)).count();
        }
    }
    Ok(rows)
}
