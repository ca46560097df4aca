//! The one wall clock every crate asks: functions read it for leases and deadlines (their
//! decisions run on event time), and tests and the local demo swap in a clock that moves
//! only when told to.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::time::Micros;

/// Wall-clock time in microseconds since the Unix epoch, injectable.
pub trait Clock: Send + Sync {
    fn now_micros(&self) -> Micros;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_micros(&self) -> Micros {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(micros)
            .unwrap_or_default()
    }
}

/// A clock that moves only when told to: deterministic lease expiry and closing in tests
/// and simulations.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(now_micros: Micros) -> Self {
        Self(AtomicI64::new(now_micros))
    }

    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(micros(by), Ordering::SeqCst);
    }

    pub fn set(&self, now_micros: Micros) {
        self.0.store(now_micros, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_micros(&self) -> Micros {
        self.0.load(Ordering::SeqCst)
    }
}

/// A duration in microseconds, saturating (a `Duration` can hold far more than an `i64`).
pub fn micros(d: Duration) -> Micros {
    Micros::try_from(d.as_micros()).unwrap_or(Micros::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let clock = ManualClock::new(1_000);
        assert_eq!(clock.now_micros(), 1_000);
        clock.advance(Duration::from_millis(3));
        assert_eq!(clock.now_micros(), 4_000);
        clock.set(7);
        assert_eq!(clock.now_micros(), 7);
    }

    #[test]
    fn the_system_clock_is_after_2020_and_durations_saturate() {
        assert!(SystemClock.now_micros() > 1_577_836_800_000_000);
        assert_eq!(micros(Duration::MAX), Micros::MAX);
    }
}
