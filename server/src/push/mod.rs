//! Web Push (RFC 8030, payload encryption RFC 8291, VAPID RFC 8292): the server's VAPID key
//! pair, the browsers' push subscriptions bound to registered devices, and the [`Sender`] that
//! encrypts and posts one message to one subscription. Deciding whom to alert belongs to
//! `alerts`, sending and retrying to `outbox`; only `api` knows HTTP, callers and the audit.

pub mod api;
mod origins;
mod sender;
pub mod subscriptions;
mod vapid;

use axum::Router;
use axum::routing::{delete, get, post};

use crate::AppState;

pub use origins::PushOrigins;
pub use sender::{MAX_PAYLOAD_BYTES, Outcome, SEND_TIMEOUT, Sender};
pub use subscriptions::{Subscription, subscriptions_for_users};
pub use vapid::VapidKey;
pub use web_push::{SubscriptionInfo, SubscriptionKeys, Urgency};

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("the stored VAPID key is not a P-256 private key")]
    InvalidStoredKey,
    #[error("web-push refused the VAPID key: {0}")]
    WebPush(#[from] web_push::WebPushError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/push/vapid-public-key", get(api::vapid_public_key))
        .route(
            "/api/push/subscriptions",
            post(api::subscribe).delete(api::unsubscribe_by_endpoint),
        )
        .route(
            "/api/push/subscriptions/{id}",
            delete(api::unsubscribe_by_id),
        )
}
