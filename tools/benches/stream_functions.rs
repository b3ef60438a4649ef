//! `cargo bench --workspace --bench stream_functions`: both stream functions
//! minus their network calls, and the floor, over generated 1,000-, 10,000-
//! and 100,000-record Kinesis events (JSON plain, gzip and with 1% bad
//! records; the same records as CSV and as Avro datums), in records/s and
//! MB/s of event. Each run starts from the event's bytes as the runtime
//! receives them (see `lake_tools::bench`).
//!
//! Run it pinned to one core: `taskset -c 1 cargo bench ...` (`make bench`
//! does). `report` writes the same figures as tables into BENCHMARKS.md,
//! with peak memory and cold starts.

use divan::counter::{BytesCount, ItemsCount};
use divan::Bencher;
use lake_tools::bench;

const CASES: [&str; 5] = ["json", "json gzip", "json 1% bad", "csv", "avro datum"];

fn main() {
    divan::main();
}

/// Builds the event outside the timed part and counts records and bytes.
fn with_event<'a, 'b, const N: usize>(
    bencher: Bencher<'a, 'b>,
    case: &str,
) -> (Bencher<'a, 'b>, Vec<u8>) {
    let body = bench::event_bytes(N, bench::case(case));
    let bencher = bencher
        .counter(ItemsCount::new(N))
        .counter(BytesCount::new(body.len()));
    (bencher, body)
}

/// Parsing the event JSON and base64-decoding every payload.
#[divan::bench(consts = bench::SIZES, sample_count = 20)]
fn floor<const N: usize>(bencher: Bencher) {
    let (bencher, body) = with_event::<N>(bencher, "json");
    bencher.bench_local(|| bench::floor(divan::black_box(&body)));
}

/// The same through the `aws_lambda_events` model, for comparison.
#[divan::bench(consts = bench::SIZES, sample_count = 20)]
fn floor_event_model<const N: usize>(bencher: Bencher) {
    let (bencher, body) = with_event::<N>(bencher, "json");
    bencher.bench_local(|| bench::floor_event_model(divan::black_box(&body)));
}

/// `kinesis-to-parquet`: decode, validate, split into runs, encode Parquet
/// and dead letters, hand them to a sink that drops them.
#[divan::bench(consts = bench::SIZES, args = CASES, sample_count = 20)]
fn kinesis_to_parquet<const N: usize>(bencher: Bencher, case: &str) {
    let function = bench::kinesis_to_parquet(bench::case(case));
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let (bencher, body) = with_event::<N>(bencher, case);
    bencher.bench_local(|| rt.block_on(bench::run_kinesis_to_parquet(&body, &function)));
}

/// `device-status` with a warm reference cache: decode, validate, join with
/// the device's ranges, aggregate per (device, status, window); the windows
/// are computed and handed to a sink that drops them.
#[divan::bench(consts = bench::SIZES, args = CASES, sample_count = 20)]
fn device_status<const N: usize>(bencher: Bencher, case: &str) {
    let function = bench::device_status(bench::case(case));
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let (bencher, body) = with_event::<N>(bencher, case);
    bencher.bench_local(|| rt.block_on(bench::run_device_status(&body, &function)));
}

/// The gzip payloads of the "json gzip" event, decoded from the event
/// outside the timed part.
fn gzip_payloads<const N: usize>() -> Vec<Vec<u8>> {
    let body = bench::event_bytes(N, bench::case("json gzip"));
    bench::read_event(&body)
        .records()
        .map(|r| r.data.expect("a payload").into_owned())
        .collect()
}

/// Inflating every gzip payload with a decoder built for each one.
#[divan::bench(consts = bench::SIZES, sample_count = 20)]
fn gunzip_a_decoder_per_payload<const N: usize>(bencher: Bencher) {
    use telemetry_lake::stream::decompress::decompress;
    let payloads = gzip_payloads::<N>();
    bencher.counter(ItemsCount::new(N)).bench_local(|| {
        payloads
            .iter()
            .map(|p| decompress(p, 1 << 20).map_or(0, |b| b.len()))
            .sum::<usize>()
    });
}

/// Inflating every gzip payload with one inflate state reset per payload,
/// as the functions do.
#[divan::bench(consts = bench::SIZES, sample_count = 20)]
fn gunzip_one_inflater<const N: usize>(bencher: Bencher) {
    use telemetry_lake::stream::decompress::Inflater;
    let payloads = gzip_payloads::<N>();
    bencher.counter(ItemsCount::new(N)).bench_local(|| {
        let mut inflater = Inflater::default();
        payloads
            .iter()
            .map(|p| {
                inflater
                    .decompress(p, 1 << 20)
                    .map_or(0, |b| b.map_or(0, <[u8]>::len))
            })
            .sum::<usize>()
    });
}
