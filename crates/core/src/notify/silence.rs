//! Silences (Alertmanager's, with equality matchers): "do not notify about alerts of rule R
//! whose attributes equal these values, from start to end". A silenced alert is still decided
//! as usual — the key's episode moves on, its notification record is written — but recorded
//! as suppressed (`silenced by <id>`), counted, and not sent. When the silence ends while the
//! key still fires, its next reminder goes out as usual (the repeat interval counts from the
//! silenced notification, as if it had gone out).
//!
//! Times are the wall clock of the decision (a silence is an operator's "not now"), like the
//! grouping's. The [`SilenceStore`] port holds them (the alerts table, with a TTL at the end).

use std::future::Future;

use serde::{Deserialize, Serialize};

use crate::alert::AlertRecord;
use crate::ports::PortError;
use crate::time::Micros;

use super::group::attribute;
use super::store::{NotificationRecord, NotificationStatus, StoredDecision};

/// What a silenced notification record's reason starts with (then the silence's id).
pub const SILENCED_BY: &str = "silenced by ";

/// One silence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Silence {
    pub id: String,
    pub rule: String,
    /// Attribute = value pairs an alert must all have (`key`, `severity`, or an alert detail
    /// such as `County`); none: every alert of the rule.
    pub matchers: Vec<(String, String)>,
    pub starts_micros: Micros,
    pub ends_micros: Micros,
    pub comment: String,
    pub created_by: String,
}

impl Silence {
    /// Whether the silence is in force at `now`.
    pub fn is_active(&self, now: Micros) -> bool {
        self.starts_micros <= now && now < self.ends_micros
    }

    /// Whether it silences `alert` at `now`.
    pub fn silences(&self, alert: &AlertRecord, now: Micros) -> bool {
        self.is_active(now)
            && self.rule == alert.rule
            && self
                .matchers
                .iter()
                .all(|(name, value)| attribute(alert, name) == *value)
    }
}

/// The first silence of `silences` that silences `alert` at `now`.
pub fn silenced_by<'a>(
    silences: &'a [Silence],
    alert: &AlertRecord,
    now: Micros,
) -> Option<&'a Silence> {
    silences.iter().find(|s| s.silences(alert, now))
}

/// Turns a fresh decision to notify into a silenced one (the same state transition).
pub fn silence_record(record: &mut NotificationRecord, silence: &Silence) {
    if matches!(record.outcome, StoredDecision::Notify(_)) {
        record.outcome = StoredDecision::Suppressed(format!("{SILENCED_BY}{}", silence.id));
        record.status = NotificationStatus::Suppressed;
    }
}

/// Whether a notification record was silenced (rather than suppressed by the state machine).
pub fn is_silenced(record: &NotificationRecord) -> bool {
    matches!(&record.outcome, StoredDecision::Suppressed(r) if r.starts_with(SILENCED_BY))
}

/// Where silences live.
pub trait SilenceStore: Send + Sync {
    /// Silences not ended at `now` (active or starting later).
    fn current(&self, now: Micros) -> impl Future<Output = Result<Vec<Silence>, PortError>> + Send;

    /// Stores a new silence (its id must be new).
    fn add(&self, silence: &Silence) -> impl Future<Output = Result<(), PortError>> + Send;

    /// Ends the silence at `now`; false when there is no such silence or it had ended.
    fn expire(&self, id: &str, now: Micros)
    -> impl Future<Output = Result<bool, PortError>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::AlertKind;
    use crate::notify::fixtures::{MIN, T0, window_alert};

    fn silence(matchers: &[(&str, &str)]) -> Silence {
        Silence {
            id: "s1".into(),
            rule: "windspeed-avg".into(),
            matchers: matchers
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
            starts_micros: T0,
            ends_micros: T0 + 60 * MIN,
            comment: "maintenance".into(),
            created_by: "test".into(),
        }
    }

    #[test]
    fn a_silence_matches_its_rule_and_every_matcher_while_active() {
        let alert = window_alert(AlertKind::Firing, 0);
        let s = silence(&[("key", "device3")]);
        assert!(s.silences(&alert, T0));
        assert!(!s.silences(&alert, T0 - 1), "not started");
        assert!(!s.silences(&alert, T0 + 60 * MIN), "ended");
        assert!(!silence(&[("key", "device4")]).silences(&alert, T0));
        assert!(!silence(&[("key", "device3"), ("County", "Harris")]).silences(&alert, T0));
        assert!(
            silence(&[]).silences(&alert, T0),
            "no matcher: the whole rule"
        );
        let mut other = silence(&[]);
        other.rule = "accident-severity".into();
        assert!(!other.silences(&alert, T0));
    }
}
