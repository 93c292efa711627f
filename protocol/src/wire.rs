//! The automerge-repo wire protocol: one CBOR map per binary websocket frame, tagged by its
//! `type` field. Decoding is total: any byte string yields a [`Message`] or a [`DecodeError`],
//! never a panic, and no allocation larger than the frame itself.

use std::collections::BTreeMap;

use minicbor::data::Type;
use minicbor::{Decoder, Encoder};

use crate::{DocumentId, PeerId};

/// The only protocol version automerge-repo speaks today.
pub const PROTOCOL_VERSION: &str = "1";

/// What a peer says about itself in `join` and `peer`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PeerMetadata {
    pub storage_id: Option<String>,
    pub is_ephemeral: bool,
}

/// One storage's heads in a `remote-heads-changed` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadsInfo {
    pub heads: Vec<String>,
    pub timestamp: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Join {
        sender_id: PeerId,
        supported_protocol_versions: Vec<String>,
        peer_metadata: Option<PeerMetadata>,
    },
    Peer {
        sender_id: PeerId,
        target_id: PeerId,
        selected_protocol_version: String,
        peer_metadata: Option<PeerMetadata>,
    },
    Leave {
        sender_id: PeerId,
    },
    /// "I do not have this document; send it to me." `data` is an automerge sync message.
    Request {
        document_id: DocumentId,
        sender_id: PeerId,
        target_id: PeerId,
        data: Vec<u8>,
    },
    /// "I have this document." `data` is an automerge sync message.
    Sync {
        document_id: DocumentId,
        sender_id: PeerId,
        target_id: PeerId,
        data: Vec<u8>,
    },
    /// Sent both for documents that do not exist and for documents the peer may not see.
    DocUnavailable {
        document_id: DocumentId,
        sender_id: PeerId,
        target_id: PeerId,
    },
    Ephemeral {
        document_id: DocumentId,
        sender_id: PeerId,
        target_id: PeerId,
        session_id: String,
        count: u64,
        data: Vec<u8>,
    },
    RemoteSubscriptionChange {
        sender_id: PeerId,
        target_id: PeerId,
        add: Vec<String>,
        remove: Vec<String>,
    },
    RemoteHeadsChanged {
        document_id: DocumentId,
        sender_id: PeerId,
        target_id: PeerId,
        new_heads: BTreeMap<String, HeadsInfo>,
    },
    Error {
        message: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("frame is not valid CBOR: {0}")]
    Cbor(String),
    #[error("frame must be a CBOR map of known length")]
    NotAMap,
    #[error("frame has no `type` field")]
    MissingType,
    #[error("unknown message type `{0}`")]
    UnknownType(String),
    #[error("`{message_type}` message lacks the `{field}` field")]
    MissingField {
        message_type: &'static str,
        field: &'static str,
    },
    #[error("field `{0}` has the wrong CBOR type")]
    WrongType(&'static str),
    #[error("field `documentId` is not a document id")]
    BadDocumentId,
    #[error("{0} bytes follow the message")]
    TrailingBytes(usize),
}

impl From<minicbor::decode::Error> for DecodeError {
    fn from(error: minicbor::decode::Error) -> Self {
        Self::Cbor(error.to_string())
    }
}

impl Message {
    /// The wire name of this message's `type`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Message::Join { .. } => "join",
            Message::Peer { .. } => "peer",
            Message::Leave { .. } => "leave",
            Message::Request { .. } => "request",
            Message::Sync { .. } => "sync",
            Message::DocUnavailable { .. } => "doc-unavailable",
            Message::Ephemeral { .. } => "ephemeral",
            Message::RemoteSubscriptionChange { .. } => "remote-subscription-change",
            Message::RemoteHeadsChanged { .. } => "remote-heads-changed",
            Message::Error { .. } => "error",
        }
    }

    /// A `request` when the sender holds nothing of the document yet (automerge-repo's rule),
    /// else a `sync`; `data` is an encoded automerge sync message.
    pub fn sync_or_request(
        request: bool,
        document_id: DocumentId,
        sender_id: PeerId,
        target_id: PeerId,
        data: Vec<u8>,
    ) -> Message {
        if request {
            Message::Request {
                document_id,
                sender_id,
                target_id,
                data,
            }
        } else {
            Message::Sync {
                document_id,
                sender_id,
                target_id,
                data,
            }
        }
    }

    pub fn document_id(&self) -> Option<DocumentId> {
        match self {
            Message::Request { document_id, .. }
            | Message::Sync { document_id, .. }
            | Message::DocUnavailable { document_id, .. }
            | Message::Ephemeral { document_id, .. }
            | Message::RemoteHeadsChanged { document_id, .. } => Some(*document_id),
            _ => None,
        }
    }

    pub fn decode(frame: &[u8]) -> Result<Self, DecodeError> {
        let mut decoder = Decoder::new(frame);
        let fields = Fields::decode(&mut decoder)?;
        let rest = frame.len() - decoder.position();
        if rest != 0 {
            return Err(DecodeError::TrailingBytes(rest));
        }
        fields.into_message()
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut encoder = Encoder::new(Vec::new());
        self.encode_into(&mut encoder)
            .expect("encoding into a Vec cannot fail");
        encoder.into_writer()
    }

    fn encode_into(
        &self,
        e: &mut Encoder<Vec<u8>>,
    ) -> Result<(), minicbor::encode::Error<std::convert::Infallible>> {
        match self {
            Message::Join {
                sender_id,
                supported_protocol_versions,
                peer_metadata,
            } => {
                e.map(3 + u64::from(peer_metadata.is_some()))?;
                e.str("type")?.str("join")?;
                e.str("senderId")?.str(sender_id.as_str())?;
                e.str("supportedProtocolVersions")?;
                encode_strings(e, supported_protocol_versions)?;
                if let Some(metadata) = peer_metadata {
                    e.str("peerMetadata")?;
                    encode_metadata(e, metadata)?;
                }
            }
            Message::Peer {
                sender_id,
                target_id,
                selected_protocol_version,
                peer_metadata,
            } => {
                e.map(4 + u64::from(peer_metadata.is_some()))?;
                e.str("type")?.str("peer")?;
                e.str("senderId")?.str(sender_id.as_str())?;
                e.str("targetId")?.str(target_id.as_str())?;
                e.str("selectedProtocolVersion")?
                    .str(selected_protocol_version)?;
                if let Some(metadata) = peer_metadata {
                    e.str("peerMetadata")?;
                    encode_metadata(e, metadata)?;
                }
            }
            Message::Leave { sender_id } => {
                e.map(2)?;
                e.str("type")?.str("leave")?;
                e.str("senderId")?.str(sender_id.as_str())?;
            }
            Message::Request {
                document_id,
                sender_id,
                target_id,
                data,
            }
            | Message::Sync {
                document_id,
                sender_id,
                target_id,
                data,
            } => {
                e.map(5)?;
                e.str("type")?.str(self.type_name())?;
                e.str("documentId")?.str(&document_id.to_string())?;
                e.str("senderId")?.str(sender_id.as_str())?;
                e.str("targetId")?.str(target_id.as_str())?;
                e.str("data")?.bytes(data)?;
            }
            Message::DocUnavailable {
                document_id,
                sender_id,
                target_id,
            } => {
                e.map(4)?;
                e.str("type")?.str("doc-unavailable")?;
                e.str("documentId")?.str(&document_id.to_string())?;
                e.str("senderId")?.str(sender_id.as_str())?;
                e.str("targetId")?.str(target_id.as_str())?;
            }
            Message::Ephemeral {
                document_id,
                sender_id,
                target_id,
                session_id,
                count,
                data,
            } => {
                e.map(7)?;
                e.str("type")?.str("ephemeral")?;
                e.str("documentId")?.str(&document_id.to_string())?;
                e.str("senderId")?.str(sender_id.as_str())?;
                e.str("targetId")?.str(target_id.as_str())?;
                e.str("sessionId")?.str(session_id)?;
                e.str("count")?.u64(*count)?;
                e.str("data")?.bytes(data)?;
            }
            Message::RemoteSubscriptionChange {
                sender_id,
                target_id,
                add,
                remove,
            } => {
                e.map(5)?;
                e.str("type")?.str("remote-subscription-change")?;
                e.str("senderId")?.str(sender_id.as_str())?;
                e.str("targetId")?.str(target_id.as_str())?;
                e.str("add")?;
                encode_strings(e, add)?;
                e.str("remove")?;
                encode_strings(e, remove)?;
            }
            Message::RemoteHeadsChanged {
                document_id,
                sender_id,
                target_id,
                new_heads,
            } => {
                e.map(5)?;
                e.str("type")?.str("remote-heads-changed")?;
                e.str("documentId")?.str(&document_id.to_string())?;
                e.str("senderId")?.str(sender_id.as_str())?;
                e.str("targetId")?.str(target_id.as_str())?;
                e.str("newHeads")?.map(new_heads.len() as u64)?;
                for (storage_id, info) in new_heads {
                    e.str(storage_id)?.map(2)?;
                    e.str("heads")?;
                    encode_strings(e, &info.heads)?;
                    e.str("timestamp")?.u64(info.timestamp)?;
                }
            }
            Message::Error { message } => {
                e.map(2)?;
                e.str("type")?.str("error")?;
                e.str("message")?.str(message)?;
            }
        }
        Ok(())
    }
}

type EncodeResult = Result<(), minicbor::encode::Error<std::convert::Infallible>>;

fn encode_strings(e: &mut Encoder<Vec<u8>>, strings: &[String]) -> EncodeResult {
    e.array(strings.len() as u64)?;
    for s in strings {
        e.str(s)?;
    }
    Ok(())
}

fn encode_metadata(e: &mut Encoder<Vec<u8>>, metadata: &PeerMetadata) -> EncodeResult {
    e.map(1 + u64::from(metadata.storage_id.is_some()))?;
    if let Some(storage_id) = &metadata.storage_id {
        e.str("storageId")?.str(storage_id)?;
    }
    e.str("isEphemeral")?.bool(metadata.is_ephemeral)?;
    Ok(())
}

/// Every field any message may carry, gathered in one pass; unknown keys are skipped so
/// that newer peers can add fields without breaking us.
#[derive(Default)]
struct Fields {
    message_type: Option<String>,
    sender_id: Option<String>,
    target_id: Option<String>,
    document_id: Option<DocumentId>,
    data: Option<Vec<u8>>,
    supported_protocol_versions: Option<Vec<String>>,
    selected_protocol_version: Option<String>,
    peer_metadata: Option<PeerMetadata>,
    session_id: Option<String>,
    count: Option<u64>,
    add: Option<Vec<String>>,
    remove: Option<Vec<String>>,
    new_heads: Option<BTreeMap<String, HeadsInfo>>,
    message: Option<String>,
}

impl Fields {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        let len = map_len(d)?;
        let mut fields = Fields::default();
        for _ in 0..len {
            if d.datatype()? != Type::String {
                // Only text keys mean anything to us; skip the key and its value.
                d.skip()?;
                d.skip()?;
                continue;
            }
            match d.str()? {
                "type" => fields.message_type = Some(text(d, "type")?),
                "senderId" => fields.sender_id = Some(text(d, "senderId")?),
                "targetId" => fields.target_id = Some(text(d, "targetId")?),
                "documentId" => fields.document_id = Some(document_id(d)?),
                "data" => fields.data = Some(bytes(d, "data")?),
                "supportedProtocolVersions" => {
                    fields.supported_protocol_versions =
                        Some(strings(d, "supportedProtocolVersions")?)
                }
                "selectedProtocolVersion" => {
                    fields.selected_protocol_version = Some(text(d, "selectedProtocolVersion")?)
                }
                "peerMetadata" | "metadata" => fields.peer_metadata = metadata(d)?,
                "sessionId" => fields.session_id = Some(text(d, "sessionId")?),
                "count" => fields.count = Some(number(d, "count")?),
                "add" => fields.add = optional_strings(d, "add")?,
                "remove" => fields.remove = optional_strings(d, "remove")?,
                "newHeads" => fields.new_heads = Some(new_heads(d)?),
                "message" => fields.message = Some(text(d, "message")?),
                _ => d.skip()?,
            }
        }
        Ok(fields)
    }

    fn into_message(self) -> Result<Message, DecodeError> {
        let message_type = self.message_type.ok_or(DecodeError::MissingType)?;
        let t: &'static str = match message_type.as_str() {
            "join" => "join",
            "peer" => "peer",
            "leave" => "leave",
            "request" => "request",
            "sync" => "sync",
            "doc-unavailable" => "doc-unavailable",
            "ephemeral" => "ephemeral",
            "remote-subscription-change" => "remote-subscription-change",
            "remote-heads-changed" => "remote-heads-changed",
            "error" => "error",
            _ => return Err(DecodeError::UnknownType(message_type)),
        };
        let missing = |field| DecodeError::MissingField {
            message_type: t,
            field,
        };
        let sender = || {
            self.sender_id
                .clone()
                .map(PeerId::new)
                .ok_or(missing("senderId"))
        };
        let target = || {
            self.target_id
                .clone()
                .map(PeerId::new)
                .ok_or(missing("targetId"))
        };
        let document = || self.document_id.ok_or(missing("documentId"));
        Ok(match t {
            "join" => Message::Join {
                sender_id: sender()?,
                supported_protocol_versions: self
                    .supported_protocol_versions
                    .clone()
                    .ok_or(missing("supportedProtocolVersions"))?,
                peer_metadata: self.peer_metadata.clone(),
            },
            "peer" => Message::Peer {
                sender_id: sender()?,
                target_id: target()?,
                selected_protocol_version: self
                    .selected_protocol_version
                    .clone()
                    .ok_or(missing("selectedProtocolVersion"))?,
                peer_metadata: self.peer_metadata.clone(),
            },
            "leave" => Message::Leave {
                sender_id: sender()?,
            },
            "request" | "sync" => {
                let (document_id, sender_id, target_id) = (document()?, sender()?, target()?);
                let data = self.data.ok_or(missing("data"))?;
                if t == "request" {
                    Message::Request {
                        document_id,
                        sender_id,
                        target_id,
                        data,
                    }
                } else {
                    Message::Sync {
                        document_id,
                        sender_id,
                        target_id,
                        data,
                    }
                }
            }
            "doc-unavailable" => Message::DocUnavailable {
                document_id: document()?,
                sender_id: sender()?,
                target_id: target()?,
            },
            "ephemeral" => Message::Ephemeral {
                document_id: document()?,
                sender_id: sender()?,
                target_id: target()?,
                session_id: self.session_id.clone().ok_or(missing("sessionId"))?,
                count: self.count.ok_or(missing("count"))?,
                data: self.data.ok_or(missing("data"))?,
            },
            "remote-subscription-change" => Message::RemoteSubscriptionChange {
                sender_id: sender()?,
                target_id: target()?,
                add: self.add.unwrap_or_default(),
                remove: self.remove.unwrap_or_default(),
            },
            "remote-heads-changed" => Message::RemoteHeadsChanged {
                document_id: document()?,
                sender_id: sender()?,
                target_id: target()?,
                new_heads: self.new_heads.clone().ok_or(missing("newHeads"))?,
            },
            _ => Message::Error {
                message: self.message.ok_or(missing("message"))?,
            },
        })
    }
}

fn map_len(d: &mut Decoder<'_>) -> Result<u64, DecodeError> {
    if d.datatype()? != Type::Map {
        return Err(DecodeError::NotAMap);
    }
    let len = d.map()?.ok_or(DecodeError::NotAMap)?;
    // Each entry takes at least two bytes, so a longer claim is a lie; checking here keeps
    // a tiny frame from making us loop billions of times.
    if len > d.input().len() as u64 {
        return Err(DecodeError::Cbor("map length exceeds the frame".into()));
    }
    Ok(len)
}

fn array_len(d: &mut Decoder<'_>, field: &'static str) -> Result<u64, DecodeError> {
    if d.datatype()? != Type::Array {
        return Err(DecodeError::WrongType(field));
    }
    let len = d.array()?.ok_or(DecodeError::WrongType(field))?;
    if len > d.input().len() as u64 {
        return Err(DecodeError::Cbor("array length exceeds the frame".into()));
    }
    Ok(len)
}

fn text(d: &mut Decoder<'_>, field: &'static str) -> Result<String, DecodeError> {
    match d.datatype()? {
        Type::String => Ok(d.str()?.to_owned()),
        _ => Err(DecodeError::WrongType(field)),
    }
}

fn bytes(d: &mut Decoder<'_>, field: &'static str) -> Result<Vec<u8>, DecodeError> {
    match d.datatype()? {
        Type::Bytes => Ok(d.bytes()?.to_vec()),
        _ => Err(DecodeError::WrongType(field)),
    }
}

fn strings(d: &mut Decoder<'_>, field: &'static str) -> Result<Vec<String>, DecodeError> {
    let len = array_len(d, field)?;
    (0..len).map(|_| text(d, field)).collect()
}

/// JavaScript peers send `undefined` or `null` for absent lists.
fn optional_strings(
    d: &mut Decoder<'_>,
    field: &'static str,
) -> Result<Option<Vec<String>>, DecodeError> {
    match d.datatype()? {
        Type::Null | Type::Undefined => {
            d.skip()?;
            Ok(None)
        }
        _ => strings(d, field).map(Some),
    }
}

/// cbor-x writes integral JavaScript numbers as floats at times; accept both.
fn number(d: &mut Decoder<'_>, field: &'static str) -> Result<u64, DecodeError> {
    match d.datatype()? {
        Type::U8 | Type::U16 | Type::U32 | Type::U64 => Ok(d.u64()?),
        Type::F16 | Type::F32 | Type::F64 => {
            let value = d.f64()?;
            if value.is_finite() && value >= 0.0 && value.fract() == 0.0 && value < 2f64.powi(64) {
                // Whole, non-negative and below 2^64: the cast is exact.
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                Ok(value as u64)
            } else {
                Err(DecodeError::WrongType(field))
            }
        }
        _ => Err(DecodeError::WrongType(field)),
    }
}

fn document_id(d: &mut Decoder<'_>) -> Result<DocumentId, DecodeError> {
    match d.datatype()? {
        Type::String => d.str()?.parse().map_err(|_| DecodeError::BadDocumentId),
        Type::Bytes => DocumentId::try_from(d.bytes()?).map_err(|_| DecodeError::BadDocumentId),
        _ => Err(DecodeError::BadDocumentId),
    }
}

fn metadata(d: &mut Decoder<'_>) -> Result<Option<PeerMetadata>, DecodeError> {
    match d.datatype()? {
        Type::Null | Type::Undefined => {
            d.skip()?;
            return Ok(None);
        }
        Type::Map => {}
        _ => return Err(DecodeError::WrongType("peerMetadata")),
    }
    let len = map_len(d)?;
    let mut metadata = PeerMetadata::default();
    for _ in 0..len {
        if d.datatype()? != Type::String {
            d.skip()?;
            d.skip()?;
            continue;
        }
        match d.str()? {
            "storageId" => match d.datatype()? {
                Type::Null | Type::Undefined => d.skip()?,
                _ => metadata.storage_id = Some(text(d, "storageId")?),
            },
            "isEphemeral" => match d.datatype()? {
                Type::Bool => metadata.is_ephemeral = d.bool()?,
                Type::Null | Type::Undefined => d.skip()?,
                _ => return Err(DecodeError::WrongType("isEphemeral")),
            },
            _ => d.skip()?,
        }
    }
    Ok(Some(metadata))
}

fn new_heads(d: &mut Decoder<'_>) -> Result<BTreeMap<String, HeadsInfo>, DecodeError> {
    if d.datatype()? != Type::Map {
        return Err(DecodeError::WrongType("newHeads"));
    }
    let len = map_len(d)?;
    let mut result = BTreeMap::new();
    for _ in 0..len {
        let storage_id = text(d, "newHeads")?;
        if d.datatype()? != Type::Map {
            return Err(DecodeError::WrongType("newHeads"));
        }
        let entries = map_len(d)?;
        let mut info = HeadsInfo {
            heads: Vec::new(),
            timestamp: 0,
        };
        for _ in 0..entries {
            match text(d, "newHeads")?.as_str() {
                "heads" => info.heads = strings(d, "heads")?,
                "timestamp" => info.timestamp = number(d, "timestamp")?,
                _ => d.skip()?,
            }
        }
        result.insert(storage_id, info);
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn peer() -> impl Strategy<Value = PeerId> {
        "[a-z0-9:-]{0,40}".prop_map(PeerId::new)
    }

    fn document() -> impl Strategy<Value = DocumentId> {
        any::<[u8; 16]>().prop_map(DocumentId::from_bytes)
    }

    fn metadata() -> impl Strategy<Value = Option<PeerMetadata>> {
        proptest::option::of(
            (proptest::option::of("[a-z0-9-]{1,36}"), any::<bool>()).prop_map(
                |(storage_id, is_ephemeral)| PeerMetadata {
                    storage_id,
                    is_ephemeral,
                },
            ),
        )
    }

    fn bytes() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), 0..200)
    }

    fn message() -> impl Strategy<Value = Message> {
        prop_oneof![
            (
                peer(),
                proptest::collection::vec("[0-9]{1,3}", 0..3),
                metadata()
            )
                .prop_map(|(sender_id, supported_protocol_versions, peer_metadata)| {
                    Message::Join {
                        sender_id,
                        supported_protocol_versions,
                        peer_metadata,
                    }
                }),
            (peer(), peer(), "[0-9]{1,3}", metadata()).prop_map(
                |(sender_id, target_id, selected_protocol_version, peer_metadata)| {
                    Message::Peer {
                        sender_id,
                        target_id,
                        selected_protocol_version,
                        peer_metadata,
                    }
                }
            ),
            peer().prop_map(|sender_id| Message::Leave { sender_id }),
            (document(), peer(), peer(), bytes(), any::<bool>()).prop_map(
                |(document_id, sender_id, target_id, data, request)| if request {
                    Message::Request {
                        document_id,
                        sender_id,
                        target_id,
                        data,
                    }
                } else {
                    Message::Sync {
                        document_id,
                        sender_id,
                        target_id,
                        data,
                    }
                }
            ),
            (document(), peer(), peer()).prop_map(|(document_id, sender_id, target_id)| {
                Message::DocUnavailable {
                    document_id,
                    sender_id,
                    target_id,
                }
            }),
            (
                document(),
                peer(),
                peer(),
                "[a-z0-9]{0,20}",
                any::<u64>(),
                bytes()
            )
                .prop_map(
                    |(document_id, sender_id, target_id, session_id, count, data)| {
                        Message::Ephemeral {
                            document_id,
                            sender_id,
                            target_id,
                            session_id,
                            count,
                            data,
                        }
                    }
                ),
            (
                peer(),
                peer(),
                proptest::collection::vec("[a-z0-9]{1,10}", 0..3),
                proptest::collection::vec("[a-z0-9]{1,10}", 0..3)
            )
                .prop_map(|(sender_id, target_id, add, remove)| {
                    Message::RemoteSubscriptionChange {
                        sender_id,
                        target_id,
                        add,
                        remove,
                    }
                }),
            (
                document(),
                peer(),
                peer(),
                proptest::collection::btree_map(
                    "[a-z0-9]{1,10}",
                    (
                        proptest::collection::vec("[a-f0-9]{64}", 0..3),
                        any::<u64>()
                    )
                        .prop_map(|(heads, timestamp)| HeadsInfo { heads, timestamp }),
                    0..3
                )
            )
                .prop_map(|(document_id, sender_id, target_id, new_heads)| {
                    Message::RemoteHeadsChanged {
                        document_id,
                        sender_id,
                        target_id,
                        new_heads,
                    }
                }),
            ".{0,60}".prop_map(|message| Message::Error { message }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn any_bytes_decode_to_a_value_or_an_error(frame in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Message::decode(&frame);
        }

        #[test]
        fn every_message_round_trips(message in message()) {
            prop_assert_eq!(Message::decode(&message.encode()), Ok(message));
        }

        #[test]
        fn truncated_and_corrupted_frames_never_panic(
            message in message(),
            cut in any::<prop::sample::Index>(),
            flip in any::<prop::sample::Index>(),
            bit in 0u8..8,
        ) {
            let frame = message.encode();
            let truncated = &frame[..cut.index(frame.len())];
            prop_assert!(Message::decode(truncated).is_err());
            let mut corrupted = frame.clone();
            let at = flip.index(corrupted.len());
            corrupted[at] ^= 1 << bit;
            let _ = Message::decode(&corrupted);
        }
    }

    #[test]
    fn deeply_nested_values_are_refused_without_overflowing_the_stack() {
        // An unknown key whose value is an array nested 100,000 deep: skipping it must not
        // recurse once per level.
        let mut frame = vec![0xa1, 0x61, b'x'];
        frame.extend(std::iter::repeat_n(0x81, 100_000));
        frame.push(0x00);
        let _ = Message::decode(&frame);
    }

    #[test]
    fn unknown_types_are_named_in_the_error() {
        let mut e = Encoder::new(Vec::new());
        e.map(1)
            .unwrap()
            .str("type")
            .unwrap()
            .str("teleport")
            .unwrap();
        assert_eq!(
            Message::decode(&e.into_writer()),
            Err(DecodeError::UnknownType("teleport".into()))
        );
    }

    #[test]
    fn reads_document_ids_sent_as_bytes_and_floats_as_counts() {
        let id = DocumentId::random();
        let mut e = Encoder::new(Vec::new());
        e.map(7).unwrap();
        e.str("type").unwrap().str("ephemeral").unwrap();
        e.str("documentId").unwrap().bytes(id.as_bytes()).unwrap();
        e.str("senderId").unwrap().str("a").unwrap();
        e.str("targetId").unwrap().str("b").unwrap();
        e.str("sessionId").unwrap().str("s").unwrap();
        e.str("count").unwrap().f64(3.0).unwrap();
        e.str("data").unwrap().bytes(b"hi").unwrap();
        match Message::decode(&e.into_writer()).unwrap() {
            Message::Ephemeral {
                document_id, count, ..
            } => {
                assert_eq!(document_id, id);
                assert_eq!(count, 3);
            }
            other => panic!("decoded {other:?}"),
        }
    }
}
