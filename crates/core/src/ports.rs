//! The ports: what the functions need from the outside world, as small traits. Each has an
//! AWS implementation and an embedded one in `streamwatch-adapters`; handlers are generic
//! over them. Every failure says whether retrying can help: that decides between
//! `batchItemFailures` (transient) and skip-and-count (permanent).

use std::future::Future;

use crate::alert::AlertRecord;

/// Whether a failed call is worth retrying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Throttling, 5xx, timeouts, connection trouble: retry later, same input.
    Transient,
    /// Bad input, bad config, missing resource or permission: retrying cannot help.
    Permanent,
}

/// A failed call to a port.
#[derive(Debug, thiserror::Error)]
#[error("{operation} failed ({retry:?}): {source}")]
pub struct PortError {
    pub operation: &'static str,
    pub retry: Retry,
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync + 'static>,
}

impl PortError {
    pub fn transient(
        operation: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        Self {
            operation,
            retry: Retry::Transient,
            source: source.into(),
        }
    }

    pub fn permanent(
        operation: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        Self {
            operation,
            retry: Retry::Permanent,
            source: source.into(),
        }
    }

    pub fn is_transient(&self) -> bool {
        self.retry == Retry::Transient
    }
}

/// What writing an alert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    Created,
    /// An alert with this id already exists (a retry or a duplicate): nothing written.
    AlreadyExists,
}

/// The alerts outbox: alert records written once, read by the alerter from the table's stream.
pub trait AlertOutbox: Send + Sync {
    /// Writes `alert` unless an alert with the same id exists (a conditional put).
    fn put_alert(
        &self,
        alert: &AlertRecord,
    ) -> impl Future<Output = Result<PutOutcome, PortError>> + Send;

    /// Writes each of `alerts` unless one with its id exists; one result per alert, in
    /// order. Stores that can batch do it in fewer calls (a 5.6 MB accidents batch holds
    /// hundreds of alerts); the default is `put_alert` one by one.
    fn put_alerts(
        &self,
        alerts: &[AlertRecord],
    ) -> impl Future<Output = Vec<Result<PutOutcome, PortError>>> + Send {
        async move {
            let mut results = Vec::with_capacity(alerts.len());
            for alert in alerts {
                results.push(self.put_alert(alert).await);
            }
            results
        }
    }
}

/// A shared outbox (the local pipeline gives several functions the same one).
impl<T: AlertOutbox> AlertOutbox for std::sync::Arc<T> {
    fn put_alert(
        &self,
        alert: &AlertRecord,
    ) -> impl Future<Output = Result<PutOutcome, PortError>> + Send {
        (**self).put_alert(alert)
    }

    fn put_alerts(
        &self,
        alerts: &[AlertRecord],
    ) -> impl Future<Output = Vec<Result<PutOutcome, PortError>>> + Send {
        (**self).put_alerts(alerts)
    }
}
