//! `cargo bench --workspace --bench report -- [--out BENCHMARKS.md]`: the
//! figures of BENCHMARKS.md as markdown tables (printed, or written between
//! the `figures` markers of the file given with `--out`): throughput of both
//! stream functions and of the floor, peak RSS per invocation (a child
//! process per case), cold start and size of every function's release
//! binary. `make bench` builds the binaries, pins the run to one core and
//! rewrites BENCHMARKS.md. Cargo runs a bench in its package's directory
//! (`tools/`), so a relative `--out` lands there: `make bench` passes an
//! absolute path. `--event` and `--child` run one case once, for a profiler;
//! `--ratio [RECORDS]` prints the plain JSON function against its floors.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lake_tools::bench::{self, Case, CASES, SIZES};
use lake_tools::telemetry::Compression;

const START: &str = "<!-- figures:start (written by `make bench`) -->";
const END: &str = "<!-- figures:end -->";

/// The function binaries whose cold start and size are reported.
const BINARIES: [&str; 8] = [
    "kinesis-to-parquet",
    "device-status",
    "reference-change-flag",
    "start-crawler",
    "crawler-status",
    "start-queries",
    "query-status",
    "scheduler",
];

/// Cold starts measured per binary.
const COLD_STARTS: usize = 10;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(pos) = args.iter().position(|a| a == "--child") {
        let runs = args
            .get(pos + 4)
            .map_or(1, |r| r.parse().expect("RUNS is a number"));
        child(
            &args[pos + 1],
            &args[pos + 2],
            Path::new(&args[pos + 3]),
            runs,
        );
        return;
    }
    // For profiling one case: `--event CASE RECORDS PATH` writes the event
    // that `--child FUNCTION CASE PATH [RUNS]` then processes RUNS times
    // (once by default; more to profile warm runs, as the table times them).
    if let Some(pos) = args.iter().position(|a| a == "--event") {
        let records = args[pos + 2].parse().expect("RECORDS is a number");
        let body = bench::event_bytes(records, bench::case(&args[pos + 1]));
        std::fs::write(&args[pos + 3], body).expect("PATH is writable");
        return;
    }
    // `--ratio [RECORDS]`: plain JSON through kinesis-to-parquet against
    // both payload floors, best of 31 runs each, interleaved: the
    // throughput table's key ratio in seconds instead of minutes.
    if let Some(pos) = args.iter().position(|a| a == "--ratio") {
        let records = args
            .get(pos + 1)
            .map_or(10_000, |r| r.parse().expect("RECORDS is a number"));
        ratio(records);
        return;
    }
    let out = args
        .iter()
        .position(|a| a == "--out")
        .map(|i| PathBuf::from(&args[i + 1]));
    let mut md = String::new();
    // `--iceberg`: that table alone, printed (it is part of the report).
    if args.iter().any(|a| a == "--iceberg") {
        iceberg_throughput(&mut md);
        print!("{md}");
        return;
    }
    // `--codecs`: that table alone, printed.
    if args.iter().any(|a| a == "--codecs") {
        codecs(&mut md);
        print!("{md}");
        return;
    }
    machine(&mut md);
    throughput(&mut md, &args[0]);
    codecs(&mut md);
    iceberg_throughput(&mut md);
    binaries(&mut md);
    match out {
        None => print!("{md}"),
        Some(path) => {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let text = match (text.find(START), text.find(END)) {
                (Some(s), Some(e)) if s < e => {
                    format!("{}{START}\n{md}{}", &text[..s], &text[e..])
                }
                _ => format!("{text}\n{START}\n{md}{END}\n"),
            };
            std::fs::write(&path, text).expect("BENCHMARKS.md is writable");
            println!("wrote {}", path.display());
        }
    }
}

/// Child mode: `runs` invocations of `function` on the event in `path`,
/// printing "records, RSS before (KiB), peak RSS (KiB)". "Before" holds the
/// built function and the event's bytes, as the runtime holds them when it
/// calls the handler. Each invocation is given its event's bytes to free
/// once read, as the runtime does (the file read again for every run after
/// the first).
fn child(function: &str, case: &str, path: &Path, runs: usize) {
    let case = bench::case(case);
    let read = || std::fs::read(path).expect("the event file");
    let mut first = Some(read());
    let mut body = || first.take().unwrap_or_else(read);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let n = if function == "kinesis-to-parquet" {
        let f = bench::kinesis_to_parquet(case);
        let before = bench::peak_rss_kib();
        let mut n = 0;
        for _ in 0..runs {
            n = rt.block_on(bench::run_kinesis_to_parquet(body(), &f));
        }
        print!("{n} {before}");
        n
    } else {
        let f = bench::device_status(case);
        let before = bench::peak_rss_kib();
        let mut n = 0;
        for _ in 0..runs {
            n = rt.block_on(bench::run_device_status(body(), &f));
        }
        print!("{n} {before}");
        n
    };
    std::hint::black_box(n);
    println!(" {}", bench::peak_rss_kib());
}

fn sh(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn machine(md: &mut String) {
    let lscpu = sh("lscpu", &[]);
    let field = |name: &str| {
        lscpu
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default()
    };
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let _ = writeln!(md, "## Machine\n");
    let _ = writeln!(md, "| | |\n|---|---|");
    let _ = writeln!(md, "| CPU | {} |", field("Model name"));
    let _ = writeln!(md, "| CPUs | {} |", field("CPU(s)"));
    let _ = writeln!(md, "| kernel | {} |", sh("uname", &["-r"]));
    let _ = writeln!(md, "| compiler | {} |", sh("rustc", &["-V"]));
    let _ = writeln!(
        md,
        "| run pinned to CPUs | {} |",
        sh("taskset", &["-cp", &std::process::id().to_string()])
            .rsplit(':')
            .next()
            .unwrap_or("?")
            .trim()
    );
    let _ = writeln!(
        md,
        "| load average at start (1, 5, 15 min) | {} |",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(md);
}

/// The issue's targets at 10,000 records, as ratios of times per record
/// measured in this run.
fn targets(md: &mut String, rows: &[Row], floors: &[Floors]) {
    const RECORDS: usize = 10_000;
    let Some(floor) = floors.iter().find(|f| f.records == RECORDS) else {
        return;
    };
    let _ = writeln!(md, "\n## Targets at {RECORDS} records\n");
    let _ = writeln!(
        md,
        "Time per record (per log event for CloudWatch Logs) of one case over another's, \
         both measured above in this run; the floors are those of the table below.\n"
    );
    let _ = writeln!(md, "| function | ratio | measured | target |");
    let _ = writeln!(md, "|---|---|---:|---:|");
    for function in ["kinesis-to-parquet", "device-status"] {
        let secs = |name: &str| {
            rows.iter()
                .find(|r| r.function == function && r.records == RECORDS && r.case.name == name)
                .map(|r| r.secs)
        };
        let (Some(json), Some(gzip)) = (secs("json"), secs("json gzip")) else {
            continue;
        };
        let mut line = |ratio: &str, measured: Option<f64>, target: &str| {
            if let Some(m) = measured {
                let _ = writeln!(md, "| {function} | {ratio} | {m:.2} | {target} |");
            }
        };
        line("json gzip × json", Some(gzip / json), "≤ 1.6");
        line(
            "avro datum × json",
            secs("avro datum").map(|a| a / json),
            "≤ 1.5",
        );
        line("csv × json", secs("csv").map(|c| c / json), "≤ 1.2");
        line(
            "json × floor with payloads",
            Some(json / floor.with_payloads),
            "≤ 1.3",
        );
        line(
            "json × floor with payloads after the runtime's scan",
            Some(json / floor.with_payloads_and_scan),
            "(reported)",
        );
        line(
            "cloudwatch-logs per log event × json gzip",
            secs(bench::CLOUDWATCH_LOGS).map(|c| c / gzip),
            "≤ 1.5",
        );
    }
}

/// The fastest of `runs` timed runs after one warm-up, in seconds: on a
/// shared virtual machine the slower runs measure the neighbours.
fn best(runs: usize, mut f: impl FnMut()) -> f64 {
    f();
    (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .min()
        .unwrap_or(Duration::MAX)
        .as_secs_f64()
}

/// Prints the plain JSON function time per record and its ratio to the
/// payload floors without and with the runtime's scan.
fn ratio(records: usize) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let case = bench::case("json");
    let body = bench::event_bytes(records, case);
    let f = bench::kinesis_to_parquet(case);
    let (mut function, mut floor, mut scanned) = (f64::MAX, f64::MAX, f64::MAX);
    for _ in 0..31 {
        function = function.min(best(1, || {
            rt.block_on(bench::run_kinesis_to_parquet(&body, &f));
        }));
        floor = floor.min(best(1, || {
            std::hint::black_box(bench::floor_with_payloads(&body));
        }));
        scanned = scanned.min(best(1, || {
            std::hint::black_box(bench::floor_with_payloads_and_scan(&body));
        }));
    }
    let us = |secs: f64| secs * 1e6 / records as f64;
    println!(
        "{records} records: function {:.3} µs/record, floor {:.3} ({:.2}×), floor with the scan {:.3} ({:.2}×)",
        us(function),
        us(floor),
        function / floor,
        us(scanned),
        function / scanned
    );
}

/// The floors of one size of the plain JSON event, in seconds.
struct Floors {
    records: usize,
    mb: f64,
    secs: f64,
    with_payloads: f64,
    /// With the payloads parsed, after `lambda_runtime`'s `serde_json` scan.
    with_payloads_and_scan: f64,
    model: f64,
    value: f64,
}

struct Row {
    function: &'static str,
    case: Case,
    records: usize,
    mb: f64,
    secs: f64,
    floor_secs: f64,
    /// The floor with the payloads parsed too (JSON cases only).
    payload_floor_secs: Option<f64>,
}

fn throughput(md: &mut String, me: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let mut rows = Vec::new();
    let mut floors = Vec::new();
    let mut memory = Vec::new();
    for records in SIZES {
        let runs = if records >= 100_000 { 5 } else { 15 };
        for case in CASES {
            let body = bench::event_bytes(records, case);
            let mb = body.len() as f64 / 1e6;
            let floor_secs = best(runs, || {
                std::hint::black_box(bench::floor(&body));
            });
            // That floor parses the payloads as JSON: uncompressed JSON cases only.
            let plain_json = case.format == "json" && case.compression == Compression::None;
            let payload_floor_secs = plain_json.then(|| {
                best(runs, || {
                    std::hint::black_box(bench::floor_with_payloads(&body));
                })
            });
            if case.name == "json" {
                let model = best(runs, || {
                    std::hint::black_box(bench::floor_event_model(&body));
                });
                let value = best(runs, || {
                    std::hint::black_box(bench::floor_through_value(&body));
                });
                let scanned = best(runs, || {
                    std::hint::black_box(bench::floor_with_payloads_and_scan(&body));
                });
                floors.push(Floors {
                    records,
                    mb,
                    secs: floor_secs,
                    with_payloads: payload_floor_secs.unwrap_or(f64::NAN),
                    with_payloads_and_scan: scanned,
                    model,
                    value,
                });
            }
            let f = bench::kinesis_to_parquet(case);
            let secs = best(runs, || {
                rt.block_on(bench::run_kinesis_to_parquet(&body, &f));
            });
            rows.push(Row {
                function: "kinesis-to-parquet",
                case,
                records,
                mb,
                secs,
                floor_secs,
                payload_floor_secs,
            });
            let f = bench::device_status(case);
            let secs = best(runs, || {
                std::hint::black_box(rt.block_on(bench::run_device_status(&body, &f)));
            });
            rows.push(Row {
                function: "device-status",
                case,
                records,
                mb,
                secs,
                floor_secs,
                payload_floor_secs,
            });
            if records >= 10_000 {
                for function in ["kinesis-to-parquet", "device-status"] {
                    let (before, peak) = peak_rss(me, function, case, &body);
                    memory.push((function, case.name, records, mb, before, peak));
                }
            }
        }
    }

    let _ = writeln!(md, "## Throughput on one core\n");
    let _ = writeln!(
        md,
        "Fastest of 15 runs (5 at 100,000 records) after a warm-up, from the event's bytes \
         through the function's own handler (the entry its `main` registers) to the objects \
         and windows handed to sinks that drop them. MB/s counts the event's JSON. \"× floor\" is the run's time \
         over the floor's on the same event (the event read and its payloads base64-decoded); \
         \"× floor with payloads\" over the floor that also parses every JSON payload (see \
         below).\n"
    );
    let _ = writeln!(
        md,
        "| function | event | records | event MB | records/s | MB/s | × floor | × floor with payloads |"
    );
    let _ = writeln!(md, "|---|---|---:|---:|---:|---:|---:|---:|");
    for function in ["kinesis-to-parquet", "device-status"] {
        for r in rows.iter().filter(|r| r.function == function) {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {:.2} | {:.0} | {:.1} | {:.2} | {} |",
                r.function,
                r.case.name,
                r.records,
                r.mb,
                r.records as f64 / r.secs,
                r.mb / r.secs,
                r.secs / r.floor_secs,
                r.payload_floor_secs
                    .map_or("–".to_string(), |p| format!("{:.2}", r.secs / p)),
            );
        }
    }
    targets(md, &rows, &floors);
    let _ = writeln!(md, "\n## The floor\n");
    let _ = writeln!(
        md,
        "Parsing the JSON event and base64-decoding every payload, nothing else: with the \
         functions' own event reader as their `main` runs it (the invocation's body taken \
         from the runtime before it deserialises anything, read by sonic-rs, the payloads \
         decoded by base64-simd), and, for comparison, with `aws_lambda_events`' model \
         through `serde_json`, and through `serde_json::Value` first (a handler taking \
         `LambdaEvent<Value>` reads it so). \"Payloads parsed\" adds every payload parsed \
         by sonic-rs into a struct of the reading's seven fields (strings borrowed, nothing \
         converted or checked beyond JSON types); \"after the runtime's scan\" adds the \
         pass `lambda_runtime` makes when it deserialises the handler's event (`serde_json` \
         behind `serde_path_to_error` finding where the event ends), which the functions' \
         `main` does not make.\n"
    );
    let _ = writeln!(
        md,
        "| records | event MB | records/s | MB/s | records/s, payloads parsed too | records/s, payloads parsed after the runtime's scan | records/s, `aws_lambda_events` model | records/s, through `Value` |"
    );
    let _ = writeln!(md, "|---:|---:|---:|---:|---:|---:|---:|---:|");
    for f in &floors {
        let rate = |secs: f64| f.records as f64 / secs;
        let _ = writeln!(
            md,
            "| {} | {:.2} | {:.0} | {:.1} | {:.0} | {:.0} | {:.0} | {:.0} |",
            f.records,
            f.mb,
            rate(f.secs),
            f.mb / f.secs,
            rate(f.with_payloads),
            rate(f.with_payloads_and_scan),
            rate(f.model),
            rate(f.value),
        );
    }
    let _ = writeln!(md, "\n## Peak memory of one invocation\n");
    let _ = writeln!(
        md,
        "A fresh process per case: builds the function, reads the event file, processes it \
         once. \"Before\" is the peak RSS with the function built and the event's bytes \
         loaded, as the runtime holds them; \"peak\" the peak RSS of the whole process \
         (`VmHWM`). The handler is given the bytes to free once it has read the event, as \
         the runtime gives them.\n"
    );
    let _ = writeln!(
        md,
        "| function | event | records | event MB | RSS before MB | peak RSS MB |"
    );
    let _ = writeln!(md, "|---|---|---:|---:|---:|---:|");
    for (function, case, records, mb, before, peak) in memory {
        let _ = writeln!(
            md,
            "| {function} | {case} | {records} | {mb:.2} | {before:.1} | {peak:.1} |"
        );
    }
    let _ = writeln!(md);
}

/// Peak RSS (before, peak) in MB of a child process running `function` once.
fn peak_rss(me: &str, function: &str, case: Case, body: &[u8]) -> (f64, f64) {
    let path = std::env::temp_dir().join(format!("bench-event-{}.json", std::process::id()));
    std::fs::write(&path, body).expect("temp dir is writable");
    let out = Command::new(me)
        .args(["--child", function, case.name])
        .arg(&path)
        .output()
        .expect("the bench binary runs");
    let _ = std::fs::remove_file(&path);
    let text = String::from_utf8_lossy(&out.stdout);
    let kib = |i: usize| {
        text.split_whitespace()
            .nth(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    (kib(1) / 1024.0, kib(2) / 1024.0)
}

/// The release binaries: beside this bench's own directory (`deps/..`).
fn release_dir() -> PathBuf {
    let me = std::env::current_exe().expect("the bench's path");
    me.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

fn binaries(md: &mut String) {
    let dir = release_dir();
    let _ = writeln!(md, "## Release binaries: size and cold start\n");
    let _ = writeln!(
        md,
        "Cold start: from spawning the binary to its first `GET \
         /2018-06-01/runtime/invocation/next` on a local Runtime API server, i.e. process \
         start, configuration, SDK clients built; median and fastest of {COLD_STARTS}.\n"
    );
    let _ = writeln!(
        md,
        "| binary | size MB | cold start median ms | cold start fastest ms |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|");
    for name in BINARIES {
        let path = dir.join(name);
        let Ok(meta) = std::fs::metadata(&path) else {
            let _ = writeln!(md, "| {name} | not built | | |");
            continue;
        };
        let size = meta.len() as f64 / 1e6;
        let mut times: Vec<Result<f64, String>> =
            (0..COLD_STARTS).map(|_| cold_start(&path)).collect();
        if let Some(Err(e)) = times.iter().find(|t| t.is_err()) {
            let _ = writeln!(md, "| {name} | {size:.1} | failed: {e} | |");
            continue;
        }
        let mut ms: Vec<f64> = times.drain(..).filter_map(Result::ok).collect();
        ms.sort_by(f64::total_cmp);
        let _ = writeln!(
            md,
            "| {name} | {size:.1} | {:.1} | {:.1} |",
            ms[ms.len() / 2],
            ms[0]
        );
    }
    let _ = writeln!(md);
}

/// Each codec's cost per payload: the 10,000 readings of the plain JSON
/// event, each compressed alone, undone with a decoder built per payload
/// and with one [`Inflater`] kept across them, as the functions keep it.
fn codecs(md: &mut String) {
    use std::io::Write;
    use telemetry_lake::stream::decompress::{decompress, Inflater};
    let body = bench::event_bytes(10_000, bench::case("json"));
    let plain: Vec<Vec<u8>> = bench::read_event(&body)
        .records()
        .map(|r| r.data.expect("a payload").into_owned())
        .collect();
    type Encode = fn(&[u8]) -> Vec<u8>;
    let codecs: [(&str, Encode); 6] = [
        ("gzip", |d| {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(d).expect("in memory");
            e.finish().expect("in memory")
        }),
        ("zlib", |d| {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(d).expect("in memory");
            e.finish().expect("in memory")
        }),
        ("zstd", |d| zstd::encode_all(d, 3).expect("in memory")),
        ("bzip2", |d| {
            let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
            e.write_all(d).expect("in memory");
            e.finish().expect("in memory")
        }),
        ("xz", |d| {
            let mut e = liblzma::write::XzEncoder::new(Vec::new(), 6);
            e.write_all(d).expect("in memory");
            e.finish().expect("in memory")
        }),
        ("snappy-framed", |d| {
            let mut e = snap::write::FrameEncoder::new(Vec::new());
            e.write_all(d).expect("in memory");
            e.into_inner().expect("in memory")
        }),
    ];
    let _ = writeln!(md, "## Codecs: one payload undone\n");
    let _ = writeln!(
        md,
        "The {} readings of the plain JSON event ({:.0} bytes each on average), each compressed \
         alone; µs per payload to undo it with a decoder built per payload, and with one \
         `Inflater` kept across the batch as the functions keep it (its output buffer, and its \
         gzip/zlib and zstd states reset per payload; bzip2, xz and framed snappy have no state \
         their crates can reset). Best of 15.\n",
        plain.len(),
        plain.iter().map(Vec::len).sum::<usize>() as f64 / plain.len() as f64
    );
    let _ = writeln!(
        md,
        "| codec | bytes per payload | decoder per payload µs | one Inflater µs | per payload × one Inflater |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|");
    let per = |secs: f64| secs * 1e6 / plain.len() as f64;
    for (name, encode) in codecs {
        let packed: Vec<Vec<u8>> = plain.iter().map(|p| encode(p)).collect();
        let size = packed.iter().map(Vec::len).sum::<usize>() as f64 / packed.len() as f64;
        let fresh = best(15, || {
            let n: usize = packed
                .iter()
                .map(|p| decompress(p, 1 << 20).map_or(0, |b| b.len()))
                .sum();
            assert_eq!(n, plain.iter().map(Vec::len).sum::<usize>(), "{name}");
        });
        let kept = best(15, || {
            let mut inflater = Inflater::default();
            let n: usize = packed
                .iter()
                .map(|p| {
                    inflater
                        .decompress(p, 1 << 20)
                        .map_or(0, |b| b.map_or(0, <[u8]>::len))
                })
                .sum();
            assert_eq!(n, plain.iter().map(Vec::len).sum::<usize>(), "{name}");
        });
        let _ = writeln!(
            md,
            "| {name} | {size:.0} | {:.2} | {:.2} | {:.2} |",
            per(fresh),
            per(kept),
            fresh / kept
        );
    }
    let _ = writeln!(md);
}

/// The Iceberg layout against the Hive one, on the same events in the same
/// run: both minus their network (see [`bench::kinesis_to_parquet_iceberg`]).
fn iceberg_throughput(md: &mut String) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let _ = writeln!(
        md,
        "## Iceberg layout: throughput on one core
"
    );
    let _ = writeln!(
        md,
        "`kinesis-to-parquet` with `LAKE_FORMAT=iceberg` and with the Hive layout, on the same \
         JSON events, fastest of 15 runs (5 at 100,000 records) after a warm-up. The Iceberg \
         runs commit to an in-memory catalog (the `iceberg` crate's), a new table each run, \
         so they include the data files' metadata and column metrics, the manifest, manifest \
         list and table metadata, but none of the commit's requests (those are in \
         [the commit's cost](#iceberg-one-commit-as-the-table-grows)). Data files: one per \
         event hour of the batch's records.\n"
    );
    let _ = writeln!(
        md,
        "| event | records | Hive records/s | Iceberg records/s | Iceberg × Hive time | data files |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|");
    let mut table = 0usize;
    for records in SIZES {
        let runs = if records >= 100_000 { 5 } else { 15 };
        for name in ["json", "json 1% bad"] {
            let case = bench::case(name);
            let body = bench::event_bytes(records, case);
            let hive = bench::kinesis_to_parquet(case);
            let hive_secs = best(runs, || {
                rt.block_on(bench::run_kinesis_to_parquet(&body, &hive));
            });
            // A new table for each run, built outside the timed part.
            let mut fastest = f64::MAX;
            let mut files = 0;
            for _ in 0..=runs {
                table += 1;
                let f = rt.block_on(bench::kinesis_to_parquet_iceberg(
                    case,
                    &format!("t{table}"),
                ));
                let start = Instant::now();
                let out = rt
                    .block_on(lake_tools::runtime::invoke_stream(&body, |e| f.handle(e)))
                    .expect("a Kinesis event");
                fastest = fastest.min(start.elapsed().as_secs_f64());
                assert!(out.summary.snapshot_id.is_some(), "{:?}", out.summary);
                files = out.summary.objects - usize::from(out.summary.bad > 0);
            }
            let _ = writeln!(
                md,
                "| {name} | {records} | {:.0} | {:.0} | {:.2} | {files} |",
                records as f64 / hive_secs,
                records as f64 / fastest,
                fastest / hive_secs,
            );
        }
    }
    let _ = writeln!(md);
}

/// Milliseconds from spawning `binary` to its first request for an event.
fn cold_start(binary: &Path) -> Result<f64, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let api = listener
        .local_addr()
        .map_err(|e| e.to_string())?
        .to_string();
    let schema = include_str!("../../config/ventilator.schema.json");
    let mut cmd = Command::new(binary);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_LAMBDA_RUNTIME_API", &api)
        .env("AWS_LAMBDA_FUNCTION_NAME", "bench")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/bench")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "bench")
        .env("AWS_SECRET_ACCESS_KEY", "bench")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("SCHEMA", schema)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for name in [
        "LAKE_BUCKET",
        "LAKE_PREFIX",
        "DEAD_LETTER_PREFIX",
        "RAW_CRAWLER_NAME",
        "TRANSFORMED_CRAWLER_NAME",
        "REFERENCE_TABLE",
        "WINDOWS_TABLE",
        "CHANGE_FLAG_BUCKET",
        "DEAD_LETTER_BUCKET",
        "ATHENA_WORKGROUP",
        "GLUE_DATABASE",
        "PROVIDERS_TABLE",
        "SOURCE_TABLE",
        "TARGET_TABLE",
        "DAY_CLAIMS_TABLE",
        "CRAWLER_NAME",
        "RESULTS_BUCKET",
        "OUTPUT_LOCATION",
    ] {
        cmd.env(name, "bench");
    }
    cmd.env(
        "STATE_MACHINE_ARN",
        "arn:aws:states:us-east-1:123456789012:stateMachine:bench",
    );
    let start = Instant::now();
    let mut child = cmd.spawn().map_err(|e| e.to_string())?;
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let result = loop {
        match listener.accept() {
            Ok((stream, _)) => {
                let _ = stream.set_nonblocking(false);
                let mut line = String::new();
                let _ = BufReader::new(&stream).read_line(&mut line);
                if line.contains("/runtime/invocation/next") {
                    break Ok(start.elapsed().as_secs_f64() * 1e3);
                }
                break Err(format!("unexpected request {line:?}"));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if let Ok(Some(status)) = child.try_wait() {
                    let mut err = String::new();
                    if let Some(stderr) = child.stderr.take() {
                        let _ = BufReader::new(stderr).read_line(&mut err);
                    }
                    break Err(format!("exited ({status}): {}", err.trim()));
                }
                if start.elapsed() > Duration::from_secs(10) {
                    break Err("no request within 10 s".into());
                }
                std::thread::sleep(Duration::from_micros(50));
            }
            Err(e) => break Err(e.to_string()),
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    result
}
