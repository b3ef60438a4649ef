//! A small local run of the whole suite, its summary checked against what
//! is really in moto afterwards: the Parquet rows, the dead letters, the
//! status windows, the change flag, the executions and the providers.

use std::collections::BTreeMap;

use aws_sdk_dynamodb::types::AttributeValue;
use integration_tests::{s3_client, sdk_config, ICEBERG_REPARTITION_PATH, REPARTITION_PATH};
use lake_tools::lake_reader;
use lake_tools::local_run::stack::ids;
use lake_tools::local_run::summary::{Execution, Summary};
use lake_tools::local_run::{run, Options};
use lake_tools::step_functions::states_entered;

/// (device, event time as `YYYY-MM-DD HH:MM:SS`, o2stats) of each row of a
/// batch of the lake.
fn readings_of(batch: &arrow_array::RecordBatch) -> Vec<(i64, String, i64)> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Int64Type, TimestampMicrosecondType};
    let column = |name: &str| batch.column_by_name(name).expect(name);
    let devices = column("ventilatorid").as_primitive::<Int64Type>();
    let times = column("eventtime").as_primitive::<TimestampMicrosecondType>();
    let o2 = column("o2stats").as_primitive::<Int64Type>();
    (0..batch.num_rows())
        .map(|i| {
            let time = chrono::DateTime::from_timestamp_micros(times.value(i)).expect("a time");
            (
                devices.value(i),
                time.format("%Y-%m-%d %H:%M:%S").to_string(),
                o2.value(i),
            )
        })
        .collect()
}

/// The run's one repartition execution, which succeeded.
fn the_repartition(s: &Summary) -> &Execution {
    let repartition: Vec<&Execution> = s
        .executions
        .iter()
        .filter(|e| e.state_machine == "Repartition")
        .collect();
    assert_eq!(repartition.len(), 1, "{:?}", s.executions);
    assert_eq!(repartition[0].status, "SUCCEEDED");
    repartition[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_local_run_reports_what_is_in_moto() {
    let options = Options {
        devices: 6,
        minutes: 30,
        bad_share: 0.1,
        providers: 3,
        ticks: 3,
        quiet: true,
        ..Options::default()
    };
    let done = run(&options).await.expect("local run");
    let s = &done.summary;
    let stack = &done.stack;
    let sdk = sdk_config(&done.moto.endpoint, &options.region).await;
    let s3 = s3_client(&sdk);
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    let sfn = aws_sdk_sfn::Client::new(&sdk);
    let bucket = stack.name(ids::LAKE_BUCKET);

    // Records: every generated reading went on the stream, good ones to
    // Parquet, bad ones to dead letters with the reason they were made bad.
    assert_eq!(s.records.generated, 6 * 30);
    assert_eq!(s.records.stream_records, s.records.generated);
    let bad: usize = s.records.generated_bad.values().sum();
    assert!(bad > 0, "the run has bad records");
    assert_eq!(s.records.good, s.records.generated - bad);
    assert_eq!(s.records.bad, bad);

    let lake_prefix = stack.parameter("LakePrefix");
    let mut rows = 0;
    // (device, event time, o2stats) of every row of the lake.
    let mut lake_readings: Vec<(i64, String, i64)> = Vec::new();
    let objects = lake_reader::list(&s3, &bucket, &lake_prefix)
        .await
        .expect("list lake");
    for o in &objects {
        let bytes = lake_reader::get(&s3, &bucket, &o.key).await.expect("get");
        for batch in lake_reader::parquet_batches(bytes).expect("parquet") {
            rows += batch.num_rows();
            lake_readings.extend(readings_of(&batch));
        }
    }
    assert_eq!(rows, s.records.generated - bad);
    assert_eq!(s.lake.rows, rows);
    assert_eq!(s.lake.objects, objects.len());
    assert_eq!(
        s.lake.partitions.iter().map(|p| p.rows).sum::<usize>(),
        rows
    );

    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    let dead_letter_objects = lake_reader::list(&s3, &bucket, &stack.parameter("DeadLetterPrefix"))
        .await
        .expect("list dead letters");
    for o in &dead_letter_objects {
        let bytes = lake_reader::get(&s3, &bucket, &o.key).await.expect("get");
        for l in lake_reader::dead_letters(&bytes).expect("dead letters") {
            *reasons.entry(l.reason).or_default() += 1;
        }
    }
    assert_eq!(reasons, s.records.generated_bad);
    assert_eq!(s.dead_letters.by_reason, reasons);

    // The event-time table, made by the workflow's query run in DuckDB:
    // every good reading once, its moving averages those of its device's
    // readings up to it, written as Parquet where Athena would.
    let table = s.event_time.as_ref().expect("the event-time table");
    assert!(table.engine.starts_with("DuckDB"), "{}", table.engine);
    assert_eq!(table.rows, rows);
    assert_eq!(table.by_status.values().sum::<usize>(), rows);
    assert!(table
        .by_status
        .keys()
        .all(|k| ["GREEN", "ORANGE", "RED", "UNKNOWN"].contains(&k.as_str())));
    let col = |name: &str| table.columns.iter().position(|c| c == name).expect(name);
    let (device, time, o2, avg3, avg20) = (
        col("ventilatorid"),
        col("eventtime"),
        col("o2stats"),
        col("avg_o2stats_3"),
        col("avg_o2stats_20"),
    );
    let mut from_table: Vec<(i64, String, i64)> = table
        .all_rows
        .iter()
        .map(|r| {
            (
                r[device].as_i64().unwrap(),
                r[time].as_str().unwrap().to_string(),
                r[o2].as_i64().unwrap(),
            )
        })
        .collect();
    from_table.sort();
    lake_readings.sort();
    assert_eq!(from_table, lake_readings);
    let mut previous: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
    for r in &table.all_rows {
        let seen = previous.entry(r[device].as_i64().unwrap()).or_default();
        seen.push(r[o2].as_f64().unwrap());
        let mean = |n: usize| {
            let last = &seen[seen.len().saturating_sub(n)..];
            last.iter().sum::<f64>() / last.len() as f64
        };
        assert!((r[avg3].as_f64().unwrap() - mean(3)).abs() < 1e-9, "{r:?}");
        assert!(
            (r[avg20].as_f64().unwrap() - mean(20)).abs() < 1e-9,
            "{r:?}"
        );
    }
    let uri = table
        .uri
        .strip_prefix(&format!("s3://{bucket}/"))
        .expect("in the lake bucket");
    let written = lake_reader::list(&s3, &bucket, uri).await.expect("list");
    assert_eq!(written.len(), table.objects);
    let mut written_rows = 0;
    for o in &written {
        let bytes = lake_reader::get(&s3, &bucket, &o.key).await.expect("get");
        written_rows += lake_reader::parquet_batches(bytes)
            .expect("parquet")
            .iter()
            .map(|b| b.num_rows())
            .sum::<usize>();
    }
    assert_eq!(written_rows, rows);
    assert_eq!(
        table.partitions.len(),
        table.objects,
        "one object per partition"
    );

    // The functions' metrics documents add up to the same figures.
    let metrics = |id: &str| {
        s.metrics
            .iter()
            .find(|m| m.function == id)
            .unwrap_or_else(|| panic!("no metrics of {id}"))
    };
    let k2p = metrics(ids::KINESIS_TO_PARQUET);
    assert_eq!(k2p.invocations, s.records.kinesis_to_parquet_invocations);
    assert_eq!(
        s.records.retries, 0,
        "the run is clean, so each record is counted once"
    );
    assert_eq!(k2p.totals["Records"] as usize, s.records.stream_records);
    assert_eq!(k2p.totals["GoodRows"] as usize, rows);
    assert_eq!(k2p.totals["DeadLetters"] as usize, bad);
    assert_eq!(
        k2p.totals["ObjectsWritten"] as usize,
        objects.len() + dead_letter_objects.len()
    );
    let by_reason: BTreeMap<String, usize> = k2p
        .dead_letters_by_reason
        .iter()
        .map(|(r, n)| (r.clone(), *n as usize))
        .collect();
    assert_eq!(by_reason, reasons);
    let ds = metrics(ids::DEVICE_STATUS);
    assert_eq!(ds.totals["Records"] as usize, s.records.stream_records);
    assert_eq!(ds.totals["DeadLetters"] as usize, bad);
    let started: usize = s.scheduler_ticks.iter().map(|t| t.started.len()).sum();
    assert_eq!(
        metrics(ids::SCHEDULER).totals["ProvidersStarted"] as usize,
        started
    );
    assert_eq!(metrics(ids::SCHEDULER).invocations, s.scheduler_ticks.len());
    assert!(metrics(ids::START_QUERIES).totals["QueriesStarted"] >= 1.0);

    // Each function's counting proxy saw the requests behind those
    // figures: one S3 PUT per object kinesis-to-parquet left in the bucket,
    // one DynamoDB UpdateItem per window device-status wrote, one
    // StartExecution per provider started, one StartQueryExecution per query.
    let usage = |id: &str| {
        s.usage
            .iter()
            .find(|u| u.function == id)
            .unwrap_or_else(|| panic!("no usage of {id}"))
    };
    let requests = |id: &str, kind: &str| usage(id).requests.get(kind).map_or(0, |t| t.requests);
    assert_eq!(
        requests(ids::KINESIS_TO_PARQUET, "S3 PUT") as usize,
        objects.len() + dead_letter_objects.len()
    );
    let put_bytes = usage(ids::KINESIS_TO_PARQUET).requests["S3 PUT"].bytes_sent;
    assert_eq!(put_bytes as f64, k2p.totals["BytesWritten"]);
    assert_eq!(
        usage(ids::KINESIS_TO_PARQUET).invocations,
        s.records.kinesis_to_parquet_invocations
    );
    let update_items = usage(ids::DEVICE_STATUS).requests["DynamoDB UpdateItem"];
    assert_eq!(
        update_items.requests as f64,
        ds.totals["WindowsWritten"]
            + ds.totals["ConditionalWriteRetries"]
            + ds.totals["WindowsAlreadyApplied"]
    );
    assert_eq!(update_items.units, update_items.requests as f64);
    assert_eq!(
        requests(ids::SCHEDULER, "Step Functions StartExecution") as usize,
        started
    );
    assert_eq!(
        requests(ids::START_QUERIES, "Athena StartQueryExecution") as f64,
        metrics(ids::START_QUERIES).totals["QueriesStarted"]
    );
    for id in [
        ids::START_CRAWLER,
        ids::CRAWLER_STATUS,
        ids::START_QUERIES,
        ids::QUERY_STATUS,
    ] {
        assert_eq!(usage(id).invocations, metrics(id).invocations, "{id}");
        assert!(usage(id).billed_ms >= 1.0, "{id}: {:?}", usage(id));
    }

    // Status windows: the table holds what the summary says, for every device.
    let windows = integration_tests::window_items(&ddb, &stack.name(ids::WINDOWS_TABLE)).await;
    let mut by_status: BTreeMap<String, u64> = BTreeMap::new();
    let mut devices = std::collections::BTreeSet::new();
    for item in windows.values() {
        let s = |a: &str| item[a].as_s().expect(a).clone();
        *by_status.entry(s("status")).or_default() += item["count"]
            .as_n()
            .expect("count")
            .parse::<u64>()
            .expect("n");
        devices.insert(s("device"));
    }
    assert_eq!(devices.len(), 6);
    assert_eq!(
        s.device_status
            .by_status
            .iter()
            .map(|r| (r.status.clone(), r.readings))
            .collect::<BTreeMap<_, _>>(),
        by_status
    );
    assert!(!by_status.contains_key("UNKNOWN"), "{by_status:?}");

    // The changed device: its range is narrower in the table, the flag moved
    // by one, device-status reloaded, and readings inside the old range but
    // outside the new one made it ORANGE only after the change.
    let c = &s.device_status.changed_device;
    let row = ddb
        .get_item()
        .table_name(stack.name(ids::REFERENCE_TABLE))
        .key("ventilatorid", AttributeValue::N(c.device.clone()))
        .send()
        .await
        .expect("reference row")
        .item
        .expect("row");
    assert_eq!(row["o2_stats_min"], AttributeValue::N("95".into()));
    assert_eq!(c.flag_version_after, c.flag_version_before + 1);
    assert!(c.reference_loads_after > c.reference_loads_before, "{c:?}");
    let flag_key = stack.parameter("ChangeFlagKey");
    let flag = lake_reader::get(&s3, &bucket, &flag_key)
        .await
        .expect("change flag");
    let flag: serde_json::Value = serde_json::from_slice(&flag).expect("flag JSON");
    assert_eq!(flag["version"], c.flag_version_after);
    assert_eq!(flag["changed_keys"], serde_json::json!([c.device]));
    assert!(!c.before.contains_key("ORANGE"), "{c:?}");
    assert!(c.after.get("ORANGE").copied().unwrap_or(0) > 0, "{c:?}");

    // Executions: the repartition ran its whole path; every provider-etl
    // run the ticks started succeeded and recorded its provider.
    let repartition = the_repartition(s);
    assert_eq!(repartition.states, REPARTITION_PATH);

    let listed = sfn
        .list_executions()
        .state_machine_arn(stack.attribute(ids::PROVIDER_ETL, "Arn"))
        .send()
        .await
        .expect("list executions");
    let started: usize = s.scheduler_ticks.iter().map(|t| t.started.len()).sum();
    assert_eq!(listed.executions().len(), started);
    // Frequencies 15, 30, 45 minutes over ticks 15 minutes apart: all three
    // at the first tick, then the 15-minute one, then the 15- and 30-minute ones.
    assert_eq!(
        s.scheduler_ticks
            .iter()
            .map(|t| t.started.clone())
            .collect::<Vec<_>>(),
        [
            vec!["acme", "globex", "initech"],
            vec!["acme"],
            vec!["acme", "globex"]
        ]
    );
    for e in listed.executions() {
        assert_eq!(e.status().as_str(), "SUCCEEDED", "{e:?}");
        let path = states_entered(&sfn, e.execution_arn())
            .await
            .expect("history");
        let reported = s
            .executions
            .iter()
            .find(|x| x.name == e.name())
            .expect("reported");
        assert_eq!(reported.states, path);
        assert_eq!(
            path,
            [
                "AddProviderArgument",
                "RunProviderJob",
                "RecordSuccess",
                "ProviderEtlSucceeded"
            ]
        );
    }
    let providers = ddb
        .scan()
        .table_name(stack.name(ids::PROVIDERS_TABLE))
        .send()
        .await
        .expect("scan providers");
    assert_eq!(providers.items().len(), 3);
    for p in providers.items() {
        assert_eq!(p["status"], AttributeValue::S("SUCCEEDED".into()), "{p:?}");
    }
}

/// Four devices for twenty minutes, a tenth of the readings bad, one
/// provider and one tick: a run that looks at one stage.
fn short_run() -> Options {
    Options {
        devices: 4,
        minutes: 20,
        bad_share: 0.1,
        providers: 1,
        ticks: 1,
        quiet: true,
        ..Options::default()
    }
}

/// `make demo ARGS="--lake-format iceberg"`, small: every good record is in
/// the Iceberg table once, as pyiceberg reads it through the Glue catalog,
/// partitioned by event hour, every shard's watermark committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_run_with_the_iceberg_layout_commits_each_good_record_once() {
    let options = Options {
        parameters: BTreeMap::from([("LakeFormat".to_string(), "iceberg".to_string())]),
        ..short_run()
    };
    let done = run(&options).await.expect("local run");
    let s = &done.summary;
    let bad: usize = s.records.generated_bad.values().sum();
    assert!(bad > 0, "the run has bad records");
    assert_eq!(s.records.good, s.records.generated - bad);
    let table = s.iceberg.as_ref().expect("the Iceberg table's report");
    assert_eq!(
        table.table,
        format!(
            "{}.{}",
            done.stack.parameter("GlueDatabaseName"),
            done.stack.parameter("IcebergTableName")
        )
    );
    assert_eq!((table.rows, table.duplicate_rows), (s.records.good, 0));
    assert_eq!(table.partition_spec, ["hour(eventtime) as eventtime_hour"]);
    assert!(table.snapshots >= 1 && table.current_snapshot_id.is_some());
    assert_eq!(
        table.partitions.iter().map(|p| p.rows).sum::<usize>(),
        table.rows
    );
    // 20 minutes of event time: one or two event hours.
    assert!((1..=2).contains(&table.partitions.len()), "{table:?}");
    let stream = done.stack.name(ids::STREAM);
    assert!(!table.watermarks.is_empty());
    assert!(
        table
            .watermarks
            .keys()
            .all(|k| k.starts_with(&format!("{stream}/shardId-"))),
        "{table:?}"
    );
    // The project's own reader agrees on the data files' rows.
    assert_eq!(s.lake.rows, table.rows);
    assert_eq!(s.dead_letters.total, bad);
    // The repartition crawled nothing and merged into the event-time table.
    let repartition = the_repartition(s);
    assert_eq!(repartition.states, ICEBERG_REPARTITION_PATH);
    let athena =
        aws_sdk_athena::Client::new(&sdk_config(&done.moto.endpoint, &options.region).await);
    let listed = athena
        .list_query_executions()
        .work_group(done.stack.name(ids::WORKGROUP))
        .send()
        .await
        .expect("list queries");
    let mut merges = 0;
    for id in listed.query_execution_ids() {
        let q = athena
            .get_query_execution()
            .query_execution_id(id)
            .send()
            .await
            .expect("query");
        let sql = q
            .query_execution()
            .and_then(|q| q.query())
            .unwrap_or_default();
        if sql.contains("MERGE INTO") {
            merges += 1;
            assert!(
                sql.contains(&format!(
                    "\"{}\".\"{}\" AS t",
                    done.stack.parameter("GlueDatabaseName"),
                    done.stack.parameter("IcebergEventTimeTableName")
                )),
                "{sql}"
            );
        }
    }
    assert!(merges >= 1, "the workflow started its MERGE INTO");
}

#[tokio::test]
async fn a_local_run_from_cloudwatch_logs_lands_each_log_event_once() {
    let options = Options {
        source: lake_tools::local_run::Source::CloudWatchLogs,
        ..short_run()
    };
    let done = run(&options).await.expect("local run");
    let s = &done.summary;
    assert_eq!(s.records.source, "cloudwatch-logs");
    assert_eq!(done.stack.parameter("RecordFormat"), "cloudwatch-logs");
    // Each half of the run puts one envelope per device (fewer than 100
    // readings each), and the first a control message.
    assert_eq!(s.records.stream_records, 2 * 4 + 1);
    let bad: usize = s.records.generated_bad.values().sum();
    assert!(bad > 0, "the run has bad records");
    assert_eq!(s.records.good, s.records.generated - bad);
    assert_eq!(s.lake.rows, s.records.good);
    assert_eq!(s.dead_letters.by_reason, s.records.generated_bad);
    let metrics = |id: &str| {
        s.metrics
            .iter()
            .find(|m| m.function == id)
            .unwrap_or_else(|| panic!("no metrics of {id}"))
    };
    for id in [ids::KINESIS_TO_PARQUET, ids::DEVICE_STATUS] {
        let m = metrics(id);
        assert_eq!(
            m.totals["Records"] as usize, s.records.stream_records,
            "{id}"
        );
        assert_eq!(m.totals["ControlMessages"], 1.0, "{id}");
        assert_eq!(m.totals["DeadLetters"] as usize, bad, "{id}");
    }
    // Both functions took every good reading: kinesis-to-parquet as a row,
    // device-status into its windows.
    for id in [ids::KINESIS_TO_PARQUET, ids::DEVICE_STATUS] {
        assert_eq!(
            metrics(id).totals["GoodRows"] as usize,
            s.records.good,
            "{id}"
        );
    }
    assert!(s.device_status.by_status.iter().all(|r| r.readings > 0));

    // A dead letter is the one log event, in an envelope naming its group
    // and the device's log stream.
    let sdk = sdk_config(&done.moto.endpoint, &options.region).await;
    let s3 = s3_client(&sdk);
    let bucket = done.stack.name(ids::LAKE_BUCKET);
    let prefix = done.stack.parameter("DeadLetterPrefix");
    let object = &lake_reader::list(&s3, &bucket, &prefix)
        .await
        .expect("list")[0];
    let bytes = lake_reader::get(&s3, &bucket, &object.key)
        .await
        .expect("get");
    let letter = &lake_reader::dead_letters(&bytes).expect("dead letters")[0];
    let envelope: serde_json::Value =
        serde_json::from_slice(&letter.bytes().expect("base64")).expect("an envelope");
    assert_eq!(envelope["logGroup"], lake_tools::local_run::LOG_GROUP);
    assert!(envelope["logStream"]
        .as_str()
        .is_some_and(|s| s.starts_with("ventilator-")));
    assert_eq!(envelope["logEvents"].as_array().map(Vec::len), Some(1));
}
