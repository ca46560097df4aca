//! The template's `Schedule` events in `dev run`: EventBridge scheduled events at the
//! template's `rate()` (or `--schedule-every`), and how long an idle stack must keep
//! running so the last open window still closes and alerts.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::sandbox::Function;
use super::{Holding, Shared, now_text};
use crate::Failure;
use crate::dev::template::{self, Context};

/// One `Schedule` event of a function.
#[derive(Clone)]
pub(super) struct Schedule {
    pub function: Arc<Function>,
    pub event: String,
    pub every: Duration,
}

/// How often the schedule of event properties `p` fires: `every` when given, else the
/// template's rate (None, with a line saying so, when it is no `rate()`).
pub(super) fn interval(
    ctx: &Context,
    what: &str,
    p: &Value,
    every: Option<f64>,
) -> Result<Option<Duration>, Failure> {
    if let Some(s) = every {
        return Ok(Some(Duration::from_secs_f64(s)));
    }
    let expr = ctx
        .string(&p["Schedule"])
        .map_err(|e| Failure::usage(format!("{what}: Schedule: {e}")))?;
    let d = rate(&expr);
    if d.is_none() {
        eprintln!("dev run: {what}: {expr} is not a rate(); not scheduled (pass --schedule-every)");
    }
    Ok(d)
}

/// Starts every schedule.
pub(super) fn start(
    tasks: &mut tokio::task::JoinSet<()>,
    shared: &Arc<Shared>,
    schedules: &[Schedule],
) {
    for s in schedules.iter().cloned() {
        println!(
            "dev run: {} on schedule {} every {} s",
            s.function.name,
            s.event,
            s.every.as_secs_f64()
        );
        tasks.spawn(schedule(shared.clone(), s));
    }
}

/// `rate(1 minute)`, `rate(5 minutes)`, `rate(1 hour)`, `rate(1 day)`.
fn rate(expr: &str) -> Option<Duration> {
    let inner = expr.trim().strip_prefix("rate(")?.strip_suffix(')')?;
    let (n, unit) = inner.trim().split_once(' ')?;
    let n: u64 = n.parse().ok().filter(|n| *n > 0)?;
    let secs = match unit.trim().trim_end_matches('s') {
        "minute" => 60,
        "hour" => 3600,
        "day" => 86_400,
        _ => return None,
    };
    Some(Duration::from_secs(n * secs))
}

/// Invokes the function with an EventBridge scheduled event every interval.
async fn schedule(shared: Arc<Shared>, s: Schedule) {
    let Schedule {
        function,
        event,
        every,
    } = s;
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if shared.stopping() {
            return;
        }
        let payload = json!({
            "version": "0",
            "id": uuid::Uuid::new_v4().to_string(),
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": shared.account,
            "time": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            "region": shared.region,
            "resources": [format!("arn:aws:events:{}:{}:rule/{}-{event}", shared.region, shared.account, template::STACK_NAME)],
            "detail": {},
        });
        // An invocation in flight is activity: what it closes may feed the next mapping.
        let mut holding = Holding::new(&shared);
        holding.set(true);
        let invoked = function
            .invoke(serde_json::to_vec(&payload).unwrap_or_default())
            .await;
        // Not a touch: a schedule firing on an idle stack must not keep it from idling.
        holding.set(false);
        println!(
            "{}  {:<30} {:<40} {:>6}          {:<24} {:>8.1} ms",
            now_text(),
            function.name,
            format!("schedule {event}"),
            "",
            invoked.text,
            invoked.ms
        );
    }
}

/// How long after the last record moved the last open window has surely closed and its
/// alert moved on: for each scheduled function with a window (`WINDOW_SECONDS`), the
/// window, its lateness and the schedule's grace (`ALLOWED_LATENESS_SECONDS`,
/// `CLOSE_GRACE_SECONDS`: the schedule closes a window once the wall clock minus the grace
/// passes its end plus the lateness), one schedule interval, and 5 s for the invocations —
/// with the sum spelled out for the line that says so. (A batch being gathered holds the
/// stack busy, so batching windows need no room here.) A stack without windows needs 5 s.
pub(super) fn windows_close_within(schedules: &[Schedule]) -> (Duration, String) {
    let margin = Duration::from_secs(5);
    let mut best = (margin, "no windowed function".to_owned());
    for Schedule {
        function, every, ..
    } in schedules
    {
        let var = |name: &str| {
            function
                .env
                .iter()
                .find(|(k, _)| k == name)
                .and_then(|(_, v)| v.parse::<f64>().ok())
        };
        let Some(window) = var("WINDOW_SECONDS") else {
            continue;
        };
        let lateness = var("ALLOWED_LATENESS_SECONDS").unwrap_or(0.0);
        let grace = var("CLOSE_GRACE_SECONDS").unwrap_or(0.0);
        let total = Duration::from_secs_f64(window + lateness + grace) + *every + margin;
        if total > best.0 {
            best = (
                total,
                format!(
                    "{}: window {window} s + lateness {lateness} s + grace {grace} s + schedule {} s + 5 s",
                    function.name,
                    every.as_secs_f64(),
                ),
            );
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        assert_eq!(rate("rate(1 minute)"), Some(Duration::from_secs(60)));
        assert_eq!(rate("rate(5 minutes)"), Some(Duration::from_secs(300)));
        assert_eq!(rate("rate(2 hours)"), Some(Duration::from_secs(7200)));
        assert_eq!(rate("cron(0 12 * * ? *)"), None);
    }
}
