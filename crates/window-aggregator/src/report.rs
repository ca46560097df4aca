//! What one invocation did: logged, and printed as one Embedded Metric Format line that
//! CloudWatch Logs turns into the function's operational metrics.

use serde::Serialize;

/// What one invocation did.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub records_in: usize,
    pub readings: usize,
    pub malformed: usize,
    /// Late readings seen for the first time (each reading counted once, ever).
    pub late: usize,
    /// Readings stamped further ahead of their record's time than the allowed skew, seen
    /// for the first time in their window: kept in their window, never moving progress.
    pub future: usize,
    /// Records already finished on their shard (a replayed batch): skipped.
    pub replayed: usize,
    /// Chunk items written (each holds one window start's changes from one shard).
    pub windows_written: usize,
    pub conflicts: usize,
    pub windows_closed: usize,
    pub alerts_written: usize,
    /// Shards the schedule found with records waiting (an iterator-age backlog).
    pub shards_behind: usize,
    /// Windows left due because the invocation's time budget ran out.
    pub close_deferred: bool,
    pub retry_from: Option<String>,
}

impl Report {
    /// The report as one CloudWatch Embedded Metric Format line.
    pub fn emf(&self, namespace: &str, timestamp_ms: i64) -> String {
        let metrics = [
            ("RecordsIn", self.records_in),
            ("Readings", self.readings),
            ("Malformed", self.malformed),
            ("LateRecords", self.late),
            ("FutureRecords", self.future),
            ("WindowWrites", self.windows_written),
            ("WindowsClosed", self.windows_closed),
            ("AlertsWritten", self.alerts_written),
            ("ShardsBehind", self.shards_behind),
        ];
        let mut line = serde_json::json!({
            "_aws": {"Timestamp": timestamp_ms, "CloudWatchMetrics": [{
                "Namespace": namespace, "Dimensions": [[]],
                "Metrics": metrics.iter().map(|(n, _)| serde_json::json!({"Name": n, "Unit": "Count"})).collect::<Vec<_>>()
            }]}
        });
        for (name, value) in metrics {
            line[name] = value.into();
        }
        line.to_string()
    }
}
