//! Notifiers: SNS (one `Publish` per notification, `MessageStructure: json` so email, SMS
//! and machine subscribers each get their own text, with `MessageAttributes` for filter
//! policies, to the topic of the notification's rule) and an embedded one that records
//! notifications and can print them.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::Mutex;

use aws_sdk_sns::Client;
use aws_sdk_sns::types::MessageAttributeValue;
use streamwatch_core::PortError;
use streamwatch_core::notify::slack::HttpsFormat;
use streamwatch_core::notify::{Message, Notifier};

use crate::aws::classify;

/// Publishes to one SNS topic, or per rule to the topic its route names.
#[derive(Debug, Clone)]
pub struct SnsNotifier {
    client: Client,
    topic_arn: String,
    /// Rule → topic ARN (the alerter's `TOPIC_ROUTES`).
    routes: BTreeMap<String, String>,
    /// What HTTPS subscribers get (the alerter's `HTTPS_MESSAGE_FORMAT`).
    https: HttpsFormat,
}

impl SnsNotifier {
    pub fn new(client: Client, topic_arn: impl Into<String>) -> Self {
        Self {
            client,
            topic_arn: topic_arn.into(),
            routes: BTreeMap::new(),
            https: HttpsFormat::Json,
        }
    }

    /// HTTPS subscribers get `format` (e.g. a Slack-style message) instead of the machine JSON.
    pub fn with_https_format(mut self, format: HttpsFormat) -> Self {
        self.https = format;
        self
    }

    /// Sends the notifications of each listed rule (the message's `rule` attribute, which
    /// single and group notifications carry) to its own topic.
    pub fn with_routes(mut self, routes: BTreeMap<String, String>) -> Self {
        self.routes = routes;
        self
    }

    /// The topic `message` goes to.
    pub fn topic_of(&self, message: &Message) -> &str {
        message
            .attributes
            .get("rule")
            .and_then(|rule| self.routes.get(rule))
            .unwrap_or(&self.topic_arn)
    }
}

impl Notifier for SnsNotifier {
    async fn publish(&self, message: &Message) -> Result<String, PortError> {
        let mut request = self
            .client
            .publish()
            .topic_arn(self.topic_of(message))
            .subject(&message.subject)
            .message(message.structured_for(self.https))
            .message_structure("json");
        for (name, value) in &message.attributes {
            let attribute = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .map_err(|e| PortError::permanent("sns.Publish(attribute)", e))?;
            request = request.message_attributes(name, attribute);
        }
        let output = request
            .send()
            .await
            .map_err(|e| classify("sns.Publish", e))?;
        Ok(output.message_id().unwrap_or_default().to_owned())
    }
}

/// Records every notification in memory (and prints it, for the local pipeline).
#[derive(Debug, Default)]
pub struct EmbeddedNotifier {
    published: Mutex<Vec<Message>>,
    print: bool,
}

impl EmbeddedNotifier {
    /// Records only.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records and prints each notification's subject and email text to stdout.
    pub fn printing() -> Self {
        Self {
            published: Mutex::default(),
            print: true,
        }
    }

    /// Every message published, in order.
    pub fn published(&self) -> Vec<Message> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Message>> {
        // A panic while holding the lock cannot leave the Vec half-updated.
        self.published.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Notifier for EmbeddedNotifier {
    async fn publish(&self, message: &Message) -> Result<String, PortError> {
        let id = {
            let mut published = self.lock();
            published.push(message.clone());
            format!("embedded-{}", published.len())
        };
        if self.print {
            let mut out = std::io::stdout().lock();
            // A closed stdout must not fail the notification: it is already recorded.
            let _ = writeln!(out, "==== {} ({id})\n{}\n", message.subject, message.email);
        }
        Ok(id)
    }
}
