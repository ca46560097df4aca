//! streamwatch's pure core: record formats (KPL, Kinesis Data Streams for DynamoDB change
//! records, DynamoDB JSON), field paths, event time, and the logic every function shares.
//! No AWS SDK here: AWS lives behind the ports, in `streamwatch-adapters`.

pub mod change;
pub mod json;
pub mod kinesis;
pub mod kpl;
pub mod path;
pub mod record;
pub mod time;

pub use change::{AttributeValue, ChangeRecord, EventName, Item};
pub use json::JsonObject;
pub use kinesis::KinesisEvent;
pub use path::{FieldPath, FieldValue, Fields};
pub use record::{MalformedParent, ParentError, ParentRecord, UserRecord};
