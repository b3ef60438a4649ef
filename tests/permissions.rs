//! Least privilege and no lost invocations, checked over `template.yaml`:
//!
//! - no IAM `Allow` statement grants a `*` (or `service:*`, or any wildcard)
//!   action, `NotAction`/`NotResource`, or a `*` resource, except for the
//!   actions in [`STAR_RESOURCE_ONLY`], which AWS offers on no narrower
//!   resource (each with its reason), nor every table of a Glue database or
//!   DynamoDB account (`table/${GlueDatabase}/*`) where the tables can be
//!   named; no managed policy is attached; no resource policy allows
//!   `Principal: "*"`;
//! - a function's role holds no action its code never calls (the SDK
//!   operation of the action's name, in its crate or the shared library),
//!   but those Lambda or Athena use on its behalf
//!   ([`USED_ON_THE_FUNCTIONS_BEHALF`]);
//! - every S3 bucket has default encryption and the four public access
//!   blocks;
//! - every function has a dead-letter path: an on-failure destination on
//!   every stream event source (and on every `AWS::Lambda::EventSourceMapping`),
//!   a DLQ or on-failure destination when it is invoked asynchronously
//!   (schedules, whose rules also have a `DeadLetterConfig`), and, when it
//!   has no event source at all, a state machine that invokes it (whose
//!   `Catch` is its failure path).
//!
//! The checker is unit-tested on small bad snippets, so it is known to fail.

use integration_tests::template::{alternatives, load, parse, referenced, resources};
use serde_json::Value;

/// Actions that AWS authorizes on no resource narrower than `*`.
const STAR_RESOURCE_ONLY: &[(&str, &str)] = &[
    ("xray:PutTraceSegments", "X-Ray has no resource-level permissions (active tracing)"),
    ("xray:PutTelemetryRecords", "X-Ray has no resource-level permissions (active tracing)"),
    ("xray:GetSamplingRules", "X-Ray has no resource-level permissions (state machine tracing)"),
    ("xray:GetSamplingTargets", "X-Ray has no resource-level permissions (state machine tracing)"),
    ("logs:CreateLogDelivery", "vended log delivery (state machine Logging) is authorized on * only"),
    ("logs:GetLogDelivery", "vended log delivery (state machine Logging) is authorized on * only"),
    ("logs:UpdateLogDelivery", "vended log delivery (state machine Logging) is authorized on * only"),
    ("logs:DeleteLogDelivery", "vended log delivery (state machine Logging) is authorized on * only"),
    ("logs:ListLogDeliveries", "vended log delivery (state machine Logging) is authorized on * only"),
    ("logs:PutResourcePolicy", "the log delivery writes the log groups' resource policy, an account-wide object"),
    ("logs:DescribeResourcePolicies", "account-wide list, no resource-level permissions"),
    ("logs:DescribeLogGroups", "Step Functions checks the destination with an account-wide describe"),
    ("cloudwatch:PutMetricData", "no resource-level permissions (narrow it with a cloudwatch:namespace condition)"),
    ("ec2:DescribeNetworkInterfaces", "EC2 Describe* actions have no resource-level permissions (MSK mapping in the cluster's VPC)"),
    ("ec2:DescribeVpcs", "EC2 Describe* actions have no resource-level permissions (MSK mapping in the cluster's VPC)"),
    ("ec2:DescribeSubnets", "EC2 Describe* actions have no resource-level permissions (MSK mapping in the cluster's VPC)"),
    ("ec2:DescribeSecurityGroups", "EC2 Describe* actions have no resource-level permissions (MSK mapping in the cluster's VPC)"),
    ("ec2:CreateNetworkInterface", "the MSK cluster's subnets and security groups are not known to this template (only its ARN is a parameter)"),
    ("ec2:DeleteNetworkInterface", "the MSK cluster's subnets and security groups are not known to this template (only its ARN is a parameter)"),
];

/// Event source types that Lambda polls (records in order, retried as a batch).
const STREAM_SOURCES: &[&str] = &["Kinesis", "DynamoDB", "MSK", "SelfManagedKafka"];
/// Event source types that invoke the function asynchronously.
const ASYNC_SOURCES: &[&str] = &[
    "Schedule",
    "ScheduleV2",
    "EventBridgeRule",
    "CloudWatchEvent",
    "S3",
    "SNS",
];

fn as_list(value: &Value) -> Vec<&Value> {
    match value {
        Value::Array(items) => items.iter().flat_map(alternatives).collect(),
        Value::Null => Vec::new(),
        other => alternatives(other),
    }
}

fn strings(value: &Value) -> Vec<String> {
    as_list(value)
        .into_iter()
        .map(|v| match v.as_str() {
            Some(s) => s.to_string(),
            None => v.to_string(),
        })
        .collect()
}

/// Problems with one policy statement, `at` naming where it is.
fn statement_problems(statement: &Value, at: &str, resource_policy: bool) -> Vec<String> {
    let mut out = Vec::new();
    if statement["Effect"] != "Allow" {
        return out; // Deny statements narrow, they never widen.
    }
    for key in ["NotAction", "NotResource", "NotPrincipal"] {
        if statement.get(key).is_some() {
            out.push(format!("{at}: Allow with {key} grants everything else"));
        }
    }
    if resource_policy {
        let principal = &statement["Principal"];
        if principal == "*" || principal["AWS"] == "*" {
            out.push(format!("{at}: allows Principal \"*\""));
        }
        return out;
    }
    let actions = strings(&statement["Action"]);
    for action in &actions {
        if action.contains('*') {
            out.push(format!(
                "{at}: wildcard action {action:?} (list the actions)"
            ));
        }
    }
    for resource in strings(&statement["Resource"]) {
        // `Fn::Sub` text, or a plain ARN: every table of a database where the
        // template knows the tables' names.
        let arn = resource.trim_end_matches(['"', '}']);
        if (arn.contains(":glue:") || arn.contains(":dynamodb:"))
            && arn.contains(":table/")
            && arn.ends_with("/*")
            && !arn.contains("/stream/")
            && !arn.contains("/index/")
        {
            out.push(format!(
                "{at}: every table ({}) where the tables can be named",
                arn.rsplit(':').next().unwrap_or(arn)
            ));
        }
    }
    let star = strings(&statement["Resource"])
        .iter()
        .any(|r| r == "*" || r.ends_with(":*:*") || r == "arn:aws:s3:::*");
    if star {
        for action in &actions {
            if !STAR_RESOURCE_ONLY.iter().any(|(a, _)| a == action) {
                out.push(format!(
                    "{at}: {action} on Resource \"*\", but AWS authorizes it on named resources"
                ));
            }
        }
    }
    out
}

fn policy_statements(document: &Value) -> Vec<&Value> {
    as_list(&document["Statement"])
}

/// Every IAM finding in the template.
fn iam_problems(template: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for (id, role) in resources(template, "AWS::IAM::Role") {
        let props = &role["Properties"];
        for arn in strings(&props["ManagedPolicyArns"]) {
            out.push(format!(
                "{id}: managed policy {arn} (write the statements it needs)"
            ));
        }
        for policy in as_list(&props["Policies"]) {
            let name = policy["PolicyName"].as_str().unwrap_or("?");
            for (i, s) in policy_statements(&policy["PolicyDocument"])
                .iter()
                .enumerate()
            {
                let sid = s["Sid"]
                    .as_str()
                    .map_or_else(|| i.to_string(), str::to_string);
                out.extend(statement_problems(s, &format!("{id}/{name}/{sid}"), false));
            }
        }
    }
    for kind in ["AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"] {
        for (id, policy) in resources(template, kind) {
            for (i, s) in policy_statements(&policy["Properties"]["PolicyDocument"])
                .iter()
                .enumerate()
            {
                out.extend(statement_problems(s, &format!("{id}/{i}"), false));
            }
        }
    }
    for kind in [
        "AWS::S3::BucketPolicy",
        "AWS::SQS::QueuePolicy",
        "AWS::SNS::TopicPolicy",
    ] {
        for (id, policy) in resources(template, kind) {
            for (i, s) in policy_statements(&policy["Properties"]["PolicyDocument"])
                .iter()
                .enumerate()
            {
                out.extend(statement_problems(s, &format!("{id}/{i}"), true));
            }
        }
    }
    for kind in ["AWS::Serverless::Function", "AWS::Serverless::StateMachine"] {
        for (id, resource) in resources(template, kind) {
            for policy in as_list(&resource["Properties"]["Policies"]) {
                match policy {
                    Value::String(name) => out.push(format!(
                        "{id}: managed policy {name} (write the statements it needs)"
                    )),
                    p if p.get("Statement").is_some() => {
                        for (i, s) in policy_statements(p).iter().enumerate() {
                            out.extend(statement_problems(s, &format!("{id}/Policies/{i}"), false));
                        }
                    }
                    _ => {} // a SAM policy template: scoped to the resource it names
                }
            }
        }
    }
    out
}

/// Every bucket without default encryption or a full public access block.
fn bucket_problems(template: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for (id, bucket) in resources(template, "AWS::S3::Bucket") {
        let props = &bucket["Properties"];
        let rules = as_list(&props["BucketEncryption"]["ServerSideEncryptionConfiguration"]);
        let encrypted = !rules.is_empty()
            && rules.iter().all(|r| {
                r["ServerSideEncryptionByDefault"]["SSEAlgorithm"]
                    .as_str()
                    .is_some_and(|a| ["AES256", "aws:kms", "aws:kms:dsse"].contains(&a))
            });
        if !encrypted {
            out.push(format!("{id}: no default encryption (BucketEncryption)"));
        }
        let block = &props["PublicAccessBlockConfiguration"];
        for flag in [
            "BlockPublicAcls",
            "BlockPublicPolicy",
            "IgnorePublicAcls",
            "RestrictPublicBuckets",
        ] {
            if block[flag] != true {
                out.push(format!(
                    "{id}: PublicAccessBlockConfiguration.{flag} is not true"
                ));
            }
        }
    }
    out
}

fn has_on_failure(destination_config: &Value) -> bool {
    !destination_config["OnFailure"]["Destination"].is_null()
}

/// Every function (or mapping, or schedule) whose failures would be lost.
fn dead_letter_problems(template: &Value) -> Vec<String> {
    let mut out = Vec::new();
    // Functions a state machine invokes (synchronously; the ASL's Catch
    // handles their failures).
    let tasks: Vec<&str> = resources(template, "AWS::Serverless::StateMachine")
        .flat_map(|(_, sm)| {
            sm["Properties"]["DefinitionSubstitutions"]
                .as_object()
                .into_iter()
                .flatten()
                .filter_map(|(_, v)| referenced(v))
        })
        .collect();
    for (id, function) in resources(template, "AWS::Serverless::Function") {
        let props = &function["Properties"];
        let events: Vec<(&String, &Value)> =
            props["Events"].as_object().into_iter().flatten().collect();
        if events.is_empty() && !tasks.contains(&id) {
            out.push(format!(
                "{id}: no event source and no state machine invokes it, so nothing handles its failures"
            ));
        }
        let async_dead_letters = props.get("DeadLetterQueue").is_some()
            || has_on_failure(&props["EventInvokeConfig"]["DestinationConfig"]);
        for (name, event) in events {
            let kind = event["Type"].as_str().unwrap_or("");
            let at = format!("{id}.Events.{name} ({kind})");
            if STREAM_SOURCES.contains(&kind) {
                if !has_on_failure(&event["Properties"]["DestinationConfig"]) {
                    out.push(format!("{at}: no on-failure destination"));
                }
            } else if ASYNC_SOURCES.contains(&kind) {
                if !async_dead_letters {
                    out.push(format!(
                        "{at}: asynchronous invocations without DeadLetterQueue or EventInvokeConfig OnFailure"
                    ));
                }
            } else {
                out.push(format!("{at}: event source type this check does not know"));
            }
            if [
                "Schedule",
                "ScheduleV2",
                "EventBridgeRule",
                "CloudWatchEvent",
            ]
            .contains(&kind)
                && event["Properties"]["DeadLetterConfig"].is_null()
            {
                out.push(format!(
                    "{at}: no DeadLetterConfig for events it cannot deliver"
                ));
            }
        }
    }
    for (id, sm) in resources(template, "AWS::Serverless::StateMachine") {
        for (name, event) in sm["Properties"]["Events"].as_object().into_iter().flatten() {
            if event["Properties"]["DeadLetterConfig"].is_null() {
                out.push(format!(
                    "{id}.Events.{name}: no DeadLetterConfig for starts it cannot make"
                ));
            }
        }
    }
    for (id, mapping) in resources(template, "AWS::Lambda::EventSourceMapping") {
        if !has_on_failure(&mapping["Properties"]["DestinationConfig"]) {
            out.push(format!("{id}: no on-failure destination"));
        }
    }
    out
}

/// Actions a function's role holds that its own code does not call:
/// Lambda's event source mapping and on-failure destination use the role
/// (reading the stream, sending the failed batch), S3 consults one to
/// answer a GET, and Athena (for its callers, below) reads the workgroup,
/// the catalog and the lake and writes the results with the caller's
/// credentials.
const USED_ON_THE_FUNCTIONS_BEHALF: &[(&str, &str)] = &[
    (
        "s3:ListBucket",
        "S3 answers a GET of a missing object with 404 rather than 403 only with it",
    ),
    (
        "kinesis:",
        "the event source mapping reads the stream with the function's role",
    ),
    (
        "dynamodb:DescribeStream",
        "the event source mapping reads the table's stream",
    ),
    (
        "dynamodb:GetRecords",
        "the event source mapping reads the table's stream",
    ),
    (
        "dynamodb:GetShardIterator",
        "the event source mapping reads the table's stream",
    ),
    (
        "dynamodb:ListStreams",
        "the event source mapping reads the table's stream",
    ),
    (
        "sqs:SendMessage",
        "Lambda sends a failed batch to the on-failure destination",
    ),
    ("kafka", "the MSK event source mapping reads the cluster"),
    (
        "ec2:",
        "the MSK event source mapping joins the cluster's VPC",
    ),
    ("logs:", "Lambda writes the function's logs"),
    ("xray:", "Lambda sends the function's traces"),
];

/// IAM actions whose SDK operation is named otherwise.
const OPERATION_OF: &[(&str, &str)] = &[("s3:ListBucket", "list_objects_v2")];

/// `GetQueryExecution` → `get_query_execution`.
fn snake(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// Every action granted to a function's role (its own policies) that the
/// code it runs never calls. `code_of(uri)` is the source the function at
/// `CodeUri` compiles.
fn unused_action_problems(template: &Value, code_of: impl Fn(&str) -> String) -> Vec<String> {
    let mut out = Vec::new();
    for (id, f) in resources(template, "AWS::Serverless::Function") {
        let p = &f["Properties"];
        let (Some(role), Some(uri)) = (referenced(&p["Role"]), p["CodeUri"].as_str()) else {
            continue;
        };
        let code = code_of(uri);
        // A caller of Athena lends its role to the query: Athena reads the
        // workgroup, the catalog and the lake and writes the results with it.
        let athena_caller = code.contains(".start_query_execution(");
        for policy in as_list(&template["Resources"][role]["Properties"]["Policies"]) {
            for statement in policy_statements(&policy["PolicyDocument"]) {
                if statement["Effect"] != "Allow" {
                    continue;
                }
                let sid = statement["Sid"].as_str().unwrap_or("?");
                for action in strings(&statement["Action"]) {
                    let on_behalf = USED_ON_THE_FUNCTIONS_BEHALF
                        .iter()
                        .any(|(prefix, _)| action.starts_with(prefix))
                        || (athena_caller
                            && (action.starts_with("s3:")
                                || action.starts_with("glue:")
                                || action == "athena:GetWorkGroup"));
                    if on_behalf {
                        continue;
                    }
                    let operation = OPERATION_OF.iter().find(|(a, _)| *a == action).map_or_else(
                        || snake(action.split(':').nth(1).unwrap_or_default()),
                        |(_, op)| op.to_string(),
                    );
                    if !code.contains(&format!(".{operation}(")) {
                        out.push(format!(
                            "{role}/{sid}: {action} is granted, but {id} never calls {operation}"
                        ));
                    }
                }
            }
        }
    }
    out
}

/// The Rust source a function at `uri` (`functions/<name>`) compiles: its
/// crate and the shared library.
fn function_code(uri: &str) -> String {
    let mut out = String::new();
    let root = integration_tests::template::repo();
    let mut dirs = vec![root.join(uri).join("src"), root.join("shared/src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push_str(&std::fs::read_to_string(&path).unwrap_or_default());
            }
        }
    }
    out
}

fn all_problems(template: &Value) -> Vec<String> {
    let mut out = iam_problems(template);
    out.extend(unused_action_problems(template, function_code));
    out.extend(bucket_problems(template));
    out.extend(dead_letter_problems(template));
    out
}

#[test]
fn the_template_grants_least_privilege_and_loses_no_failure() {
    let problems = all_problems(&load());
    assert!(
        problems.is_empty(),
        "template.yaml:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn the_template_has_what_the_checks_look_at() {
    // Guard against a check passing because it found nothing to check.
    let t = load();
    assert!(resources(&t, "AWS::IAM::Role").count() >= 10);
    assert!(resources(&t, "AWS::S3::Bucket").count() >= 1);
    assert_eq!(resources(&t, "AWS::Serverless::Function").count(), 8);
    assert_eq!(resources(&t, "AWS::Serverless::StateMachine").count(), 3);
}

/// start-queries' statements naming `action`, each with the condition it
/// is under (`None`: always granted).
fn start_queries_statements<'a>(t: &'a Value, action: &str) -> Vec<(Option<&'a str>, &'a Value)> {
    let role = &t["Resources"]["StartQueriesRole"]["Properties"];
    let mut out = Vec::new();
    for policy in role["Policies"].as_array().into_iter().flatten() {
        // The statements as written, each `!If` kept whole.
        let written = policy["PolicyDocument"]["Statement"].as_array();
        for item in written.into_iter().flatten() {
            let (condition, statement) = match item["Fn::If"].as_array() {
                Some(b) if b.len() == 3 => (b[0].as_str(), &b[1]),
                _ => (None, item),
            };
            if strings(&statement["Action"]).iter().any(|a| a == action) {
                out.push((condition, statement));
            }
        }
    }
    out
}

#[test]
fn with_the_iceberg_layout_athena_may_commit_only_the_event_time_table() {
    let t = load();
    // MERGE INTO commits the event-time table through the caller's rights:
    // only with LakeFormat iceberg, and only that table (never the readings
    // table kinesis-to-parquet commits to).
    let updates = start_queries_statements(&t, "glue:UpdateTable");
    assert_eq!(updates.len(), 1, "{updates:?}");
    let (condition, statement) = updates[0];
    assert_eq!(condition, Some("UseIceberg"));
    let resources: Vec<String> = as_list(&statement["Resource"])
        .into_iter()
        .map(|r| r.to_string())
        .collect();
    assert!(
        resources
            .iter()
            .any(|r| r.contains("${EventTimeIcebergTable}")),
        "{resources:?}"
    );
    assert!(
        !resources.iter().any(|r| r.contains("${IcebergTableName}")),
        "{resources:?}"
    );
    // It writes the event-time table's files, and no deletes but the Hive
    // layout's emptying of its own table.
    let writes = start_queries_statements(&t, "s3:PutObject");
    assert!(writes.iter().any(|(c, s)| *c == Some("UseIceberg")
        && s["Resource"]
            .to_string()
            .contains("${IcebergEventTimePrefix}")));
    let deletes = start_queries_statements(&t, "s3:DeleteObject");
    assert_eq!(deletes.len(), 1);
    assert!(deletes[0].1["Resource"]
        .to_string()
        .contains("${TransformedPrefix}"));
    // The table itself is declared, with its Iceberg schema and partition.
    let table = &t["Resources"]["EventTimeIcebergTable"];
    assert_eq!(table["Condition"], "UseIceberg");
    let input = &table["Properties"]["OpenTableFormatInput"]["IcebergInput"]["IcebergTableInput"];
    assert_eq!(input["PartitionSpec"]["Fields"][0]["Transform"], "day");
    let fields = input["Schema"]["Fields"].as_array().expect("fields");
    assert_eq!(fields[1]["Name"], "eventtime");
    assert_eq!(fields[1]["Type"], "timestamptz");
    assert_eq!(
        input["PartitionSpec"]["Fields"][0]["SourceId"],
        fields[1]["Id"]
    );
}

#[test]
fn the_allow_list_gives_a_reason_for_each_action() {
    for (action, reason) in STAR_RESOURCE_ONLY {
        assert!(action.contains(':') && !action.contains('*'), "{action}");
        assert!(reason.len() > 20, "{action}: say why");
    }
}

fn snippet(body: &str) -> Value {
    parse(&format!("Resources:\n{body}")).expect("snippet parses")
}

fn assert_found(problems: &[String], expected: &[&str]) {
    let all = problems.join("\n");
    for e in expected {
        assert!(all.contains(e), "{e:?} not found in:\n{all}");
    }
    assert_eq!(problems.len(), expected.len(), "{all}");
}

#[test]
fn wildcard_actions_and_resources_are_found() {
    let t = snippet(
        r#"
  Role:
    Type: AWS::IAM::Role
    Properties:
      ManagedPolicyArns: [arn:aws:iam::aws:policy/AmazonS3FullAccess]
      Policies:
        - PolicyName: p
          PolicyDocument:
            Statement:
              - Sid: Everything
                Effect: Allow
                Action: "*"
                Resource: !GetAtt Bucket.Arn
              - Sid: AllOfS3
                Effect: Allow
                Action: [s3:GetObject, "s3:Put*"]
                Resource: "*"
              - Sid: Traces
                Effect: Allow
                Action: xray:PutTraceSegments
                Resource: "*"
              - !If
                - C
                - Sid: Conditional
                  Effect: Allow
                  Action: athena:GetQueryExecution
                  Resource: "*"
                - !Ref AWS::NoValue
              - Sid: Everywhere
                Effect: Allow
                NotResource: !GetAtt Bucket.Arn
                Action: s3:GetObject
              - Sid: DenyIsFine
                Effect: Deny
                Action: "*"
                Resource: "*"
  Policy:
    Type: AWS::SQS::QueuePolicy
    Properties:
      PolicyDocument:
        Statement:
          - Effect: Allow
            Principal: "*"
            Action: sqs:SendMessage
            Resource: !GetAtt Queue.Arn
"#,
    );
    assert_found(
        &iam_problems(&t),
        &[
            "Role: managed policy arn:aws:iam::aws:policy/AmazonS3FullAccess",
            "Role/p/Everything: wildcard action \"*\"",
            "Role/p/AllOfS3: wildcard action \"s3:Put*\"",
            "Role/p/AllOfS3: s3:GetObject on Resource \"*\"",
            "Role/p/AllOfS3: s3:Put* on Resource \"*\"",
            "Role/p/Conditional: athena:GetQueryExecution on Resource \"*\"",
            "Role/p/Everywhere: Allow with NotResource",
            "Policy/0: allows Principal \"*\"",
        ],
    );
}

#[test]
fn table_wildcards_and_actions_the_code_never_calls_are_found() {
    let t = snippet(
        r#"
  Function:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/f
      Role: !GetAtt Role.Arn
  Role:
    Type: AWS::IAM::Role
    Properties:
      Policies:
        - PolicyName: p
          PolicyDocument:
            Statement:
              - Sid: Catalog
                Effect: Allow
                Action: glue:GetTable
                Resource: !Sub "arn:aws:glue:us-east-1:1:table/${Db}/*"
              - Sid: Items
                Effect: Allow
                Action: [dynamodb:GetItem, dynamodb:GetRecords]
                Resource: !Sub "arn:aws:dynamodb:us-east-1:1:table/*"
              - Sid: Write
                Effect: Allow
                Action: [s3:PutObject, s3:AbortMultipartUpload, s3:ListBucket]
                Resource: !Sub "${Bucket.Arn}/lake/*"
"#,
    );
    assert_found(
        &iam_problems(&t),
        &[
            "Role/p/Catalog: every table (table/${Db}/*)",
            "Role/p/Items: every table (table/*)",
        ],
    );
    let code = "client.get_table().send(); s3.put_object();";
    assert_found(
        &unused_action_problems(&t, |uri| {
            assert_eq!(uri, "functions/f");
            code.to_string()
        }),
        &[
            "Role/Items: dynamodb:GetItem is granted, but Function never calls get_item",
            "Role/Write: s3:AbortMultipartUpload is granted, but Function never calls abort_multipart_upload",
        ],
    );
    // An Athena caller lends its role to the query.
    let athena = "athena.start_query_execution(); client.get_table(); s3.put_object(); s3.list_objects_v2(); d.get_item()";
    assert!(unused_action_problems(&t, |_| athena.to_string()).is_empty());
}

#[test]
fn unencrypted_or_public_buckets_are_found() {
    let t = snippet(
        r#"
  Plain:
    Type: AWS::S3::Bucket
  HalfBlocked:
    Type: AWS::S3::Bucket
    Properties:
      BucketEncryption:
        ServerSideEncryptionConfiguration:
          - ServerSideEncryptionByDefault: { SSEAlgorithm: AES256 }
      PublicAccessBlockConfiguration:
        BlockPublicAcls: true
        BlockPublicPolicy: false
        IgnorePublicAcls: true
"#,
    );
    assert_found(
        &bucket_problems(&t),
        &[
            "Plain: no default encryption",
            "Plain: PublicAccessBlockConfiguration.BlockPublicAcls",
            "Plain: PublicAccessBlockConfiguration.BlockPublicPolicy",
            "Plain: PublicAccessBlockConfiguration.IgnorePublicAcls",
            "Plain: PublicAccessBlockConfiguration.RestrictPublicBuckets",
            "HalfBlocked: PublicAccessBlockConfiguration.BlockPublicPolicy",
            "HalfBlocked: PublicAccessBlockConfiguration.RestrictPublicBuckets",
        ],
    );
}

#[test]
fn functions_without_a_dead_letter_path_are_found() {
    let t = snippet(
        r#"
  StreamFn:
    Type: AWS::Serverless::Function
    Properties:
      Events:
        Records:
          Type: Kinesis
          Properties: { Stream: !GetAtt S.Arn, StartingPosition: LATEST }
  ScheduledFn:
    Type: AWS::Serverless::Function
    Properties:
      Events:
        Tick:
          Type: Schedule
          Properties: { Schedule: rate(5 minutes) }
  Orphan:
    Type: AWS::Serverless::Function
  Task:
    Type: AWS::Serverless::Function
  Machine:
    Type: AWS::Serverless::StateMachine
    Properties:
      DefinitionSubstitutions:
        TaskArn: !GetAtt Task.Arn
      Events:
        Daily:
          Type: ScheduleV2
          Properties: { ScheduleExpression: rate(1 day) }
  Mapping:
    Type: AWS::Lambda::EventSourceMapping
    Properties: { FunctionName: !Ref StreamFn }
"#,
    );
    assert_found(
        &dead_letter_problems(&t),
        &[
            "StreamFn.Events.Records (Kinesis): no on-failure destination",
            "ScheduledFn.Events.Tick (Schedule): asynchronous invocations without DeadLetterQueue",
            "ScheduledFn.Events.Tick (Schedule): no DeadLetterConfig",
            "Orphan: no event source and no state machine invokes it",
            "Machine.Events.Daily: no DeadLetterConfig",
            "Mapping: no on-failure destination",
        ],
    );
}
