//! The one retry schedule: exponential backoff with full jitter, used by the alerter's
//! store and SNS calls, the CloudWatch sink and the CLI's producers. Full jitter (a random
//! pause up to the ceiling) spreads the retries of callers throttled together, so they do
//! not collide again. Sleeping is the caller's (core has no runtime).

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// How transient failures of one call are retried: `attempts` calls in all, and after
/// failed attempt `n` a pause of up to `min(max_delay, base_delay * 2^(n-1))`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// Ceiling of the first pause; doubles after each failed attempt.
    pub base_delay: Duration,
    /// Ceiling of any pause.
    pub max_delay: Duration,
}

impl Default for Backoff {
    /// Three attempts, pauses of up to 0.1 s then 0.2 s (ceilings capped at 2 s).
    fn default() -> Self {
        Self::new(3, Duration::from_millis(100), Duration::from_secs(2))
    }
}

impl Backoff {
    pub const fn new(attempts: u32, base_delay: Duration, max_delay: Duration) -> Self {
        Self {
            attempts,
            base_delay,
            max_delay,
        }
    }

    /// Whether a call that failed transiently on attempt `failed` (1-based) is tried again.
    pub fn retries_after(&self, failed: u32) -> bool {
        failed < self.attempts
    }

    /// The longest pause after failed attempt `failed` (1-based).
    pub fn ceiling(&self, failed: u32) -> Duration {
        let doublings = failed.saturating_sub(1).min(16);
        self.base_delay
            .saturating_mul(1 << doublings)
            .min(self.max_delay)
    }

    /// The pause after failed attempt `failed` (1-based): random, up to [`Self::ceiling`].
    pub fn delay(&self, failed: u32) -> Duration {
        let nanos = u64::try_from(self.ceiling(failed).as_nanos()).unwrap_or(u64::MAX);
        if nanos == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(random_u64() % nanos.saturating_add(1))
    }

    /// The longest one call can take when every attempt runs into `attempt_timeout`: all
    /// attempts plus the longest pause before each retry.
    pub fn worst_case(&self, attempt_timeout: Duration) -> Duration {
        let pauses: Duration = (1..self.attempts).map(|n| self.ceiling(n)).sum();
        attempt_timeout.saturating_mul(self.attempts) + pauses
    }
}

/// One call's attempts under a [`Backoff`]: counts failures and hands out the pauses.
#[derive(Debug, Clone)]
pub struct Attempts {
    policy: Backoff,
    failed: u32,
}

impl Attempts {
    pub fn new(policy: Backoff) -> Self {
        Self { policy, failed: 0 }
    }

    /// Attempts made (and failed) so far.
    pub fn attempts(&self) -> u32 {
        self.failed
    }

    /// Counts one failed attempt; the pause before the next one, or `None` when the
    /// attempts are used up (the caller then gives up).
    pub fn next_delay(&mut self) -> Option<Duration> {
        self.failed += 1;
        self.policy
            .retries_after(self.failed)
            .then(|| self.policy.delay(self.failed))
    }
}

/// A random number from the standard library's per-process hasher keys (jitter needs no
/// `rand`).
fn random_u64() -> u64 {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_usize(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn ceilings_double_from_the_base_up_to_the_cap() {
        let b = Backoff::new(10, 100 * MS, 1000 * MS);
        let ceilings: Vec<_> = (1..=6).map(|n| b.ceiling(n).as_millis()).collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(b.ceiling(u32::MAX), 1000 * MS);
    }

    #[test]
    fn delays_stay_within_their_ceiling_and_vary() {
        let b = Backoff::new(5, 100 * MS, 2000 * MS);
        let delays: Vec<_> = (0..200).map(|_| b.delay(3)).collect();
        assert!(delays.iter().all(|d| *d <= 400 * MS));
        assert!(delays.iter().any(|d| *d != delays[0]), "full jitter varies");
        assert_eq!(Backoff::new(2, Duration::ZERO, MS).delay(1), Duration::ZERO);
    }

    #[test]
    fn worst_case_is_every_attempt_timing_out_plus_each_longest_pause() {
        let b = Backoff::new(4, 100 * MS, 2000 * MS);
        // 4 x 10 s + 0.1 + 0.2 + 0.4 s
        assert_eq!(
            b.worst_case(Duration::from_secs(10)),
            Duration::from_millis(40_700)
        );
    }

    #[test]
    fn attempts_run_out_after_the_policys_count() {
        let mut a = Attempts::new(Backoff::new(3, MS, MS));
        assert!(a.next_delay().is_some());
        assert!(a.next_delay().is_some());
        assert_eq!(a.next_delay(), None);
        assert_eq!(a.attempts(), 3);
        let mut once = Attempts::new(Backoff::new(0, MS, MS));
        assert_eq!(once.next_delay(), None);
    }
}
