//! Window state stores: DynamoDB (the template's windows table) and an embedded twin that
//! keeps the same items in memory and meters writes as DynamoDB bills them. The item layout
//! is in [`items`]; why windows are stored as append-only chunks, in
//! `streamwatch_core::window`.

mod dynamodb;
mod embedded;
pub mod items;

pub use dynamodb::DynamoDbWindowStore;
pub use embedded::{EmbeddedWindowStore, WriteMeter};
pub use items::{OPEN_INDEX, windows_from_items};
