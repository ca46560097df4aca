//! Embedded Metric Format sink: datums written as EMF log lines (core `metrics::emf_lines`)
//! to stdout, where Lambda ships them to CloudWatch Logs and CloudWatch extracts the
//! metrics. No API calls: one trades PutMetricData requests for log ingestion.
//!
//! A line is written with one `write_all` on the locked writer, so the runtime's own log
//! lines (also on stdout) can never interleave inside it.

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use streamwatch_core::PortError;
use streamwatch_core::metrics::{
    Datum, MetricSink, PublishError, Published, RequestFailure, emf_lines,
};

/// EMF sink over any writer (stdout in Lambda, a buffer in tests).
#[derive(Debug)]
pub struct EmfSink<W> {
    out: Mutex<W>,
    lines: AtomicUsize,
}

impl EmfSink<std::io::Stdout> {
    pub fn stdout() -> Self {
        Self::new(std::io::stdout())
    }
}

impl<W: Write + Send> EmfSink<W> {
    pub fn new(out: W) -> Self {
        Self {
            out: Mutex::new(out),
            lines: AtomicUsize::new(0),
        }
    }

    /// Log lines written so far.
    pub fn lines(&self) -> usize {
        self.lines.load(Ordering::Relaxed)
    }

    /// The writer (e.g. to read a test buffer back).
    pub fn writer(&self) -> MutexGuard<'_, W> {
        // A panic mid-write leaves at worst a partial line, which the lock cannot undo anyway.
        self.out.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<W: Write + Send> MetricSink for EmfSink<W> {
    async fn publish(&self, datums: &[Datum]) -> Result<Published, PublishError> {
        let lines = emf_lines(datums);
        let mut published = Published {
            requests: lines.len(),
            ..Published::default()
        };
        let mut failures = Vec::new();
        let mut carried = vec![false; datums.len()];
        let mut failed = vec![false; datums.len()];
        {
            let mut out = self.writer();
            for line in lines {
                published.attempts += 1;
                let mut text = line.text.into_bytes();
                text.push(b'\n');
                let result = out.write_all(&text).and_then(|()| out.flush());
                for &i in &line.datums {
                    carried[i] = true;
                }
                match result {
                    Ok(()) => {
                        self.lines.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        for &i in &line.datums {
                            failed[i] = true;
                        }
                        // A full pipe or a closed stdout may clear up on a retry of the batch.
                        failures.push(RequestFailure {
                            datums: line.datums,
                            error: PortError::transient("stdout.write(emf)", e),
                        });
                    }
                }
            }
        }
        published.datums = carried
            .iter()
            .zip(&failed)
            .filter(|(c, f)| **c && !**f)
            .count();
        if failures.is_empty() {
            Ok(published)
        } else {
            Err(PublishError {
                published,
                failures,
            })
        }
    }
}
