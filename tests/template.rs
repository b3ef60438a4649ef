//! Checks of `template.yaml` that cfn-lint cannot make: it agrees with the
//! code it deploys.

use std::path::Path;

use lake_tools::template::Template;
use telemetry_lake::schema::Schema;

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn template() -> String {
    std::fs::read_to_string(repo().join("template.yaml")).expect("template.yaml")
}

fn parsed() -> Template {
    Template::load(&repo().join("template.yaml")).expect("template.yaml parses")
}

#[test]
fn the_templates_default_schema_is_the_shipped_schema() {
    let compact = parsed()
        .parameter_default("Schema")
        .expect("Schema default");
    let shipped = std::fs::read_to_string(repo().join("config/ventilator.schema.json")).unwrap();
    assert_eq!(
        Schema::parse(&compact).unwrap(),
        Schema::parse(&shipped).unwrap()
    );
}

#[test]
fn every_function_points_at_a_crate_with_its_binary() {
    let t = parsed();
    let functions = t.resources_of_type("AWS::Serverless::Function");
    assert!(!functions.is_empty());
    for id in functions {
        let uri = t
            .property(&id, &["CodeUri"])
            .and_then(|v| v.as_str())
            .unwrap_or_else(|| panic!("{id} has no CodeUri"));
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
        let binary = t.resource(&id).and_then(|r| {
            r.get("Metadata")?
                .get("BuildProperties")?
                .get("Binary")?
                .as_str()
        });
        assert_eq!(binary, Some(name), "{id}'s BuildProperties.Binary");
    }
}

#[test]
fn every_record_format_the_template_offers_is_one_the_function_reads() {
    let t = template();
    let parameter = parsed();
    let formats: Vec<&str> = parameter
        .parameter("RecordFormat")
        .and_then(|p| p.get("AllowedValues"))
        .and_then(|v| v.as_sequence())
        .expect("RecordFormat's AllowedValues")
        .iter()
        .filter_map(|v| v.as_str())
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
