//! Checks of `template.yaml` that cfn-lint cannot make: it agrees with the
//! code it deploys.

use std::path::Path;

use telemetry_lake::schema::Schema;

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn template() -> String {
    std::fs::read_to_string(repo().join("template.yaml")).expect("template.yaml")
}

/// The value of `key: value` on the first line after `after` that has it.
fn value_after<'a>(text: &'a str, after: &str, key: &str) -> &'a str {
    let start = text
        .find(after)
        .unwrap_or_else(|| panic!("{after} not in template"));
    let line = text[start..]
        .lines()
        .find(|l| l.trim_start().starts_with(key))
        .unwrap_or_else(|| panic!("{key} not found after {after}"));
    line.trim_start()[key.len()..].trim().trim_matches('"')
}

#[test]
fn the_templates_default_schema_is_the_shipped_schema() {
    let t = template();
    let compact = value_after(&t, "\n  Schema:\n", "Default:");
    let shipped = std::fs::read_to_string(repo().join("config/ventilator.schema.json")).unwrap();
    assert_eq!(
        Schema::parse(compact).unwrap(),
        Schema::parse(&shipped).unwrap()
    );
}

#[test]
fn every_function_points_at_a_crate_with_its_binary() {
    let t = template();
    let uris: Vec<&str> = t
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("CodeUri:"))
        .map(str::trim)
        .collect();
    assert!(!uris.is_empty());
    for uri in uris {
        let manifest = std::fs::read_to_string(repo().join(uri).join("Cargo.toml"))
            .unwrap_or_else(|e| panic!("{uri}/Cargo.toml: {e}"));
        let name = uri.rsplit('/').next().unwrap();
        assert!(
            manifest.contains(&format!("name = \"{name}\"")),
            "{uri} is not crate {name}"
        );
        assert!(
            repo().join(uri).join("src/main.rs").exists(),
            "{uri} has no binary"
        );
        assert!(
            t.contains(&format!("Binary: {name}")),
            "{name} has no BuildProperties.Binary"
        );
    }
}

#[test]
fn every_record_format_the_template_offers_is_one_the_function_reads() {
    let t = template();
    let allowed = value_after(&t, "\n  RecordFormat:\n", "AllowedValues:");
    let formats: Vec<&str> = allowed
        .trim_matches(|c| c == '[' || c == ']')
        .split(',')
        .map(str::trim)
        .collect();
    assert_eq!(formats, ["json", "csv", "avro", "avro-ocf", "grok"]);
    for format in formats {
        let get = |name: &str| -> Option<String> {
            match name {
                "FORMAT" => Some(format.to_string()),
                "AVRO_SCHEMA" => Some(
                    r#"{"type":"record","name":"r","fields":[{"name":"a","type":"long"}]}"#.into(),
                ),
                "GROK_PATTERN" => Some("%{INT:a}".into()),
                _ => None,
            }
        };
        let read = telemetry_lake::config::format_from(&get).expect(format);
        assert_eq!(read.name(), format);
    }
    assert!(
        t.contains("SCHEMA_SOURCE: !If [UseGlueSchema, !Sub \"glue:${SchemaGlueTable}\", config]")
    );
}
