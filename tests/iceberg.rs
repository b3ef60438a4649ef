//! The Iceberg lake on moto: `kinesis-to-parquet` with `LAKE_FORMAT=iceberg`
//! creates the table in the Glue catalog, commits each batch's data files
//! with the shard's watermark, and commits nothing twice when the batch is
//! delivered again. Every table is read back with pyiceberg
//! (`scripts/read_iceberg.py`), an independent reader. The maintenance
//! state machine runs on moto with its Athena calls through a fault proxy.

use std::collections::BTreeMap;

use chrono::{TimeZone, Utc};
use integration_tests::{
    athena_query_answer, athena_query_started, create_state_machine, create_workgroup,
    dead_letters_under, failures, iceberg_env, iceberg_lake, kinesis_event, moto, sdk_config,
    states_entered, unique, wait_for_execution, ProxiedSfnHarness, StreamFunction, REGION,
};
use kinesis_to_parquet::KinesisToParquet;
use lake_tools::kinesis_event::{sequence_number, stream_arn, StreamRecord};
use serde_json::{json, Value};
use telemetry_lake::config::vars;
use telemetry_lake::lake::writer::S3Sink;

/// A bucket, a Glue database, and the environment of a kinesis-to-parquet
/// writing table `readings` of that database.
struct Lake {
    s3: aws_sdk_s3::Client,
    bucket: String,
    database: String,
    env: BTreeMap<&'static str, String>,
}

impl Lake {
    async fn new() -> Lake {
        let (s3, bucket, database) = iceberg_lake("iceberg").await;
        let env = iceberg_env(&bucket, &database);
        Lake {
            s3,
            bucket,
            database,
            env,
        }
    }

    /// A function instance (a cold start) on moto.
    async fn function(&self) -> KinesisToParquet<S3Sink> {
        let sdk = sdk_config(moto(), REGION).await;
        KinesisToParquet::load(|name| self.env.get(name).cloned(), &sdk)
            .await
            .expect("cold start")
    }

    /// The table as pyiceberg reads it.
    fn read_back(&self) -> Value {
        lake_tools::iceberg_reader::read_table(moto(), &self.database, "readings")
            .expect("pyiceberg reads the table")
    }
}

fn reading(id: i64, time: &str) -> Vec<u8> {
    json!({
        "ventilatorid": id, "eventtime": format!("2026-11-22 {time}"),
        "serialnumber": format!("SN-{id}"), "pressurecontrol": 20, "o2stats": 95,
        "minutevolume": 6, "manufacturer": "Acme"
    })
    .to_string()
    .into_bytes()
}

/// Records `range` of shard 0, record `i` carrying `data(i)`, all arriving
/// at 11:00.
fn event(range: std::ops::Range<u64>, data: impl Fn(u64) -> Vec<u8>) -> Vec<u8> {
    let arrival = Utc.with_ymd_and_hms(2026, 11, 22, 11, 0, 0).unwrap();
    let records: Vec<StreamRecord> = range
        .map(|i| StreamRecord {
            data: data(i),
            partition_key: "pk".into(),
            arrival,
            sequence_number: sequence_number(0, i),
        })
        .collect();
    kinesis_event(
        &stream_arn(REGION, "vent"),
        "shardId-000000000000",
        &records,
    )
}

/// Record `i`: a reading of device `i`, half before 10:00 and half after;
/// record 3 is not JSON.
fn data(i: u64) -> Vec<u8> {
    if i == 3 {
        return b"{not json".to_vec();
    }
    let time = if i % 2 == 0 { "09:59:00" } else { "10:01:00" };
    reading(i as i64, time)
}

/// The table's current snapshot.
fn current(table: &Value) -> &Value {
    table["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == table["current_snapshot_id"])
        .expect("a current snapshot")
}

fn ids(table: &Value) -> Vec<i64> {
    let mut ids: Vec<i64> = table["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["ventilatorid"].as_i64().unwrap())
        .collect();
    ids.sort_unstable();
    ids
}

#[tokio::test]
async fn a_batch_is_committed_once_partitioned_by_event_hour_and_read_back_by_pyiceberg() {
    let lake = Lake::new().await;
    let f = lake.function().await;
    let (summary, response) = f.invoke(&event(0..8, data)).await.expect("invoked");
    assert!(failures(&response).is_empty(), "{summary:?}");
    assert_eq!((summary.records, summary.good, summary.bad), (8, 7, 1));
    assert!(summary.snapshot_id.is_some());

    let table = lake.read_back();
    let schema: Vec<(i64, &str, &str, bool)> = table["schema"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["id"].as_i64().unwrap(),
                f["name"].as_str().unwrap(),
                f["type"].as_str().unwrap(),
                f["required"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(schema[0], (1, "ventilatorid", "long", true));
    assert_eq!(schema[1], (2, "eventtime", "timestamptz", true));
    assert_eq!(table["arrow_types"]["eventtime"], "timestamp[us, tz=UTC]");
    assert_eq!(
        table["partition_spec"],
        json!([{"source_id": 2, "name": "eventtime_hour", "transform": "hour"}])
    );
    assert_eq!(ids(&table), vec![0, 1, 2, 4, 5, 6, 7]);
    let row = table["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["ventilatorid"] == 4)
        .unwrap();
    assert_eq!(row["eventtime"], "2026-11-22T09:59:00+00:00");
    // One data file per event hour, each named by the batch's records.
    let files: Vec<(&str, i64)> = table["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["path"].as_str().unwrap(), f["records"].as_i64().unwrap()))
        .collect();
    let first = sequence_number(0, 0);
    let last = sequence_number(0, 7);
    let expect = |hour: &str| {
        format!(
            "s3://{}/warehouse/readings/data/eventtime_hour=2026-11-22-{hour}/\
             vent.shardId-000000000000.{first}-{last}.parquet",
            lake.bucket
        )
    };
    assert_eq!(
        files,
        vec![(expect("09").as_str(), 4), (expect("10").as_str(), 3)]
    );
    // Each file's column metrics, as pyiceberg decodes them from the
    // manifest: the bounds of its rows (devices 0, 2, 4, 6 at 09:59; 1, 5, 7
    // at 10:01), no nulls, a value per row.
    let micros = |time: &str| {
        chrono::NaiveDateTime::parse_from_str(&format!("2026-11-22 {time}"), "%Y-%m-%d %H:%M:%S")
            .unwrap()
            .and_utc()
            .timestamp_micros()
    };
    let metrics = |f: &Value| {
        (
            f["lower"]["ventilatorid"].as_i64(),
            f["upper"]["ventilatorid"].as_i64(),
            f["lower"]["eventtime"].as_i64(),
            f["upper"]["eventtime"].as_i64(),
            f["lower"]["serialnumber"].as_str().map(str::to_string),
            f["nulls"]["o2stats"].as_i64(),
            f["values"]["eventtime"].as_i64(),
        )
    };
    let described: Vec<_> = table["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(metrics)
        .collect();
    let at_0959 = Some(micros("09:59:00"));
    let at_1001 = Some(micros("10:01:00"));
    assert_eq!(
        described,
        vec![
            (
                Some(0),
                Some(6),
                at_0959,
                at_0959,
                Some("SN-0".into()),
                Some(0),
                Some(4)
            ),
            (
                Some(1),
                Some(7),
                at_1001,
                at_1001,
                Some("SN-1".into()),
                Some(0),
                Some(3)
            ),
        ]
    );
    // A scan by device is planned on the bounds: the 09:00 file holds no
    // device above 6, so it is not read.
    let filtered = lake_tools::iceberg_reader::read_table_with(
        moto(),
        &lake.database,
        "readings",
        Some("ventilatorid >= 7"),
    )
    .expect("pyiceberg reads the table");
    assert_eq!(filtered["filtered_files"], json!([expect("10")]));
    let snapshots = table["snapshots"].as_array().unwrap();
    assert_eq!(snapshots.len(), 1);
    assert_eq!(
        snapshots[0]["summary"]["telemetry-lake.watermark.vent/shardId-000000000000"],
        json!(last)
    );
    let letters = dead_letters_under(&lake.s3, &lake.bucket, "dead-letters/v/").await;
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].sequence_number, sequence_number(0, 3));
}

/// With `ICEBERG_PARTITION=day(eventtime)`: readings either side of
/// midnight land in one data file per event day, under Iceberg's day
/// directories, and a table partitioned otherwise refuses the cold start.
#[tokio::test]
async fn a_table_partitioned_by_event_day_gets_a_file_per_day() {
    let mut lake = Lake::new().await;
    lake.env
        .insert(vars::ICEBERG_PARTITION, "day(eventtime)".to_string());
    let f = lake.function().await;
    let day_data = |i: u64| {
        let (day, time) = if i % 2 == 0 {
            ("21", "23:59:30")
        } else {
            ("22", "00:00:30")
        };
        serde_json::json!({
            "ventilatorid": i, "eventtime": format!("2026-11-{day} {time}"),
            "serialnumber": format!("SN-{i}"), "pressurecontrol": 20, "o2stats": 95,
            "minutevolume": 6, "manufacturer": "Acme"
        })
        .to_string()
        .into_bytes()
    };
    let (summary, response) = f.invoke(&event(0..5, day_data)).await.expect("invoked");
    assert!(failures(&response).is_empty(), "{summary:?}");
    assert_eq!(summary.good, 5);

    let table = lake.read_back();
    assert_eq!(
        table["partition_spec"],
        json!([{"source_id": 2, "name": "eventtime_day", "transform": "day"}])
    );
    let files: Vec<(String, i64)> = table["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let path = f["path"].as_str().unwrap();
            let dir = path.split('/').rev().nth(1).unwrap().to_string();
            (dir, f["records"].as_i64().unwrap())
        })
        .collect();
    assert_eq!(
        files,
        [
            ("eventtime_day=2026-11-21".to_string(), 3),
            ("eventtime_day=2026-11-22".to_string(), 2)
        ]
    );
    assert_eq!(ids(&table), vec![0, 1, 2, 3, 4]);

    // The same table configured by the hour: refused, naming both.
    lake.env
        .insert(vars::ICEBERG_PARTITION, "hour(eventtime)".to_string());
    let sdk = sdk_config(moto(), REGION).await;
    let err = KinesisToParquet::load(|name| lake.env.get(name).cloned(), &sdk)
        .await
        .err()
        .expect("a cold start against a table partitioned by day");
    let err = err.to_string();
    assert!(
        err.contains("is partitioned by day(eventtime), not hour(eventtime)"),
        "{err}"
    );
}

#[tokio::test]
async fn a_batch_delivered_again_whole_or_from_inside_commits_only_what_is_new() {
    let lake = Lake::new().await;
    let f = lake.function().await;
    let (_, response) = f.invoke(&event(0..6, data)).await.expect("invoked");
    assert!(failures(&response).is_empty());

    // The same batch again (a retry after a timeout whose commit landed):
    // nothing new, no snapshot.
    let (summary, response) = f.invoke(&event(0..6, data)).await.expect("invoked");
    assert!(failures(&response).is_empty());
    assert_eq!(
        (summary.skipped, summary.good, summary.snapshot_id),
        (6, 0, None)
    );

    // From inside the committed range, reaching further (a retry from a
    // reported sequence number, or a bisected half): only records 6..9.
    let other = lake.function().await;
    let (summary, response) = other.invoke(&event(4..10, data)).await.expect("invoked");
    assert!(failures(&response).is_empty());
    assert_eq!((summary.skipped, summary.good), (2, 4));

    let table = lake.read_back();
    assert_eq!(ids(&table), vec![0, 1, 2, 4, 5, 6, 7, 8, 9]);
    let snapshots = table["snapshots"].as_array().unwrap();
    assert_eq!(snapshots.len(), 2);
    assert_eq!(
        current(&table)["summary"]["telemetry-lake.watermark.vent/shardId-000000000000"],
        json!(sequence_number(0, 9))
    );
    // The bad record's dead letter was written once, by the first delivery.
    let letters = dead_letters_under(&lake.s3, &lake.bucket, "dead-letters/v/").await;
    assert_eq!(letters.len(), 1);
}

#[tokio::test]
async fn another_engines_commit_on_top_keeps_the_watermarks_and_a_redelivery_commits_nothing() {
    let lake = Lake::new().await;
    let f = lake.function().await;
    let (_, response) = f.invoke(&event(0..6, data)).await.expect("invoked");
    assert!(failures(&response).is_empty());
    // Another engine commits on top (Athena's OPTIMIZE does, every
    // maintenance run): its snapshot has none of the suite's properties.
    let root = lake_tools::moto::repo_root();
    let out = std::process::Command::new(root.join(".venv/bin/python"))
        .arg(root.join("scripts/append_iceberg.py"))
        .args([moto(), &lake.database, "readings"])
        .arg(
            json!([{
                "ventilatorid": 999, "eventtime": "2026-11-22T10:30:00+00:00",
                "serialnumber": "SN-999", "pressurecontrol": 20, "o2stats": 95,
                "minutevolume": 6, "manufacturer": "Other"
            }])
            .to_string(),
        )
        .output()
        .expect("pyiceberg append");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = lake.read_back();
    assert_eq!(table["snapshots"].as_array().unwrap().len(), 2);
    assert!(current(&table)["summary"]
        .as_object()
        .unwrap()
        .keys()
        .all(|k| !k.starts_with("telemetry-lake.")));

    // The batch delivered again, by a new instance: the watermark is found
    // under the other engine's snapshot, nothing is committed twice, and
    // the next records carry it forward.
    let g = lake.function().await;
    let (summary, _) = g.invoke(&event(0..6, data)).await.expect("invoked");
    assert_eq!((summary.skipped, summary.good), (6, 0));
    let (summary, _) = g.invoke(&event(4..8, data)).await.expect("invoked");
    assert_eq!((summary.skipped, summary.good), (2, 2));
    let table = lake.read_back();
    assert_eq!(ids(&table), vec![0, 1, 2, 4, 5, 6, 7, 999]);
    assert_eq!(
        current(&table)["summary"]["telemetry-lake.watermark.vent/shardId-000000000000"],
        json!(sequence_number(0, 7))
    );
}

/// Records `range` of `shard`, each a good reading of device
/// `shard * 1000 + i`.
fn shard_event(shard: u32, range: std::ops::Range<u64>) -> Vec<u8> {
    let arrival = Utc.with_ymd_and_hms(2026, 11, 22, 11, 0, 0).unwrap();
    let records: Vec<StreamRecord> = range
        .map(|i| StreamRecord {
            data: reading(i64::from(shard) * 1000 + i as i64, "10:30:00"),
            partition_key: "pk".into(),
            arrival,
            sequence_number: sequence_number(shard, i),
        })
        .collect();
    kinesis_event(
        &stream_arn(REGION, "vent"),
        &format!("shardId-{shard:012}"),
        &records,
    )
}

/// Four shards, each its own function instance, committing eight batches
/// each as fast as they can: commits race, the losers read the table again
/// and commit on top (a batch that lost every attempt is delivered again,
/// as Lambda would), and every reading is in the table once with every
/// shard's watermark at its last record. The race is real: moto's Glue is
/// made to honour `VersionId` by the launcher, and some commits needed more
/// than one attempt.
#[tokio::test]
async fn shards_committing_at_once_lose_races_retry_and_lose_nothing() {
    let lake = Lake::new().await;
    // The table exists before the shards start (one cold start creates it).
    drop(lake.function().await);
    let shards = 4u32;
    let batches = 8u64;
    let mut functions = Vec::new();
    for _ in 0..shards {
        functions.push(lake.function().await);
    }
    // Each shard's batches in order, as its event source mapping delivers
    // them: a batch whose commit kept losing (it reports its first record)
    // is delivered again from there.
    let runs = functions.iter().enumerate().map(|(s, f)| async move {
        let mut attempts = Vec::new();
        let mut redelivered = 0;
        for b in 0..batches {
            let mut from = b * 3;
            loop {
                let (summary, response) = f
                    .invoke(&shard_event(s as u32, from..b * 3 + 3))
                    .await
                    .expect("invoked");
                attempts.push(summary.commit_attempts);
                let Some(failed) = failures(&response).first().cloned() else {
                    break;
                };
                assert_eq!(failed, sequence_number(s as u32, from), "{summary:?}");
                assert!(
                    summary
                        .error
                        .as_deref()
                        .unwrap_or("")
                        .contains("lost the race"),
                    "{summary:?}"
                );
                redelivered += 1;
                assert!(redelivered < 20, "{summary:?}");
                from = b * 3;
            }
        }
        attempts
    });
    let attempts: Vec<u32> = futures::future::join_all(runs)
        .await
        .into_iter()
        .flatten()
        .collect();
    assert!(
        attempts.iter().any(|&a| a > 1),
        "no commit lost a race: {attempts:?}"
    );

    let table = lake.read_back();
    let want: Vec<i64> = (0..shards as i64)
        .flat_map(|s| (0..(batches * 3) as i64).map(move |i| s * 1000 + i))
        .collect();
    assert_eq!(ids(&table), want);
    let snapshots = table["snapshots"].as_array().unwrap();
    assert_eq!(snapshots.len(), (shards as u64 * batches) as usize);
    let last = current(&table);
    for s in 0..shards {
        assert_eq!(
            last["summary"][format!("telemetry-lake.watermark.vent/shardId-{s:012}")],
            json!(sequence_number(s, batches * 3 - 1)),
            "{last}"
        );
    }
}

/// The shipped schema with `change` applied to its JSON.
fn schema_with(change: impl FnOnce(&mut Vec<Value>)) -> String {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../config/ventilator.schema.json"
    ))
    .expect("the shipped schema");
    let mut schema: Value = serde_json::from_str(&text).expect("schema JSON");
    change(schema["fields"].as_array_mut().expect("fields"));
    schema.to_string()
}

/// A new optional field in the declared schema becomes a nullable column at
/// the next cold start: rows committed before read it as null, rows after
/// carry it (before it was declared, the field was counted in each batch's
/// `undeclared_fields`). A change Iceberg does not allow stops the cold
/// start, naming the field, and leaves the table as it was.
#[tokio::test]
async fn a_new_optional_field_is_added_at_cold_start_and_a_disallowed_change_is_refused() {
    let mut lake = Lake::new().await;
    let with_firmware = |i: u64| {
        let mut v: Value = serde_json::from_slice(&reading(i as i64, "10:00:00")).unwrap();
        v["firmware"] = json!(format!("fw-{i}"));
        v.to_string().into_bytes()
    };
    // Producers send `firmware` before the schema declares it: counted,
    // left out of the rows.
    let (summary, response) = lake
        .function()
        .await
        .invoke(&event(0..3, with_firmware))
        .await
        .expect("invoked");
    assert!(failures(&response).is_empty());
    assert_eq!((summary.good, summary.undeclared_fields), (3, 3));

    lake.env.insert(
        vars::SCHEMA,
        schema_with(|fields| {
            fields.push(json!({"name": "firmware", "type": "string", "required": false}))
        }),
    );
    let f = lake.function().await;
    let (summary, response) = f
        .invoke(&event(3..5, with_firmware))
        .await
        .expect("invoked");
    assert!(failures(&response).is_empty(), "{summary:?}");
    assert_eq!((summary.good, summary.undeclared_fields), (2, 0));

    let table = lake.read_back();
    let last = table["schema"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        last,
        json!({"id": 8, "name": "firmware", "type": "string", "required": false})
    );
    let mut firmware: Vec<(i64, Value)> = table["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["ventilatorid"].as_i64().unwrap(), r["firmware"].clone()))
        .collect();
    firmware.sort_by_key(|(id, _)| *id);
    assert_eq!(
        firmware,
        vec![
            (0, Value::Null),
            (1, Value::Null),
            (2, Value::Null),
            (3, json!("fw-3")),
            (4, json!("fw-4")),
        ]
    );

    // Refused at cold start, each naming the field.
    let sdk = sdk_config(moto(), REGION).await;
    let refusals = [
        (
            schema_with(|fields| {
                fields.push(json!({"name": "ward", "type": "string", "required": true}))
            }),
            "field `ward` is required in the declared schema and not a column of the table",
        ),
        (
            schema_with(|fields| fields[4]["type"] = json!("float64")),
            "field `o2stats` is long in the table and double in the declared schema",
        ),
        (
            schema_with(|fields| {
                fields.remove(2);
            }),
            "column `serialnumber` of the table is required and not in the declared schema",
        ),
    ];
    for (schema, want) in refusals {
        let mut env = lake.env.clone();
        env.insert(vars::SCHEMA, schema);
        let err = KinesisToParquet::<S3Sink>::load(|name| env.get(name).cloned(), &sdk)
            .await
            .map(|_| ())
            .expect_err("a disallowed change stops the cold start");
        assert!(err.to_string().contains(want), "{err}");
    }
    let after = lake.read_back();
    assert_eq!(after["schema"], table["schema"], "the table is unchanged");
}

// ------------------------------------------------------------ maintenance --

/// The maintenance state machine on moto, its Athena calls through a fault
/// proxy, for the table `database.table`, with the template's defaults.
struct Maintenance {
    harness: ProxiedSfnHarness,
    sfn: aws_sdk_sfn::Client,
    athena: aws_sdk_athena::Client,
    workgroup: String,
    database: String,
    table: String,
    event_time: String,
    arn: String,
}

impl Maintenance {
    async fn new() -> Maintenance {
        let harness = ProxiedSfnHarness::start().await;
        let sdk = sdk_config(&harness.moto.endpoint, REGION).await;
        let (sfn, athena) = (
            aws_sdk_sfn::Client::new(&sdk),
            aws_sdk_athena::Client::new(&sdk),
        );
        let workgroup = create_workgroup(&athena, "maintenance").await;
        let (database, table) = ("lake".to_string(), unique("readings").replace('-', "_"));
        let event_time = unique("by_event_time").replace('-', "_");
        let template = lake_tools::template::Template::load(
            &lake_tools::moto::repo_root().join("template.yaml"),
        )
        .expect("template.yaml");
        let default = |name: &str| {
            template
                .parameter_default(name)
                .unwrap_or_else(|| panic!("the template's default of {name}"))
        };
        let arn = create_state_machine(
            &sfn,
            "maintenance.asl.json",
            &unique("maintenance"),
            &[
                ("WorkGroup", workgroup.clone()),
                ("Database", database.clone()),
                ("Table", table.clone()),
                ("EventTimeTable", event_time.clone()),
                (
                    "SnapshotRetentionSeconds",
                    default("IcebergSnapshotRetentionSeconds"),
                ),
                ("MinSnapshotsToKeep", default("IcebergMinSnapshotsToKeep")),
            ],
        )
        .await;
        Maintenance {
            harness,
            sfn,
            athena,
            workgroup,
            database,
            table,
            event_time,
            arn,
        }
    }

    /// Runs it with `input` and returns the execution's description.
    async fn run(
        &self,
        input: Value,
    ) -> aws_sdk_sfn::operation::describe_execution::DescribeExecutionOutput {
        let execution = self
            .sfn
            .start_execution()
            .state_machine_arn(&self.arn)
            .input(input.to_string())
            .send()
            .await
            .expect("start the maintenance")
            .execution_arn;
        wait_for_execution(&self.sfn, &execution).await
    }

    /// The statement, workgroup and database of each query moto ran.
    async fn query(&self, id: &str) -> (String, String, String) {
        let q = self
            .athena
            .get_query_execution()
            .query_execution_id(id)
            .send()
            .await
            .expect("query in moto")
            .query_execution
            .expect("query execution");
        (
            q.query.unwrap_or_default(),
            q.work_group.unwrap_or_default(),
            q.query_execution_context
                .and_then(|c| c.database)
                .unwrap_or_default(),
        )
    }

    async fn queries_in_workgroup(&self) -> usize {
        self.athena
            .list_query_executions()
            .work_group(&self.workgroup)
            .send()
            .await
            .expect("list queries")
            .query_execution_ids
            .unwrap_or_default()
            .len()
    }
}

#[tokio::test]
async fn maintenance_sets_the_retention_compacts_and_vacuums_in_order_and_runs_a_partial_statement_again(
) {
    let m = Maintenance::new().await;
    let optimize = format!(
        "OPTIMIZE {}.{} REWRITE DATA USING BIN_PACK",
        m.database, m.table
    );
    // Athena ends the first OPTIMIZE having done part of the work.
    m.harness.proxy.inject(
        athena_query_started("optimize-round-1")
            .body_contains(&optimize)
            .times(1),
    );
    m.harness.proxy.inject(
        athena_query_answer(
            "optimize-round-1",
            "FAILED",
            "ICEBERG_OPTIMIZE_MORE_RUNS_NEEDED: Optimize needs more runs to finish",
        )
        .body_contains("optimize-round-1"),
    );

    let run = m.run(json!({"poll_seconds": 0})).await;

    assert_eq!(run.status.as_str(), "SUCCEEDED", "{:?}", run.cause);
    let out: Value = serde_json::from_str(run.output.as_deref().unwrap()).unwrap();
    let steps: Vec<(&str, u64)> = out["statements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["step"].as_str().unwrap(), s["rounds"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        steps,
        [
            ("retention", 1),
            ("optimize", 2),
            ("vacuum", 1),
            ("event-time retention", 1),
            ("event-time optimize", 1),
            ("event-time vacuum", 1)
        ]
    );
    let entered = states_entered(&m.sfn, &run.execution_arn).await;
    let count = |name: &str| entered.iter().filter(|s| *s == name).count();
    assert_eq!(count("StartStatement"), 7, "{entered:?}");
    assert_eq!(count("NextRound"), 1, "{entered:?}");
    // What Athena was asked, in order, in the workgroup and database.
    let mut asked = Vec::new();
    for s in out["statements"].as_array().unwrap() {
        asked.push(m.query(s["query_execution_id"].as_str().unwrap()).await);
    }
    let statements = |table: &str| {
        let table = format!("{}.{table}", m.database);
        [
            format!(
                "ALTER TABLE {table} SET TBLPROPERTIES ('vacuum_max_snapshot_age_seconds'='86400', \
                 'vacuum_min_snapshots_to_keep'='10')"
            ),
            format!("OPTIMIZE {table} REWRITE DATA USING BIN_PACK"),
            format!("VACUUM {table}"),
        ]
    };
    let expected = [statements(&m.table), statements(&m.event_time)].concat();
    assert_eq!(asked.len(), expected.len());
    for ((sql, workgroup, database), expected) in asked.iter().zip(&expected) {
        assert_eq!(sql, expected);
        assert_eq!(workgroup, &m.workgroup);
        assert_eq!(database, &m.database);
    }
    assert_eq!(m.queries_in_workgroup().await, 6);
}

#[tokio::test]
async fn a_statement_still_unfinished_after_max_rounds_fails_the_run_naming_it_and_nothing_after_it_starts(
) {
    let m = Maintenance::new().await;
    let optimize = format!("OPTIMIZE {}.{}", m.database, m.table);
    m.harness
        .proxy
        .inject(athena_query_started("optimize-unfinished").body_contains(&optimize));
    m.harness.proxy.inject(
        athena_query_answer(
            "optimize-unfinished",
            "FAILED",
            "ICEBERG_OPTIMIZE_MORE_RUNS_NEEDED: Optimize needs more runs to finish",
        )
        .body_contains("optimize-unfinished"),
    );

    let run = m.run(json!({"poll_seconds": 0, "max_rounds": 3})).await;

    assert_eq!(run.status.as_str(), "FAILED");
    assert_eq!(
        run.error.as_deref(),
        Some("StatementFailed"),
        "{:?}",
        run.cause
    );
    let cause = run.cause.unwrap_or_default();
    for part in [
        "optimize (query optimize-unfinished, round 3) ended FAILED",
        "ICEBERG_OPTIMIZE_MORE_RUNS_NEEDED",
    ] {
        assert!(cause.contains(part), "{part:?} not in the cause {cause:?}");
    }
    let entered = states_entered(&m.sfn, &run.execution_arn).await;
    let count = |name: &str| entered.iter().filter(|s| *s == name).count();
    // retention once, optimize three rounds; VACUUM never starts.
    assert_eq!(count("StartStatement"), 4, "{entered:?}");
    assert_eq!(count("NextRound"), 2, "{entered:?}");
    assert_eq!(
        entered.last().map(String::as_str),
        Some("MaintenanceFailed")
    );
    // Only the retention statement reached moto (the proxy answered OPTIMIZE).
    assert_eq!(m.queries_in_workgroup().await, 1);
}
