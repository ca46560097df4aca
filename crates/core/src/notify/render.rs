//! One notification as one SNS message: subject, email, SMS, machine JSON and attributes,
//! within SNS's 256 KB (free-form content is cut in steps until it fits), and the
//! [`Notifier`] port that publishes it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::future::Future;

use serde_json::json;

use crate::alert::AlertRecord;
use crate::ports::PortError;
use crate::time::{Micros, format_micros};

use super::decide::NotificationKind;
use super::slack::{HttpsFormat, slack_json};
use super::store::NotificationRecord;

/// SNS's limit for a whole Publish payload (message, subject and attributes), in bytes.
pub const MAX_MESSAGE_BYTES: usize = 262_144;
/// SNS subjects must be ASCII and *less than* 100 characters.
pub const MAX_SUBJECT_CHARS: usize = 99;
/// Kept to one SMS segment's worth of bytes: SNS splits longer texts and bills each part.
pub const MAX_SMS_BYTES: usize = 140;

/// Publishes notifications (SNS, or the embedded one for the local pipeline).
pub trait Notifier: Send + Sync {
    /// Publishes one message; returns the service's message id.
    fn publish(&self, message: &Message) -> impl Future<Output = Result<String, PortError>> + Send;
}

/// One notification, rendered for every kind of subscriber.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The alert id: unique per notification (FIFO deduplication id, log correlation).
    pub notification_id: String,
    pub kind: NotificationKind,
    /// ASCII, < 100 characters, no line breaks.
    pub subject: String,
    /// The full text for email (and the `default` for protocols not listed).
    pub email: String,
    /// A short text for SMS.
    pub sms: String,
    /// Machine-readable JSON for SQS, Lambda, HTTP(S) and email-json subscribers.
    pub json: String,
    /// `rule`, `key`, `severity`, `state` (only non-empty values: SNS rejects empty ones).
    pub attributes: BTreeMap<String, String>,
}

impl Message {
    /// The `Message` parameter for `MessageStructure: json`: one text per protocol.
    pub fn structured(&self) -> String {
        self.structured_for(HttpsFormat::Json)
    }

    /// [`Message::structured`] with the `https` text in `https` format (a Slack-style
    /// message, or the machine JSON as for every other machine subscriber).
    pub fn structured_for(&self, https: HttpsFormat) -> String {
        let https = match https {
            HttpsFormat::Json => self.json.clone(),
            HttpsFormat::Slack => slack_json(self),
        };
        json!({
            "default": self.email,
            "email": self.email,
            "email-json": self.json,
            "sms": self.sms,
            "sqs": self.json,
            "lambda": self.json,
            "http": self.json,
            "https": https,
        })
        .to_string()
    }

    /// Bytes SNS counts against its 256 KB limit: message, subject and attributes.
    pub fn size_bytes(&self) -> usize {
        self.structured().len()
            + self.subject.len()
            + self
                .attributes
                .iter()
                .map(|(k, v)| k.len() + "String".len() + v.len())
                .sum::<usize>()
    }
}

/// What the message needs besides the alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageContext {
    pub kind: NotificationKind,
    pub firing_since_micros: Option<Micros>,
    pub episode_alerts: u64,
    pub repeat_interval_micros: Micros,
}

impl MessageContext {
    /// The context of a notification record; `None` for suppressed ones.
    pub fn of(record: &NotificationRecord, repeat_interval_micros: Micros) -> Option<Self> {
        Some(Self {
            kind: record.kind()?,
            firing_since_micros: record.firing_since_micros,
            episode_alerts: record.episode_alerts,
            repeat_interval_micros,
        })
    }
}

/// How much of an alert's free-form content a rendering keeps.
#[derive(Debug, Clone, Copy)]
struct Limits {
    /// Characters of each detail value and of each free text (summary, key, rule, ...).
    value_chars: usize,
    details: usize,
    sources: usize,
}

/// Tried in order until the message fits [`MAX_MESSAGE_BYTES`]; the last one is small
/// whatever the alert holds.
const LIMITS: [Limits; 3] = [
    Limits {
        value_chars: 4_000,
        details: 100,
        sources: 20,
    },
    Limits {
        value_chars: 500,
        details: 30,
        sources: 3,
    },
    Limits {
        value_chars: 200,
        details: 0,
        sources: 0,
    },
];

/// Renders one notification. Deterministic: a re-send after a crash sends the same text.
pub fn render(alert: &AlertRecord, ctx: &MessageContext) -> Message {
    let mut message = render_with(alert, ctx, LIMITS[0], false);
    for limits in &LIMITS[1..] {
        if message.size_bytes() <= MAX_MESSAGE_BYTES {
            break;
        }
        message = render_with(alert, ctx, *limits, true);
    }
    message
}

/// The alert's free-form texts as one rendering keeps them (cut to its [`Limits`]).
struct Cut<'a> {
    alert: &'a AlertRecord,
    ctx: &'a MessageContext,
    summary: String,
    key: String,
    rule: String,
    severity: String,
    details: Vec<(&'a String, String)>,
    sources: Vec<&'a String>,
    value_chars: usize,
    truncated: bool,
}

impl<'a> Cut<'a> {
    fn new(
        alert: &'a AlertRecord,
        ctx: &'a MessageContext,
        limits: Limits,
        truncated: bool,
    ) -> Self {
        let cut = |s: &str| truncate_chars(s, limits.value_chars);
        Self {
            alert,
            ctx,
            summary: cut(&alert.summary),
            key: cut(&alert.key),
            rule: cut(&alert.rule),
            severity: cut(&alert.severity),
            details: ordered_details(alert)
                .into_iter()
                .take(limits.details)
                .map(|(k, v)| (k, cut(v)))
                .collect(),
            sources: alert.source.iter().take(limits.sources).collect(),
            value_chars: limits.value_chars,
            truncated,
        }
    }

    fn cut(&self, s: &str) -> String {
        truncate_chars(s, self.value_chars)
    }
}

fn render_with(
    alert: &AlertRecord,
    ctx: &MessageContext,
    limits: Limits,
    truncated: bool,
) -> Message {
    let c = Cut::new(alert, ctx, limits, truncated);
    Message {
        notification_id: alert.id.clone(),
        kind: ctx.kind,
        subject: subject(&c),
        email: email_text(&c),
        sms: sms(&c),
        json: machine_json(&c).to_string(),
        attributes: attributes(&c),
    }
}

fn subject(c: &Cut) -> String {
    let text = match (c.ctx.kind, c.ctx.firing_since_micros) {
        (NotificationKind::Reminder, Some(since)) => format!(
            "{} (firing for {})",
            c.summary,
            // Event times come from records: saturate, a hostile one must not panic.
            human_duration(c.alert.event_time_micros.saturating_sub(since))
        ),
        _ => c.summary.clone(),
    };
    ascii_line(&format!("{} {text}", c.ctx.kind.tag()), MAX_SUBJECT_CHARS)
}

/// An SMS has no other fields: it names the key unless the summary does.
fn sms(c: &Cut) -> String {
    let text = if c.summary.contains(c.key.as_str()) {
        format!("{} {}", c.ctx.kind.tag(), c.summary)
    } else {
        format!("{} {} ({})", c.ctx.kind.tag(), c.summary, c.key)
    };
    ascii_line(&text, MAX_SMS_BYTES)
}

/// The message for machines (SQS, Lambda, HTTP(S), email-json subscribers).
fn machine_json(c: &Cut) -> serde_json::Value {
    let (alert, ctx) = (c.alert, c.ctx);
    let mut machine = json!({
        "schema": "streamwatch.notification/1",
        "state": ctx.kind.as_str(),
        "alert_id": alert.id,
        "rule": c.rule,
        "key": c.key,
        "kind": alert.kind.as_str(),
        "severity": c.severity,
        "summary": c.summary,
        "event_time": format_micros(alert.event_time_micros),
    });
    let Some(obj) = machine.as_object_mut() else {
        return machine;
    };
    if let Some(since) = ctx.firing_since_micros {
        obj.insert("firing_since".into(), json!(format_micros(since)));
        obj.insert("episode_alerts".into(), json!(ctx.episode_alerts));
    }
    if matches!(
        ctx.kind,
        NotificationKind::Firing | NotificationKind::Reminder
    ) {
        obj.insert(
            "repeat_interval_seconds".into(),
            json!(ctx.repeat_interval_micros / 1_000_000),
        );
    }
    if let Some(w) = &alert.window {
        obj.insert(
            "window".into(),
            json!({
                "start": format_micros(w.start_micros),
                "end": format_micros(w.end_micros),
                "count": w.count,
                "sum": finite(w.sum),
                "min": finite(w.min),
                "max": finite(w.max),
                "avg": finite(w.avg),
                "condition": c.cut(&w.condition),
                "threshold": finite(w.threshold),
            }),
        );
    }
    if !c.details.is_empty() {
        let map: serde_json::Map<String, serde_json::Value> = c
            .details
            .iter()
            .map(|(k, v)| ((*k).clone(), json!(v)))
            .collect();
        obj.insert("details".into(), serde_json::Value::Object(map));
    }
    if !c.sources.is_empty() {
        obj.insert("source".into(), json!(c.sources));
    }
    if c.truncated {
        obj.insert("truncated".into(), json!(true));
    }
    machine
}

/// Alert details also sent as message attributes, so subscription filter policies can route
/// by place (docs/alerting.md "Routing"); SNS allows 10 attributes, these stay at 7.
pub const ROUTING_DETAILS: [&str; 3] = ["City", "County", "State"];

/// Message attributes for subscription filter policies (SNS rejects empty values).
fn attributes(c: &Cut) -> BTreeMap<String, String> {
    let places = ROUTING_DETAILS
        .iter()
        .filter_map(|name| Some((*name, c.alert.details.get(*name)?.as_str())));
    [
        ("rule", c.rule.as_str()),
        ("key", c.key.as_str()),
        ("severity", c.severity.as_str()),
        ("state", c.ctx.kind.as_str()),
    ]
    .into_iter()
    .chain(places)
    .filter(|(_, v)| !v.trim().is_empty())
    .map(|(k, v)| (k.to_owned(), truncate_chars(v, 256)))
    .collect()
}

/// JSON has no NaN or infinity; `null` says "not a number" without breaking parsers.
fn finite(x: f64) -> serde_json::Value {
    if x.is_finite() {
        json!(x)
    } else {
        serde_json::Value::Null
    }
}

/// The details people look for first (an accident's where/when/how bad), then the rest.
fn ordered_details(alert: &AlertRecord) -> Vec<(&String, &String)> {
    const FIRST: [&str; 7] = [
        "Severity",
        "Start_Time",
        "City",
        "County",
        "State",
        "Street",
        "Description",
    ];
    let mut out: Vec<(&String, &String)> = FIRST
        .iter()
        .filter_map(|name| alert.details.get_key_value(*name))
        .collect();
    out.extend(
        alert
            .details
            .iter()
            .filter(|(k, _)| !FIRST.contains(&k.as_str())),
    );
    out
}

/// The email: headline, the facts as aligned fields, details, what to do, the footer.
/// (`write!` into a String cannot fail; its results are ignored on purpose here and below.)
fn email_text(c: &Cut) -> String {
    let (kind, key, rule) = (c.ctx.kind, &c.key, &c.rule);
    let mut out = String::new();
    let _ = writeln!(out, "{} {}", kind.tag(), c.summary);
    let _ = writeln!(out);
    let headline = match kind {
        NotificationKind::Firing => format!("{key} started firing rule {rule}."),
        NotificationKind::Reminder => format!("{key} is still firing rule {rule}."),
        NotificationKind::Resolved => format!("{key} is back to normal for rule {rule}."),
        NotificationKind::Event => format!("Rule {rule} matched an event for {key}."),
    };
    let _ = writeln!(out, "{headline}");
    let _ = writeln!(out);
    email_fields(&mut out, c);
    if !c.details.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(out, "Details:");
        for (k, v) in &c.details {
            let _ = writeln!(out, "  {:<14}{v}", format!("{k}:"));
        }
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "What to do:");
    let _ = writeln!(out, "{}", what_to_do(c));
    let _ = writeln!(out);
    email_footer(&mut out, c);
    out
}

/// `Name:         value` lines: the rule, key, state, times and the window's readings.
fn email_fields(out: &mut String, c: &Cut) {
    let (alert, ctx) = (c.alert, c.ctx);
    let mut field = |name: &str, value: &str| {
        let _ = writeln!(out, "{:<14}{value}", format!("{name}:"));
    };
    field("Rule", &c.rule);
    field("Key", &c.key);
    if !c.severity.is_empty() {
        field("Severity", &c.severity);
    }
    field("State", &ctx.kind.as_str().to_uppercase());
    field("Event time", &format_micros(alert.event_time_micros));
    if let Some(w) = &alert.window {
        let span = human_duration(w.end_micros.saturating_sub(w.start_micros));
        let (start, end) = (format_micros(w.start_micros), format_micros(w.end_micros));
        field("Window", &format!("{start} to {end} ({span})"));
        let (avg, min, max) = (number(w.avg), number(w.min), number(w.max));
        let count = w.count;
        field(
            "Readings",
            &format!("avg {avg}, min {min}, max {max}, count {count}"),
        );
        let condition = truncate_chars(&w.condition, 200);
        let threshold = number(w.threshold);
        field("Condition", &format!("{condition} (threshold {threshold})"));
    }
    // The first FIRING message is the start of the episode: nothing to add.
    if let (Some(since), true) = (
        ctx.firing_since_micros,
        ctx.kind != NotificationKind::Firing,
    ) {
        let span = human_duration(alert.event_time_micros.saturating_sub(since));
        let windows = match ctx.episode_alerts {
            1 => "1 firing alert".to_owned(),
            n => format!("{n} firing alerts"),
        };
        let since = format_micros(since);
        field("Firing since", &format!("{since} ({span}, {windows})"));
    }
}

fn what_to_do(c: &Cut) -> String {
    let key = &c.key;
    let repeat = human_duration(c.ctx.repeat_interval_micros);
    match c.ctx.kind {
        NotificationKind::Firing => format!(
            "  Check {key} now: the rule's condition held for the whole window. If the \
             readings are real, take it out of harm's way (for a wind turbine: brake or \
             feather it) until the value is back within the rule. While it keeps firing you \
             get a reminder at most every {repeat}, and one RESOLVED message when it clears."
        ),
        NotificationKind::Reminder => format!(
            "  {key} has kept firing since the first message. If someone already handles \
             it, nothing more to do; otherwise check it now. Next reminder no sooner than \
             {repeat} after this one (event time)."
        ),
        NotificationKind::Resolved => format!(
            "  Nothing urgent: {key} is back within the rule. Review what happened during \
             the episode and put back into service anything that was stopped for it."
        ),
        NotificationKind::Event => "  Assess the event now and follow your response procedure \
             (for a traffic accident: inform the local operations team and check closures). \
             This is a one-off alert: no reminder or resolved message follows."
            .to_owned(),
    }
}

fn email_footer(out: &mut String, c: &Cut) {
    let _ = writeln!(out, "Alert id: {}", truncate_chars(&c.alert.id, 500));
    if !c.sources.is_empty() {
        let more = c.alert.source.len().saturating_sub(c.sources.len());
        let list: Vec<&str> = c.sources.iter().map(|s| s.as_str()).collect();
        let tail = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        let _ = writeln!(out, "Source records: {}{tail}", list.join(", "));
    }
    if c.truncated {
        let _ = writeln!(
            out,
            "(Some details were shortened to fit the 256 KB message limit.)"
        );
    }
    let _ = writeln!(out, "--");
    let _ = write!(out, "Sent by the streamwatch alerter.");
}

/// A number for people: at most two decimals, no trailing zeros.
pub fn number(x: f64) -> String {
    if !x.is_finite() {
        return x.to_string();
    }
    let s = format!("{x:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".to_owned()
    } else {
        s.to_owned()
    }
}

/// A duration for people: `45 s`, `15 min`, `1 h 5 min`, `2 d 3 h`.
pub fn human_duration(micros: Micros) -> String {
    let secs = micros.max(0) / 1_000_000;
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m, s) {
        (0, 0, 0, s) => format!("{s} s"),
        (0, 0, m, 0) => format!("{m} min"),
        (0, 0, m, s) => format!("{m} min {s} s"),
        (0, h, 0, _) => format!("{h} h"),
        (0, h, m, _) => format!("{h} h {m} min"),
        (d, 0, _, _) => format!("{d} d"),
        (d, h, _, _) => format!("{d} d {h} h"),
    }
}

/// `s` cut to `max` characters, ending in `...` when cut.
pub fn truncate_chars(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_owned(),
        Some(_) if max < 3 => s.chars().take(max).collect(),
        Some(_) => {
            let mut out: String = s.chars().take(max - 3).collect();
            out.push_str("...");
            out
        }
    }
}

/// One line of printable ASCII, at most `max` characters: what SNS accepts as a subject
/// (and what every SMS alphabet can carry). Non-ASCII characters are folded as CloudWatch
/// dimension values are ([`crate::ascii`]: `San José` → `San Jose`), runs of whitespace
/// and control characters become one space.
pub fn ascii_line(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max));
    let mut space = false;
    for c in s.chars() {
        if c.is_whitespace() || c.is_control() {
            space = !out.is_empty();
            continue;
        }
        if space {
            out.push(' ');
            space = false;
        }
        if c.is_ascii() {
            out.push(c);
        } else {
            out.push_str(crate::ascii::fold_char(c).unwrap_or("?"));
        }
    }
    if out.len() > max {
        // Everything is ASCII now, so byte and char positions agree.
        out.truncate(max.saturating_sub(3));
        out.truncate(out.trim_end().len());
        out.push_str("...");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::AlertKind;
    use crate::notify::decide::DEFAULT_REPEAT_INTERVAL_MICROS;
    use crate::notify::fixtures::{MIN, T0, window_alert};

    fn ctx(kind: NotificationKind) -> MessageContext {
        MessageContext {
            kind,
            firing_since_micros: Some(T0 + MIN),
            episode_alerts: 16,
            repeat_interval_micros: DEFAULT_REPEAT_INTERVAL_MICROS,
        }
    }

    #[test]
    fn messages_say_what_happened_and_what_to_do() {
        let firing = render(
            &window_alert(AlertKind::Firing, 0),
            &ctx(NotificationKind::Firing),
        );
        assert_eq!(
            firing.subject,
            "[FIRING] Wind speed avg 72.4 mph > 60 on device3"
        );
        assert!(firing.email.contains(
            "Window:       2026-11-21T12:00:00.000Z to 2026-11-21T12:01:00.000Z (1 min)"
        ));
        assert!(firing.email.contains("avg 72.4, min 65, max 80, count 12"));
        assert!(firing.email.contains("What to do:"));
        assert_eq!(firing.attributes["state"], "firing");
        assert_eq!(firing.attributes["key"], "device3");
        assert!(
            !firing.attributes.contains_key("County"),
            "no place, no attribute"
        );
        let machine: serde_json::Value = serde_json::from_str(&firing.json).unwrap();
        assert_eq!(machine["window"]["avg"], 72.4);
        assert_eq!(machine["state"], "firing");
        let structured: serde_json::Value = serde_json::from_str(&firing.structured()).unwrap();
        assert_eq!(structured["default"], firing.email.as_str());
        assert_eq!(structured["sqs"], firing.json.as_str());
        assert!(firing.sms.len() <= MAX_SMS_BYTES);

        let reminder = render(
            &window_alert(AlertKind::Firing, 15),
            &ctx(NotificationKind::Reminder),
        );
        assert_eq!(
            reminder.subject,
            "[REMINDER] Wind speed avg 72.4 mph > 60 on device3 (firing for 15 min)"
        );
        assert!(reminder.email.contains("(15 min, 16 firing alerts)"));
    }

    #[test]
    fn subjects_are_short_ascii_lines() {
        assert_eq!(
            ascii_line("a\n b\t\tc ≥ 5 – Zürich, San José 東", 99),
            "a b c >= 5 - Zurich, San Jose ?"
        );
        let long = ascii_line(&"x".repeat(500), MAX_SUBJECT_CHARS);
        assert_eq!(long.len(), MAX_SUBJECT_CHARS);
        assert!(long.ends_with("..."));
    }

    #[test]
    fn huge_alerts_are_cut_to_the_sns_limit() {
        let mut alert = window_alert(AlertKind::Event, 0);
        alert.summary = "é".repeat(300_000);
        alert.details = (0..500)
            .map(|i| (format!("field{i}"), "d".repeat(10_000)))
            .collect();
        alert.source = (0..10_000).map(|i| format!("shardId-0/{i}")).collect();
        let m = render(&alert, &ctx(NotificationKind::Event));
        assert!(m.size_bytes() <= MAX_MESSAGE_BYTES, "{}", m.size_bytes());
        assert!(m.subject.len() <= MAX_SUBJECT_CHARS && m.subject.is_ascii());
        let machine: serde_json::Value = serde_json::from_str(&m.json).unwrap();
        assert_eq!(machine["truncated"], true);
    }

    #[test]
    fn an_alerts_place_is_a_message_attribute_for_filter_policies() {
        let mut alert = window_alert(AlertKind::Event, 0);
        alert.details = [("County", "Harris"), ("State", "TX"), ("Description", "x")]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .into();
        let m = render(&alert, &ctx(NotificationKind::Event));
        assert_eq!(m.attributes["County"], "Harris");
        assert_eq!(m.attributes["State"], "TX");
        assert!(
            !m.attributes.contains_key("Description"),
            "only places route"
        );
        assert!(m.attributes.len() <= 10, "SNS allows 10 attributes");
    }

    #[test]
    fn numbers_and_durations_read_well() {
        assert_eq!(number(72.4), "72.4");
        assert_eq!(number(65.0), "65");
        assert_eq!(number(72.456), "72.46");
        assert_eq!(human_duration(15 * MIN), "15 min");
        assert_eq!(human_duration(65 * MIN), "1 h 5 min");
        assert_eq!(human_duration(90_000_000), "1 min 30 s");
    }
}
