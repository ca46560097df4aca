//! The shared DynamoDB helpers against moto: the versioned conditional put creates once,
//! advances only from the version it names, and reports a lost race as `false` (the
//! condition failure), never as an error; what the table holds afterwards is read back.

use aws_sdk_dynamodb::types::AttributeValue;
use streamwatch_adapters::dynamo::{Item, get_n, get_s, n, put_if_version, s};
use streamwatch_tests::{MotoServer, create_windows_table, sdk_config};

fn item(version: u64, value: &str) -> Item {
    Item::from([
        ("pk".to_owned(), s("k")),
        ("sk".to_owned(), s("w")),
        ("version".to_owned(), n(version)),
        ("value".to_owned(), s(value)),
    ])
}

#[tokio::test]
async fn a_versioned_put_wins_once_per_version_and_loses_without_an_error() {
    let moto = MotoServer::start();
    let ddb = aws_sdk_dynamodb::Client::new(&sdk_config(&moto).await);
    create_windows_table(&ddb, "t").await;
    let put = |item, version| put_if_version(&ddb, "t", item, "pk", version, "test.PutItem");

    assert!(put(item(1, "first"), 0).await.unwrap(), "creates");
    assert!(
        !put(item(1, "second create"), 0).await.unwrap(),
        "a second create loses"
    );
    assert!(
        !put(item(2, "stale"), 5).await.unwrap(),
        "a wrong version loses"
    );
    assert!(
        put(item(2, "next"), 1).await.unwrap(),
        "the stored version wins"
    );
    assert!(!put(item(2, "replayed"), 1).await.unwrap(), "once");

    let stored = ddb
        .get_item()
        .table_name("t")
        .key("pk", AttributeValue::S("k".into()))
        .key("sk", AttributeValue::S("w".into()))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    assert_eq!(get_s(&stored, "value").map(String::as_str), Some("next"));
    assert_eq!(get_n::<u64>(&stored, "version"), Some(2));
}

#[tokio::test]
async fn other_failures_are_errors_named_by_the_operation() {
    let moto = MotoServer::start();
    let ddb = aws_sdk_dynamodb::Client::new(&sdk_config(&moto).await);
    let err = put_if_version(&ddb, "missing", item(1, "x"), "pk", 0, "test.PutItem")
        .await
        .unwrap_err();
    assert_eq!(err.operation, "test.PutItem");
    assert!(!err.is_transient(), "a missing table is permanent: {err}");
}
