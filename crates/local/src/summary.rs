//! The demo's summary: what the run did (the `--json` document) and its text table.

use std::collections::BTreeMap;

use serde::Serialize;

/// A notification as the demo saw it go out (or, in `silenced`, held back).
#[derive(Debug, Clone, Serialize)]
pub struct Sent {
    pub event_time: String,
    /// Simulated time it went out (empty for a silenced one).
    pub sent_at: String,
    /// `firing`, `reminder`, `resolved`, `event` (one accident) or `group`.
    pub kind: String,
    pub key: String,
    pub subject: String,
    /// A group notification's accidents (their `ID`s), as its JSON message lists them.
    pub alerts: Vec<String>,
}

/// What the run did (also `--json`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub seed: u64,
    pub simulated_minutes: u32,
    pub turbine_readings: u64,
    pub change_records: u64,
    pub duplicates_injected: u64,
    pub reorders_injected: u64,
    pub windows_closed: u64,
    pub window_alerts: u64,
    pub accident_rows: u64,
    pub accident_bad_rows: u64,
    pub accident_kinesis_records: u64,
    pub accident_alerts: u64,
    /// Accident alerts that joined their (County, State) group instead of going out alone.
    pub grouped_alerts: u64,
    pub group_notifications: u64,
    /// The silence added before the run (`id (device)`).
    pub silence: Option<String>,
    /// Notifications the silence held back: recorded, counted as `Silenced`, not sent.
    pub silenced: Vec<Sent>,
    pub metric_datums: u64,
    pub put_metric_data_calls: u64,
    pub reference_put_metric_data_calls: u64,
    pub notifications: u64,
    pub notifications_by_kind: BTreeMap<String, u64>,
    pub lambda_invocations: u64,
    pub lambda_retries: u64,
    pub sent: Vec<Sent>,
    /// Records and objects written to the raw layer's directory.
    pub archived_records: u64,
    pub archive_objects: u64,
    pub wall_seconds: f64,
}

pub(crate) fn summary_rows(s: &Summary) -> Vec<(String, String)> {
    vec![
        ("turbine readings".into(), s.turbine_readings.to_string()),
        (
            "change records (incl. injected duplicates / reorders)".into(),
            format!(
                "{} ({} / {})",
                s.change_records, s.duplicates_injected, s.reorders_injected
            ),
        ),
        ("windows closed".into(), s.windows_closed.to_string()),
        ("window alerts".into(), s.window_alerts.to_string()),
        (
            "accident rows (bad rows skipped)".into(),
            format!("{} ({})", s.accident_rows, s.accident_bad_rows),
        ),
        (
            "KPL-aggregated Kinesis records".into(),
            s.accident_kinesis_records.to_string(),
        ),
        (
            "accident alerts (grouped into emails by County, State)".into(),
            if s.grouped_alerts == 0 {
                s.accident_alerts.to_string()
            } else {
                format!(
                    "{} ({} in {} group emails)",
                    s.accident_alerts, s.grouped_alerts, s.group_notifications
                )
            },
        ),
        (
            "notifications".into(),
            if s.notifications_by_kind.is_empty() {
                s.notifications.to_string()
            } else {
                format!(
                    "{} ({})",
                    s.notifications,
                    s.notifications_by_kind
                        .iter()
                        .map(|(k, n)| format!("{n} {k}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            },
        ),
        (
            "silenced (recorded, not sent)".into(),
            match &s.silence {
                Some(silence) => format!("{} by {silence}", s.silenced.len()),
                None => "0 (no silence)".into(),
            },
        ),
        ("metric datums".into(), s.metric_datums.to_string()),
        (
            "PutMetricData calls (reference: one per selected record)".into(),
            format!(
                "{} ({})",
                s.put_metric_data_calls, s.reference_put_metric_data_calls
            ),
        ),
        (
            "Lambda invocations (retries)".into(),
            format!("{} ({})", s.lambda_invocations, s.lambda_retries),
        ),
    ]
}

/// The summary as a text table.
pub fn summary_table(s: &Summary) -> String {
    let rows = summary_rows(s);
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (k, v) in rows {
        out.push_str(&format!("  {k:<width$}  {v}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_notifications_is_a_plain_zero() {
        let rows = summary_rows(&Summary::default());
        let (_, value) = rows.iter().find(|(k, _)| k == "notifications").unwrap();
        assert_eq!(value, "0");
        let some = Summary {
            notifications: 3,
            notifications_by_kind: [("event".to_owned(), 2), ("firing".to_owned(), 1)].into(),
            ..Default::default()
        };
        let rows = summary_rows(&some);
        let (_, value) = rows.iter().find(|(k, _)| k == "notifications").unwrap();
        assert_eq!(value, "3 (2 event, 1 firing)");
    }
}
