//! The whole streamwatch pipeline on one machine, for `streamwatch demo`: the scenario
//! sources, an embedded readings table with Kinesis Data Streams for DynamoDB, the real
//! handlers fed through the event source mapping of `streamwatch-emulator`, and the report.

pub mod accidents;
pub mod alert_stream;
pub mod archive;
pub mod demo;
pub mod pipeline;
pub mod readings;
pub mod report;
pub mod rng;
pub mod scenario;
mod sent_log;
pub mod soak;
pub mod summary;
