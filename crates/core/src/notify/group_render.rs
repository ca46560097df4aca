//! One group notification as one SNS message: the count and the group in the subject, a
//! compact table of the alerts (worst first) in the email, the full list in the machine
//! JSON — all within SNS's 256 KB (the table is capped at [`TABLE_ROWS`] rows; the JSON
//! list drops details, then alerts, until the message fits, and says so).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::json;

use crate::alert::AlertRecord;
use crate::time::format_micros;

use super::decide::NotificationKind;
use super::group::GroupBatch;
use super::render::{
    MAX_MESSAGE_BYTES, MAX_SMS_BYTES, MAX_SUBJECT_CHARS, Message, ascii_line, truncate_chars,
};

/// Rows of the email's table; the rest are counted ("and 12 more").
pub const TABLE_ROWS: usize = 50;
/// Characters of a summary in the table.
const SUMMARY_CHARS: usize = 70;

/// Renders one sealed batch (its alerts already worst first). Deterministic: a re-send
/// after a crash sends the same text.
pub fn render_group(batch: &GroupBatch) -> Message {
    let n = batch.alerts.len();
    let rule = &batch.group.rule;
    let label = batch.group.label();
    let tag = NotificationKind::Event.tag();
    let worst = batch.alerts.first();
    let subject = ascii_line(
        &format!("{tag} {n} {rule} alert{} ({label})", plural(n)),
        MAX_SUBJECT_CHARS,
    );
    let sms = ascii_line(
        &format!(
            "{tag} {n} {rule} alert{} ({label}); worst: {}",
            plural(n),
            worst.map_or("", |a| a.summary.as_str())
        ),
        MAX_SMS_BYTES,
    );
    let mut attributes = BTreeMap::from([
        ("rule".to_owned(), rule.clone()),
        (
            "state".to_owned(),
            NotificationKind::Event.as_str().to_owned(),
        ),
        ("group".to_owned(), truncate_chars(&label, 256)),
    ]);
    // The group's own values (e.g. County, State) route like a single alert's details.
    for (name, value) in &batch.group.values {
        if super::render::ROUTING_DETAILS.contains(&name.as_str()) {
            attributes.insert(name.clone(), truncate_chars(value, 256));
        }
    }
    if let Some(w) = worst.filter(|w| !w.severity.trim().is_empty()) {
        attributes.insert("severity".into(), w.severity.clone());
    }
    attributes.retain(|_, v| !v.trim().is_empty());
    let email = email(batch);
    // The structured message carries the email twice and the JSON five times (email-json,
    // sqs, lambda, http, https); subject, SMS and attributes stay under 2 KB.
    let budget = MAX_MESSAGE_BYTES.saturating_sub(2 * email.len() + 2_048) / 5;
    Message {
        notification_id: batch.notification_id(),
        kind: NotificationKind::Event,
        subject,
        json: machine_json(batch, budget),
        email,
        sms,
        attributes,
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// `Severity  Time                     Key              Summary` rows, worst first (the
/// time column holds `format_micros`' 24 characters).
fn email(batch: &GroupBatch) -> String {
    let n = batch.alerts.len();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{n} alert{} of rule {} for {} (notification {} of this group).",
        plural(n),
        batch.group.rule,
        batch.group.label(),
        batch.number
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<9} {:<24} {:<16} Summary",
        "Severity", "Time", "Key"
    );
    for a in batch.alerts.iter().take(TABLE_ROWS) {
        let _ = writeln!(
            out,
            "{:<9} {:<24} {:<16} {}",
            truncate_chars(&a.severity, 9),
            format_micros(a.event_time_micros),
            truncate_chars(&a.key, 16),
            truncate_chars(&a.summary, SUMMARY_CHARS)
        );
    }
    if n > TABLE_ROWS {
        let _ = writeln!(
            out,
            "... and {} more (every alert is in the JSON message).",
            n - TABLE_ROWS
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "What to do:\n  Assess the worst first and follow your response procedure. Alerts of this \
         group that arrive later come together, at most once per group interval."
    );
    let _ = writeln!(out, "--");
    let _ = write!(out, "Sent by the streamwatch alerter.");
    out
}

fn alert_json(a: &AlertRecord, details: bool) -> serde_json::Value {
    let mut v = json!({
        "alert_id": a.id,
        "key": a.key,
        "severity": a.severity,
        "summary": a.summary,
        "event_time": format_micros(a.event_time_micros),
    });
    if details && let Some(obj) = v.as_object_mut() {
        obj.insert("details".into(), json!(a.details));
    }
    v
}

/// Every alert with its details; without details, then fewer alerts, if that is more than
/// `budget` bytes.
fn machine_json(batch: &GroupBatch, budget: usize) -> String {
    let n = batch.alerts.len();
    let render = |keep: usize, details: bool| {
        json!({
            "schema": "streamwatch.group_notification/1",
            "notification_id": batch.notification_id(),
            "rule": batch.group.rule,
            "group": batch.group.values.iter().cloned().collect::<BTreeMap<_, _>>(),
            "batch": batch.number,
            "count": n,
            "alerts": batch.alerts.iter().take(keep).map(|a| alert_json(a, details)).collect::<Vec<_>>(),
            "truncated": keep < n || !details,
        })
        .to_string()
    };
    let full = render(n, true);
    if full.len() <= budget {
        return full;
    }
    let mut keep = n;
    loop {
        let text = render(keep, false);
        if text.len() <= budget || keep == 0 {
            return text;
        }
        keep /= 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::AlertKind;
    use crate::notify::group::{GroupKey, worst_first};

    fn accident(i: usize, severity: &str, city: &str) -> AlertRecord {
        AlertRecord {
            id: format!("accident-severity#id#A-{i}"),
            rule: "accident-severity".into(),
            key: format!("A-{i}"),
            kind: AlertKind::Event,
            severity: severity.into(),
            summary: format!("Severity {severity} accident in {city}, TX"),
            event_time_micros: 1_795_262_400_000_000 + i as i64 * 1_000_000,
            window: None,
            details: [("City".to_owned(), city.to_owned())].into(),
            source: vec![],
        }
    }

    fn batch(alerts: Vec<AlertRecord>) -> GroupBatch {
        let mut alerts = alerts;
        worst_first(&mut alerts);
        GroupBatch {
            group: GroupKey {
                rule: "accident-severity".into(),
                values: vec![
                    ("County".into(), "Harris".into()),
                    ("State".into(), "TX".into()),
                ],
            },
            number: 2,
            alerts,
        }
    }

    #[test]
    fn a_group_email_counts_and_lists_the_worst_first() {
        let m = render_group(&batch(vec![
            accident(1, "3", "Houston"),
            accident(2, "4", "San José"),
            accident(3, "3", "Pasadena"),
        ]));
        assert_eq!(
            m.subject,
            "[ALERT] 3 accident-severity alerts (County=Harris, State=TX)"
        );
        let rows: Vec<&str> = m.email.lines().filter(|l| l.contains(" A-")).collect();
        assert_eq!(rows.len(), 3);
        assert!(
            rows[0].starts_with("4 ") && rows[0].contains("A-2"),
            "{rows:?}"
        );
        assert!(
            rows[1].contains("A-1") && rows[2].contains("A-3"),
            "{rows:?}"
        );
        assert!(m.email.contains("notification 2 of this group"));
        let json: serde_json::Value = serde_json::from_str(&m.json).unwrap();
        assert_eq!(json["count"], 3);
        assert_eq!(json["alerts"][0]["key"], "A-2");
        assert_eq!(json["alerts"][0]["details"]["City"], "San José");
        assert_eq!(json["truncated"], false);
        assert_eq!(m.attributes["severity"], "4");
        assert_eq!(
            (
                m.attributes["County"].as_str(),
                m.attributes["State"].as_str()
            ),
            ("Harris", "TX")
        );
        assert_eq!(
            m.notification_id,
            "accident-severity#group#County=Harris&State=TX#2"
        );
        assert!(m.sms.len() <= MAX_SMS_BYTES && m.sms.contains("San Jose"));
    }

    #[test]
    fn a_huge_group_fits_the_sns_limit_and_says_what_was_left_out() {
        let big = "x".repeat(3_000);
        let alerts: Vec<AlertRecord> = (0..400)
            .map(|i| {
                let mut a = accident(i, "4", "Houston");
                a.details.insert("Description".into(), big.clone());
                a
            })
            .collect();
        let m = render_group(&batch(alerts));
        assert!(m.size_bytes() <= MAX_MESSAGE_BYTES, "{}", m.size_bytes());
        assert!(m.email.contains("... and 350 more"));
        let json: serde_json::Value = serde_json::from_str(&m.json).unwrap();
        assert_eq!(
            (json["count"].as_u64(), json["truncated"].as_bool()),
            (Some(400), Some(true))
        );
        assert!(json["alerts"][0].get("details").is_none());
    }
}
