//! The operator's commands on moto: `replay-dead-letters` puts the dead
//! letters that the current schema accepts back on the stream, and counts
//! those it still refuses.

use std::collections::BTreeSet;

use chrono::{TimeZone, Utc};
use integration_tests::{
    kinesis_event, moto, reading_on, records_of, s3_with_bucket, sdk_config, stream_config, unique,
    StreamFunction, REGION,
};
use kinesis_to_parquet::KinesisToParquet;
use lake_tools::dead_letter_replay::{decoder_from, replay, Report, Selection};
use lake_tools::kinesis_event::stream_arn;
use telemetry_lake::config::schema::Schema;
use telemetry_lake::config::vars;
use telemetry_lake::config::StreamConfig;
use telemetry_lake::lake::writer::S3Sink;

const SHIPPED: &str = include_str!("../config/ventilator.schema.json");

/// A stream on moto, and every record on it.
async fn stream(kinesis: &aws_sdk_kinesis::Client) -> String {
    let name = unique("replayed");
    kinesis
        .create_stream()
        .stream_name(&name)
        .shard_count(1)
        .send()
        .await
        .expect("stream");
    name
}

async fn records_on(kinesis: &aws_sdk_kinesis::Client, stream: &str) -> Vec<(String, Vec<u8>)> {
    let shards = kinesis
        .list_shards()
        .stream_name(stream)
        .send()
        .await
        .expect("shards");
    let mut out = Vec::new();
    for shard in shards.shards() {
        let iterator = kinesis
            .get_shard_iterator()
            .stream_name(stream)
            .shard_id(shard.shard_id())
            .shard_iterator_type(aws_sdk_kinesis::types::ShardIteratorType::TrimHorizon)
            .send()
            .await
            .expect("iterator");
        let got = kinesis
            .get_records()
            .shard_iterator(iterator.shard_iterator().unwrap())
            .send()
            .await
            .expect("records");
        out.extend(got.records().iter().map(|r| {
            (
                r.partition_key().unwrap_or_default().to_string(),
                r.data().as_ref().to_vec(),
            )
        }));
    }
    out
}

#[tokio::test]
async fn dead_letters_the_fixed_schema_accepts_go_back_on_the_stream_and_the_rest_are_counted() {
    let (s3, bucket) = s3_with_bucket("replay-dl").await;
    let sdk = sdk_config(moto(), REGION).await;
    let kinesis = aws_sdk_kinesis::Client::new(&sdk);
    // The deployed schema wrongly requires `ward`, which no producer sends:
    // every reading is dead-lettered `missing_field`; one record is not JSON.
    let strict = SHIPPED.replacen(
        r#""fields": ["#,
        r#""fields": [{"name": "ward", "type": "string", "required": true},"#,
        1,
    );
    let f = KinesisToParquet::new(
        StreamConfig {
            schema: Schema::parse(&strict).expect("schema"),
            ..stream_config(&bucket)
        },
        S3Sink::new(s3.clone(), &bucket),
    );
    let mut payloads: Vec<Vec<u8>> = (1..=6)
        .map(|i| reading_on("2026-11-23", i, &format!("10:0{i}:00"), 95))
        .collect();
    payloads.insert(3, b"{not json".to_vec());
    let at = |h| Utc.with_ymd_and_hms(2026, 11, 23, h, 0, 0).unwrap();
    // Four records arrive at 10:00, three at 11:00.
    let mut records = records_of(0, 0, at(10), &payloads[..4]);
    records.extend(records_of(0, 4, at(11), &payloads[4..]));
    let event = kinesis_event(
        &stream_arn(REGION, "vent"),
        "shardId-000000000000",
        &records,
    );
    let (summary, _) = f.invoke(&event).await.expect("invoked");
    assert_eq!((summary.good, summary.bad), (0, 7));

    let name = stream(&kinesis).await;
    // The fix is deployed: the shipped schema, without `ward`.
    let decoder =
        decoder_from(|k| (k == vars::SCHEMA).then(|| SHIPPED.to_string())).expect("the decoder");
    let all = Selection {
        bucket: bucket.clone(),
        prefix: "dead-letters/v/".into(),
        ..Selection::default()
    };
    let dry = replay(&s3, &kinesis, &name, &all, Some(&decoder), true)
        .await
        .expect("dry run");
    let expected = Report {
        read: 7,
        selected: 7,
        sent: 6,
        still_failing: [("invalid_json".to_string(), 1)].into(),
        unreadable: 0,
    };
    assert_eq!(dry, expected);
    assert!(
        records_on(&kinesis, &name).await.is_empty(),
        "a dry run puts nothing"
    );

    // Only those that arrived at 11:00, then the rest: each reading once.
    let later = Selection {
        from: Some(at(11)),
        ..all.clone()
    };
    let sent = replay(&s3, &kinesis, &name, &later, Some(&decoder), false)
        .await
        .expect("replay");
    assert_eq!((sent.selected, sent.sent), (3, 3));
    let earlier = Selection {
        to: Some(at(11)),
        ..all.clone()
    };
    let sent = replay(&s3, &kinesis, &name, &earlier, Some(&decoder), false)
        .await
        .expect("replay");
    assert_eq!((sent.selected, sent.sent), (4, 3));
    assert_eq!(sent.still_failing, [("invalid_json".to_string(), 1)].into());
    let on_stream = records_on(&kinesis, &name).await;
    let data: BTreeSet<Vec<u8>> = on_stream.iter().map(|(_, d)| d.clone()).collect();
    let good: BTreeSet<Vec<u8>> = payloads
        .iter()
        .filter(|p| p.as_slice() != b"{not json")
        .cloned()
        .collect();
    assert_eq!(on_stream.len(), 6);
    assert_eq!(data, good);
    assert!(on_stream
        .iter()
        .all(|(key, _)| key.starts_with("shardId-000000000000/")));

    // By reason, unchecked: the record that is not JSON goes as it is.
    let bad_json = Selection {
        reasons: vec!["invalid_json".into()],
        ..all
    };
    let report = replay(&s3, &kinesis, &name, &bad_json, None, true)
        .await
        .expect("dry run");
    assert_eq!((report.selected, report.sent), (1, 1));
}
