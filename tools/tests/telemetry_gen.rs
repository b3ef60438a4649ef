//! The generator's event file is a Lambda Kinesis event the function accepts.

use aws_lambda_events::event::kinesis::KinesisEvent;

#[test]
fn the_event_file_is_a_lambda_kinesis_event_with_every_reading() {
    let dir = std::env::temp_dir().join(format!("telemetry-gen-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("event.json");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_telemetry-gen"))
        .args([
            "--devices",
            "4",
            "--minutes",
            "5",
            "--docs-per-record",
            "2",
            "--compression",
            "gzip",
        ])
        .arg("--event-file")
        .arg(&path)
        .status()
        .unwrap();
    assert!(status.success());
    let event: KinesisEvent = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    // 4 devices x 5 minutes = 20 readings, two per record.
    assert_eq!(event.records.len(), 10);
    let first = &event.records[0].kinesis;
    assert_eq!(&first.data[..2], &[0x1f, 0x8b], "gzip payload");
    assert_eq!(first.sequence_number.len(), 56);
    std::fs::remove_dir_all(dir).unwrap();
}
