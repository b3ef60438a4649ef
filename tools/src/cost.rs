//! Dollars from measured usage: AWS list prices (us-east-1, on demand,
//! no free tier) applied to the requests, invocation times and bytes a
//! local run measured, and the same records priced on Amazon Data
//! Firehose and on a Glue streaming job. `cargo bench --bench cost`
//! writes the result into BENCHMARKS.md.
//!
//! Each price names the page it comes from. Prices change: the table
//! states the date they were taken, and a figure from it is an estimate
//! to check against the pages, not a quote.

use crate::request_count::{Tallies, Tally};

/// When the prices below were taken from their pages.
pub const PRICES_AS_OF: &str = "2025 (list prices as published then; not re-read by the bench)";

/// A price as its page publishes it (dollars per `count` of `unit`).
#[derive(Debug, Clone, Copy)]
pub struct Price {
    pub published: f64,
    pub count: f64,
    pub unit: &'static str,
    pub page: &'static str,
}

impl Price {
    /// Dollars per one unit.
    pub fn each(&self) -> f64 {
        self.published / self.count
    }

    /// As the page states it: `$0.20 per 1,000,000 requests`.
    pub fn stated(&self) -> String {
        let count = match self.count {
            c if c >= 1e6 => "1,000,000 ".to_string(),
            c if c >= 1e3 => "1,000 ".to_string(),
            _ => String::new(),
        };
        format!("${} per {count}{}", self.published, self.unit)
    }
}

const LAMBDA: &str = "https://aws.amazon.com/lambda/pricing/";
const S3: &str = "https://aws.amazon.com/s3/pricing/";
const DYNAMODB: &str = "https://aws.amazon.com/dynamodb/pricing/on-demand/";
const GLUE: &str = "https://aws.amazon.com/glue/pricing/";
const ATHENA: &str = "https://aws.amazon.com/athena/pricing/";
const STEP_FUNCTIONS: &str = "https://aws.amazon.com/step-functions/pricing/";
const CLOUDWATCH: &str = "https://aws.amazon.com/cloudwatch/pricing/";
const FIREHOSE: &str = "https://aws.amazon.com/firehose/pricing/";

pub const LAMBDA_REQUEST: Price = Price {
    published: 0.20,
    count: 1e6,
    unit: "requests",
    page: LAMBDA,
};
pub const LAMBDA_GB_SECOND_X86: Price = Price {
    published: 0.000_016_666_7,
    count: 1.0,
    unit: "GB-second (x86_64)",
    page: LAMBDA,
};
pub const LAMBDA_GB_SECOND_ARM: Price = Price {
    published: 0.000_013_333_4,
    count: 1.0,
    unit: "GB-second (arm64)",
    page: LAMBDA,
};
pub const S3_PUT: Price = Price {
    published: 0.005,
    count: 1e3,
    unit: "PUT, COPY, POST or LIST requests",
    page: S3,
};
pub const S3_GET: Price = Price {
    published: 0.0004,
    count: 1e3,
    unit: "GET, HEAD or other requests",
    page: S3,
};
pub const DYNAMODB_WRITE: Price = Price {
    published: 0.625,
    count: 1e6,
    unit: "write request units",
    page: DYNAMODB,
};
pub const DYNAMODB_READ: Price = Price {
    published: 0.125,
    count: 1e6,
    unit: "read request units",
    page: DYNAMODB,
};
pub const GLUE_CATALOG_REQUEST: Price = Price {
    published: 1.0,
    count: 1e6,
    unit: "Data Catalog requests",
    page: GLUE,
};
pub const GLUE_DPU_HOUR: Price = Price {
    published: 0.44,
    count: 1.0,
    unit: "DPU-hour (crawler or job)",
    page: GLUE,
};
pub const ATHENA_TB: Price = Price {
    published: 5.0,
    count: 1.0,
    unit: "TB scanned (10 MB minimum a query)",
    page: ATHENA,
};
pub const STEP_FUNCTIONS_TRANSITION: Price = Price {
    published: 0.025,
    count: 1e3,
    unit: "state transitions (standard)",
    page: STEP_FUNCTIONS,
};
pub const CLOUDWATCH_LOGS_GB: Price = Price {
    published: 0.50,
    count: 1.0,
    unit: "GB of logs ingested",
    page: CLOUDWATCH,
};
pub const FIREHOSE_INGEST_GB: Price = Price {
    published: 0.029,
    count: 1.0,
    unit: "GB ingested, each record rounded up to 5 KB (first 500 TB a month)",
    page: FIREHOSE,
};
pub const FIREHOSE_CONVERSION_GB: Price = Price {
    published: 0.018,
    count: 1.0,
    unit: "GB converted to Parquet, in 5 KB increments",
    page: FIREHOSE,
};
pub const FIREHOSE_PARTITIONING_GB: Price = Price {
    published: 0.020,
    count: 1.0,
    unit: "GB delivered with dynamic partitioning",
    page: FIREHOSE,
};

/// Every price the table uses, for its list of sources.
pub const ALL: [Price; 16] = [
    LAMBDA_REQUEST,
    LAMBDA_GB_SECOND_X86,
    LAMBDA_GB_SECOND_ARM,
    S3_PUT,
    S3_GET,
    DYNAMODB_WRITE,
    DYNAMODB_READ,
    GLUE_CATALOG_REQUEST,
    GLUE_DPU_HOUR,
    ATHENA_TB,
    STEP_FUNCTIONS_TRANSITION,
    CLOUDWATCH_LOGS_GB,
    FIREHOSE_INGEST_GB,
    FIREHOSE_CONVERSION_GB,
    FIREHOSE_PARTITIONING_GB,
    FIREHOSE_OBJECT,
];
pub const FIREHOSE_OBJECT: Price = Price {
    published: 0.005,
    count: 1e3,
    unit: "S3 objects delivered with dynamic partitioning",
    page: FIREHOSE,
};

/// Firehose's billing increment per record.
pub const FIREHOSE_RECORD_INCREMENT: u64 = 5 * 1024;
/// A crawl is billed for at least ten minutes; taken as one DPU.
pub const CRAWL_MINIMUM_DPU_HOURS: f64 = 10.0 / 60.0;
/// The smallest Glue streaming job: two G.025X workers (a quarter DPU
/// each), Glue's minimum worker count.
pub const GLUE_STREAMING_MINIMUM_DPU: f64 = 2.0 * 0.25;
/// Hours in a month as AWS prices them.
pub const HOURS_PER_MONTH: f64 = 730.0;
const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
const TB: f64 = 1024.0 * GIB;

/// The price of one kind of request (as [`crate::request_count`] names
/// them), or `None` when that request is not billed by itself (Athena,
/// Step Functions and crawler API calls, S3 DELETE).
pub fn request_price(kind: &str) -> Option<Price> {
    let (service, operation) = kind.split_once(' ')?;
    match (service, operation) {
        ("S3", "PUT" | "COPY" | "POST" | "LIST") => Some(S3_PUT),
        ("S3", "DELETE") => None,
        ("S3", _) => Some(S3_GET),
        ("DynamoDB", op) if is_dynamodb_read(op) => Some(DYNAMODB_READ),
        ("DynamoDB", _) => Some(DYNAMODB_WRITE),
        ("Glue", op) if is_glue_catalog(op) => Some(GLUE_CATALOG_REQUEST),
        _ => None,
    }
}

fn is_dynamodb_read(op: &str) -> bool {
    matches!(
        op,
        "GetItem" | "BatchGetItem" | "Query" | "Scan" | "TransactGetItems"
    )
}

/// Glue's Data Catalog calls (tables, partitions, databases); crawler and
/// job calls are billed by the DPU-hours they start, not per call.
fn is_glue_catalog(op: &str) -> bool {
    ["Table", "Partition", "Database"]
        .iter()
        .any(|noun| op.contains(noun))
}

/// What a set of requests costs: DynamoDB by its request units, the rest
/// per request.
pub fn requests_dollars(requests: &Tallies) -> f64 {
    requests
        .iter()
        .map(|(kind, t)| request_dollars(kind, t))
        .sum()
}

fn request_dollars(kind: &str, t: &Tally) -> f64 {
    match request_price(kind) {
        Some(p) if kind.starts_with("DynamoDB ") => p.each() * t.units,
        Some(p) => p.each() * t.requests as f64,
        None => 0.0,
    }
}

/// The milliseconds Lambda bills for invocations of these durations
/// (seconds): each rounded up to the millisecond.
pub fn billed_ms(durations: &[f64]) -> f64 {
    durations.iter().map(|s| (s * 1e3).ceil()).sum()
}

/// Lambda's charge for `invocations` billed `ms` milliseconds in all at
/// `memory_mb`: per request and per GB-second.
pub fn lambda_dollars(invocations: f64, ms: f64, memory_mb: u32, arm64: bool) -> f64 {
    let gb = f64::from(memory_mb) / 1024.0;
    let per = if arm64 {
        LAMBDA_GB_SECOND_ARM
    } else {
        LAMBDA_GB_SECOND_X86
    };
    invocations * LAMBDA_REQUEST.each() + ms / 1e3 * gb * per.each()
}

/// CloudWatch Logs' ingestion charge for `bytes`.
pub fn logs_dollars(bytes: f64) -> f64 {
    bytes / GIB * CLOUDWATCH_LOGS_GB.each()
}

/// Athena's charge for one query scanning `bytes`.
pub fn athena_query_dollars(bytes: f64) -> f64 {
    bytes.max(10.0 * 1024.0 * 1024.0) / TB * ATHENA_TB.each()
}

/// What Firehose charges for `records` records of `record_bytes` each
/// (the JSON it would ingest), converted to Parquet of `parquet_bytes` in
/// all and delivered with dynamic partitioning in `objects` objects.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Firehose {
    pub ingestion: f64,
    pub conversion: f64,
    pub partitioning: f64,
}

impl Firehose {
    pub fn price(records: f64, record_bytes: f64, parquet_bytes: f64, objects: f64) -> Self {
        let increments = (record_bytes / FIREHOSE_RECORD_INCREMENT as f64)
            .ceil()
            .max(1.0);
        let billed = records * increments * FIREHOSE_RECORD_INCREMENT as f64 / GIB;
        Firehose {
            ingestion: billed * FIREHOSE_INGEST_GB.each(),
            conversion: billed * FIREHOSE_CONVERSION_GB.each(),
            partitioning: parquet_bytes / GIB * FIREHOSE_PARTITIONING_GB.each()
                + objects * FIREHOSE_OBJECT.each(),
        }
    }

    pub fn total(&self) -> f64 {
        self.ingestion + self.conversion + self.partitioning
    }
}

/// The smallest Glue streaming job running all month.
pub fn glue_streaming_month() -> f64 {
    GLUE_STREAMING_MINIMUM_DPU * HOURS_PER_MONTH * GLUE_DPU_HOUR.each()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(requests: u64, units: f64) -> Tally {
        Tally {
            requests,
            bytes_sent: 0,
            units,
        }
    }

    #[test]
    fn requests_are_priced_by_their_class() {
        let requests = Tallies::from([
            ("S3 PUT".to_string(), tally(1000, 0.0)),
            ("S3 GET".to_string(), tally(1000, 0.0)),
            ("S3 DELETE".to_string(), tally(1000, 0.0)),
            // Priced by units, not calls: 10 calls of 100 keys at half a unit.
            ("DynamoDB BatchGetItem".to_string(), tally(10, 500.0)),
            ("DynamoDB UpdateItem".to_string(), tally(1000, 1000.0)),
            ("Glue UpdateTable".to_string(), tally(1000, 0.0)),
            ("Glue StartCrawler".to_string(), tally(1000, 0.0)),
            ("Athena StartQueryExecution".to_string(), tally(1000, 0.0)),
        ]);
        let expected = 0.005 + 0.0004 + 500.0 * 0.125 / 1e6 + 1000.0 * 0.625 / 1e6 + 0.001;
        assert!((requests_dollars(&requests) - expected).abs() < 1e-12);
    }

    #[test]
    fn lambda_rounds_each_invocation_up_to_the_millisecond() {
        // Two invocations of 1.2 ms bill 4 ms at a quarter GB.
        assert_eq!(billed_ms(&[0.0012, 0.0012]), 4.0);
        let d = lambda_dollars(2.0, 4.0, 256, false);
        let expected = 2.0 * 0.20 / 1e6 + 0.004 * 0.25 * 0.000_016_666_7;
        assert!((d - expected).abs() < 1e-15, "{d} vs {expected}");
        assert!(lambda_dollars(1.0, 1e3, 1024, true) < lambda_dollars(1.0, 1e3, 1024, false));
    }

    #[test]
    fn firehose_rounds_every_record_up_to_5_kb() {
        // A billion records of 200 bytes bill as a billion of 5 KB.
        let f = Firehose::price(1e9, 200.0, 0.0, 0.0);
        let gib = 1e9 * 5120.0 / GIB;
        assert!((f.ingestion - gib * 0.029).abs() < 1e-6);
        assert!((f.conversion - gib * 0.018).abs() < 1e-6);
        // 6 KB is two increments.
        let f6 = Firehose::price(1.0, 6000.0, 0.0, 0.0);
        let f1 = Firehose::price(1.0, 100.0, 0.0, 0.0);
        assert!((f6.ingestion / f1.ingestion - 2.0).abs() < 1e-9);
        let p = Firehose::price(0.0, 0.0, GIB, 1000.0);
        assert!((p.partitioning - (0.020 + 0.005)).abs() < 1e-12);
    }

    #[test]
    fn athena_bills_at_least_10_mb_a_query() {
        assert_eq!(athena_query_dollars(1.0), athena_query_dollars(1024.0));
        let tb = athena_query_dollars(TB);
        assert!((tb - 5.0).abs() < 1e-12);
    }

    #[test]
    fn the_smallest_glue_streaming_job_is_half_a_dpu_all_month() {
        assert!((glue_streaming_month() - 0.5 * 730.0 * 0.44).abs() < 1e-9);
    }
}
