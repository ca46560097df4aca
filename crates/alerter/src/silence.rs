//! Silences as the alerter applies them: loaded once per invocation (one Query), then every
//! decision to notify is checked against them; a silenced alert is recorded as suppressed
//! (`silenced by <id>`), counted in `Silenced`, and not sent (see
//! `streamwatch_core::notify::silence`).
//!
//! If the silences cannot be read, the alerter keeps the ones it read last (none on a cold
//! start) and goes on: a failed read must not hold notifications back.

use std::sync::Mutex;

use streamwatch_core::AlertRecord;
use streamwatch_core::PortError;
use streamwatch_core::notify::silence::{Silence, SilenceStore, silenced_by};
use streamwatch_core::time::Micros;
use tracing::warn;

/// The silence store and the silences read by this invocation.
pub struct Silences<Z = NoSilences> {
    pub store: Z,
    loaded: Mutex<Vec<Silence>>,
}

impl Silences<NoSilences> {
    /// No silences.
    pub fn off() -> Self {
        Self::new(NoSilences)
    }
}

impl<Z: SilenceStore> Silences<Z> {
    pub fn new(store: Z) -> Self {
        Self {
            store,
            loaded: Mutex::new(Vec::new()),
        }
    }

    /// Reads the silences not ended at `now`; on failure keeps the last ones read.
    pub async fn refresh(&self, now: Micros) {
        match self.store.current(now).await {
            Ok(current) => *self.lock() = current,
            Err(err) => {
                warn!(error = %err, "cannot read the silences; using the last ones read")
            }
        }
    }

    /// The silence that silences `alert` at `now`, among those read last.
    pub fn silencing(&self, alert: &AlertRecord, now: Micros) -> Option<Silence> {
        silenced_by(&self.lock(), alert, now).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Silence>> {
        self.loaded.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The store of a deployment without silences.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoSilences;

impl SilenceStore for NoSilences {
    async fn current(&self, _: Micros) -> Result<Vec<Silence>, PortError> {
        Ok(vec![])
    }
    async fn add(&self, _: &Silence) -> Result<(), PortError> {
        Err(PortError::permanent(
            "silence store",
            "silences are not configured",
        ))
    }
    async fn expire(&self, _: &str, _: Micros) -> Result<bool, PortError> {
        Ok(false)
    }
}
