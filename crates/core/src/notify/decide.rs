//! The decision state machine per (rule, key): which alert becomes a notification (firing,
//! reminder, resolved, per-event) and which is suppressed and why, by event time only.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::alert::{AlertKind, AlertRecord};
use crate::time::{Micros, format_micros};

/// How often a key that keeps firing is reminded, by default.
pub const DEFAULT_REPEAT_INTERVAL_MICROS: Micros = 15 * 60 * 1_000_000;

/// What a notification tells its reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotificationKind {
    /// A (rule, key) started firing.
    Firing,
    /// A (rule, key) is still firing, at least one repeat interval after the last message.
    Reminder,
    /// A firing (rule, key) is back under its threshold.
    Resolved,
    /// A per-event alert (no state, no reminder, no resolved).
    Event,
}

impl NotificationKind {
    /// The `state` message attribute, for SNS filter policies.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Firing => "firing",
            Self::Reminder => "reminder",
            Self::Resolved => "resolved",
            Self::Event => "event",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "firing" => Self::Firing,
            "reminder" => Self::Reminder,
            "resolved" => Self::Resolved,
            "event" => Self::Event,
            _ => return None,
        })
    }

    /// The subject tag people scan their inbox for.
    pub fn tag(self) -> &'static str {
        match self {
            Self::Firing => "[FIRING]",
            Self::Reminder => "[REMINDER]",
            Self::Resolved => "[RESOLVED]",
            Self::Event => "[ALERT]",
        }
    }
}

/// Whether a (rule, key) is currently firing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyStatus {
    Firing,
    Resolved,
}

impl KeyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Firing => "firing",
            Self::Resolved => "resolved",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "firing" => Some(Self::Firing),
            "resolved" => Some(Self::Resolved),
            _ => None,
        }
    }
}

/// The alert state of one (rule, key), as stored between invocations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertState {
    pub rule: String,
    pub key: String,
    pub status: KeyStatus,
    /// Event time the current status began (first firing alert, or the resolution).
    pub since_micros: Micros,
    /// Event time of the last firing or reminder notification of the current episode.
    pub last_notified_micros: Option<Micros>,
    /// Latest alert event time seen for this (rule, key).
    pub last_event_micros: Micros,
    /// Firing alerts seen since the current episode began (notified or not).
    pub episode_alerts: u64,
    /// Per-key sequence number (the outbox's write order) of the last alert decided;
    /// `None` for a state written before alerts were numbered.
    pub decided_seq: Option<u64>,
    /// Bumped by every decision; stores write conditionally on it, so two invocations
    /// deciding about the same (rule, key) at once cannot both act on the same state.
    pub version: u64,
}

/// Why an alert did not become a notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suppression {
    /// The key is firing and was notified less than one repeat interval (event time) ago.
    WithinRepeatInterval {
        last_notified_micros: Micros,
        next_reminder_micros: Micros,
    },
    /// A resolved alert for a key that is not firing (never fired, or already resolved).
    NotFiring,
}

impl fmt::Display for Suppression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WithinRepeatInterval {
                last_notified_micros,
                next_reminder_micros,
            } => write!(
                f,
                "within repeat interval: last notified for event time {}, next reminder from {}",
                format_micros(*last_notified_micros),
                format_micros(*next_reminder_micros)
            ),
            Self::NotFiring => f.write_str("not firing: nothing to resolve"),
        }
    }
}

/// What to do with one alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Notify(NotificationKind),
    Suppress(Suppression),
}

/// The decision about one alert and the state it moves its (rule, key) to.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub decision: Decision,
    /// The state to write (version already bumped); `None` for per-event alerts.
    pub next: Option<AlertState>,
    /// Start of the firing episode the alert belongs to, for the message.
    pub firing_since_micros: Option<Micros>,
    /// Firing alerts of the episode so far, for the message.
    pub episode_alerts: u64,
}

/// The alert state machine. Per (rule, key), fed the key's alerts in the order the outbox
/// wrote them (the alerter restores that order whatever the delivery order, see
/// `crates/alerter/src/handler.rs`):
///
/// * a firing alert when not firing (no state, or resolved) → **firing**, the episode
///   starts at its event time;
/// * a firing alert while firing → **reminder** when its event time is at least
///   `repeat_micros` after the last notification's, otherwise suppressed. So a key firing
///   for 60 one-minute windows with a 15 min interval gets reminders at windows 16, 31, 46;
/// * a resolved alert while firing → **resolved**; otherwise suppressed (nothing to
///   resolve);
/// * a per-event alert → **event**, always, with no state.
pub fn decide(
    state: Option<&AlertState>,
    alert: &AlertRecord,
    repeat_micros: Micros,
) -> Transition {
    let t = alert.event_time_micros;
    let version = state.map_or(0, |s| s.version) + 1;
    let last_event = state.map_or(t, |s| s.last_event_micros.max(t));
    let decided_seq = state.and_then(|s| s.decided_seq);
    let fresh = |status, since, last_notified, episode_alerts| AlertState {
        rule: alert.rule.clone(),
        key: alert.key.clone(),
        status,
        since_micros: since,
        last_notified_micros: last_notified,
        last_event_micros: last_event,
        episode_alerts,
        decided_seq,
        version,
    };
    match alert.kind {
        AlertKind::Event => Transition {
            decision: Decision::Notify(NotificationKind::Event),
            next: None,
            firing_since_micros: None,
            episode_alerts: 0,
        },
        AlertKind::Firing => match state {
            Some(s) if s.status == KeyStatus::Firing => {
                let episode_alerts = s.episode_alerts + 1;
                let last = s.last_notified_micros.unwrap_or(s.since_micros);
                let next_reminder = last.saturating_add(repeat_micros);
                let (decision, last_notified) = if t >= next_reminder {
                    (Decision::Notify(NotificationKind::Reminder), t)
                } else {
                    let why = Suppression::WithinRepeatInterval {
                        last_notified_micros: last,
                        next_reminder_micros: next_reminder,
                    };
                    (Decision::Suppress(why), last)
                };
                Transition {
                    decision,
                    next: Some(fresh(
                        KeyStatus::Firing,
                        s.since_micros,
                        Some(last_notified),
                        episode_alerts,
                    )),
                    firing_since_micros: Some(s.since_micros),
                    episode_alerts,
                }
            }
            _ => Transition {
                decision: Decision::Notify(NotificationKind::Firing),
                next: Some(fresh(KeyStatus::Firing, t, Some(t), 1)),
                firing_since_micros: Some(t),
                episode_alerts: 1,
            },
        },
        AlertKind::Resolved => match state {
            Some(s) if s.status == KeyStatus::Firing => Transition {
                decision: Decision::Notify(NotificationKind::Resolved),
                next: Some(fresh(KeyStatus::Resolved, t, None, 0)),
                firing_since_micros: Some(s.since_micros),
                episode_alerts: s.episode_alerts,
            },
            Some(s) => Transition {
                decision: Decision::Suppress(Suppression::NotFiring),
                next: Some(fresh(KeyStatus::Resolved, s.since_micros.max(t), None, 0)),
                firing_since_micros: None,
                episode_alerts: 0,
            },
            None => Transition {
                decision: Decision::Suppress(Suppression::NotFiring),
                next: Some(fresh(KeyStatus::Resolved, t, None, 0)),
                firing_since_micros: None,
                episode_alerts: 0,
            },
        },
    }
}

/// A (rule, key) state as the next decision must see it: forgotten (not firing, a fresh
/// episode next) when the alert comes more than `lifetime_micros` of event time after the
/// key's last alert — the same lifetime the window-aggregator keeps its per-key state, so
/// a turbine silent that long while firing starts over in both instead of coming back as
/// a REMINDER "firing for 3 days". The version and sequence are kept: the store's
/// conditional write still applies.
pub fn expire(
    state: Option<AlertState>,
    alert: &AlertRecord,
    lifetime_micros: Micros,
) -> Option<AlertState> {
    let s = state?;
    if alert.event_time_micros.saturating_sub(s.last_event_micros) <= lifetime_micros {
        return Some(s);
    }
    Some(AlertState {
        status: KeyStatus::Resolved,
        since_micros: s.last_event_micros,
        last_notified_micros: None,
        episode_alerts: 0,
        ..s
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::fixtures::{MIN, T0, window_alert};

    fn run(alerts: &[AlertRecord], repeat: Micros) -> Vec<Decision> {
        let mut state: Option<AlertState> = None;
        alerts
            .iter()
            .map(|a| {
                let t = decide(state.as_ref(), a, repeat);
                if t.next.is_some() {
                    state = t.next.clone();
                }
                t.decision
            })
            .collect()
    }

    fn notified(decisions: &[Decision]) -> Vec<NotificationKind> {
        decisions
            .iter()
            .filter_map(|d| match d {
                Decision::Notify(k) => Some(*k),
                Decision::Suppress(_) => None,
            })
            .collect()
    }

    #[test]
    fn a_storm_of_sixty_windows_is_one_firing_three_reminders_one_resolved() {
        let mut alerts: Vec<_> = (0..60)
            .map(|i| window_alert(AlertKind::Firing, i))
            .collect();
        alerts.push(window_alert(AlertKind::Resolved, 60));
        let decisions = run(&alerts, DEFAULT_REPEAT_INTERVAL_MICROS);
        use NotificationKind::*;
        assert_eq!(
            notified(&decisions),
            [Firing, Reminder, Reminder, Reminder, Resolved]
        );
        // Windows 0, 15, 30, 45 notify: each 15 min (event time) after the previous one.
        let at: Vec<usize> = decisions
            .iter()
            .enumerate()
            .filter(|(_, d)| matches!(d, Decision::Notify(_)))
            .map(|(i, _)| i)
            .collect();
        assert_eq!(at, [0, 15, 30, 45, 60]);
        assert!(matches!(
            decisions[1],
            Decision::Suppress(Suppression::WithinRepeatInterval { next_reminder_micros, .. })
                if next_reminder_micros == T0 + 16 * MIN
        ));
    }

    #[test]
    fn events_have_no_state_and_resolutions_need_a_firing_key() {
        let mut event = window_alert(AlertKind::Event, 0);
        event.window = None;
        let t = decide(None, &event, MIN);
        assert_eq!(t.decision, Decision::Notify(NotificationKind::Event));
        assert!(t.next.is_none());

        let resolved = window_alert(AlertKind::Resolved, 5);
        let t = decide(None, &resolved, MIN);
        assert_eq!(t.decision, Decision::Suppress(Suppression::NotFiring));
        // The machine is fed in write order: a firing alert after a resolution starts an
        // episode, whatever its event time (the alerter, not the machine, restores order).
        let next = decide(t.next.as_ref(), &window_alert(AlertKind::Firing, 3), MIN);
        assert_eq!(next.decision, Decision::Notify(NotificationKind::Firing));
        assert_eq!(next.next.as_ref().map(|s| s.version), Some(2));
    }

    #[test]
    fn a_key_silent_for_longer_than_the_state_lifetime_starts_a_fresh_episode() {
        let first = decide(None, &window_alert(AlertKind::Firing, 0), MIN);
        let later = window_alert(AlertKind::Firing, 3 * 24 * 60);
        let lifetime = 48 * 60 * MIN;
        let kept = decide(first.next.clone().as_ref(), &later, 15 * MIN);
        assert_eq!(kept.decision, Decision::Notify(NotificationKind::Reminder));
        let state = expire(first.next.clone(), &later, lifetime);
        let fresh = decide(state.as_ref(), &later, 15 * MIN);
        assert_eq!(fresh.decision, Decision::Notify(NotificationKind::Firing));
        assert_eq!(fresh.next.map(|s| s.version), Some(2));
        // Within the lifetime nothing changes.
        let soon = window_alert(AlertKind::Firing, 60);
        assert_eq!(expire(first.next.clone(), &soon, lifetime), first.next);
    }

    #[test]
    fn out_of_order_firing_alerts_never_remind_early() {
        // Window 20 first, then 10: 10 is older than the last notification.
        let alerts = [
            window_alert(AlertKind::Firing, 20),
            window_alert(AlertKind::Firing, 10),
            window_alert(AlertKind::Firing, 34),
            window_alert(AlertKind::Firing, 35),
        ];
        use NotificationKind::*;
        assert_eq!(notified(&run(&alerts, 15 * MIN)), [Firing, Reminder]);
    }
}
