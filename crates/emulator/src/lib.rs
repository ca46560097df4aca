//! Lambda, imitated on one machine, apart from the ports' implementations (`adapters`) and
//! from the demo (`local`), so the demo, the chaos tests, `streamwatch dev` and the
//! benchmarks all meet the same retry and delivery semantics the functions meet on AWS.
//!
//! # Layout
//! * [`esm`]: an event source mapping over one shard — batches in order, restart from the
//!   lowest `batchItemFailures`, bisect on error, give up after the retry limit.
//! * [`filter`]: Lambda event filtering (`FilterCriteria`) for a mapping.
//! * [`runtime_api`]: the Lambda Runtime API, so the real release binaries run here.
//! * [`stream`]: reading Kinesis and DynamoDB stream shards from an emulator (moto) into the
//!   records of Lambda's events, and the Kinesis Data Streams for DynamoDB change record.

pub mod esm;
pub mod filter;
pub mod runtime_api;
pub mod stream;

use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};
use streamwatch_adapters::sdk_call::SdkCall;

/// An SDK error met talking to the emulator, as one line: the operation, the error code when
/// there is one, the message.
pub fn sdk_error<E, R>(operation: &str, err: &SdkError<E, R>) -> String
where
    E: std::error::Error + ProvideErrorMetadata + 'static,
    R: std::fmt::Debug + 'static,
{
    SdkCall::read(operation, err, "the emulator").line
}
