//! Document and peer identifiers as automerge-repo spells them, so that ids created by the
//! JavaScript repo, samod and our own clients are interchangeable.

use std::fmt;
use std::str::FromStr;

/// A document id: 16 random bytes, written as bs58check (URL form `automerge:<id>`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DocumentId([u8; 16]);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentIdError {
    #[error("document id is not valid bs58check")]
    NotBase58Check,
    #[error("document id must be 16 bytes, got {0}")]
    WrongLength(usize),
}

impl DocumentId {
    /// A fresh random id, as `repo.create()` makes one.
    pub fn random() -> Self {
        Self(rand::random())
    }

    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// The `automerge:<id>` URL that automerge-repo clients pass to `find`.
    pub fn url(&self) -> String {
        format!("automerge:{self}")
    }
}

impl TryFrom<&[u8]> for DocumentId {
    type Error = DocumentIdError;

    fn try_from(bytes: &[u8]) -> Result<Self, Self::Error> {
        let bytes: [u8; 16] = bytes
            .try_into()
            .map_err(|_| DocumentIdError::WrongLength(bytes.len()))?;
        Ok(Self(bytes))
    }
}

impl FromStr for DocumentId {
    type Err = DocumentIdError;

    /// Accepts the bare bs58check id or the `automerge:` URL form.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.strip_prefix("automerge:").unwrap_or(s);
        // 16 bytes + 4 checksum bytes never need more than 28 base58 digits; refusing longer
        // strings early keeps a hostile id from costing more than a few microseconds.
        if s.len() > 40 {
            return Err(DocumentIdError::NotBase58Check);
        }
        let bytes = bs58::decode(s)
            .with_check(None)
            .into_vec()
            .map_err(|_| DocumentIdError::NotBase58Check)?;
        Self::try_from(bytes.as_slice())
    }
}

impl fmt::Display for DocumentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&bs58::encode(&self.0).with_check().into_string())
    }
}

impl fmt::Debug for DocumentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DocumentId({self})")
    }
}

impl serde::Serialize for DocumentId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for DocumentId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A peer id on the wire. The server binds it to `user:device` (see [`PeerId::for_device`]).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct PeerId(String);

impl PeerId {
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    /// The only peer id a device may use: one user, one device, one peer.
    pub fn for_device(user_id: impl fmt::Display, device_id: impl fmt::Display) -> Self {
        Self(format!("{user_id}:{device_id}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerId({})", self.0)
    }
}

impl From<&str> for PeerId {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_text_and_url() {
        let id = DocumentId::random();
        assert_eq!(id.to_string().parse::<DocumentId>().unwrap(), id);
        assert_eq!(id.url().parse::<DocumentId>().unwrap(), id);
    }

    #[test]
    fn rejects_bad_checksum_and_length() {
        let text = DocumentId::random().to_string();
        let mut corrupted = text.clone().into_bytes();
        let last = corrupted.len() - 1;
        corrupted[last] = if corrupted[last] == b'2' { b'3' } else { b'2' };
        let corrupted = String::from_utf8(corrupted).unwrap();
        assert_eq!(
            corrupted.parse::<DocumentId>(),
            Err(DocumentIdError::NotBase58Check)
        );
        let short = bs58::encode([1u8; 8]).with_check().into_string();
        assert_eq!(
            short.parse::<DocumentId>(),
            Err(DocumentIdError::WrongLength(8))
        );
    }
}
