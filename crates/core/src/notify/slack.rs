//! What HTTPS subscribers get: the machine JSON (the default), or a Slack-style message
//! (Block Kit: `text` for the notification preview, `blocks` for the body) built from the
//! rendered [`Message`], so single alerts and group notifications look alike. SNS's
//! `MessageStructure: json` carries it as the `https` text of the same publish; every other
//! protocol keeps its own.

use std::str::FromStr;

use serde_json::json;

use super::render::{Message, truncate_chars};

/// Slack's limits: a header's text at most 150 characters, a section's 3,000.
const HEADER_CHARS: usize = 150;
const SECTION_CHARS: usize = 3_000;
/// Room for the code fence around the email text inside one section.
const FENCE: &str = "```";

/// The `https` text of every publish (the alerter's `HTTPS_MESSAGE_FORMAT`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum HttpsFormat {
    /// The machine JSON, as SQS, Lambda and HTTP subscribers get it.
    #[default]
    Json,
    /// A Slack-style message: `{"text": …, "blocks": […]}`.
    Slack,
}

impl FromStr for HttpsFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "json" => Ok(Self::Json),
            "slack" => Ok(Self::Slack),
            other => Err(format!("`{other}`: expected json or slack")),
        }
    }
}

/// Slack's three characters with a meaning in `mrkdwn` and `text`, escaped.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The message as Slack renders it: the subject as preview text and header, the email text
/// in a code block (tables stay aligned; cut to Slack's section limit), and a context line
/// with the rule, the state and the notification id. At most about 3.6 KB, so it never
/// pushes a publish over SNS's 256 KB (the machine JSON it replaces is budgeted larger).
pub fn slack_json(m: &Message) -> String {
    let attribute = |name: &str| m.attributes.get(name).map_or("", String::as_str);
    let body_chars = SECTION_CHARS - 2 * FENCE.len() - 2;
    let body = truncate_chars(&escape(m.email.trim_end()), body_chars);
    let mut context = format!(
        "rule *{}* · {} · `{}`",
        escape(attribute("rule")),
        escape(attribute("state")),
        escape(&m.notification_id)
    );
    if let Some(group) = m.attributes.get("group") {
        context.push_str(&format!(" · {}", escape(group)));
    }
    json!({
        "text": escape(&m.subject),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": truncate_chars(&m.subject, HEADER_CHARS)}},
            {"type": "section", "text": {"type": "mrkdwn", "text": format!("{FENCE}\n{body}\n{FENCE}")}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": truncate_chars(&context, SECTION_CHARS)}]},
        ],
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::NotificationKind;
    use std::collections::BTreeMap;

    fn message(email: &str) -> Message {
        Message {
            notification_id: "accident-severity#group#County=Harris&State=TX#2".into(),
            kind: NotificationKind::Event,
            subject: "[ALERT] 3 accident-severity alerts (County=Harris, State=TX)".into(),
            email: email.into(),
            sms: "sms".into(),
            json: "{}".into(),
            attributes: BTreeMap::from([
                ("rule".to_owned(), "accident-severity".to_owned()),
                ("state".to_owned(), "event".to_owned()),
                ("group".to_owned(), "County=Harris, State=TX".to_owned()),
            ]),
        }
    }

    #[test]
    fn the_subject_previews_the_email_is_a_code_block_and_mrkdwn_is_escaped() {
        let v: serde_json::Value = serde_json::from_str(&slack_json(&message(
            "3 alerts <b> & more\n\nSeverity  Time\n",
        )))
        .unwrap();
        assert_eq!(
            v["text"],
            "[ALERT] 3 accident-severity alerts (County=Harris, State=TX)"
        );
        assert_eq!(v["blocks"][0]["type"], "header");
        assert_eq!(v["blocks"][0]["text"]["type"], "plain_text");
        assert_eq!(
            v["blocks"][1]["text"]["text"],
            "```\n3 alerts &lt;b&gt; &amp; more\n\nSeverity  Time\n```"
        );
        let context = v["blocks"][2]["elements"][0]["text"].as_str().unwrap();
        assert!(
            context.starts_with("rule *accident-severity* · event · `accident-severity#group#")
        );
        assert!(context.ends_with(" · County=Harris, State=TX"));
    }

    #[test]
    fn a_long_email_is_cut_to_slack_s_section_limit() {
        let text = slack_json(&message(&"x".repeat(100_000)));
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let section = v["blocks"][1]["text"]["text"].as_str().unwrap();
        assert!(section.chars().count() <= SECTION_CHARS);
        assert!(section.ends_with("...\n```"));
        assert!(text.len() < 3_700, "{}", text.len());
    }

    #[test]
    fn the_format_is_json_or_slack() {
        assert_eq!("json".parse(), Ok(HttpsFormat::Json));
        assert_eq!("slack".parse(), Ok(HttpsFormat::Slack));
        assert!("Slack".parse::<HttpsFormat>().is_err());
    }
}
