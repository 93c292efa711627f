//! The server's VAPID key pair (RFC 8292): its private half is a key file (`keys`), so that
//! every node and every restart sign with the key the browsers subscribed with.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use rand::RngCore;

use super::PushError;

/// A P-256 private key; `Debug` shows only the public half.
#[derive(Clone)]
pub struct VapidKey {
    secret: p256::SecretKey,
}

impl VapidKey {
    pub fn generate() -> Self {
        // p256 0.13 speaks rand_core 0.6 and the workspace's rand is 0.9: draw the bytes
        // ourselves. A draw outside the scalar field (about 2^-32) is drawn again.
        loop {
            let mut bytes = [0u8; 32];
            rand::rng().fill_bytes(&mut bytes);
            if let Ok(key) = Self::from_bytes(&bytes) {
                return key;
            }
        }
    }

    /// A raw 32-byte private scalar, as stored.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, PushError> {
        if bytes.len() != 32 {
            return Err(PushError::InvalidStoredKey);
        }
        let secret = p256::SecretKey::from_slice(bytes).map_err(|_| PushError::InvalidStoredKey)?;
        Ok(Self { secret })
    }

    pub fn to_bytes(&self) -> [u8; 32] {
        self.secret.to_bytes().into()
    }

    /// The 65-byte uncompressed public key, the `applicationServerKey` browsers subscribe with.
    pub fn public_key(&self) -> [u8; 65] {
        let point = self.secret.public_key().to_encoded_point(false);
        point
            .as_bytes()
            .try_into()
            .expect("an uncompressed P-256 point is 65 bytes")
    }

    /// [`Self::public_key`] as base64url without padding, as `PushManager.subscribe` takes it.
    pub fn public_key_base64(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.public_key())
    }

    pub(super) fn signature_builder(
        &self,
    ) -> Result<web_push::PartialVapidSignatureBuilder, PushError> {
        let encoded = URL_SAFE_NO_PAD.encode(self.to_bytes());
        Ok(web_push::VapidSignatureBuilder::from_base64_no_sub(
            &encoded,
        )?)
    }
}

impl fmt::Debug for VapidKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VapidKey")
            .field("public_key", &self.public_key_base64())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn web_push_derives_the_same_public_key() {
        let key = VapidKey::generate();
        let builder = key.signature_builder().unwrap();
        assert_eq!(builder.get_public_key(), key.public_key().to_vec());
        assert_eq!(key.public_key()[0], 0x04);
    }

    #[test]
    fn round_trips_through_its_stored_bytes() {
        let key = VapidKey::generate();
        let again = VapidKey::from_bytes(&key.to_bytes()).unwrap();
        assert_eq!(key.public_key(), again.public_key());
        assert!(
            VapidKey::from_bytes(&[0u8; 32]).is_err(),
            "zero is not a key"
        );
        assert!(VapidKey::from_bytes(&[1u8; 31]).is_err());
    }
}
