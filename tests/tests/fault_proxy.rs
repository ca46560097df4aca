//! The fault proxy itself: each injected fault reaches the SDK as the error it imitates,
//! and a lost response still leaves the write applied in moto.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType,
};
use streamwatch_tests::MotoServer;
use streamwatch_tests::faults::{Fault, FaultProxy, scripted_plan};

/// A client without retries whose every attempt gives up after `attempt`.
async fn client(endpoint: String, attempt: Duration) -> aws_sdk_dynamodb::Client {
    let config = streamwatch_adapters::aws::defaults()
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::for_tests())
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .operation_attempt_timeout(attempt)
                .build(),
        )
        .load()
        .await;
    aws_sdk_dynamodb::Client::new(&config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injects_each_fault_and_lost_responses_still_apply() {
    let moto = MotoServer::start();
    let direct = client(moto.endpoint(), Duration::from_secs(60)).await;
    direct
        .create_table()
        .table_name("t")
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("k")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("k")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .unwrap();
    let plan = scripted_plan(
        "PutItem",
        vec![
            Fault::Throttle,
            Fault::Http500,
            Fault::Http503,
            Fault::Reset,
            Fault::Slow,
            Fault::LoseResponse,
            Fault::Pass,
        ],
    );
    // A slow answer outlasts the client's 5 s by far; a loaded moto answers well within it.
    let proxy = FaultProxy::start(&moto.endpoint(), plan, Duration::from_secs(30)).await;
    let ddb = client(proxy.endpoint(), Duration::from_secs(5)).await;
    let mut errors = Vec::new();
    for i in 0..7 {
        let r = ddb
            .put_item()
            .table_name("t")
            .item("k", AttributeValue::S(format!("item{i}")))
            .send()
            .await;
        errors.push(
            r.map(|_| ())
                .map_err(|e| format!("{}", aws_sdk_dynamodb::error::DisplayErrorContext(e))),
        );
    }
    assert!(
        errors[0]
            .as_ref()
            .unwrap_err()
            .contains("ProvisionedThroughputExceeded"),
        "{:?}",
        errors[0]
    );
    assert!(
        errors[1].as_ref().unwrap_err().contains("500")
            || errors[1].as_ref().unwrap_err().contains("InternalFailure"),
        "{:?}",
        errors[1]
    );
    assert!(errors[2].is_err() && errors[3].is_err() && errors[4].is_err() && errors[5].is_err());
    assert!(errors[6].is_ok());
    // Only the lost response (item5) and the passed call (item6) reached moto.
    let items = direct
        .scan()
        .table_name("t")
        .send()
        .await
        .unwrap()
        .items
        .unwrap_or_default();
    let mut keys: Vec<String> = items
        .iter()
        .map(|i| i["k"].as_s().unwrap().clone())
        .collect();
    keys.sort();
    assert_eq!(keys, vec!["item5".to_owned(), "item6".to_owned()]);
    assert_eq!(proxy.total(Fault::LoseResponse), 1);
    assert_eq!(proxy.total(Fault::Throttle), 1);
}

/// A client that gives up (its attempt timeout) while the service is still working: the
/// service applies the request anyway, so the proxy books it as a lost response.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_gives_up_first_is_counted_as_a_lost_response() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // No clock decides the order of events; the test does, step by step:
    // 1. the upstream tells when the request reached it,
    // 2. then the client gives up: its request future is dropped, as an attempt timeout
    //    drops it (a 500 ms timeout raced the proxy's forwarding on a loaded machine,
    //    and the request was sometimes abandoned before it reached the upstream),
    // 3. once the proxy has seen the client go, the upstream answers.
    let (release, released) = tokio::sync::watch::channel(false);
    let received = Arc::new(tokio::sync::Notify::new());
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = upstream.local_addr().unwrap();
    let got_request = received.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = upstream.accept().await {
            let mut released = released.clone();
            let got_request = got_request.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let _ = conn.read(&mut buf).await;
                got_request.notify_one();
                let _ = released.wait_for(|r| *r).await;
                let body = "{}";
                let reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.0\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(reply.as_bytes()).await;
                // End our side, then drain: closing with unread request bytes would reset
                // the connection instead of ending it.
                let _ = conn.shutdown().await;
                while matches!(conn.read(&mut buf).await, Ok(n) if n > 0) {}
            });
        }
    });
    // The proxy's own deadline is far beyond anything the test waits for.
    let proxy = FaultProxy::start(
        &format!("http://{address}"),
        Arc::new(|_: &str, _: u64| Fault::Pass),
        Duration::from_secs(60),
    )
    .await;
    let ddb = client(proxy.endpoint(), Duration::from_secs(600)).await;
    let caller = ddb.clone();
    let put = tokio::spawn(async move {
        caller
            .put_item()
            .table_name("t")
            .item("k", AttributeValue::S("late".into()))
            .send()
            .await
    });
    received.notified().await;
    put.abort();
    assert!(
        put.await.is_err_and(|e| e.is_cancelled()),
        "the client gave up before any answer"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while proxy.hangups_seen() == 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(proxy.hangups_seen(), 1, "the proxy saw the client go");
    release.send(true).unwrap();
    // The proxy books it once the upstream has answered.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while proxy.lost_requests().is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let lost = proxy.lost_requests();
    assert_eq!(lost.len(), 1, "{lost:?}");
    assert_eq!(lost[0].0, "PutItem");
    assert_eq!(proxy.client_hangups(), 1);
    assert_eq!(proxy.total(Fault::LoseResponse), 0);
    assert!(
        proxy.summary().ends_with("client hang-ups 1"),
        "{}",
        proxy.summary()
    );
}
