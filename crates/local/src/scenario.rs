//! The turbine scenario of the demo: the reference simulator's readings (devices
//! `device1…deviceN`, one integer mph reading per second each, uniform in `[min, max)`),
//! with calm periods, a gust above the threshold on some turbines, and recovery — in event
//! time, so thirty simulated minutes take a few seconds.

use crate::rng::Rng;

/// One reading, as the simulator writes it to the readings table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading {
    /// The item's hash key (a UUID): spreads one turbine's readings over every shard.
    pub id: String,
    pub device: String,
    pub value: u64,
    /// Per-device counter, as the reference simulator's `index`.
    pub index: u64,
    pub event_time_micros: i64,
}

/// A gust: `device` reads in `[low, high)` from `from_minute` to `to_minute` (exclusive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gust {
    pub device: String,
    pub from_minute: u32,
    pub to_minute: u32,
    pub low: u64,
    pub high: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TurbineScenario {
    pub turbines: usize,
    pub minutes: u32,
    pub min: u64,
    pub max: u64,
    pub seed: u64,
    /// Event time of the first reading, microseconds since the epoch (a minute boundary).
    pub start_micros: i64,
    pub gusts: Vec<Gust>,
}

impl TurbineScenario {
    /// The default story for `n` turbines over `minutes`: calm readings in `[min, max)`
    /// (the reference simulator's 25–70 mph averages ~47), one long gust on `device2`
    /// (long enough for a reminder at the default 15-minute repeat interval) and a short
    /// one on `device4`, both well above `threshold`, then recovery.
    pub fn default_story(
        turbines: usize,
        minutes: u32,
        min: u64,
        max: u64,
        threshold: f64,
        seed: u64,
        start_micros: i64,
    ) -> Self {
        let low = threshold.max(0.0) as u64 + 4;
        let high = low + 16;
        let mut gusts = Vec::new();
        let long_from = minutes / 6;
        let long_to = (long_from + minutes * 2 / 3).min(minutes.saturating_sub(2));
        if turbines >= 2 && long_to > long_from {
            gusts.push(Gust {
                device: "device2".into(),
                from_minute: long_from,
                to_minute: long_to,
                low,
                high,
            });
        }
        let short_from = minutes * 2 / 5;
        let short_to = (short_from + 3).min(minutes.saturating_sub(1));
        if turbines >= 4 && short_to > short_from {
            gusts.push(Gust {
                device: "device4".into(),
                from_minute: short_from,
                to_minute: short_to,
                low,
                high,
            });
        }
        Self {
            turbines,
            minutes,
            min,
            max,
            seed,
            start_micros,
            gusts,
        }
    }

    /// Every reading of the scenario in event-time order (1 Hz per turbine).
    pub fn readings(&self) -> Vec<Reading> {
        let mut rng = Rng::new(self.seed);
        let mut out = Vec::with_capacity(self.turbines * self.minutes as usize * 60);
        for second in 0..u64::from(self.minutes) * 60 {
            for t in 1..=self.turbines {
                let device = format!("device{t}");
                let minute = (second / 60) as u32;
                let (lo, hi) = self
                    .gusts
                    .iter()
                    .find(|g| g.device == device && (g.from_minute..g.to_minute).contains(&minute))
                    .map_or((self.min, self.max), |g| (g.low, g.high));
                // Readings land anywhere within their second, so windows see real event times.
                let jitter = rng.range(0, 1_000_000) as i64;
                out.push(Reading {
                    id: rng.uuid(),
                    value: rng.range(lo, hi),
                    index: second,
                    event_time_micros: self.start_micros + second as i64 * 1_000_000 + jitter,
                    device,
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_story_has_calm_gust_and_recovery() {
        let s = TurbineScenario::default_story(5, 30, 25, 70, 60.0, 42, 1_795_262_400_000_000);
        let r = s.readings();
        assert_eq!(r.len(), 5 * 30 * 60);
        assert_eq!(r, s.readings(), "deterministic");
        let avg = |device: &str, minute: i64| {
            let v: Vec<u64> = r
                .iter()
                .filter(|x| {
                    x.device == device
                        && (x.event_time_micros - s.start_micros) / 60_000_000 == minute
                })
                .map(|x| x.value)
                .collect();
            v.iter().sum::<u64>() as f64 / v.len() as f64
        };
        assert!(avg("device2", 0) < 60.0);
        assert!(avg("device2", 10) > 60.0);
        assert!(avg("device2", 29) < 60.0);
        assert!(avg("device1", 10) < 60.0);
    }
}
