//! DynamoDB helpers every store shares: attribute builders and readers, the versioned
//! conditional put, and the one test for "the condition failed" (the outcome a conditional
//! write expects under retries and concurrency, not an error).

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use streamwatch_core::PortError;

use crate::aws::classify;

/// A DynamoDB item.
pub type Item = HashMap<String, AttributeValue>;

/// A string attribute.
pub fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

/// A number attribute (DynamoDB numbers travel as text).
pub fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// A string attribute of an item, if it is one.
pub fn get_s<'a>(item: &'a Item, name: &str) -> Option<&'a String> {
    item.get(name)?.as_s().ok()
}

/// A number attribute of an item, parsed, if it is one.
pub fn get_n<T: std::str::FromStr>(item: &Item, name: &str) -> Option<T> {
    item.get(name)?.as_n().ok()?.parse().ok()
}

/// Whether a call failed only because its condition expression did not hold
/// (`ConditionalCheckFailedException`).
pub fn is_condition_failure<E>(err: &SdkError<E, HttpResponse>) -> bool
where
    E: ProvideErrorMetadata,
{
    err.as_service_error()
        .is_some_and(|e| e.code() == Some("ConditionalCheckFailedException"))
}

/// Puts `item` if the stored item is at `version` (its `version` attribute), or, for
/// version 0, if there is no item with that `key_attribute` yet. `Ok(false)`: someone else
/// wrote first (read again and re-apply); other failures are classified as `operation`.
pub async fn put_if_version(
    client: &Client,
    table: &str,
    item: Item,
    key_attribute: &str,
    version: u64,
    operation: &'static str,
) -> Result<bool, PortError> {
    let put = client.put_item().table_name(table).set_item(Some(item));
    let put = if version == 0 {
        put.condition_expression(format!("attribute_not_exists({key_attribute})"))
    } else {
        put.condition_expression("version = :v")
            .expression_attribute_values(":v", n(version))
    };
    match put.send().await {
        Ok(_) => Ok(true),
        Err(e) if is_condition_failure(&e) => Ok(false),
        Err(e) => Err(classify(operation, e)),
    }
}
