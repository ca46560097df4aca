//! streamwatch's pure core: record formats (KPL, Kinesis Data Streams for DynamoDB change
//! records, DynamoDB JSON), field paths, event time, and the logic every function shares.
//! No AWS SDK here: AWS lives behind the ports, in `streamwatch-adapters`.

pub mod accident;
pub mod alert;
pub mod archive;
pub mod ascii;
pub mod backoff;
pub mod change;
pub mod clock;
pub mod config;
pub mod emf;
pub mod json;
pub mod kinesis;
pub mod kpl;
pub mod metrics;
pub mod notify;
pub mod path;
pub mod ports;
pub mod progress;
pub mod record;
pub mod rule;
pub mod time;
pub mod value;
pub mod window;

pub use alert::{AlertKind, AlertRecord, WindowSummary};
pub use change::{AttributeValue, ChangeRecord, EventName, Item};
pub use json::JsonObject;
pub use kinesis::KinesisEvent;
pub use metrics::MetricSink;
pub use path::{FieldPath, Fields};
pub use ports::{AlertOutbox, PortError, PutOutcome, Retry};
pub use record::{MalformedParent, ParentError, ParentRecord, UserRecord};
pub use rule::{Condition, EvalError};
pub use value::FieldValue;
