//! A generator of ventilator telemetry like the seed's `generate_data.py`,
//! with a controllable share of bad and out-of-range records.
//!
//! The field names here are those of the worked example; the functions do not
//! know them (they read the declared schema from configuration).

use std::io::Write;

use chrono::{DateTime, Duration, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

/// The manufacturers the seed's generator picks from.
const MANUFACTURERS: &[&str] = &["3M", "GE", "Vyaire", "Getinge"];

/// The normal range of each reading (field, min, max, both included): good
/// readings fall inside, out-of-range ones outside every range.
pub const NORMAL_RANGES: [(&str, i64, i64); 3] = [
    ("pressurecontrol", 5, 30),
    ("o2stats", 90, 100),
    ("minutevolume", 2, 10),
];

/// Payload compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct TelemetryOptions {
    /// Number of devices (ids 1..=devices).
    pub devices: u32,
    /// First event time.
    pub start: DateTime<Utc>,
    /// Event-time span of the run.
    pub duration: Duration,
    /// Readings per device per minute.
    pub per_device_per_minute: u32,
    /// Share of records that are bad (invalid JSON, missing or mistyped field, bad time).
    pub bad_share: f64,
    /// Share of good records with readings out of the normal range.
    pub out_of_range_share: f64,
    /// Devices (the last ones) whose readings drift from the middle of
    /// their normal ranges to outside them over the run.
    pub drifting_devices: u32,
    /// Random seed, so a run can be repeated.
    pub seed: u64,
}

impl Default for TelemetryOptions {
    fn default() -> Self {
        TelemetryOptions {
            devices: 50,
            start: DateTime::from_timestamp(1_763_805_600, 0).unwrap_or_default(),
            duration: Duration::hours(2),
            per_device_per_minute: 1,
            bad_share: 0.03,
            out_of_range_share: 0.1,
            drifting_devices: 0,
            seed: 7,
        }
    }
}

/// One generated reading.
#[derive(Debug, Clone)]
pub struct Reading {
    /// The device, also the partition key.
    pub device: u32,
    /// The event time.
    pub event_time: DateTime<Utc>,
    /// The JSON document.
    pub json: String,
    /// `Some(kind)` when the generator made it bad on purpose.
    pub bad: Option<&'static str>,
}

/// Generates readings in event-time order.
pub fn generate(opts: &TelemetryOptions) -> Vec<Reading> {
    let mut rng = StdRng::seed_from_u64(opts.seed);
    let minutes = opts.duration.num_minutes().max(1);
    let step_ms = 60_000 / i64::from(opts.per_device_per_minute.max(1));
    let steps = minutes * i64::from(opts.per_device_per_minute.max(1));
    let mut out = Vec::with_capacity((steps as usize) * opts.devices as usize);
    for step in 0..steps {
        for device in 1..=opts.devices {
            let jitter = rng.random_range(0..step_ms.max(1));
            let t = opts.start + Duration::milliseconds(step * step_ms + jitter);
            let out_of_range = rng.random_bool(opts.out_of_range_share.clamp(0.0, 1.0));
            let drifting = device > opts.devices.saturating_sub(opts.drifting_devices);
            let (pressure, o2, volume) = if drifting {
                // From mid-range to 10 past the range's upper (pressure,
                // volume) or lower (o2) bound, with a little noise.
                let p = step as f64 / steps.max(1) as f64;
                let noise = rng.random_range(-1..=1);
                (
                    17 + (p * 23.0) as i64 + noise,
                    95 - (p * 15.0) as i64 + noise,
                    6 + (p * 14.0) as i64 + noise,
                )
            } else if out_of_range {
                (
                    rng.random_range(31..=40),
                    rng.random_range(70..=89),
                    rng.random_range(11..=20),
                )
            } else {
                (
                    rng.random_range(5..=30),
                    rng.random_range(90..=100),
                    rng.random_range(2..=10),
                )
            };
            let mut doc = json!({
                "ventilatorid": device,
                "eventtime": t.format("%Y-%m-%d %H:%M:%S").to_string(),
                "serialnumber": format!("SN-{device:05}-{:04x}", (u64::from(device) * 2_654_435_761) % 65_536),
                "pressurecontrol": pressure,
                "o2stats": o2,
                "minutevolume": volume,
                "manufacturer": MANUFACTURERS[device as usize % MANUFACTURERS.len()],
            });
            let mut bad = None;
            let mut json = String::new();
            if rng.random_bool(opts.bad_share.clamp(0.0, 1.0)) {
                let kind = [
                    "invalid_json",
                    "missing_field",
                    "wrong_type",
                    "invalid_timestamp",
                ][rng.random_range(0..4)];
                match kind {
                    "invalid_json" => {
                        json = format!("{{\"ventilatorid\": {device}, \"eventtime\": ")
                    }
                    "missing_field" => {
                        doc.as_object_mut().map(|o| o.remove("o2stats"));
                    }
                    "wrong_type" => doc["pressurecontrol"] = json!("high"),
                    _ => doc["eventtime"] = json!("not a time"),
                }
                bad = Some(kind);
            }
            if json.is_empty() {
                json = doc.to_string();
            }
            out.push(Reading {
                device,
                event_time: t,
                json,
                bad,
            });
        }
    }
    out
}

/// Encodes a payload of one or more documents (newline-separated).
pub fn payload(docs: &[&str], compression: Compression) -> Vec<u8> {
    let text = docs.join("\n").into_bytes();
    match compression {
        Compression::None => text,
        Compression::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            // Writing to a Vec cannot fail.
            let _ = e.write_all(&text);
            e.finish().unwrap_or_default()
        }
        Compression::Zstd => zstd::encode_all(text.as_slice(), 3).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_is_repeatable_and_has_the_requested_shares() {
        let opts = TelemetryOptions {
            devices: 20,
            bad_share: 0.1,
            ..Default::default()
        };
        let a = generate(&opts);
        let b = generate(&opts);
        assert_eq!(a.len(), 20 * 120);
        assert_eq!(
            a.iter().map(|r| &r.json).collect::<Vec<_>>(),
            b.iter().map(|r| &r.json).collect::<Vec<_>>()
        );
        let bad = a.iter().filter(|r| r.bad.is_some()).count() as f64 / a.len() as f64;
        assert!((0.05..0.15).contains(&bad), "{bad}");
    }
}
