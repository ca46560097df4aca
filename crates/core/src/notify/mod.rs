//! Alert notifications, in three rooms:
//!
//! * [`decide`]: the state machine per (rule, key) that decides which alert becomes a
//!   notification (firing, reminder, resolved, per-event) and which is suppressed and why.
//! * [`store`]: what is stored of each decision (notification records and their life:
//!   pending, sending under a lease, sent, failed) and the [`AlertStateStore`] port that
//!   records decisions once and claims publishes with a lease.
//! * [`render`]: one notification as one SNS message (subject, email, SMS, machine JSON,
//!   attributes, within SNS's 256 KB), and the [`Notifier`] port that publishes it.
//! * [`group`]: alert grouping's rules (`GROUP_BY`, `GROUP_WAIT`, `GROUP_INTERVAL`) and its
//!   [`group::GroupStore`] port; [`group_render`]: one sealed group batch as one message.
//! * [`silence`]: silences (rule + attribute matchers + start/end) and their
//!   [`silence::SilenceStore`] port.
//! * [`slack`]: the `https` text of a message: the machine JSON or a Slack-style message.
//!
//! All decisions are by *event time* (the alerts' window end / event timestamp), never by
//! the wall clock, so replaying the same alerts in any batching gives the same notifications.
//! Only leases use the wall clock, because they are about live processes.

pub mod decide;
pub mod group;
pub mod group_render;
pub mod render;
pub mod silence;
pub mod slack;
pub mod store;

pub use decide::*;
pub use render::*;
pub use store::*;

/// Alerts the tests of every room share.
#[cfg(test)]
mod fixtures {
    use std::collections::BTreeMap;

    use crate::alert::{AlertKind, AlertRecord, WindowSummary};
    use crate::time::Micros;

    pub const MIN: Micros = 60_000_000;
    pub const T0: Micros = 1_795_262_400_000_000;

    pub fn window_alert(kind: AlertKind, i: i64) -> AlertRecord {
        let start = T0 + i * MIN;
        AlertRecord {
            id: crate::alert::window_alert_id("windspeed-avg", "device3", start, kind),
            rule: "windspeed-avg".into(),
            key: "device3".into(),
            kind,
            severity: "critical".into(),
            summary: match kind {
                AlertKind::Resolved => "Wind speed avg 41 mph <= 60 on device3".into(),
                _ => "Wind speed avg 72.4 mph > 60 on device3".into(),
            },
            event_time_micros: start + MIN,
            window: Some(WindowSummary {
                start_micros: start,
                end_micros: start + MIN,
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
}
