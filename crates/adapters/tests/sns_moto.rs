//! The SNS notifier against moto server: what the topic records (subject, the structured
//! message, attributes), what a raw SQS subscriber receives, and what a filter policy on
//! the `state` attribute lets through.

use std::collections::BTreeMap;

use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use serde_json::Value;
use streamwatch_adapters::sns::{EmbeddedNotifier, SnsNotifier};
use streamwatch_core::notify::{MessageContext, NotificationKind, Notifier, render};
use streamwatch_core::{AlertKind, AlertRecord, WindowSummary};
use streamwatch_tests::MotoServer;

const START: i64 = 1_795_262_400_000_000;

fn alert(kind: AlertKind) -> AlertRecord {
    AlertRecord {
        id: format!("windspeed-avg#device3#{START}#{}", kind.as_str()),
        rule: "windspeed-avg".into(),
        key: "device3".into(),
        kind,
        severity: "critical".into(),
        summary: "Wind speed avg 72.4 mph > 60 on device3".into(),
        event_time_micros: START + 60_000_000,
        window: Some(WindowSummary {
            start_micros: START,
            end_micros: START + 60_000_000,
            count: 12,
            sum: 868.8,
            min: 65.0,
            max: 80.0,
            avg: 72.4,
            condition: "avg > 60".into(),
            threshold: 60.0,
        }),
        details: BTreeMap::new(),
        source: vec![],
    }
}

fn message(kind: NotificationKind) -> streamwatch_core::notify::Message {
    let alert_kind = if kind == NotificationKind::Resolved {
        AlertKind::Resolved
    } else {
        AlertKind::Firing
    };
    render(
        &alert(alert_kind),
        &MessageContext {
            kind,
            firing_since_micros: Some(START + 60_000_000),
            episode_alerts: 1,
            repeat_interval_micros: 900_000_000,
        },
    )
}

struct Clients {
    sns: aws_sdk_sns::Client,
    sqs: aws_sdk_sqs::Client,
}

async fn clients(moto: &MotoServer) -> Clients {
    let config = streamwatch_adapters::aws::defaults()
        .endpoint_url(moto.endpoint())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sns::config::Credentials::for_tests())
        .load()
        .await;
    Clients {
        sns: aws_sdk_sns::Client::new(&config),
        sqs: aws_sdk_sqs::Client::new(&config),
    }
}

/// A queue subscribed to the topic with raw delivery (and a filter policy, if given).
async fn subscribe_queue(c: &Clients, topic: &str, name: &str, filter: Option<&str>) -> String {
    let url = c
        .sqs
        .create_queue()
        .queue_name(name)
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let arn = c
        .sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&QueueAttributeName::QueueArn]
        .clone();
    let mut subscribe = c
        .sns
        .subscribe()
        .topic_arn(topic)
        .protocol("sqs")
        .endpoint(arn)
        .attributes("RawMessageDelivery", "true");
    if let Some(policy) = filter {
        subscribe = subscribe.attributes("FilterPolicy", policy);
    }
    subscribe.send().await.unwrap();
    url
}

async fn receive(c: &Clients, url: &str) -> Vec<aws_sdk_sqs::types::Message> {
    c.sqs
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .message_attribute_names("All")
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .send()
        .await
        .unwrap()
        .messages
        .unwrap_or_default()
}

#[tokio::test]
async fn publishes_structured_messages_with_attributes_for_every_subscriber() {
    let moto = MotoServer::start();
    let c = clients(&moto).await;
    let topic = c
        .sns
        .create_topic()
        .name("alerts")
        .send()
        .await
        .unwrap()
        .topic_arn
        .unwrap();
    let all = subscribe_queue(&c, &topic, "all", None).await;
    let resolved_only = subscribe_queue(
        &c,
        &topic,
        "resolved-only",
        Some(r#"{"state": ["resolved"]}"#),
    )
    .await;
    let notifier = SnsNotifier::new(c.sns.clone(), &topic);

    let firing = message(NotificationKind::Firing);
    let id = notifier.publish(&firing).await.unwrap();
    assert!(!id.is_empty());

    // What the topic recorded: [message id, message, subject, attributes, group id].
    let sent = moto.sns_notifications();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0][0], id.as_str());
    assert_eq!(
        sent[0][2],
        "[FIRING] Wind speed avg 72.4 mph > 60 on device3"
    );
    let structured: Value = serde_json::from_str(sent[0][1].as_str().unwrap()).unwrap();
    assert_eq!(structured["default"], firing.email.as_str());
    assert_eq!(structured["email"], firing.email.as_str());
    assert_eq!(
        structured["sms"],
        "[FIRING] Wind speed avg 72.4 mph > 60 on device3"
    );
    for protocol in ["sqs", "lambda", "http", "https", "email-json"] {
        assert_eq!(structured[protocol], firing.json.as_str(), "{protocol}");
    }
    let attributes = &sent[0][3];
    for (name, value) in [
        ("rule", "windspeed-avg"),
        ("key", "device3"),
        ("severity", "critical"),
        ("state", "firing"),
    ] {
        assert_eq!(attributes[name]["Type"], "String");
        assert_eq!(attributes[name]["Value"], value, "{name}");
    }

    // A raw SQS subscriber gets the machine JSON and the attributes.
    let received = receive(&c, &all).await;
    assert_eq!(received.len(), 1);
    let body: Value = serde_json::from_str(received[0].body().unwrap()).unwrap();
    assert_eq!(body["state"], "firing");
    assert_eq!(
        body["alert_id"],
        "windspeed-avg#device3#1795262400000000#firing"
    );
    assert_eq!(body["window"]["avg"], 72.4);
    let attrs = received[0].message_attributes().unwrap();
    assert_eq!(attrs["state"].string_value(), Some("firing"));
    assert_eq!(attrs["key"].string_value(), Some("device3"));
    // The filter policy on `state` keeps firing messages away from resolved-only.
    assert!(receive(&c, &resolved_only).await.is_empty());

    let resolved = message(NotificationKind::Resolved);
    notifier.publish(&resolved).await.unwrap();
    let received = receive(&c, &resolved_only).await;
    assert_eq!(received.len(), 1);
    let body: Value = serde_json::from_str(received[0].body().unwrap()).unwrap();
    assert_eq!(body["state"], "resolved");
    assert_eq!(moto.sns_notifications().len(), 2);
}

#[tokio::test]
async fn a_missing_topic_is_a_permanent_failure() {
    let moto = MotoServer::start();
    let c = clients(&moto).await;
    let notifier = SnsNotifier::new(c.sns, "arn:aws:sns:us-east-1:123456789012:no-such-topic");
    let err = notifier
        .publish(&message(NotificationKind::Firing))
        .await
        .unwrap_err();
    assert!(!err.is_transient(), "{err}");
    assert!(moto.sns_notifications().is_empty());
}

#[tokio::test]
async fn the_embedded_notifier_records_in_order() {
    let notifier = EmbeddedNotifier::new();
    let a = notifier
        .publish(&message(NotificationKind::Firing))
        .await
        .unwrap();
    let b = notifier
        .publish(&message(NotificationKind::Resolved))
        .await
        .unwrap();
    assert_eq!((a.as_str(), b.as_str()), ("embedded-1", "embedded-2"));
    let kinds: Vec<_> = notifier.published().iter().map(|m| m.kind).collect();
    assert_eq!(
        kinds,
        [NotificationKind::Firing, NotificationKind::Resolved]
    );
}

/// A one-request HTTP endpoint on loopback: answers 200 and hands over the body it got.
fn http_endpoint() -> (String, std::sync::mpsc::Receiver<String>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hooks/ops", listener.local_addr().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream);
        let mut length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line.trim().is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        let mut stream = reader.into_inner();
        stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .unwrap();
        tx.send(String::from_utf8(body).unwrap()).unwrap();
    });
    (url, rx)
}

/// With `HttpsFormat::Slack`, the `https` text of the publish is a Slack-style message built
/// from the group notification (what moto records), an HTTPS subscription receives it as
/// the `Message` of SNS's notification envelope (moto posts to the endpoint's URL, which here
/// is plain HTTP on loopback), and every other protocol keeps its text.
#[tokio::test]
async fn https_subscribers_get_a_slack_style_message_when_asked() {
    use streamwatch_core::notify::group::{GroupBatch, GroupKey};
    use streamwatch_core::notify::group_render::render_group;
    use streamwatch_core::notify::slack::HttpsFormat;

    let moto = MotoServer::start();
    let c = clients(&moto).await;
    let topic = streamwatch_tests::create_topic(&c.sns, "alerts").await;
    let (url, received) = http_endpoint();
    c.sns
        .subscribe()
        .topic_arn(&topic)
        .protocol("https")
        .endpoint(&url)
        .send()
        .await
        .unwrap();
    let sqs = subscribe_queue(&c, &topic, "machine", None).await;
    let alerts = (0..3)
        .map(|i| AlertRecord {
            id: format!("accident-severity#id#A-{i}"),
            rule: "accident-severity".into(),
            key: format!("A-{i}"),
            kind: AlertKind::Event,
            severity: "4".into(),
            summary: format!("Severity 4 accident in Houston, Harris County, TX <#{i}>"),
            event_time_micros: START + i,
            window: None,
            details: [("County".to_owned(), "Harris".to_owned())].into(),
            source: vec![],
        })
        .collect();
    let group = render_group(&GroupBatch {
        group: GroupKey {
            rule: "accident-severity".into(),
            values: vec![
                ("County".into(), "Harris".into()),
                ("State".into(), "TX".into()),
            ],
        },
        number: 1,
        alerts,
    });
    SnsNotifier::new(c.sns.clone(), &topic)
        .with_https_format(HttpsFormat::Slack)
        .publish(&group)
        .await
        .unwrap();

    let sent = moto.sns_notifications();
    assert_eq!(sent.len(), 1);
    let structured: Value = serde_json::from_str(sent[0][1].as_str().unwrap()).unwrap();
    let slack: Value = serde_json::from_str(structured["https"].as_str().unwrap()).unwrap();
    assert_eq!(
        slack["text"],
        "[ALERT] 3 accident-severity alerts (County=Harris, State=TX)"
    );
    let section = slack["blocks"][1]["text"]["text"].as_str().unwrap();
    for i in 0..3 {
        assert!(section.contains(&format!("A-{i}")), "{section}");
        assert!(
            section.contains(&format!("&lt;#{i}&gt;")),
            "escaped: {section}"
        );
    }
    for protocol in ["sqs", "lambda", "http", "email-json"] {
        assert_eq!(structured[protocol], group.json.as_str(), "{protocol}");
    }
    assert_eq!(structured["email"], group.email.as_str());

    // What the HTTPS subscriber got: SNS's envelope around the Slack-style text.
    let body = received
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("moto delivered to the https subscription");
    let envelope: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(envelope["Type"], "Notification");
    assert_eq!(envelope["TopicArn"], topic.as_str());
    assert_eq!(
        serde_json::from_str::<Value>(envelope["Message"].as_str().unwrap()).unwrap(),
        slack
    );
    // The SQS subscriber still gets the machine JSON.
    let machine = receive(&c, &sqs).await;
    let body: Value = serde_json::from_str(machine[0].body().unwrap()).unwrap();
    assert_eq!(body["schema"], "streamwatch.group_notification/1");
    assert_eq!(body["count"], 3);
}
