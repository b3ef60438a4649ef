//! Checks of `template.yaml` that cfn-lint cannot make: it agrees with the
//! code it deploys.

use std::path::Path;

use lake_tools::template::Template;
use telemetry_lake::config::schema::Schema;

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
    assert_eq!(
        formats,
        ["json", "csv", "avro", "avro-ocf", "grok", "cloudwatch-logs"]
    );
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

// ---------------------------------------------------- parsed template

use integration_tests::template::{load, referenced, resources};
use lake_tools::asl;
use serde_json::Value;

fn workspace_members() -> Vec<String> {
    let manifest = std::fs::read_to_string(repo().join("Cargo.toml")).unwrap();
    let start = manifest.find("members = [").expect("workspace members");
    let end = start + manifest[start..].find(']').unwrap();
    manifest[start..end]
        .lines()
        .skip(1)
        .map(|l| l.trim().trim_end_matches(',').trim_matches('"').to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn every_function_is_built_by_cargo_lambda_from_a_workspace_crate_binary() {
    let t = load();
    let members = workspace_members();
    let mut built = Vec::new();
    for (id, f) in resources(&t, "AWS::Serverless::Function") {
        let uri = f["Properties"]["CodeUri"]
            .as_str()
            .unwrap_or_else(|| panic!("{id}: CodeUri is not a path"));
        assert!(
            members.iter().any(|m| m == uri),
            "{id}: {uri} is not a workspace member"
        );
        assert_eq!(f["Metadata"]["BuildMethod"], "rust-cargolambda", "{id}");
        let manifest = std::fs::read_to_string(repo().join(uri).join("Cargo.toml")).unwrap();
        let package = manifest
            .lines()
            .find_map(|l| l.strip_prefix("name = "))
            .unwrap()
            .trim_matches('"');
        assert_eq!(
            f["Metadata"]["BuildProperties"]["Binary"], package,
            "{id}: Binary is not the crate's binary"
        );
        assert!(
            repo().join(uri).join("src/main.rs").exists(),
            "{id}: {uri} has no binary"
        );
        built.push(uri.to_string());
    }
    // And every function crate is deployed.
    for member in members.iter().filter(|m| m.starts_with("functions/")) {
        assert!(built.contains(member), "{member} is not in template.yaml");
    }
    assert_eq!(built.len(), 8);
}

fn state_machines(t: &Value) -> Vec<(&str, &Value, Value)> {
    resources(t, "AWS::Serverless::StateMachine")
        .map(|(id, sm)| {
            let uri = sm["Properties"]["DefinitionUri"]
                .as_str()
                .unwrap_or_else(|| panic!("{id}: DefinitionUri is not a local file"));
            let text = std::fs::read_to_string(repo().join(uri))
                .unwrap_or_else(|e| panic!("{id}: {uri}: {e}"));
            let asl: Value =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{id}: {uri}: {e}"));
            (id, sm, asl)
        })
        .collect()
}

fn placeholders(text: &str) -> std::collections::BTreeSet<String> {
    text.split("${")
        .skip(1)
        .filter_map(|rest| rest.split_once('}').map(|(name, _)| name.to_string()))
        .collect()
}

#[test]
fn every_placeholder_has_a_substitution_and_every_substitution_is_used() {
    let t = load();
    let machines = state_machines(&t);
    assert_eq!(machines.len(), 3);
    for (id, sm, asl) in machines {
        let used = placeholders(&asl.to_string());
        let given: std::collections::BTreeSet<String> = sm["Properties"]["DefinitionSubstitutions"]
            .as_object()
            .unwrap_or_else(|| panic!("{id}: no DefinitionSubstitutions"))
            .keys()
            .cloned()
            .collect();
        assert!(!used.is_empty(), "{id}");
        assert_eq!(
            used, given,
            "{id}: placeholders in the ASL vs DefinitionSubstitutions"
        );
        // Each substitution names a resource (a function, a table) or a
        // parameter of this template, never a literal.
        for (key, value) in sm["Properties"]["DefinitionSubstitutions"]
            .as_object()
            .unwrap()
        {
            let target = referenced(value).unwrap_or_else(|| panic!("{id}.{key} is a literal"));
            assert!(
                t["Resources"].get(target).is_some() || t["Parameters"].get(target).is_some(),
                "{id}.{key} names {target}, not a resource or parameter of the template"
            );
        }
    }
}

#[test]
fn both_state_machines_are_structurally_sound() {
    for (id, _, definition) in state_machines(&load()) {
        let problems = asl::problems(&definition);
        assert!(problems.is_empty(), "{id}:\n  {}", problems.join("\n  "));
        assert!(
            definition["TimeoutSeconds"].as_u64().is_some(),
            "{id}: no TimeoutSeconds (ExecutionsTimedOut would never fire)"
        );
    }
}

#[test]
fn state_machines_log_and_trace_and_show_in_the_console_outputs() {
    let t = load();
    for (id, sm, _) in state_machines(&t) {
        let p = &sm["Properties"];
        assert_eq!(p["Logging"]["Level"]["Ref"], "StateMachineLogLevel", "{id}");
        assert_eq!(p["Logging"]["IncludeExecutionData"], true, "{id}");
        let group =
            referenced(&p["Logging"]["Destinations"][0]["CloudWatchLogsLogGroup"]["LogGroupArn"])
                .unwrap_or_else(|| panic!("{id}: no log group"));
        assert_eq!(t["Resources"][group]["Type"], "AWS::Logs::LogGroup", "{id}");
        assert_eq!(p["Tracing"]["Enabled"], true, "{id}");
        let console = t["Outputs"]
            .as_object()
            .unwrap()
            .values()
            .filter_map(|o| o["Value"]["Fn::Sub"].as_str())
            .any(|v| {
                v.starts_with("https://${AWS::Region}.console.aws.amazon.com/states/home?region=${AWS::Region}#/statemachines/view/")
                    && v.ends_with(&format!("${{{id}}}"))
            });
        assert!(console, "{id}: no console URL among the Outputs");
    }
    let levels = &t["Parameters"]["StateMachineLogLevel"]["AllowedValues"];
    assert_eq!(levels, &serde_json::json!(["ALL", "ERROR", "FATAL", "OFF"]));
    assert_eq!(t["Globals"]["Function"]["Tracing"], "Active");
    assert_eq!(t["Parameters"]["Architecture"]["Default"], "x86_64");
}

/// (namespace, metric, dimension value's logical ID) of every alarm.
fn alarms(t: &Value) -> Vec<(String, String, String)> {
    resources(t, "AWS::CloudWatch::Alarm")
        .map(|(id, a)| {
            let p = &a["Properties"];
            for actions in ["AlarmActions", "OKActions"] {
                assert!(
                    p[actions].as_array().is_some_and(|a| !a.is_empty()),
                    "{id}: no {actions}"
                );
            }
            // A metric-math alarm names its metric in `Metrics`.
            let metric = p["Metrics"]
                .as_array()
                .and_then(|m| m.iter().find_map(|m| m.get("MetricStat")))
                .map_or(p, |stat| &stat["Metric"]);
            let dimension = referenced(&metric["Dimensions"][0]["Value"])
                .unwrap_or_else(|| panic!("{id}: dimension is not a resource of the template"));
            // The functions' own metrics are in `!Ref MetricsNamespace`.
            let namespace = metric["Namespace"]
                .as_str()
                .or_else(|| referenced(&metric["Namespace"]))
                .unwrap_or_else(|| panic!("{id}: no namespace"));
            (
                namespace.to_string(),
                metric["MetricName"].as_str().unwrap().to_string(),
                dimension.to_string(),
            )
        })
        .collect()
}

/// Every stream event source mapping, as (function, mapping properties): a
/// function's `Kinesis` and `DynamoDB` events and every
/// `AWS::Lambda::EventSourceMapping` (MSK).
fn stream_mappings(t: &Value) -> Vec<(String, &Value)> {
    let mut mappings = Vec::new();
    for (id, f) in resources(t, "AWS::Serverless::Function") {
        for e in f["Properties"]["Events"].as_object().into_iter().flatten() {
            if ["Kinesis", "DynamoDB"].contains(&e.1["Type"].as_str().unwrap_or("")) {
                mappings.push((id.to_string(), &e.1["Properties"]));
            }
        }
    }
    for (id, m) in resources(t, "AWS::Lambda::EventSourceMapping") {
        let p = &m["Properties"];
        let function = referenced(&p["FunctionName"])
            .unwrap_or_else(|| panic!("{id}: FunctionName is not a function of the template"));
        mappings.push((function.to_string(), p));
    }
    mappings
}

/// The queue a mapping's on-failure destination names.
fn failure_queue(mapping: &Value) -> Option<&str> {
    referenced(&mapping["DestinationConfig"]["OnFailure"]["Destination"])
}

#[test]
fn every_stream_mapping_pins_what_exactly_once_depends_on() {
    let t = load();
    let mappings = stream_mappings(&t);
    assert_eq!(mappings.len(), 4, "Kinesis x2, DynamoDB, MSK");
    let min_retention_s = t["Parameters"]["StreamRetentionHours"]["MinValue"]
        .as_i64()
        .expect("StreamRetentionHours has a MinValue")
        * 3600;
    let mut queue_of: std::collections::BTreeMap<&str, String> = Default::default();
    for (function, p) in &mappings {
        let queue =
            failure_queue(p).unwrap_or_else(|| panic!("{function}: no on-failure destination"));
        assert_eq!(
            t["Resources"][queue]["Type"], "AWS::SQS::Queue",
            "{function}: on-failure destination {queue}"
        );
        // Each consumer has its own queue: a range is replayed into the
        // function that failed it.
        let owner = queue_of.entry(queue).or_insert_with(|| function.clone());
        assert_eq!(
            owner, function,
            "{queue} is shared by {owner} and {function}"
        );
        if p.get("Topics").is_some() {
            continue; // MSK: a failed run fails the batch, retried whole; no bisect or record age
        }
        assert_eq!(
            p["FunctionResponseTypes"],
            serde_json::json!(["ReportBatchItemFailures"]),
            "{function}"
        );
        assert_eq!(p["BisectBatchOnFunctionError"], true, "{function}");
        let retention_s = if p["Stream"]["Fn::GetAtt"][1] == "StreamArn" {
            24 * 3600 // a DynamoDB stream keeps records 24 hours
        } else {
            min_retention_s
        };
        let age = p["MaximumRecordAgeInSeconds"]
            .as_i64()
            .unwrap_or_else(|| panic!("{function}: MaximumRecordAgeInSeconds is not pinned"));
        assert!(
            (60..retention_s).contains(&age),
            "{function}: a record {age} s old may be gone from a stream kept {retention_s} s"
        );
    }
    // device-status keeps one watermark per shard: one batch at a time.
    let device_status: Vec<_> = mappings
        .iter()
        .filter(|(f, _)| f == "DeviceStatusFunction")
        .collect();
    assert_eq!(device_status.len(), 1);
    assert_eq!(device_status[0].1["ParallelizationFactor"], 1);
    assert_eq!(queue_of.len(), 3, "{queue_of:?}");
}

#[test]
fn every_component_has_the_alarms_an_operator_expects() {
    let t = load();
    let alarms = alarms(&t);
    let has = |ns: &str, metric: &str, id: &str| {
        alarms
            .iter()
            .any(|(n, m, d)| n == ns && m == metric && d == id)
    };
    let mut missing = Vec::new();
    for (id, f) in resources(&t, "AWS::Serverless::Function") {
        for metric in ["Errors", "Throttles"] {
            if !has("AWS/Lambda", metric, id) {
                missing.push(format!("{id} {metric}"));
            }
        }
        let polls = f["Properties"]["Events"]
            .as_object()
            .into_iter()
            .flatten()
            .any(|(_, e)| ["Kinesis", "DynamoDB"].contains(&e["Type"].as_str().unwrap_or("")));
        if polls && !has("AWS/Lambda", "IteratorAge", id) {
            missing.push(format!("{id} IteratorAge"));
        }
    }
    for (id, _) in resources(&t, "AWS::Kinesis::Stream") {
        if !has("AWS/Kinesis", "GetRecords.IteratorAgeMilliseconds", id) {
            missing.push(format!("{id} GetRecords.IteratorAgeMilliseconds"));
        }
    }
    for (id, _) in resources(&t, "AWS::SQS::Queue") {
        if !has("AWS/SQS", "ApproximateNumberOfMessagesVisible", id) {
            missing.push(format!("{id} ApproximateNumberOfMessagesVisible"));
        }
    }
    // A failed stream batch can be replayed only while its records are on
    // the stream: its queue's oldest message has an age alarm.
    for (_, mapping) in stream_mappings(&t) {
        let queue = failure_queue(mapping).unwrap_or_default();
        if !has("AWS/SQS", "ApproximateAgeOfOldestMessage", queue) {
            missing.push(format!("{queue} ApproximateAgeOfOldestMessage"));
        }
    }
    for (id, _) in resources(&t, "AWS::Serverless::StateMachine") {
        for metric in ["ExecutionsFailed", "ExecutionsTimedOut"] {
            if !has("AWS/States", metric, id) {
                missing.push(format!("{id} {metric}"));
            }
        }
    }
    assert!(missing.is_empty(), "alarms missing: {missing:?}");
}

#[test]
fn the_diagrams_in_the_readmes_are_those_of_the_asl_files() {
    for file in ["docs/operations.md", "statemachine/README.md"] {
        let markdown = std::fs::read_to_string(repo().join(file)).unwrap();
        let render = |path: &str| -> Result<String, String> {
            let text =
                std::fs::read_to_string(repo().join(path)).map_err(|e| format!("{path}: {e}"))?;
            let definition = serde_json::from_str(&text).map_err(|e| format!("{path}: {e}"))?;
            asl::mermaid(&definition)
        };
        let (updated, found) = asl::update_markdown(&markdown, render).unwrap();
        assert!(
            found.contains(&"statemachine/repartition.asl.json".to_string())
                && found.contains(&"statemachine/provider-etl.asl.json".to_string())
                && found.contains(&"statemachine/maintenance.asl.json".to_string()),
            "{file} shows {found:?}"
        );
        assert!(
            updated == markdown,
            "{file}: a diagram is out of date with its ASL file; run `make diagrams`"
        );
    }
}

/// The function crate (`functions/<crate>`) of each function's logical ID.
fn function_crates(t: &Value) -> Vec<(String, String)> {
    resources(t, "AWS::Serverless::Function")
        .map(|(id, f)| {
            let uri = f["Properties"]["CodeUri"].as_str().unwrap_or_default();
            (id.to_string(), uri.rsplit('/').next().unwrap().to_string())
        })
        .collect()
}

/// (metric, function's logical ID) of every metric in `MetricsNamespace`
/// the dashboard draws, and the dead-letter searches by reason.
fn dashboard_metrics(t: &Value) -> (Vec<(String, String)>, Vec<String>) {
    let (_, dashboard) = resources(t, "AWS::CloudWatch::Dashboard")
        .next()
        .expect("a dashboard");
    let sub = &dashboard["Properties"]["DashboardBody"]["Fn::Sub"];
    let body: Value = serde_json::from_str(sub[0].as_str().expect("the body is a !Sub string"))
        .expect("the dashboard body is JSON");
    let variables: Vec<&String> = sub[1]
        .as_object()
        .into_iter()
        .flatten()
        .map(|v| v.0)
        .collect();
    let known = |name: &str| {
        name.starts_with("AWS::")
            || t["Parameters"].get(name).is_some()
            || t["Resources"]
                .get(name.split('.').next().unwrap())
                .is_some()
            || variables.iter().any(|v| *v == name)
    };
    let (mut drawn, mut searches) = (Vec::new(), Vec::new());
    for widget in body["widgets"].as_array().unwrap() {
        for line in widget["properties"]["metrics"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let line = line.as_array().unwrap();
            if let Some(expression) = line[0]["expression"].as_str() {
                searches.push(expression.to_string());
                continue;
            }
            let text: Vec<&str> = line.iter().filter_map(Value::as_str).collect();
            for placeholder in text.iter().filter_map(|s| s.strip_prefix("${")) {
                let name = placeholder.trim_end_matches('}');
                assert!(
                    known(name),
                    "the dashboard names ${{{name}}}, which is not in the template"
                );
            }
            if text[0] == "${MetricsNamespace}" {
                assert_eq!(text[2], "FunctionName", "{text:?}");
                let function = text[3].trim_start_matches("${").trim_end_matches('}');
                drawn.push((text[1].to_string(), function.to_string()));
            }
        }
    }
    (drawn, searches)
}

#[test]
fn every_metric_the_functions_emit_has_a_widget_on_the_dashboard() {
    use telemetry_lake::metrics::{ALL, DEAD_LETTERS};
    let t = load();
    let crates = function_crates(&t);
    let id_of = |name: &str| {
        crates
            .iter()
            .find(|(_, c)| c == name)
            .map(|(id, _)| id.clone())
            .unwrap_or_else(|| panic!("no function of crate {name}"))
    };
    let (drawn, searches) = dashboard_metrics(&t);
    let mut missing = Vec::new();
    for metric in ALL {
        for function in metric.functions {
            let id = id_of(function);
            if !drawn.iter().any(|(m, f)| m == metric.name && *f == id) {
                missing.push(format!("{} of {id}", metric.name));
            }
        }
    }
    assert!(missing.is_empty(), "metrics without a widget: {missing:?}");
    for function in DEAD_LETTERS.functions {
        let id = id_of(function);
        assert!(
            searches.iter().any(|s| s.contains("FunctionName,Reason}")
                && s.contains(r#"MetricName="DeadLetters""#)
                && s.contains(&format!("${{{id}}}"))),
            "no widget of {id}'s dead letters by reason"
        );
    }
    // And nothing drawn that no function emits.
    for (metric, id) in &drawn {
        let emitted = ALL.iter().any(|m| {
            m.name == metric
                && m.functions
                    .iter()
                    .any(|f| crates.iter().any(|(i, c)| i == id && c == f))
        });
        assert!(
            emitted,
            "the dashboard draws {metric} of {id}, which it does not emit"
        );
    }
}

#[test]
fn every_alarm_on_the_functions_metrics_watches_one_they_emit() {
    use telemetry_lake::metrics::ALL;
    let t = load();
    let crates = function_crates(&t);
    let ours: Vec<(String, String, String)> = alarms(&t)
        .into_iter()
        .filter(|(namespace, _, _)| namespace == "MetricsNamespace")
        .collect();
    for (_, metric, id) in &ours {
        let function = &crates.iter().find(|(i, _)| i == id).expect("a function").1;
        assert!(
            ALL.iter()
                .any(|m| m.name == metric && m.functions.contains(&function.as_str())),
            "an alarm watches {metric} of {id}, which {function} does not emit"
        );
    }
    // The alarms the stream functions need: dead-letter share, partial
    // batch failures (not Lambda Errors) and event-time lag.
    for id in ["KinesisToParquetFunction", "DeviceStatusFunction"] {
        for metric in [
            "DeadLetters",
            "Records",
            "BatchItemFailures",
            "EventTimeLag",
        ] {
            let watched = resources(&t, "AWS::CloudWatch::Alarm").any(|(_, a)| {
                let p = &a["Properties"];
                let stats: Vec<&Value> = match p["Metrics"].as_array() {
                    Some(m) => m.iter().map(|m| &m["MetricStat"]["Metric"]).collect(),
                    None => vec![p],
                };
                stats.iter().any(|m| {
                    m["MetricName"] == metric
                        && referenced(&m["Dimensions"][0]["Value"]) == Some(id)
                })
            });
            assert!(watched, "no alarm watches {metric} of {id}");
        }
    }
    let dashboards = resources(&t, "AWS::CloudWatch::Dashboard").count();
    assert_eq!(dashboards, 1);
    assert!(
        template().contains("#dashboards/dashboard/${Dashboard}"),
        "no output links the dashboard"
    );
}
