//! The local Lambda endpoint behind moto's Step Functions interpreter: both
//! ways ASL calls a function reach the registered handler, other requests
//! reach moto, and a handler's error is matched by `ErrorEquals` on its type.

use integration_tests::{
    create_state_machine_from, function_arn, sdk_config, sfn_harness, states_entered,
    wait_for_execution, REGION,
};
use lambda_runtime::Diagnostic;
use serde_json::{json, Value};

async fn sfn() -> aws_sdk_sfn::Client {
    aws_sdk_sfn::Client::new(&sdk_config(&sfn_harness().moto.endpoint, REGION).await)
}

#[tokio::test]
async fn both_lambda_task_forms_run_the_registered_handler() {
    let h = sfn_harness();
    let name = integration_tests::unique("double");
    h.lambda.register(&name, |input: Value| async move {
        let n = input["n"].as_i64().unwrap_or_default();
        Ok(json!({ "n": n * 2 }))
    });
    let definition = json!({
        "StartAt": "Direct",
        "States": {
            "Direct": {
                "Type": "Task",
                "Resource": function_arn(REGION, &name),
                "Next": "ViaInvoke"
            },
            "ViaInvoke": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": { "FunctionName": function_arn(REGION, &name), "Payload.$": "$" },
                "OutputPath": "$.Payload",
                "End": true
            }
        }
    });
    let sfn = sfn().await;
    let arn = create_state_machine_from(&sfn, &name, &definition.to_string()).await;
    let exec = sfn
        .start_execution()
        .state_machine_arn(&arn)
        .input(r#"{"n": 5}"#)
        .send()
        .await
        .expect("start execution");
    let done = wait_for_execution(&sfn, &exec.execution_arn).await;
    assert_eq!(done.status.as_str(), "SUCCEEDED", "{done:?}");
    let output: Value = serde_json::from_str(done.output.as_deref().unwrap_or("null")).unwrap();
    assert_eq!(output, json!({ "n": 20 }));
    assert_eq!(h.lambda.invocations(&name), 2);
    assert_eq!(
        states_entered(&sfn, &exec.execution_arn).await,
        ["Direct", "ViaInvoke"]
    );
}

#[tokio::test]
async fn a_handler_error_is_caught_by_its_type() {
    let h = sfn_harness();
    let name = integration_tests::unique("refuse");
    h.lambda.register(&name, |_input: Value| async move {
        Err::<Value, _>(Diagnostic {
            error_type: "InvalidInput".into(),
            error_message: "date \"2026-02-30\" is not a calendar date".into(),
        })
    });
    let definition = json!({
        "StartAt": "Call",
        "States": {
            "Call": {
                "Type": "Task",
                "Resource": function_arn(REGION, &name),
                "Retry": [{ "ErrorEquals": ["Retryable"], "MaxAttempts": 2 }],
                "Catch": [{ "ErrorEquals": ["InvalidInput"], "ResultPath": "$.error", "Next": "RejectInput" }],
                "End": true
            },
            "RejectInput": { "Type": "Fail", "Error": "InvalidInput", "Cause": "rejected" }
        }
    });
    let sfn = sfn().await;
    let arn = create_state_machine_from(&sfn, &name, &definition.to_string()).await;
    let exec = sfn
        .start_execution()
        .state_machine_arn(&arn)
        .input("{}")
        .send()
        .await
        .expect("start execution");
    let done = wait_for_execution(&sfn, &exec.execution_arn).await;
    assert_eq!(done.status.as_str(), "FAILED", "{done:?}");
    assert_eq!(done.error.as_deref(), Some("InvalidInput"));
    assert_eq!(
        h.lambda.invocations(&name),
        1,
        "InvalidInput is not retried"
    );
    assert_eq!(
        states_entered(&sfn, &exec.execution_arn).await,
        ["Call", "RejectInput"]
    );
}

#[tokio::test]
async fn other_requests_reach_moto_through_the_endpoint() {
    // The interpreter's DynamoDB integration goes through the endpoint too.
    let h = sfn_harness();
    let sdk = sdk_config(&h.moto.endpoint, REGION).await;
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    let table = integration_tests::unique("items");
    ddb.create_table()
        .table_name(&table)
        .billing_mode(aws_sdk_dynamodb::types::BillingMode::PayPerRequest)
        .attribute_definitions(
            aws_sdk_dynamodb::types::AttributeDefinition::builder()
                .attribute_name("id")
                .attribute_type(aws_sdk_dynamodb::types::ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            aws_sdk_dynamodb::types::KeySchemaElement::builder()
                .attribute_name("id")
                .key_type(aws_sdk_dynamodb::types::KeyType::Hash)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("create table");
    let definition = json!({
        "StartAt": "Put",
        "States": {
            "Put": {
                "Type": "Task",
                "Resource": "arn:aws:states:::dynamodb:putItem",
                "Parameters": { "TableName": table, "Item": { "id": { "S.$": "$.id" } } },
                "End": true
            }
        }
    });
    let sfn = sfn().await;
    let arn = create_state_machine_from(&sfn, &table, &definition.to_string()).await;
    let exec = sfn
        .start_execution()
        .state_machine_arn(&arn)
        .input(r#"{"id": "ventilator-7"}"#)
        .send()
        .await
        .expect("start execution");
    let done = wait_for_execution(&sfn, &exec.execution_arn).await;
    assert_eq!(done.status.as_str(), "SUCCEEDED", "{done:?}");
    let item = ddb
        .get_item()
        .table_name(&table)
        .key(
            "id",
            aws_sdk_dynamodb::types::AttributeValue::S("ventilator-7".into()),
        )
        .send()
        .await
        .expect("get item");
    assert!(
        item.item.is_some(),
        "the interpreter's putItem reached moto"
    );
}
