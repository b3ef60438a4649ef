//! Renders the state machines under `statemachine/` as Mermaid diagrams.
//!
//! `asl-mermaid FILE.asl.json` prints one diagram. `asl-mermaid --update
//! docs/operations.md ...` rewrites, in each Markdown file, the ```` ```mermaid ````
//! block after every `<!-- asl-mermaid PATH -->` marker with the diagram of
//! PATH (relative to the current directory, the repository root);
//! `--check` fails instead when one is out of date (tests/template.rs checks
//! the same). Both refuse a definition with structural problems.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Parser;
use lake_tools::asl;

#[derive(Parser, Debug)]
#[command(about = "Mermaid diagrams of Amazon States Language definitions")]
struct Args {
    /// Rewrite the diagrams in these Markdown files.
    #[arg(long, conflicts_with = "check")]
    update: bool,
    /// Fail when a diagram in these Markdown files is out of date.
    #[arg(long)]
    check: bool,
    /// An ASL file to print, or with --update/--check, Markdown files.
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

fn render(path: &str) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let definition = serde_json::from_str(&text).map_err(|e| format!("{path}: {e}"))?;
    let problems = asl::problems(&definition);
    if !problems.is_empty() {
        return Err(format!("{path}:\n  {}", problems.join("\n  ")));
    }
    asl::mermaid(&definition).map_err(|e| format!("{path}: {e}"))
}

fn main() -> Result<()> {
    let args = Args::parse();
    if !args.update && !args.check {
        for file in &args.files {
            print!(
                "{}",
                render(&file.to_string_lossy()).map_err(anyhow::Error::msg)?
            );
        }
        return Ok(());
    }
    let mut stale = Vec::new();
    for file in &args.files {
        let markdown =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let (updated, found) = asl::update_markdown(&markdown, render)
            .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
        if found.is_empty() {
            bail!("{} has no <!-- asl-mermaid PATH --> marker", file.display());
        }
        if updated != markdown {
            if args.update {
                std::fs::write(file, updated)
                    .with_context(|| format!("writing {}", file.display()))?;
                eprintln!("asl-mermaid: updated {}", file.display());
            } else {
                stale.push(file.display().to_string());
            }
        }
    }
    if !stale.is_empty() {
        bail!("out of date: {} (run `make diagrams`)", stale.join(", "));
    }
    Ok(())
}
