//! The alerter's configuration, read once at init from environment variables; a missing or
//! invalid variable fails the cold start with a message naming it.

use std::collections::BTreeMap;
use std::time::Duration;

use streamwatch_core::clock::micros;
use streamwatch_core::config::{ConfigError, Source, parsed_or, required};
use streamwatch_core::notify::group::{GroupPolicy, parse_group_by};
use streamwatch_core::notify::slack::HttpsFormat;

use crate::handler::{Backoff, Settings};

/// SNS calls are bounded by this (main sets it as the client's operation timeout); a claim's
/// lease must outlast it, so a live publisher never loses its claim mid-publish.
pub const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `TOPIC_ARN` (required): the SNS topic notifications go to.
    pub topic_arn: String,
    /// `TOPIC_ROUTES` (default none): `rule=topic-arn;…` — the notifications of a listed rule
    /// (its single alerts and its group notifications) go to that topic instead of
    /// `TOPIC_ARN`. The template sets `accident-severity=${AccidentTopicArn}` when that
    /// parameter is given.
    pub topic_routes: BTreeMap<String, String>,
    /// `HTTPS_MESSAGE_FORMAT` (`json`, the default, or `slack`): what HTTPS subscribers get —
    /// the machine JSON, or a Slack-style `{"text", "blocks"}` message.
    pub https_format: HttpsFormat,
    /// `ALERTS_TABLE` (required): the alerts table; alert state and notification records
    /// live in it too (see `streamwatch_adapters::alert_state`).
    pub alerts_table: String,
    /// `REPEAT_INTERVAL_SECONDS` (default 900): while a key keeps firing, remind at most
    /// once per this much event time.
    pub repeat_interval: Duration,
    /// `CLAIM_LEASE_SECONDS` (default 30, at least 15): how long a publisher's claim holds
    /// before another invocation may presume it dead and send again.
    pub claim_lease: Duration,
    /// `CLAIM_WAIT_SECONDS` (default 20): how long to wait for another invocation's claim on
    /// the same alert to finish before reporting the record for a retry.
    pub claim_wait: Duration,
    /// `RETRY_ATTEMPTS` (default 3): attempts per SNS/DynamoDB call on transient failures
    /// (on top of the SDK's own retries), with exponential backoff from 100 ms.
    pub retry_attempts: u32,
    /// `MAX_SEND_ATTEMPTS` (default 20): claims of one notification before recovery gives it
    /// up as `failed` (metric `NotificationsFailed`; `streamwatch alerts redrive` resets it).
    pub max_send_attempts: u32,
    /// `STATE_TTL_HOURS` (default 48, the window-aggregator's): a key's alert state is
    /// forgotten after this much event time without an alert. One template parameter
    /// (`KeyStateLifetimeHours`) sets both functions'.
    pub state_lifetime: Duration,
    /// `GROUP_BY` (default none): `rule=attribute,attribute;…` — per-event alerts of a listed
    /// rule with equal values of those attributes (alert details such as `County`, or `key`,
    /// `severity`) go out together, one notification per group and interval (see
    /// `crate::group`). Rules not listed, or listed with no attribute, send one
    /// notification per alert (and stateful rules keep their per-key episodes).
    pub group_by: Vec<(String, Vec<String>)>,
    /// `GROUP_WAIT_SECONDS` (default 30): how long a new group waits for company; the
    /// schedule's pass sends it, so it goes out at the first pass after this.
    pub group_wait: Duration,
    /// `GROUP_INTERVAL_SECONDS` (default 300, at least 1): least time between two
    /// notifications of one group.
    pub group_interval: Duration,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_source(&streamwatch_core::config::Env)
    }

    /// Reads and checks every variable, one block each (the first bad one is the error, named).
    /// Longer than 80 lines because the function has that many settings: one flat list reads
    /// better than the same blocks spread over helpers.
    pub fn from_source(src: &impl Source) -> Result<Self, ConfigError> {
        let invalid = |variable: &str, reason: String| ConfigError {
            variable: variable.into(),
            reason,
        };
        let repeat: u64 = parsed_or(src, "REPEAT_INTERVAL_SECONDS", 900)?;
        if repeat == 0 {
            return Err(invalid(
                "REPEAT_INTERVAL_SECONDS",
                "must be at least 1".into(),
            ));
        }
        let lease: u64 = parsed_or(src, "CLAIM_LEASE_SECONDS", 30)?;
        let min_lease = PUBLISH_TIMEOUT.as_secs() + 5;
        if lease < min_lease {
            return Err(invalid(
                "CLAIM_LEASE_SECONDS",
                format!(
                    "must be at least {min_lease} (the {} s publish timeout plus a margin)",
                    PUBLISH_TIMEOUT.as_secs()
                ),
            ));
        }
        let wait: u64 = parsed_or(src, "CLAIM_WAIT_SECONDS", 20)?;
        if wait > 600 {
            return Err(invalid("CLAIM_WAIT_SECONDS", "must be at most 600".into()));
        }
        let attempts: u32 = parsed_or(src, "RETRY_ATTEMPTS", 3)?;
        if !(1..=10).contains(&attempts) {
            return Err(invalid("RETRY_ATTEMPTS", "must be between 1 and 10".into()));
        }
        let max_send: u32 = parsed_or(src, "MAX_SEND_ATTEMPTS", 20)?;
        if !(1..=1000).contains(&max_send) {
            return Err(invalid(
                "MAX_SEND_ATTEMPTS",
                "must be between 1 and 1000".into(),
            ));
        }
        let ttl_hours: u64 = parsed_or(src, "STATE_TTL_HOURS", 48)?;
        if ttl_hours == 0 {
            return Err(invalid("STATE_TTL_HOURS", "must be at least 1".into()));
        }
        let group_by = match src.get("GROUP_BY") {
            None => vec![],
            Some(spec) => parse_group_by(&spec).map_err(|reason| invalid("GROUP_BY", reason))?,
        };
        let topic_routes = match src.get("TOPIC_ROUTES") {
            None => BTreeMap::new(),
            Some(spec) => parse_routes(&spec).map_err(|reason| invalid("TOPIC_ROUTES", reason))?,
        };
        let https_format = parsed_or(src, "HTTPS_MESSAGE_FORMAT", HttpsFormat::Json)?;
        let group_wait: u64 = parsed_or(src, "GROUP_WAIT_SECONDS", 30)?;
        if group_wait > 86_400 {
            return Err(invalid(
                "GROUP_WAIT_SECONDS",
                "must be at most 86400 (a day)".into(),
            ));
        }
        let group_interval: u64 = parsed_or(src, "GROUP_INTERVAL_SECONDS", 300)?;
        if !(1..=86_400).contains(&group_interval) {
            return Err(invalid(
                "GROUP_INTERVAL_SECONDS",
                "must be between 1 and 86400 (a day)".into(),
            ));
        }
        Ok(Self {
            topic_routes,
            https_format,
            group_by,
            group_wait: Duration::from_secs(group_wait),
            group_interval: Duration::from_secs(group_interval),
            state_lifetime: Duration::from_secs(ttl_hours * 3600),
            max_send_attempts: max_send,
            topic_arn: required(src, "TOPIC_ARN")?,
            alerts_table: required(src, "ALERTS_TABLE")?,
            repeat_interval: Duration::from_secs(repeat),
            claim_lease: Duration::from_secs(lease),
            claim_wait: Duration::from_secs(wait),
            retry_attempts: attempts,
        })
    }

    /// The grouping policy of each rule that groups (`GROUP_BY` with attributes).
    pub fn group_policies(&self) -> BTreeMap<String, GroupPolicy> {
        self.group_by
            .iter()
            .filter(|(_, by)| !by.is_empty())
            .map(|(rule, by)| {
                let policy = GroupPolicy {
                    by: by.clone(),
                    wait_micros: micros(self.group_wait),
                    interval_micros: micros(self.group_interval),
                };
                (rule.clone(), policy)
            })
            .collect()
    }

    /// What the handler needs from the configuration.
    pub fn settings(&self) -> Settings {
        Settings {
            repeat_interval: self.repeat_interval,
            claim_lease: self.claim_lease,
            claim_wait: self.claim_wait,
            retry: Backoff {
                attempts: self.retry_attempts,
                ..Backoff::default()
            },
            max_attempts: self.max_send_attempts,
            state_lifetime: self.state_lifetime,
        }
    }
}

/// `TOPIC_ROUTES`: `rule=arn:aws:sns:region:account:topic;…` (spaces around parts ignored;
/// empty: no route). Each rule at most once; each ARN an SNS topic's.
pub fn parse_routes(spec: &str) -> Result<BTreeMap<String, String>, String> {
    let mut routes = BTreeMap::new();
    for entry in spec.split(';').map(str::trim).filter(|e| !e.is_empty()) {
        let Some((rule, arn)) = entry.split_once('=') else {
            return Err(format!("`{entry}`: expected rule=topic-arn"));
        };
        let (rule, arn) = (rule.trim(), arn.trim());
        if rule.is_empty() || rule.contains(char::is_whitespace) {
            return Err(format!("`{entry}`: the rule name is empty or has spaces"));
        }
        if !is_topic_arn(arn) {
            return Err(format!(
                "`{arn}` is not a standard SNS topic's ARN (arn:aws:sns:<region>:<account>:<topic>)"
            ));
        }
        if routes.insert(rule.to_owned(), arn.to_owned()).is_some() {
            return Err(format!("rule `{rule}` is routed twice"));
        }
    }
    Ok(routes)
}

/// `arn:<partition>:sns:<region>:<12-digit account>:<topic name>` (a name of 1–256 letters,
/// digits, `-` or `_`): a standard topic — a FIFO one (`.fifo`) needs a message group id,
/// which the alerter does not send.
fn is_topic_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.split(':').collect();
    let [prefix, partition, service, region, account, name] = parts.as_slice() else {
        return false;
    };
    *prefix == "arn"
        && partition.starts_with("aws")
        && *service == "sns"
        && !region.is_empty()
        && account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && (1..=256).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_errors_name_the_variable() {
        let c = Config::from_source(&[("TOPIC_ARN", "arn:t"), ("ALERTS_TABLE", "alerts")]).unwrap();
        assert_eq!(c.repeat_interval, Duration::from_secs(900));
        assert_eq!(c.claim_lease, Duration::from_secs(30));
        assert_eq!(c.claim_wait, Duration::from_secs(20));
        assert_eq!(c.retry_attempts, 3);

        let err = Config::from_source(&[("ALERTS_TABLE", "alerts")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "configuration variable TOPIC_ARN: is not set"
        );
        let err = Config::from_source(&[("TOPIC_ARN", "arn:t")]).unwrap_err();
        assert_eq!(err.variable, "ALERTS_TABLE");
        let err = Config::from_source(&[
            ("TOPIC_ARN", "arn:t"),
            ("ALERTS_TABLE", "alerts"),
            ("REPEAT_INTERVAL_SECONDS", "15m"),
        ])
        .unwrap_err();
        assert_eq!(err.variable, "REPEAT_INTERVAL_SECONDS");
        let err = Config::from_source(&[
            ("TOPIC_ARN", "arn:t"),
            ("ALERTS_TABLE", "alerts"),
            ("CLAIM_LEASE_SECONDS", "5"),
        ])
        .unwrap_err();
        assert_eq!(err.variable, "CLAIM_LEASE_SECONDS");
    }

    #[test]
    fn routes_name_a_topic_per_rule_and_bad_ones_fail_naming_the_variable() {
        let with = |routes: &str| {
            Config::from_source(&[
                ("TOPIC_ARN", "arn:t"),
                ("ALERTS_TABLE", "alerts"),
                ("TOPIC_ROUTES", routes),
            ])
        };
        assert!(with("").unwrap().topic_routes.is_empty());
        let arn = "arn:aws:sns:eu-west-1:123456789012:traffic-desk";
        let c = with(&format!(" accident-severity = {arn} ;")).unwrap();
        assert_eq!(
            c.topic_routes,
            BTreeMap::from([("accident-severity".to_owned(), arn.to_owned())])
        );
        assert!(with("r=arn:aws-us-gov:sns:us-gov-west-1:123456789012:t_1").is_ok());
        let format = |value: &str| {
            Config::from_source(&[
                ("TOPIC_ARN", "arn:t"),
                ("ALERTS_TABLE", "alerts"),
                ("HTTPS_MESSAGE_FORMAT", value),
            ])
        };
        assert_eq!(format("slack").unwrap().https_format, HttpsFormat::Slack);
        assert_eq!(
            format("bogus").unwrap_err().variable,
            "HTTPS_MESSAGE_FORMAT"
        );
        for bad in [
            "accident-severity",
            "=arn:aws:sns:eu-west-1:123456789012:t",
            "r=arn:aws:sqs:eu-west-1:123456789012:t",
            "r=arn:aws:sns:eu-west-1:1234:t",
            "r=arn:aws:sns:eu-west-1:123456789012:",
            "r=arn:aws:sns:eu-west-1:123456789012:a b",
            "r=arn:aws:sns:eu-west-1:123456789012:t.fifo",
            "r=arn:aws:sns:eu-west-1:123456789012:t;r=arn:aws:sns:eu-west-1:123456789012:u",
        ] {
            let err = with(bad).unwrap_err();
            assert_eq!(err.variable, "TOPIC_ROUTES", "{bad}: {err}");
        }
    }

    #[test]
    fn grouping_is_per_rule_and_bad_values_name_their_variable() {
        let base = [("TOPIC_ARN", "arn:t"), ("ALERTS_TABLE", "alerts")];
        let c = Config::from_source(&base).unwrap();
        assert!(c.group_policies().is_empty(), "no grouping unless asked");
        assert_eq!(
            (c.group_wait, c.group_interval),
            (Duration::from_secs(30), Duration::from_secs(300))
        );
        let with = |(var, value): (&str, &str)| {
            let mut vars: std::collections::HashMap<String, String> = base
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            vars.insert(var.into(), value.into());
            Config::from_source(&vars)
        };
        let c = with(("GROUP_BY", "accident-severity=County,State;windspeed-avg=")).unwrap();
        let policies = c.group_policies();
        assert_eq!(policies.keys().collect::<Vec<_>>(), ["accident-severity"]);
        assert_eq!(policies["accident-severity"].by, ["County", "State"]);
        assert_eq!(policies["accident-severity"].wait_micros, 30_000_000);
        assert_eq!(policies["accident-severity"].interval_micros, 300_000_000);
        for (var, value) in [
            ("GROUP_BY", "County,State"),
            ("GROUP_BY", "r=a,,b"),
            ("GROUP_WAIT_SECONDS", "30s"),
            ("GROUP_WAIT_SECONDS", "90000"),
            ("GROUP_INTERVAL_SECONDS", "0"),
            ("GROUP_INTERVAL_SECONDS", "-5"),
        ] {
            let err = with((var, value)).unwrap_err();
            assert_eq!(err.variable, var, "{var}={value}: {err}");
        }
    }
}
