//! `cargo bench --workspace --bench cost -- [--out BENCHMARKS.md]`: what
//! a billion records cost, from measured requests. The local run (`make
//! demo`'s job, at the template's defaults) takes 10,000 readings through
//! every pipeline on moto, once with the Hive layout and once with
//! Iceberg; each function reaches moto through its own counting proxy and
//! each invocation is timed. The table turns those counts and times into
//! dollars at the list prices of `lake_tools::cost`, next to Firehose and
//! a Glue streaming job for the same records. Written between the `cost`
//! markers of the file given with `--out`, else printed.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use lake_tools::cost::{self, Firehose};
use lake_tools::local_run::stack::ids;
use lake_tools::local_run::summary::{FunctionUsage, Summary};
use lake_tools::local_run::{self, Options};
use lake_tools::moto::repo_root;
use lake_tools::request_count::{merge, Tallies};
use lake_tools::template::Template;

const START: &str = "<!-- cost:start (written by `make bench`) -->";
const END: &str = "<!-- cost:end -->";
const BILLION: f64 = 1e9;
/// Firehose's smallest buffer with dynamic partitioning: one object per
/// 64 MiB delivered at most.
const FIREHOSE_BUFFER_BYTES: f64 = 64.0 * 1024.0 * 1024.0;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let out = args
        .iter()
        .position(|a| a == "--out")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let hive = rt.block_on(measure(&[]));
    let iceberg = rt.block_on(measure(&[("LakeFormat", "iceberg")]));
    let template = Template::load(&repo_root().join("template.yaml")).expect("template.yaml");
    let md = render(&template, &hive, &iceberg);
    match out {
        Some(path) => {
            let text = std::fs::read_to_string(&path).expect("read --out");
            let (Some(a), Some(b)) = (text.find(START), text.find(END)) else {
                panic!("{path} has no {START} … {END} markers");
            };
            let new = format!("{}{START}\n{md}{}", &text[..a], &text[b..]);
            std::fs::write(&path, new).expect("write --out");
            println!("wrote {path}");
        }
        None => print!("{md}"),
    }
}

/// One local run of 10,000 readings (50 devices, 200 minutes, one a
/// minute, 1% bad) with the template's defaults but `parameters`.
async fn measure(parameters: &[(&str, &str)]) -> Summary {
    let options = Options {
        devices: 50,
        minutes: 200,
        bad_share: 0.01,
        quiet: true,
        parameters: parameters
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Options::default()
    };
    let run = local_run::run(&options).await.expect("the local run");
    assert_eq!(run.summary.records.stream_records, 10_000);
    run.summary
}

/// One function's usage in a run.
fn usage<'a>(s: &'a Summary, function_id: &str) -> &'a FunctionUsage {
    s.usage
        .iter()
        .find(|u| u.function == function_id)
        .unwrap_or_else(|| panic!("{function_id} made no invocation"))
}

/// What a function's invocations in a run cost, split in Lambda, its
/// requests and its metrics logs.
#[derive(Debug, Default, Clone, Copy)]
struct Dollars {
    lambda: f64,
    requests: f64,
    other: f64,
}

impl Dollars {
    fn of(template: &Template, u: &FunctionUsage) -> Self {
        let memory: u32 = template
            .function_property(&u.function, "MemorySize")
            .and_then(|m| m.parse().ok())
            .expect("a MemorySize");
        let arm = template.parameter_default("Architecture").as_deref() == Some("arm64");
        Dollars {
            lambda: cost::lambda_dollars(u.invocations as f64, u.billed_ms, memory, arm),
            requests: cost::requests_dollars(&u.requests),
            other: cost::logs_dollars(u.metrics_bytes as f64),
        }
    }
    fn plus(self, o: Dollars) -> Dollars {
        Dollars {
            lambda: self.lambda + o.lambda,
            requests: self.requests + o.requests,
            other: self.other + o.other,
        }
    }
    fn times(self, k: f64) -> Dollars {
        Dollars {
            lambda: self.lambda * k,
            requests: self.requests * k,
            other: self.other * k,
        }
    }
    fn total(self) -> f64 {
        self.lambda + self.requests + self.other
    }
}

fn requests_line(requests: &Tallies) -> String {
    requests
        .iter()
        .map(|(kind, t)| match kind.starts_with("DynamoDB ") {
            true => format!("{} {kind} ({} units)", t.requests, t.units),
            false => format!("{} {kind}", t.requests),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn transitions(s: &Summary, machine: &str) -> (usize, usize) {
    let runs: Vec<_> = s
        .executions
        .iter()
        .filter(|e| e.state_machine == machine)
        .collect();
    (runs.len(), runs.iter().map(|e| e.states.len()).sum())
}

fn render(template: &Template, hive: &Summary, iceberg: &Summary) -> String {
    let mut md = String::new();
    let records = hive.records.stream_records as f64;
    let per_billion = BILLION / records;
    let build = if cfg!(debug_assertions) {
        "a debug build"
    } else {
        "a release build"
    };
    let defaults = ["BatchSize", "StreamShardCount", "Architecture"]
        .iter()
        .map(|p| {
            format!(
                "`{p}` {}",
                template.parameter_default(p).unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let memory = template
        .function_property(ids::KINESIS_TO_PARQUET, "MemorySize")
        .unwrap_or_default();
    let _ = writeln!(
        md,
        "\nMeasured by `cargo bench --bench cost` ({build}): the local run took {} readings \
         ({} bytes of JSON, 1% bad) through every pipeline on moto at the template's defaults \
         ({defaults}, `MemorySize` {memory} MB), once per layout. Each function reached moto \
         through its own counting proxy, and each invocation was timed.\n",
        hive.records.stream_records, hive.records.generated_json_bytes
    );
    let _ = writeln!(
        md,
        "| run | function | invocations | billed ms | requests (measured) |\n|---|---|---:|---:|---|"
    );
    for (name, s) in [("Hive", hive), ("Iceberg", iceberg)] {
        for u in &s.usage {
            let _ = writeln!(
                md,
                "| {name} | {} | {} | {:.0} | {} |",
                u.function,
                u.invocations,
                u.billed_ms,
                requests_line(&u.requests)
            );
        }
    }
    let (repartition_runs, repartition_transitions) = transitions(hive, "Repartition");
    let (provider_runs, provider_transitions) = transitions(hive, "ProviderEtl");
    let _ = writeln!(
        md,
        "\nState transitions (from the executions' histories): {repartition_transitions} in \
         {repartition_runs} repartition run(s), {provider_transitions} in {provider_runs} \
         provider-etl runs.\n"
    );

    // ------------------------------------------------------------ per pipeline
    let stream_hive = Dollars::of(template, usage(hive, ids::KINESIS_TO_PARQUET));
    let stream_iceberg = Dollars::of(template, usage(iceberg, ids::KINESIS_TO_PARQUET));
    let status = Dollars::of(template, usage(hive, ids::DEVICE_STATUS));
    let workflow_functions = [
        ids::START_CRAWLER,
        ids::CRAWLER_STATUS,
        ids::START_QUERIES,
        ids::QUERY_STATUS,
    ];
    let workflow = workflow_functions
        .iter()
        .map(|id| Dollars::of(template, usage(hive, id)))
        .fold(Dollars::default(), Dollars::plus);
    let crawls = usage(hive, ids::START_CRAWLER)
        .requests
        .get("Glue StartCrawler")
        .map_or(0, |t| t.requests) as f64;
    let queries = usage(hive, ids::START_QUERIES)
        .requests
        .get("Athena StartQueryExecution")
        .map_or(0, |t| t.requests) as f64;
    let lake_bytes = hive.lake.bytes as f64;
    // Per run: the tasks, the transitions and the crawls; the queries scan
    // the day's lake, which grows with the records.
    let workflow_fixed = workflow.lambda
        + workflow.requests
        + workflow.other
        + repartition_transitions as f64 * cost::STEP_FUNCTIONS_TRANSITION.each()
        + crawls * cost::CRAWL_MINIMUM_DPU_HOURS * cost::GLUE_DPU_HOUR.each();
    let scan_per_billion = lake_bytes * per_billion;
    let athena_per_billion =
        cost::athena_query_dollars(scan_per_billion / queries.max(1.0)) * queries.max(1.0);

    let _ = writeln!(
        md,
        "Per billion records, computed from the counts above (the Kinesis stream, S3 storage \
         and the provider Glue jobs themselves are left out: they are the same whichever \
         way the records are processed):\n"
    );
    let _ = writeln!(
        md,
        "| pipeline | Lambda | requests | logs and other | per billion records |\n|---|---:|---:|---:|---:|"
    );
    let row = |md: &mut String, name: &str, d: Dollars| {
        let _ = writeln!(
            md,
            "| {name} | ${:.2} | ${:.2} | ${:.2} | **${:.2}** |",
            d.lambda,
            d.requests,
            d.other,
            d.total()
        );
    };
    row(
        &mut md,
        "Stream to lake, Hive (kinesis-to-parquet)",
        stream_hive.times(per_billion),
    );
    row(
        &mut md,
        "Stream to lake, Iceberg (kinesis-to-parquet, one commit a batch)",
        stream_iceberg.times(per_billion),
    );
    row(
        &mut md,
        "Status windows (device-status)",
        status.times(per_billion),
    );
    let _ = writeln!(
        md,
        "| Repartition, one run a day at a billion records a day | ${:.2} | ${:.2} | ${:.2} \
         | **${:.2}** |",
        workflow.lambda,
        workflow.requests,
        workflow_fixed - workflow.lambda - workflow.requests + athena_per_billion,
        workflow_fixed + athena_per_billion
    );
    let flag = Dollars::of(template, usage(hive, ids::REFERENCE_CHANGE_FLAG));
    let flag_runs = usage(hive, ids::REFERENCE_CHANGE_FLAG).invocations.max(1) as f64;
    let scheduler = usage(hive, ids::SCHEDULER);
    let period: f64 = template
        .parameter_default("SchedulePeriodMinutes")
        .and_then(|p| p.parse().ok())
        .unwrap_or(15.0);
    let ticks_per_month = cost::HOURS_PER_MONTH * 60.0 / period;
    let per_tick = Dollars::of(template, scheduler).total() / scheduler.invocations.max(1) as f64;
    let per_provider_run = provider_transitions as f64 / provider_runs.max(1) as f64
        * cost::STEP_FUNCTIONS_TRANSITION.each();
    let _ = writeln!(
        md,
        "\nWhat does not grow with the records: a repartition run's fixed part is \
         ${workflow_fixed:.3} ({crawls} crawls billed their 10-minute minimum at one DPU, \
         ${:.3} of it); its queries scan the day's Parquet, {:.1} GB per billion records, \
         ${athena_per_billion:.2}. A scheduler tick costs ${per_tick:.7} (${:.2} a month at \
         `SchedulePeriodMinutes` {period}); a provider-etl run ${per_provider_run:.5} in \
         transitions before its Glue job; a reference change ${:.7} in reference-change-flag.\n",
        crawls * cost::CRAWL_MINIMUM_DPU_HOURS * cost::GLUE_DPU_HOUR.each(),
        scan_per_billion / 1e9,
        per_tick * ticks_per_month,
        flag.total() / flag_runs,
    );

    // ------------------------------------------------------------ compared
    let json_bytes = hive.records.generated_json_bytes as f64 / records;
    let parquet_per_billion = lake_bytes * per_billion;
    let firehose = Firehose::price(
        BILLION,
        json_bytes,
        parquet_per_billion,
        (parquet_per_billion / FIREHOSE_BUFFER_BYTES).ceil(),
    );
    let glue_month = cost::glue_streaming_month();
    let _ = writeln!(
        md,
        "Stream to lake, compared, per billion records of {json_bytes:.0} bytes of JSON \
         each:\n\n| way | per billion records | how it is computed |\n|---|---:|---|"
    );
    let _ = writeln!(
        md,
        "| this suite, Hive | ${:.2} | measured requests and times, list prices |",
        stream_hive.times(per_billion).total()
    );
    let _ = writeln!(
        md,
        "| this suite, Iceberg | ${:.2} | measured requests and times, list prices |",
        stream_iceberg.times(per_billion).total()
    );
    let _ = writeln!(
        md,
        "| Firehose, Parquet conversion and dynamic partitioning | ${:.2} | ingestion ${:.2} \
         and conversion ${:.2} (each record billed as 5 KB), partitioning ${:.2} (the \
         Parquet bytes the suite wrote, one object per 64 MiB); JQ hours not included |",
        firehose.total(),
        firehose.ingestion,
        firehose.conversion,
        firehose.partitioning
    );
    let _ = writeln!(
        md,
        "| Glue streaming job, 2 × G.025X all month, a billion records a month | ${glue_month:.2} \
         | {} DPU × {} h × ${} a DPU-hour; whether it keeps up is not measured |",
        cost::GLUE_STREAMING_MINIMUM_DPU,
        cost::HOURS_PER_MONTH,
        cost::GLUE_DPU_HOUR.published
    );
    let _ = writeln!(
        md,
        "| the same job, a billion records a day | ${:.2} | the month's price over 30 \
         billion records |",
        glue_month / 30.0
    );

    // ------------------------------------------------------------ prices
    let mut pages: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for p in cost::ALL {
        pages.entry(p.page).or_default().push(p.stated());
    }
    let _ = writeln!(
        md,
        "\nPrices: us-east-1, on demand, free tiers left out, as of {}:\n",
        cost::PRICES_AS_OF
    );
    for (page, prices) in pages {
        let _ = writeln!(md, "- <{page}>: {}", prices.join("; "));
    }
    let mut all = Tallies::new();
    for u in hive.usage.iter().chain(&iceberg.usage) {
        merge(&mut all, &u.requests);
    }
    let unpriced: Vec<&String> = all
        .keys()
        .filter(|k| cost::request_price(k).is_none())
        .collect();
    let _ = writeln!(
        md,
        "\nRequests with no price of their own: {}.\n",
        unpriced
            .iter()
            .map(|k| k.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    md
}
