//! The `alerter` Lambda function: reads new alert records from the alerts table's DynamoDB
//! stream and turns them into SNS notifications — one per firing (rule, key), a reminder at
//! most once per repeat interval while it keeps firing, one when it resolves, one per
//! per-event alert — never twice under retries, duplicates or concurrent invocations.
//! See [`handler`] for the exactly-once protocol and the failure semantics.

pub mod config;
pub mod group;
pub mod handler;
pub mod recovery;
mod send;
pub mod silence;
pub mod stream;

pub use config::Config;
pub use group::{Grouping, NoGroups};
pub use handler::{
    Backoff, BatchReport, Clock, Deps, ManualClock, Settings, SystemClock, handle_batch, process,
};
pub use recovery::{RecoveryReport, Selection, handle, redrive, resume, schedule_pass};
pub use silence::{NoSilences, Silences};
