//! The alerter's configuration, read once at init from environment variables; a missing or
//! invalid variable fails the cold start with a message naming it.

use std::time::Duration;

use streamwatch_core::config::{ConfigError, Source, parsed_or, required};

use crate::handler::{Backoff, Settings};

/// SNS calls are bounded by this (main sets it as the client's operation timeout); a claim's
/// lease must outlast it, so a live publisher never loses its claim mid-publish.
pub const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `TOPIC_ARN` (required): the SNS topic notifications go to.
    pub topic_arn: String,
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
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_source(&streamwatch_core::config::Env)
    }

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
        Ok(Self {
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
}
