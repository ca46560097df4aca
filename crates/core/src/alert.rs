//! Alert records: what the window-aggregator and metrics-publisher write to the alerts
//! outbox and the alerter turns into notifications. One record per alert, ever: the id is
//! derived from what caused it, and the outbox write is conditional on the id being new.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::time::Micros;

/// What an alert record says happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertKind {
    /// A window closed with the rule's condition true.
    Firing,
    /// A window closed back under the threshold after a firing one.
    Resolved,
    /// A single event matched a per-event rule (no resolved state).
    Event,
}

impl AlertKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Firing => "firing",
            Self::Resolved => "resolved",
            Self::Event => "event",
        }
    }
}

/// The closed window behind a window alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowSummary {
    pub start_micros: Micros,
    pub end_micros: Micros,
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    pub avg: f64,
    /// The rule's condition, e.g. `avg > 60`.
    pub condition: String,
    pub threshold: f64,
}

/// One alert in the outbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertRecord {
    /// Unique per cause; see [`window_alert_id`] and [`event_alert_id`].
    pub id: String,
    /// Name of the rule that fired, e.g. `windspeed-avg`, `accident-severity`.
    pub rule: String,
    /// What the rule is about: a turbine id, an accident id.
    pub key: String,
    pub kind: AlertKind,
    /// Free text for people and filter policies, e.g. `critical`, `4`.
    pub severity: String,
    /// One line for people, e.g. `Wind speed avg 72.4 mph > 60 on device3`.
    pub summary: String,
    /// Event time of the cause (window end, or the event's timestamp).
    pub event_time_micros: Micros,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<WindowSummary>,
    /// Extra fields for the message body (City, County, State, Description, Start_Time, …).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub details: BTreeMap<String, String>,
    /// Coordinates of the source records (`shard/sequence[/sub]`), for tracing back.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source: Vec<String>,
}

/// Id of a window alert: one firing and at most one resolved per (rule, key, window).
pub fn window_alert_id(rule: &str, key: &str, window_start: Micros, kind: AlertKind) -> String {
    format!("{rule}#{key}#{window_start}#{}", kind.as_str())
}

/// Id of a per-event alert from the event's own id (the rule's key field, e.g. the accident
/// `ID`): one per (rule, event), however often, in whatever batch, shard or invocation the
/// event is delivered (a producer retry, a KPL retry, a replay resumed a few rows early).
pub fn keyed_event_alert_id(rule: &str, event_key: &str) -> String {
    format!("{rule}#id#{event_key}")
}

/// Id of a per-event alert from the source record's coordinates, for events without a key
/// field: one per (rule, source user record), whatever the retries, but a second delivery
/// of the same event under new coordinates is a second alert.
pub fn event_alert_id(
    rule: &str,
    shard_id: &str,
    sequence_number: &str,
    sub_sequence_number: Option<u64>,
) -> String {
    match sub_sequence_number {
        Some(sub) => format!("{rule}#{shard_id}#{sequence_number}#{sub}"),
        None => format!("{rule}#{shard_id}#{sequence_number}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_distinct() {
        assert_eq!(
            window_alert_id("w", "device1", 60_000_000, AlertKind::Firing),
            "w#device1#60000000#firing"
        );
        assert_ne!(
            window_alert_id("w", "k", 0, AlertKind::Firing),
            window_alert_id("w", "k", 0, AlertKind::Resolved)
        );
        assert_ne!(
            event_alert_id("r", "s", "1", Some(0)),
            event_alert_id("r", "s", "1", None)
        );
        assert_eq!(keyed_event_alert_id("r", "A-1"), "r#id#A-1");
    }
}
