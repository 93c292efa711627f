//! Encrypts (aes128gcm, RFC 8291) and posts one message to one subscription, signed with
//! the server's VAPID key, and says what the caller should do next. One HTTP client with its
//! connection pool is shared by every clone; VAPID signatures are reused per push service.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use web_push::{
    ContentEncoding, HyperWebPushClient, PartialVapidSignatureBuilder, SubscriptionInfo, Urgency,
    VapidSignature, WebPushClient, WebPushError, WebPushMessage, WebPushMessageBuilder,
};

use super::{PushError, PushOrigins, Subscription, VapidKey};

/// The largest payload a push service must accept once encrypted (RFC 8291 §4: 4096 bytes
/// of record minus header, padding delimiter and tag).
pub const MAX_PAYLOAD_BYTES: usize = 3052;

/// How long one send may take, connection included, before it counts as a retryable failure.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// web-push signs tokens valid for 12 hours; one is reused for this long per push service,
/// which saves an ES256 signature (and a key copy) on every message.
const SIGNATURE_REUSE: Duration = Duration::from_secs(30 * 60);

/// Push services in the signature cache before it is emptied; real deployments see a handful
/// (FCM, Mozilla, Apple, Microsoft), so this bounds only endpoints made up by a client.
const MAX_CACHED_SIGNATURES: usize = 64;

/// What became of one message, and what the caller should do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The push service accepted the message (it is not yet on the device).
    Delivered,
    /// A transient failure (429, 5xx, connection error, timeout): try again, no earlier than
    /// `after` when the push service said so.
    Retry {
        after: Option<Duration>,
        reason: String,
    },
    /// The subscription no longer exists (404/410): remove it with
    /// `DELETE`, as the outbox does.
    Gone,
    /// The message cannot be delivered as it is (other 4xx, payload too large, unusable keys):
    /// retrying the same message will not help.
    Rejected { reason: String },
}

/// Sends Web Push messages; cheap to clone, every clone shares one client and its pool.
#[derive(Clone)]
pub struct Sender {
    shared: Arc<Shared>,
    timeout: Duration,
}

struct Shared {
    public_key_base64: String,
    /// The VAPID `sub` claim (`mailto:` or `https:`): the operator's contact.
    subject: String,
    vapid: PartialVapidSignatureBuilder,
    client: HyperWebPushClient,
    /// Where pushes may go; checked again at each send, in case the setting changed.
    origins: PushOrigins,
    /// By `scheme://authority` of the endpoint, which determines the token's audience.
    signatures: Mutex<HashMap<String, CachedSignature>>,
}

struct CachedSignature {
    signature: VapidSignature,
    signed_at: Instant,
}

impl Sender {
    pub fn new(key: &VapidKey, subject: &str, origins: PushOrigins) -> Result<Self, PushError> {
        Ok(Self {
            shared: Arc::new(Shared {
                public_key_base64: key.public_key_base64(),
                subject: subject.to_owned(),
                vapid: key.signature_builder()?,
                // hyper's client follows no redirects: a push goes to the checked host only.
                client: HyperWebPushClient::new(),
                origins,
                signatures: Mutex::new(HashMap::new()),
            }),
            timeout: SEND_TIMEOUT,
        })
    }

    /// The same sender with another limit per send (tests use a short one).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The VAPID public key, base64url without padding, for `PushManager.subscribe`.
    pub fn public_key_base64(&self) -> &str {
        &self.shared.public_key_base64
    }

    /// Whether pushes may be sent to `endpoint`; if not, why (see `origins`).
    pub fn check_endpoint(&self, endpoint: &str) -> Result<(), String> {
        self.shared.origins.check(endpoint)
    }

    /// Encrypts `payload` for `subscription` and posts it, within the timeout.
    #[tracing::instrument(level = "debug", skip_all, fields(subscription_id = %subscription.id))]
    pub async fn send(
        &self,
        subscription: &Subscription,
        payload: &[u8],
        urgency: Urgency,
        ttl: u32,
    ) -> Outcome {
        if let Err(reason) = self.check_endpoint(&subscription.info.endpoint) {
            return Outcome::Rejected { reason };
        }
        if payload.len() > MAX_PAYLOAD_BYTES {
            return Outcome::Rejected {
                reason: format!(
                    "payload of {} bytes exceeds the {MAX_PAYLOAD_BYTES}-byte limit",
                    payload.len()
                ),
            };
        }
        let message = match self.message(subscription, payload, urgency, ttl) {
            Ok(message) => message,
            Err(error) => {
                return Outcome::Rejected {
                    reason: format!("cannot build the message: {error}"),
                };
            }
        };
        let outcome =
            match tokio::time::timeout(self.timeout, self.shared.client.send(message)).await {
                Ok(Ok(())) => Outcome::Delivered,
                Ok(Err(error)) => classify(error),
                Err(_) => Outcome::Retry {
                    after: None,
                    reason: format!("no answer within {:?}", self.timeout),
                },
            };
        tracing::debug!(?outcome, "push sent");
        outcome
    }

    fn message(
        &self,
        subscription: &Subscription,
        payload: &[u8],
        urgency: Urgency,
        ttl: u32,
    ) -> Result<WebPushMessage, WebPushError> {
        let mut builder = WebPushMessageBuilder::new(&subscription.info);
        builder.set_payload(ContentEncoding::Aes128Gcm, payload);
        builder.set_ttl(ttl);
        builder.set_urgency(urgency);
        builder.set_vapid_signature(self.signature(&subscription.info)?);
        builder.build()
    }

    /// A VAPID signature for the endpoint's push service, signed anew at most every
    /// [`SIGNATURE_REUSE`].
    fn signature(&self, info: &SubscriptionInfo) -> Result<VapidSignature, WebPushError> {
        let origin = origin(&info.endpoint);
        let mut cache = self
            .shared
            .signatures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(cached) = cache.get(origin)
            && cached.signed_at.elapsed() < SIGNATURE_REUSE
        {
            return Ok(cached.signature.clone());
        }
        // Signed under the lock: other sends wait well under a millisecond, once per push
        // service per half hour, and concurrent misses sign only once.
        // web-push's signer panics on an endpoint without scheme or host: check first.
        let uri: axum::http::Uri = info
            .endpoint
            .parse()
            .map_err(|_| WebPushError::InvalidUri)?;
        if uri.scheme().is_none() || uri.host().is_none() {
            return Err(WebPushError::InvalidUri);
        }
        let mut builder = self.shared.vapid.clone().add_sub_info(info);
        builder.add_claim("sub", self.shared.subject.as_str());
        let signature = builder.build()?;
        if cache.len() >= MAX_CACHED_SIGNATURES {
            cache.clear();
        }
        cache.insert(
            origin.to_owned(),
            CachedSignature {
                signature: signature.clone(),
                signed_at: Instant::now(),
            },
        );
        Ok(signature)
    }
}

/// `scheme://authority` of an endpoint: every endpoint with the same one gets the same VAPID
/// audience (web-push derives it from scheme and host).
fn origin(endpoint: &str) -> &str {
    let Some(scheme_end) = endpoint.find("://") else {
        return endpoint;
    };
    let rest = &endpoint[scheme_end + 3..];
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    &endpoint[..scheme_end + 3 + authority_len]
}

/// What the push service said, by status only: its answer's body is the service's (or
/// whoever answered at that address) and is neither stored nor shown.
fn classify(error: WebPushError) -> Outcome {
    let status = |code: u16| format!("the push service answered {code} ({}xx)", code / 100);
    match error {
        WebPushError::EndpointNotFound(_) | WebPushError::EndpointNotValid(_) => Outcome::Gone,
        WebPushError::ServerError { retry_after, info } => Outcome::Retry {
            after: retry_after,
            reason: status(info.code),
        },
        // web-push reports 429 (and 408) as `Other` and drops their Retry-After header.
        WebPushError::Other(info) if matches!(info.code, 408 | 429) => Outcome::Retry {
            after: None,
            reason: status(info.code),
        },
        WebPushError::Other(info)
        | WebPushError::Unauthorized(info)
        | WebPushError::BadRequest(info)
        | WebPushError::NotImplemented(info) => Outcome::Rejected {
            reason: status(info.code),
        },
        // `Unspecified` is how the hyper client reports connection errors. A response that
        // cannot be read may hide an acceptance: sending twice beats losing an alert.
        error @ (WebPushError::Unspecified
        | WebPushError::Io(_)
        | WebPushError::InvalidResponse
        | WebPushError::ResponseTooLarge) => Outcome::Retry {
            after: None,
            reason: error.to_string(),
        },
        other => Outcome::Rejected {
            reason: other.short_description().to_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_is_scheme_and_authority() {
        assert_eq!(
            origin("https://fcm.googleapis.com/fcm/send/abc"),
            "https://fcm.googleapis.com"
        );
        assert_eq!(
            origin("http://127.0.0.1:4000/push/1?x=y"),
            "http://127.0.0.1:4000"
        );
        assert_eq!(origin("http://127.0.0.1:4000"), "http://127.0.0.1:4000");
    }

    #[tokio::test]
    async fn signatures_are_reused_per_push_service() {
        let sender = Sender::new(
            &VapidKey::generate(),
            "mailto:test@example.invalid",
            PushOrigins::default(),
        )
        .unwrap();
        let signature = |endpoint: &str| sender.signature(&SubscriptionInfo::new(endpoint, "", ""));
        let first = signature("https://push.example/a").unwrap();
        let second = signature("https://push.example/b").unwrap();
        let other = signature("https://other.example/a").unwrap();
        assert!(matches!(
            signature("/relative"),
            Err(WebPushError::InvalidUri)
        ));
        assert_eq!(first, second);
        assert_ne!(first.auth_t, other.auth_t);
        assert_eq!(first.auth_k, sender_public_key(&sender));
    }

    fn sender_public_key(sender: &Sender) -> Vec<u8> {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(sender.public_key_base64())
            .unwrap()
    }
}
