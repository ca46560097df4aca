//! AWS SDK and embedded implementations of the ports defined in `streamwatch-core`.
//! Each port has both; the embedded ones keep the AWS ones' semantics (conditional writes,
//! atomic adds) so the local pipeline and fast tests exercise the same logic.

pub mod alert_state;
pub mod alerts;
pub mod aws;
pub mod cloudwatch;
pub mod dynamo;
pub mod emf;
pub mod groups;
pub mod logging;
pub mod metrics_memory;
pub mod sdk_call;
pub mod shards;
pub mod silences;
pub mod sns;
pub mod windows;

pub use alerts::{DynamoDbAlertOutbox, EmbeddedAlertOutbox};
pub use cloudwatch::CloudWatchSink;
pub use emf::EmfSink;
pub use metrics_memory::EmbeddedMetricSink;
