//! The configuration reference (docs/configuration.md) checked against the
//! code's one list of variables (`telemetry_lake::config::vars::ALL`) and
//! against template.yaml, so that none of the three can drift from the
//! others.

use std::collections::{BTreeMap, BTreeSet};

use integration_tests::template::{load, repo, resources};
use telemetry_lake::config::vars::ALL;

/// The variables each heading of the reference documents: every
/// `` `NAME` `` in the first cell of a table row under it.
fn documented() -> BTreeMap<String, BTreeSet<String>> {
    let text = std::fs::read_to_string(repo().join("docs/configuration.md")).unwrap();
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut heading = String::new();
    for line in text.lines() {
        if let Some(h) = line.strip_prefix("## ").or(line.strip_prefix("### ")) {
            heading = h.trim().to_string();
            continue;
        }
        let Some(first) = line.strip_prefix('|').and_then(|r| r.split('|').next()) else {
            continue;
        };
        for (i, part) in first.split('`').enumerate() {
            let is_name = !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
            if i % 2 == 1 && is_name {
                out.entry(heading.clone())
                    .or_default()
                    .insert(part.to_string());
            }
        }
    }
    out
}

/// Every function of the template: its binary and the variables its
/// `Environment` sets, with those of `Globals` (SAM merges them in).
fn template_functions() -> Vec<(String, BTreeSet<String>)> {
    let template = load();
    let globals: BTreeSet<String> = template["Globals"]["Function"]["Environment"]["Variables"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    resources(&template, "AWS::Serverless::Function")
        .map(|(id, r)| {
            let binary = r["Metadata"]["BuildProperties"]["Binary"]
                .as_str()
                .unwrap_or(id)
                .to_string();
            let mut vars: BTreeSet<String> = r["Properties"]["Environment"]["Variables"]
                .as_object()
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default();
            vars.extend(globals.iter().cloned());
            (binary, vars)
        })
        .collect()
}

/// The section of the variables every function reads.
const EVERY_FUNCTION: &str = "Every function";

#[test]
fn every_metric_the_functions_emit_is_in_the_runbook() {
    let text = std::fs::read_to_string(repo().join("docs/operations.md")).unwrap();
    let missing: Vec<&str> = telemetry_lake::metrics::ALL
        .iter()
        .filter(|m| {
            let row = format!(
                "| `{}` | {} | {} |",
                m.name,
                m.unit.name(),
                m.functions.join(", ")
            );
            !text.contains(&row)
        })
        .map(|m| m.name)
        .collect();
    assert!(
        missing.is_empty(),
        "not in docs/operations.md's metrics table (name, unit, functions): {missing:?}"
    );
}

#[test]
fn every_variable_the_code_reads_is_documented_and_nothing_else_is() {
    let code: BTreeSet<&str> = ALL.iter().map(|(name, _)| *name).collect();
    let docs: BTreeSet<String> = documented().into_values().flatten().collect();
    let undocumented: Vec<&&str> = code.iter().filter(|n| !docs.contains(**n)).collect();
    let unknown: Vec<&String> = docs.iter().filter(|n| !code.contains(n.as_str())).collect();
    assert!(
        undocumented.is_empty() && unknown.is_empty(),
        "read by the code but not in docs/configuration.md: {undocumented:?}; \
         in docs/configuration.md but read by no function: {unknown:?}"
    );
    for (name, description) in ALL {
        assert!(
            !description.trim().is_empty(),
            "{name} has no description in config/vars.rs"
        );
    }
}

#[test]
fn every_variable_the_template_sets_is_read_and_documented_for_its_function() {
    let code: BTreeSet<&str> = ALL.iter().map(|(name, _)| *name).collect();
    let docs = documented();
    let mut problems = Vec::new();
    let functions = template_functions();
    assert!(functions.len() >= 8, "{functions:?}");
    for (binary, vars) in &functions {
        // Sections that several functions share.
        let shared: &[&str] = match binary.as_str() {
            "kinesis-to-parquet" | "device-status" => &[
                "Input formats and schema source (both stream functions)",
                EVERY_FUNCTION,
            ],
            _ => &[EVERY_FUNCTION],
        };
        let mine: BTreeSet<&String> = docs
            .iter()
            .filter(|(h, _)| *h == binary || shared.contains(&h.as_str()))
            .flat_map(|(_, v)| v)
            .collect();
        for var in vars {
            if !code.contains(var.as_str()) {
                problems.push(format!(
                    "{binary}: the template sets {var}, which no code reads"
                ));
            }
            if !mine.contains(var) {
                problems.push(format!(
                    "{binary}: the template sets {var}, not documented under `{binary}` in docs/configuration.md"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn a_variable_is_named_in_product_code_only_where_it_is_declared() {
    // Each name is a string literal once, in config/vars.rs (through
    // `stringify!`); everywhere else the code uses the constant.
    let mut found = Vec::new();
    let roots = [repo().join("shared/src"), repo().join("functions")];
    let mut files = Vec::new();
    fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    for root in &roots {
        walk(root, &mut files);
    }
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        for (name, _) in ALL {
            if code.contains(&format!("\"{name}\"")) {
                found.push(format!("{}: \"{name}\"", file.display()));
            }
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}
