//! The suite's resources on moto, created from `template.yaml`: the names,
//! key schemas, crawler targets, workgroup and state machine definitions
//! are read from the template, as CloudFormation would.

use std::collections::BTreeMap;

use anyhow::{Context as _, Result};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    StreamSpecification, StreamViewType,
};
use serde_yaml::Value;

use crate::lambda_endpoint::function_arn;
use crate::moto::repo_root;
use crate::template::{Context, Physical, Template};

/// Moto's account.
pub const ACCOUNT_ID: &str = "123456789012";

/// The logical IDs of the template the runner plays.
pub mod ids {
    pub const LAKE_BUCKET: &str = "LakeBucket";
    pub const STREAM: &str = "TelemetryStream";
    pub const REFERENCE_TABLE: &str = "DeviceReferenceTable";
    pub const WINDOWS_TABLE: &str = "DeviceStatusWindowsTable";
    pub const PROVIDERS_TABLE: &str = "ProvidersTable";
    pub const KINESIS_TO_PARQUET: &str = "KinesisToParquetFunction";
    pub const DEVICE_STATUS: &str = "DeviceStatusFunction";
    pub const REFERENCE_CHANGE_FLAG: &str = "ReferenceChangeFlagFunction";
    pub const SCHEDULER: &str = "SchedulerFunction";
    pub const START_CRAWLER: &str = "StartCrawlerFunction";
    pub const CRAWLER_STATUS: &str = "CrawlerStatusFunction";
    pub const START_QUERIES: &str = "StartQueriesFunction";
    pub const QUERY_STATUS: &str = "QueryStatusFunction";
    pub const REPARTITION: &str = "RepartitionStateMachine";
    pub const PROVIDER_ETL: &str = "ProviderEtlStateMachine";
    pub const WORKGROUP: &str = "AthenaWorkGroup";
}

/// The created stack: the template, what its references resolve to, and
/// moto's endpoint.
#[derive(Debug, Clone)]
pub struct Stack {
    pub template: Template,
    pub ctx: Context,
    pub endpoint: String,
}

impl Stack {
    /// The template's outputs as the stack would show them.
    pub fn outputs(&self) -> BTreeMap<String, String> {
        self.template.outputs(&self.ctx)
    }

    /// `!Ref` of a resource (its name; an ARN for state machines).
    pub fn name(&self, logical_id: &str) -> String {
        self.ctx
            .resources
            .get(logical_id)
            .map(|p| p.reference.clone())
            .unwrap_or_default()
    }

    /// `!GetAtt logical_id.attribute`.
    pub fn attribute(&self, logical_id: &str, attribute: &str) -> String {
        self.ctx
            .resources
            .get(logical_id)
            .and_then(|p| p.attributes.get(attribute).cloned())
            .unwrap_or_default()
    }

    /// A parameter's value (override or default).
    pub fn parameter(&self, name: &str) -> String {
        self.ctx
            .parameters
            .get(name)
            .cloned()
            .or_else(|| self.template.parameter_default(name))
            .unwrap_or_default()
    }

    /// A function's environment from the template, with `overrides` on top.
    pub fn environment(
        &self,
        function_id: &str,
        overrides: &[(&str, &str)],
    ) -> BTreeMap<String, String> {
        let mut env = self.template.environment(function_id, &self.ctx);
        for (k, v) in overrides {
            env.insert(k.to_string(), v.to_string());
        }
        env
    }

    /// A numeric property of a function's event source of `event_type`.
    pub fn event_setting(&self, function_id: &str, event_type: &str, name: &str) -> Option<i64> {
        let source = self.template.event_source(function_id, event_type)?;
        self.template
            .resolve(source.get(name)?, &self.ctx)
            .ok()?
            .parse()
            .ok()
    }
}

/// The physical name CloudFormation-like: `{stack}-{logical-id-in-kebab-case}`.
pub fn physical_name(stack: &str, logical_id: &str) -> String {
    let mut out = format!("{stack}-");
    for (i, c) in logical_id.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('-');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// Creates the stack's resources on moto at `endpoint`.
pub async fn create(
    template: Template,
    stack_name: &str,
    region: &str,
    parameters: BTreeMap<String, String>,
    endpoint: &str,
) -> Result<Stack> {
    let mut ctx = Context {
        region: region.to_string(),
        account_id: ACCOUNT_ID.to_string(),
        stack_name: stack_name.to_string(),
        parameters,
        resources: BTreeMap::new(),
    };
    preassign_names(&template, &mut ctx);
    let sdk = crate::moto::sdk_config(endpoint, region).await;
    let mut stack = Stack {
        template,
        ctx,
        endpoint: endpoint.to_string(),
    };

    let s3 = crate::moto::s3_client(&sdk);
    for id in stack.template.resources_of_type("AWS::S3::Bucket") {
        s3.create_bucket()
            .bucket(stack.name(&id))
            .send()
            .await
            .with_context(|| format!("creating bucket {id}"))?;
    }

    let kinesis = aws_sdk_kinesis::Client::new(&sdk);
    for id in stack.template.resources_of_type("AWS::Kinesis::Stream") {
        let shards: i32 = resolved(&stack, &id, &["ShardCount"])?
            .parse()
            .with_context(|| format!("{id}.ShardCount is not a number"))?;
        let name = stack.name(&id);
        kinesis
            .create_stream()
            .stream_name(&name)
            .shard_count(shards)
            .send()
            .await
            .with_context(|| format!("creating stream {name}"))?;
        let arn = kinesis
            .describe_stream_summary()
            .stream_name(&name)
            .send()
            .await?
            .stream_description_summary
            .map(|d| d.stream_arn)
            .context("stream summary")?;
        set_attribute(&mut stack.ctx, &id, "Arn", arn);
    }

    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    for id in stack.template.resources_of_type("AWS::DynamoDB::Table") {
        create_table(&ddb, &mut stack, &id).await?;
    }

    let glue = aws_sdk_glue::Client::new(&sdk);
    create_catalog(&glue, &mut stack).await?;

    let athena = aws_sdk_athena::Client::new(&sdk);
    for id in stack.template.resources_of_type("AWS::Athena::WorkGroup") {
        let name = resolved(&stack, &id, &["Name"])?;
        let output = resolved(
            &stack,
            &id,
            &[
                "WorkGroupConfiguration",
                "ResultConfiguration",
                "OutputLocation",
            ],
        )?;
        athena
            .create_work_group()
            .name(&name)
            .configuration(
                aws_sdk_athena::types::WorkGroupConfiguration::builder()
                    .result_configuration(
                        aws_sdk_athena::types::ResultConfiguration::builder()
                            .output_location(output)
                            .build(),
                    )
                    .build(),
            )
            .send()
            .await
            .with_context(|| format!("creating workgroup {name}"))?;
        stack
            .ctx
            .resources
            .insert(id.clone(), Physical::new(&name, ""));
    }

    // The provider-etl machine first: the scheduler's environment names it.
    let sfn = aws_sdk_sfn::Client::new(&sdk);
    let mut machines = stack
        .template
        .resources_of_type("AWS::Serverless::StateMachine");
    machines.sort_by_key(|id| id != ids::PROVIDER_ETL);
    for id in machines {
        let (uri, subs) = stack.template.state_machine(&id, &stack.ctx)?;
        let text = std::fs::read_to_string(repo_root().join(&uri))
            .with_context(|| format!("reading {uri}"))?;
        let definition = crate::template::substitute_definition(&text, &subs)
            .with_context(|| format!("{id} ({uri})"))?;
        let name = stack.attribute(&id, "Name");
        let arn = sfn
            .create_state_machine()
            .name(&name)
            .definition(definition)
            .role_arn(format!("arn:aws:iam::{ACCOUNT_ID}:role/{name}"))
            .send()
            .await
            .with_context(|| format!("creating state machine {name}"))?
            .state_machine_arn;
        set_attribute(&mut stack.ctx, &id, "Arn", arn);
    }
    Ok(stack)
}

/// Names and ARNs of every resource before anything is created, so that
/// references between them resolve in any order.
fn preassign_names(template: &Template, ctx: &mut Context) {
    let (region, account) = (ctx.region.clone(), ctx.account_id.clone());
    for (id, kind) in template.resource_types() {
        let name = physical_name(&ctx.stack_name, &id);
        let physical = match kind.as_str() {
            "AWS::S3::Bucket" => Physical::new(&name, format!("arn:aws:s3:::{name}")),
            "AWS::Kinesis::Stream" => Physical::new(
                &name,
                format!("arn:aws:kinesis:{region}:{account}:stream/{name}"),
            ),
            "AWS::DynamoDB::Table" => Physical::new(
                &name,
                format!("arn:aws:dynamodb:{region}:{account}:table/{name}"),
            ),
            "AWS::Serverless::Function" => Physical::new(&name, function_arn(&region, &name)),
            "AWS::Serverless::StateMachine" => {
                let arn = format!("arn:aws:states:{region}:{account}:stateMachine:{name}");
                let mut p = Physical::new(&arn, &arn);
                p.attributes.insert("Name".into(), name);
                p
            }
            "AWS::IAM::Role" => Physical::new(&name, format!("arn:aws:iam::{account}:role/{name}")),
            _ => Physical::new(
                &name,
                format!("arn:aws:local:{region}:{account}:{id}/{name}"),
            ),
        };
        ctx.resources.insert(id, physical);
    }
}

fn set_attribute(ctx: &mut Context, id: &str, attribute: &str, value: String) {
    if let Some(p) = ctx.resources.get_mut(id) {
        p.attributes.insert(attribute.to_string(), value);
    }
}

fn resolved(stack: &Stack, id: &str, path: &[&str]) -> Result<String> {
    Ok(stack.template.resolved_property(id, path, &stack.ctx)?)
}

/// A list property's items as nodes.
fn items<'a>(stack: &'a Stack, id: &str, path: &[&str]) -> Vec<&'a Value> {
    stack
        .template
        .property(id, path)
        .and_then(Value::as_sequence)
        .map(|s| s.iter().collect())
        .unwrap_or_default()
}

fn text(stack: &Stack, node: &Value, key: &str) -> Result<String> {
    let v = node
        .get(key)
        .with_context(|| format!("{key} missing in {node:?}"))?;
    Ok(stack.template.resolve(v, &stack.ctx)?)
}

async fn create_table(ddb: &aws_sdk_dynamodb::Client, stack: &mut Stack, id: &str) -> Result<()> {
    let name = stack.name(id);
    let mut req = ddb
        .create_table()
        .table_name(&name)
        .billing_mode(BillingMode::PayPerRequest);
    for a in items(stack, id, &["AttributeDefinitions"]) {
        req = req.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(text(stack, a, "AttributeName")?)
                .attribute_type(ScalarAttributeType::from(
                    text(stack, a, "AttributeType")?.as_str(),
                ))
                .build()?,
        );
    }
    for k in items(stack, id, &["KeySchema"]) {
        req = req.key_schema(
            KeySchemaElement::builder()
                .attribute_name(text(stack, k, "AttributeName")?)
                .key_type(KeyType::from(text(stack, k, "KeyType")?.as_str()))
                .build()?,
        );
    }
    if let Ok(view) = resolved(stack, id, &["StreamSpecification", "StreamViewType"]) {
        req = req.stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::from(view.as_str()))
                .build()?,
        );
    }
    let out = req
        .send()
        .await
        .with_context(|| format!("creating table {name} ({id})"))?;
    if let Some(arn) = out.table_description().and_then(|d| d.latest_stream_arn()) {
        set_attribute(&mut stack.ctx, id, "StreamArn", arn.to_string());
    }
    Ok(())
}

/// The catalog entry of an Iceberg table the template declares (Glue
/// writes its first metadata in AWS): its columns (Glue types of the Iceberg
/// schema), location and `table_type`. Moto's Glue does not write Iceberg
/// metadata, and its Athena runs no query, so on moto the entry is all
/// that the workflow needs: a name to render into the SQL.
async fn create_iceberg_entry(
    glue: &aws_sdk_glue::Client,
    stack: &Stack,
    id: &str,
    database: &str,
    name: &str,
) -> Result<()> {
    use aws_sdk_glue::types::{Column, StorageDescriptor, TableInput};
    let input = ["OpenTableFormatInput", "IcebergInput", "IcebergTableInput"];
    let path = |more: &[&'static str]| [&input[..], more].concat();
    let columns = items(stack, id, &path(&["Schema", "Fields"]))
        .into_iter()
        .map(|f| {
            let glue_type = match text(stack, f, "Type")?.as_str() {
                "long" => "bigint".to_string(),
                "timestamptz" => "timestamp".to_string(),
                other => other.to_string(),
            };
            Ok(Column::builder()
                .name(text(stack, f, "Name")?)
                .r#type(glue_type)
                .build()?)
        })
        .collect::<Result<Vec<_>>>()?;
    let storage = StorageDescriptor::builder()
        .location(resolved(stack, id, &path(&["Location"]))?)
        .set_columns(Some(columns))
        .build();
    glue.create_table()
        .database_name(database)
        .table_input(
            TableInput::builder()
                .name(name)
                .table_type("EXTERNAL_TABLE")
                .parameters("table_type", "ICEBERG")
                .storage_descriptor(storage)
                .build()?,
        )
        .send()
        .await
        .with_context(|| format!("creating Glue table {database}.{name}"))?;
    Ok(())
}

/// The Glue database, its declared tables and the crawlers.
async fn create_catalog(glue: &aws_sdk_glue::Client, stack: &mut Stack) -> Result<()> {
    use aws_sdk_glue::types::{
        CatalogTarget, Column, CrawlerTargets, DatabaseInput, S3Target, StorageDescriptor,
        TableInput,
    };
    for id in stack.template.resources_of_type("AWS::Glue::Database") {
        let name = resolved(stack, &id, &["DatabaseInput", "Name"])?;
        glue.create_database()
            .database_input(DatabaseInput::builder().name(&name).build()?)
            .send()
            .await
            .with_context(|| format!("creating Glue database {name}"))?;
        stack.ctx.resources.insert(id, Physical::new(&name, ""));
    }
    for id in stack.template.resources_of_type("AWS::Glue::Table") {
        if !stack.template.is_created(&id, &stack.ctx)? {
            continue;
        }
        let database = resolved(stack, &id, &["DatabaseName"])?;
        let name = resolved(stack, &id, &["TableInput", "Name"])?;
        if stack
            .template
            .property(&id, &["OpenTableFormatInput", "IcebergInput"])
            .is_some()
        {
            create_iceberg_entry(glue, stack, &id, &database, &name).await?;
            stack.ctx.resources.insert(id, Physical::new(&name, ""));
            continue;
        }
        let columns = |path: &[&str]| -> Result<Vec<Column>> {
            items(stack, &id, path)
                .into_iter()
                .map(|c| {
                    Ok(Column::builder()
                        .name(text(stack, c, "Name")?)
                        .r#type(text(stack, c, "Type")?)
                        .build()?)
                })
                .collect()
        };
        let storage = StorageDescriptor::builder()
            .location(resolved(
                stack,
                &id,
                &["TableInput", "StorageDescriptor", "Location"],
            )?)
            .set_columns(Some(columns(&[
                "TableInput",
                "StorageDescriptor",
                "Columns",
            ])?))
            .build();
        glue.create_table()
            .database_name(&database)
            .table_input(
                TableInput::builder()
                    .name(&name)
                    .table_type("EXTERNAL_TABLE")
                    .storage_descriptor(storage)
                    .set_partition_keys(Some(columns(&["TableInput", "PartitionKeys"])?))
                    .build()?,
            )
            .send()
            .await
            .with_context(|| format!("creating Glue table {database}.{name}"))?;
        stack.ctx.resources.insert(id, Physical::new(&name, ""));
    }
    for id in stack.template.resources_of_type("AWS::Glue::Crawler") {
        let name = stack.name(&id);
        let mut targets = CrawlerTargets::builder();
        for t in items(stack, &id, &["Targets", "S3Targets"]) {
            targets = targets.s3_targets(S3Target::builder().path(text(stack, t, "Path")?).build());
        }
        for t in items(stack, &id, &["Targets", "CatalogTargets"]) {
            let tables = t
                .get("Tables")
                .and_then(Value::as_sequence)
                .map(|s| {
                    s.iter()
                        .filter_map(|v| stack.template.resolve(v, &stack.ctx).ok())
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default();
            targets = targets.catalog_targets(
                CatalogTarget::builder()
                    .database_name(text(stack, t, "DatabaseName")?)
                    .set_tables(Some(tables))
                    .build()?,
            );
        }
        let mut req = glue
            .create_crawler()
            .name(&name)
            .role(resolved(stack, &id, &["Role"])?)
            .targets(targets.build());
        if let Ok(db) = resolved(stack, &id, &["DatabaseName"]) {
            req = req.database_name(db);
        }
        req.send()
            .await
            .with_context(|| format!("creating crawler {name}"))?;
    }
    Ok(())
}
