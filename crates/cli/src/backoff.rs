//! The producers' retries (PutRecords failed records, BatchWriteItem unprocessed items,
//! throttled calls) on core's one [`Backoff`]: this module only sleeps the pauses.

use std::time::Duration;

pub use streamwatch_core::backoff::{Attempts, Backoff};

/// The producers' schedule: `max_attempts` in all, pauses of up to 0.1 s doubling to 5 s.
pub fn producer(max_attempts: u32) -> Attempts {
    Attempts::new(Backoff::new(
        max_attempts,
        Duration::from_millis(100),
        Duration::from_secs(5),
    ))
}

/// Sleeping through an [`Attempts`]' pauses.
pub trait Wait {
    /// Counts one failed attempt and sleeps before the next; false when the attempts are
    /// used up (the caller then gives up).
    async fn wait(&mut self) -> bool;
}

impl Wait for Attempts {
    async fn wait(&mut self) -> bool {
        match self.next_delay() {
            Some(pause) => {
                tokio::time::sleep(pause).await;
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_producer_schedule_gives_up_after_its_attempts() {
        let mut b = producer(2);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        assert!(rt.block_on(b.wait()));
        assert!(!rt.block_on(b.wait()));
        assert_eq!(b.attempts(), 2);
    }
}
