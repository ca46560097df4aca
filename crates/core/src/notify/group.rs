//! Alert grouping (Alertmanager's `group_by` / `group_wait` / `group_interval`): the alerts
//! of one rule that share the values of the `GROUP_BY` attributes form a group; the first
//! one waits `group_wait` for company, then one notification lists every alert that joined;
//! alerts that join later go out together, at most once per `group_interval`.
//!
//! The rules here are pure: what a join and a flush do to a group's state. The protocol that
//! applies them exactly once (conditional writes on the group's version, a member sealed into
//! one batch only) is `alerter::group`, over the [`GroupStore`] port. Times are the wall clock
//! of the join and of the flush (like Alertmanager's): grouping is about pacing live delivery,
//! not about what happened when.

use std::future::Future;

use serde::{Deserialize, Serialize};

use crate::alert::{AlertKind, AlertRecord};
use crate::ports::PortError;

use super::decide::NotificationKind;
use super::store::{NotificationRecord, NotificationStatus, StoredDecision};
use crate::time::Micros;

/// A rule's grouping: which attributes make a group and how long it waits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupPolicy {
    /// Attribute names (alert details, or `key` / `severity`); empty = no grouping.
    pub by: Vec<String>,
    /// How long a new group waits for company before its first notification.
    pub wait_micros: Micros,
    /// Least time between two notifications of one group.
    pub interval_micros: Micros,
}

impl GroupPolicy {
    pub fn groups(&self) -> bool {
        !self.by.is_empty()
    }

    /// The group `alert` belongs to: its rule and the values of the grouping attributes
    /// (a missing attribute is the empty value: such alerts group together).
    pub fn group_of(&self, alert: &AlertRecord) -> GroupKey {
        let values = self
            .by
            .iter()
            .map(|name| (name.clone(), attribute(alert, name)))
            .collect();
        GroupKey {
            rule: alert.rule.clone(),
            values,
        }
    }
}

/// An alert's attribute as grouping and silences see it: `key`, `severity`, else the alert
/// detail of that name; a missing one is the empty value.
pub fn attribute(alert: &AlertRecord, name: &str) -> String {
    match name {
        "key" => alert.key.clone(),
        "severity" => alert.severity.clone(),
        _ => alert.details.get(name).cloned().unwrap_or_default(),
    }
}

/// One group: a rule and the values of its grouping attributes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct GroupKey {
    pub rule: String,
    pub values: Vec<(String, String)>,
}

impl GroupKey {
    /// The group's id in the alerts table: `<rule>#group#<name>=<value>&…` (values with `&`
    /// or `=` percent-escaped so two groups never share an id).
    pub fn id(&self) -> String {
        let esc = |s: &str| {
            s.replace('%', "%25")
                .replace('&', "%26")
                .replace('=', "%3D")
        };
        let parts: Vec<String> = self
            .values
            .iter()
            .map(|(k, v)| format!("{}={}", esc(k), esc(v)))
            .collect();
        format!("{}#group#{}", self.rule, parts.join("&"))
    }

    /// `county=Harris, state=TX`, for subjects and logs.
    pub fn label(&self) -> String {
        let parts: Vec<String> = self
            .values
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        parts.join(", ")
    }
}

/// A group's state as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupState {
    /// Bumped by every write; writes are conditional on it.
    pub version: u64,
    /// Batches sealed so far (the next is `batches + 1`).
    pub batches: u64,
    /// When the waiting members may be flushed; `None`: nothing is waiting.
    pub due_micros: Option<Micros>,
    /// When the last batch was sealed.
    pub last_flush_micros: Option<Micros>,
}

/// The group's state after an alert joined at `now`: a group with nothing waiting becomes
/// due `group_wait` after `now` (the first alert of a burst waits for company, in a new
/// group or one idle since its last batch), but never sooner than `group_interval` after its
/// last batch; a group already waiting keeps its time. The version moves either way: a flush
/// that read the members before this one joined then fails its conditional seal and reads
/// again, so a member never joins a group whose due time a concurrent flush is clearing.
pub fn on_join(state: Option<&GroupState>, now: Micros, policy: &GroupPolicy) -> GroupState {
    let s = state.cloned().unwrap_or_default();
    if s.due_micros.is_some() {
        return GroupState {
            version: s.version + 1,
            ..s
        };
    }
    // A burst waits for company, whether the group is new or was idle; an open group's
    // next batch waits for the interval as well.
    let wait = now.saturating_add(policy.wait_micros);
    let due = match s.last_flush_micros {
        None => wait,
        Some(last) => wait.max(last.saturating_add(policy.interval_micros)),
    };
    GroupState {
        version: s.version + 1,
        due_micros: Some(due),
        ..s
    }
}

/// Whether a flush at `now` may seal the group's waiting members.
pub fn is_due(state: &GroupState, now: Micros) -> bool {
    state.due_micros.is_some_and(|due| due <= now)
}

/// The state after sealing a batch at `now` (or, with no member waiting, after clearing a
/// due time a retried join left behind).
pub fn on_flush(state: &GroupState, now: Micros, sealed_members: usize) -> GroupState {
    if sealed_members == 0 {
        return GroupState {
            version: state.version + 1,
            due_micros: None,
            ..state.clone()
        };
    }
    GroupState {
        version: state.version + 1,
        batches: state.batches + 1,
        due_micros: None,
        last_flush_micros: Some(now),
    }
}

/// Most alerts one batch holds: a seal is one DynamoDB transaction of at most 100 actions
/// (the group, the batch record, the batch's pending notification record, one per member).
/// More waiting go out in the next batch.
pub const MAX_BATCH_ALERTS: usize = 97;

/// One group notification: the batch's number and its alerts, worst first.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupBatch {
    pub group: GroupKey,
    pub number: u64,
    pub alerts: Vec<AlertRecord>,
}

impl GroupBatch {
    /// The batch's notification id: unique per group and batch number, so the publish goes
    /// through the alerter's claim path like any notification.
    pub fn notification_id(&self) -> String {
        format!("{}#{}", self.group.id(), self.number)
    }

    /// The batch's notification record, pending: written when the batch is sealed, so the
    /// publish goes through the claim → publish → mark-sent path, and recovery finds it in
    /// the unsent index if the sender dies.
    pub fn notification(&self, now_micros: Micros) -> NotificationRecord {
        NotificationRecord {
            alert_id: self.notification_id(),
            rule: self.group.rule.clone(),
            key: self.group.label(),
            alert_kind: AlertKind::Event,
            event_time_micros: self
                .alerts
                .iter()
                .map(|a| a.event_time_micros)
                .max()
                .unwrap_or(now_micros),
            outcome: StoredDecision::Notify(NotificationKind::Event),
            firing_since_micros: None,
            episode_alerts: self.alerts.len() as u64,
            status: NotificationStatus::Pending,
            attempts: 0,
            decided_at_micros: now_micros,
        }
    }
}

/// Whether a notification id names a group batch (`<rule>#group#…#<n>`) rather than an alert.
pub fn is_batch_id(notification_id: &str) -> bool {
    notification_id.contains("#group#")
}

/// The `GROUP_BY` variable: `rule=attr,attr;rule=attr` (spaces around names ignored). A rule
/// with an empty list (`rule=`) is not grouped. The error says what is wrong, for the
/// configuration error that names the variable.
pub fn parse_group_by(spec: &str) -> Result<Vec<(String, Vec<String>)>, String> {
    let mut rules: Vec<(String, Vec<String>)> = Vec::new();
    for part in spec.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((rule, attrs)) = part.split_once('=') else {
            return Err(format!("`{part}`: expected rule=attribute,attribute"));
        };
        let rule = rule.trim();
        if rule.is_empty() {
            return Err(format!("`{part}`: empty rule name"));
        }
        if rules.iter().any(|(r, _)| r == rule) {
            return Err(format!("rule `{rule}` is listed twice"));
        }
        let attrs: Vec<String> = attrs.split(',').map(|a| a.trim().to_owned()).collect();
        let attrs = if attrs.len() == 1 && attrs[0].is_empty() {
            vec![]
        } else if attrs.iter().any(String::is_empty) {
            return Err(format!("`{part}`: empty attribute name"));
        } else {
            attrs
        };
        rules.push((rule.to_owned(), attrs));
    }
    Ok(rules)
}

/// Orders a batch's alerts worst first: higher numeric severity, then text severity, then
/// the earlier event, then the id (a total order: the same members render the same text).
pub fn worst_first(alerts: &mut [AlertRecord]) {
    alerts.sort_by(|a, b| {
        let num = |x: &AlertRecord| x.severity.trim().parse::<f64>().ok();
        num(b)
            .partial_cmp(&num(a))
            .unwrap_or(std::cmp::Ordering::Equal)
            .then_with(|| b.severity.cmp(&a.severity))
            .then_with(|| a.event_time_micros.cmp(&b.event_time_micros))
            .then_with(|| a.id.cmp(&b.id))
    });
}

/// What [`GroupStore::put_member`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Joined {
    New,
    /// The alert was a member already (a retry or a duplicate delivery).
    Already,
}

/// Where groups live (the alerts table, or the embedded store).
pub trait GroupStore: Send + Sync {
    /// Adds `alert` to the group's waiting members unless it is a member already.
    fn put_member(
        &self,
        group: &GroupKey,
        alert: &AlertRecord,
    ) -> impl Future<Output = Result<Joined, PortError>> + Send;

    /// The group's state, read strongly consistent.
    fn group(
        &self,
        group: &GroupKey,
    ) -> impl Future<Output = Result<Option<GroupState>, PortError>> + Send;

    /// Writes `next` if the stored version is `expected` (`None`: no state yet); false when
    /// another writer came first.
    fn put_group(
        &self,
        group: &GroupKey,
        expected: Option<u64>,
        next: &GroupState,
    ) -> impl Future<Output = Result<bool, PortError>> + Send;

    /// Members not sealed into a batch yet.
    fn waiting(
        &self,
        group: &GroupKey,
    ) -> impl Future<Output = Result<Vec<AlertRecord>, PortError>> + Send;

    /// Atomically: the group's state from version `expected` to `next`, every alert of
    /// `batch` sealed into it (each only if not sealed yet), and the batch's notification
    /// recorded as pending. False (nothing written) when any condition failed.
    fn seal(
        &self,
        expected: u64,
        next: &GroupState,
        batch: &GroupBatch,
    ) -> impl Future<Output = Result<bool, PortError>> + Send;

    /// A sealed batch by its notification id (its alerts worst first), to send it again
    /// after a crash; `None` when it is unknown (or expired).
    fn batch(
        &self,
        notification_id: &str,
    ) -> impl Future<Output = Result<Option<GroupBatch>, PortError>> + Send;

    /// Groups due at `now` (at most `limit`), for the schedule's flush.
    fn due(
        &self,
        now: Micros,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<GroupKey>, PortError>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::fixtures::{MIN, T0};

    fn policy() -> GroupPolicy {
        GroupPolicy {
            by: vec!["County".into(), "State".into()],
            wait_micros: MIN / 2,
            interval_micros: 5 * MIN,
        }
    }

    #[test]
    fn a_new_group_waits_group_wait_then_an_open_one_group_interval() {
        let p = policy();
        let s = on_join(None, T0, &p);
        assert_eq!(s.due_micros, Some(T0 + MIN / 2));
        let again = on_join(Some(&s), T0 + 10, &p);
        assert_eq!(
            again.due_micros, s.due_micros,
            "a waiting group keeps its time"
        );
        assert_eq!(again.version, s.version + 1);
        assert!(!is_due(&s, T0 + MIN / 2 - 1) && is_due(&s, T0 + MIN / 2));
        let flushed = on_flush(&s, T0 + MIN, 3);
        assert_eq!((flushed.batches, flushed.due_micros), (1, None));
        // joining soon after a flush waits for the interval; long after, for company
        assert_eq!(
            on_join(Some(&flushed), T0 + 2 * MIN, &p).due_micros,
            Some(T0 + 6 * MIN)
        );
        assert_eq!(
            on_join(Some(&flushed), T0 + 9 * MIN, &p).due_micros,
            Some(T0 + 9 * MIN + MIN / 2)
        );
        // a flush with nothing waiting only clears the due time
        let empty = on_flush(&s, T0 + MIN, 0);
        assert_eq!(
            (empty.batches, empty.due_micros, empty.last_flush_micros),
            (0, None, None)
        );
    }

    #[test]
    fn group_by_names_rules_and_attributes_or_says_what_is_wrong() {
        assert_eq!(
            parse_group_by(" accident-severity = County, State ; windspeed-avg=").unwrap(),
            vec![
                (
                    "accident-severity".to_owned(),
                    vec!["County".to_owned(), "State".to_owned()]
                ),
                ("windspeed-avg".to_owned(), vec![]),
            ]
        );
        assert_eq!(parse_group_by("").unwrap(), vec![]);
        assert!(
            parse_group_by("County,State")
                .unwrap_err()
                .contains("rule=")
        );
        assert!(
            parse_group_by("r=a,,b")
                .unwrap_err()
                .contains("empty attribute")
        );
        assert!(parse_group_by("r=a;r=b").unwrap_err().contains("twice"));
        assert!(parse_group_by("=a").unwrap_err().contains("empty rule"));
    }

    #[test]
    fn group_ids_never_collide_on_separators() {
        let k = |v: &str| GroupKey {
            rule: "r".into(),
            values: vec![("a".into(), v.into())],
        };
        assert_ne!(
            k("x&b=y").id(),
            GroupKey {
                rule: "r".into(),
                values: vec![("a".into(), "x".into()), ("b".into(), "y".into())],
            }
            .id()
        );
        assert_eq!(k("Harris").id(), "r#group#a=Harris");
    }
}
