//! Infers a declared schema from a sample of records (JSON lines, or CSV
//! with a header line) and prints it in the configuration format (the JSON
//! of `config/ventilator.schema.json`), ready for `SCHEMA` or `SCHEMA_FILE`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, ValueEnum};
use lake_tools::schema_inference::{from_csv, from_json_lines};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum SampleFormat {
    Json,
    Csv,
}

#[derive(Parser, Debug)]
#[command(about = "Infer a telemetry lake schema from sample records")]
struct Args {
    /// The sample file: JSON lines, or CSV with a header line.
    sample: PathBuf,
    /// The sample's format.
    #[arg(long, value_enum, default_value = "json")]
    format: SampleFormat,
    /// The CSV delimiter.
    #[arg(long, default_value = ",")]
    delimiter: char,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let text = std::fs::read_to_string(&args.sample)
        .with_context(|| format!("reading {}", args.sample.display()))?;
    let schema = match args.format {
        SampleFormat::Json => from_json_lines(&text)?,
        SampleFormat::Csv => {
            let d = u8::try_from(args.delimiter).context("the delimiter must be ASCII")?;
            from_csv(&text, d)?
        }
    };
    println!("{}", serde_json::to_string_pretty(&schema)?);
    Ok(())
}
