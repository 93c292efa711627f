//! The wire protocol shared by the Zhiban server and its clients: automerge-repo's CBOR
//! messages and the id types they carry. Knows nothing of sockets, storage or users.

mod document_id;
mod wire;

pub use document_id::{DocumentId, DocumentIdError, PeerId};
pub use wire::{DecodeError, HeadsInfo, Message, PROTOCOL_VERSION, PeerMetadata};
