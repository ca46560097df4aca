//! What the demo saw go out, as the run goes: each notification printed (a group email's
//! table once), what a silence held back, and the accident IDs a group notification lists.

use std::io::Write;

use streamwatch_core::notify::Message;
use streamwatch_core::notify::group::is_batch_id;
use streamwatch_core::notify::render::truncate_chars;

use crate::pipeline::Pipeline;

/// What went out (and what a silence held back), as the run goes.
#[derive(Default)]
pub(crate) struct SentLog {
    /// (simulated clock when sent, message).
    pub sent: Vec<(i64, Message)>,
    /// Silenced notification records printed so far.
    silenced: usize,
    /// Whether a group email's body was printed (the first with three alerts or more).
    excerpt_shown: bool,
}

impl SentLog {
    /// Prints and keeps what the stream path sent at `t`, and what a silence held back.
    pub fn delivered(&mut self, out: &mut impl Write, p: &Pipeline, t: i64, sent: Vec<Message>) {
        for m in sent {
            let _ = writeln!(out, "  -> {}", m.subject);
            self.sent.push((t, m));
        }
        let silenced = p.silenced();
        for record in &silenced[self.silenced.min(silenced.len())..] {
            let summary = p
                .outbox
                .get(&record.alert_id)
                .map_or_else(|| record.key.clone(), |a| a.summary);
            let _ = writeln!(out, "  -- silenced, not sent: {summary}");
        }
        self.silenced = silenced.len();
    }

    /// Prints and keeps what the alerter's schedule sent at `t` (group emails).
    pub fn scheduled(&mut self, out: &mut impl Write, t: i64, sent: Vec<Message>) {
        for m in sent {
            let _ = writeln!(out, "  -> {}", m.subject);
            if !self.excerpt_shown && group_alerts(&m).len() >= 3 {
                self.excerpt_shown = true;
                for line in excerpt(&m.email) {
                    let _ = writeln!(out, "     | {}", truncate_chars(line, 100));
                }
            }
            self.sent.push((t, m));
        }
    }
}

/// The head of a group email: its first line and the table, up to 5 rows.
fn excerpt(email: &str) -> Vec<&str> {
    let mut lines: Vec<&str> = email.lines().take_while(|l| !l.is_empty()).collect();
    let table = email
        .lines()
        .skip_while(|l| !l.starts_with("Severity"))
        .take_while(|l| !l.is_empty());
    lines.extend(table.take(6));
    lines
}

/// The keys (accident IDs) a group notification lists, from its machine JSON.
pub(crate) fn group_alerts(m: &Message) -> Vec<String> {
    if !is_batch_id(&m.notification_id) {
        return Vec::new();
    }
    serde_json::from_str::<serde_json::Value>(&m.json)
        .ok()
        .and_then(|v| {
            v["alerts"].as_array().map(|a| {
                a.iter()
                    .filter_map(|x| x["key"].as_str().map(str::to_owned))
                    .collect()
            })
        })
        .unwrap_or_default()
}
