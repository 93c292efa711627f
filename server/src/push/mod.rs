//! Web Push (RFC 8030, payload encryption RFC 8291, VAPID RFC 8292): the server's VAPID key
//! pair, the browsers' push subscriptions bound to registered devices, and the [`Sender`] that
//! encrypts and posts one message to one subscription. Deciding whom to alert and retrying
//! until an alert is acknowledged belongs to the escalation worker, which calls
//! [`subscriptions_for_users`] and [`Sender::send`] and acts on the [`Outcome`].

mod sender;
mod subscription;
mod vapid;

use axum::Router;
use axum::routing::{delete, get, post};

use crate::AppState;

pub use sender::{MAX_PAYLOAD_BYTES, Outcome, SEND_TIMEOUT, Sender};
pub use subscription::{Subscription, remove_subscription, subscriptions_for_users};
pub use vapid::{VapidKey, load_vapid_key};
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
        .route(
            "/api/push/vapid-public-key",
            get(subscription::vapid_public_key),
        )
        .route(
            "/api/push/subscriptions",
            post(subscription::subscribe).delete(subscription::unsubscribe_by_endpoint),
        )
        .route(
            "/api/push/subscriptions/{id}",
            delete(subscription::unsubscribe_by_id),
        )
}
