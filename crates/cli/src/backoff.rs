//! Exponential backoff with full jitter for the producers' retries (PutRecords failed
//! records, BatchWriteItem unprocessed items, throttled calls). Full jitter spreads many
//! producers' retries over the interval instead of having them collide again.

use std::time::Duration;

use rand::RngExt as _;

/// The retry schedule of one write: attempt 1 waits up to `base`, each next one up to
/// twice as long, never more than `cap`.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    max_attempts: u32,
    attempt: u32,
}

impl Backoff {
    pub fn new(max_attempts: u32) -> Self {
        Self {
            base: Duration::from_millis(50),
            cap: Duration::from_secs(5),
            max_attempts: max_attempts.max(1),
            attempt: 0,
        }
    }

    /// Attempts made so far.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// Counts one failed attempt and sleeps before the next; false when the attempts are
    /// used up (the caller then gives up).
    pub async fn wait(&mut self) -> bool {
        self.attempt += 1;
        if self.attempt >= self.max_attempts {
            return false;
        }
        tokio::time::sleep(self.delay()).await;
        true
    }

    fn delay(&self) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1u32 << self.attempt.min(16))
            .min(self.cap);
        let millis = ceiling.as_millis().max(1) as u64;
        Duration::from_millis(rand::rng().random_range(0..=millis))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_to_the_cap_and_attempts_run_out() {
        let mut b = Backoff::new(3);
        for attempt in 1..20 {
            b.attempt = attempt;
            assert!(b.delay() <= Duration::from_secs(5));
        }
        b.attempt = 1;
        assert!(b.delay() <= Duration::from_millis(100));
        let mut b = Backoff::new(2);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        assert!(rt.block_on(b.wait()));
        assert!(!rt.block_on(b.wait()));
        assert_eq!(b.attempts(), 2);
    }
}
