//! Zhiban's device library. For now it only re-exports the protocol types a device needs;
//! the durable store and the sync connection come with the next issue.

pub use zhiban_protocol::{DocumentId, PeerId};
