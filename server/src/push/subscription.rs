//! Browsers' push subscriptions: registered by an authenticated device with the
//! `PushSubscription` JSON the browser gives, validated before they are stored, and read back
//! for sending only while their device is not revoked.

use std::fmt;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use base64::Engine;
use base64::alphabet::URL_SAFE;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::Row;
use sqlx::any::AnyRow;
use web_push::SubscriptionInfo;

use crate::AppState;
use crate::audit::{self, Entry};
use crate::auth::Identity;
use crate::db::{Arg, Pool, Sql, now_ms};
use crate::error::{ApiJson, AppError};

/// Longest endpoint accepted; real ones (FCM, Mozilla, Apple) are a few hundred bytes.
const MAX_ENDPOINT_LEN: usize = 2048;

/// Browsers send base64url without padding; accept padding too and store without.
const BASE64URL_ANY_PADDING: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A stored subscription, ready for [`super::Sender::send`].
#[derive(Clone)]
pub struct Subscription {
    pub id: String,
    pub user_id: String,
    pub device_id: String,
    /// Endpoint and keys (base64url without padding) in the form web-push encrypts for.
    pub info: SubscriptionInfo,
    /// The browser's expirationTime in ms since the epoch, if it gave one.
    pub expiration_time: Option<i64>,
}

/// Keys and the endpoint's path are left out: the endpoint is a capability to the device.
impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("id", &self.id)
            .field("user_id", &self.user_id)
            .field("device_id", &self.device_id)
            .field("push_service", &push_service(&self.info.endpoint))
            .field("expiration_time", &self.expiration_time)
            .finish_non_exhaustive()
    }
}

/// Subscriptions of these users on devices that are not revoked, unexpired ones as of `now`.
/// Takes a connection so that alerts can be queued inside the transaction that causes them.
pub async fn subscriptions_for_users(
    connection: &mut sqlx::AnyConnection,
    user_ids: &[String],
    now: i64,
) -> Result<Vec<Subscription>, sqlx::Error> {
    if user_ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut sql = Sql::new(
        "SELECT s.id, s.user_id, s.device_id, s.endpoint, s.p256dh, s.auth, s.expiration_time \
         FROM push_subscriptions s JOIN devices d ON d.id = s.device_id \
         WHERE d.revoked_at IS NULL AND (s.expiration_time IS NULL OR s.expiration_time > ",
    );
    sql.bind(now)
        .push(") AND s.user_id IN ")
        .bind_list(user_ids.iter().map(|id| Arg::from(id.as_str())))
        .push(" ORDER BY s.user_id, s.id");
    sql.query()
        .fetch_all(connection)
        .await?
        .iter()
        .map(subscription_from_row)
        .collect()
}

/// Deletes a subscription the push service reported gone; true if there was one.
pub async fn remove_subscription(pool: &Pool, id: &str) -> Result<bool, sqlx::Error> {
    let removed = sqlx::query("DELETE FROM push_subscriptions WHERE id = $1")
        .bind(id)
        .execute(pool)
        .await?;
    Ok(removed.rows_affected() > 0)
}

fn subscription_from_row(row: &AnyRow) -> Result<Subscription, sqlx::Error> {
    Ok(Subscription {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        device_id: row.try_get("device_id")?,
        info: SubscriptionInfo::new(
            row.try_get::<String, _>("endpoint")?,
            row.try_get("p256dh")?,
            row.try_get("auth")?,
        ),
        expiration_time: row.try_get("expiration_time")?,
    })
}

/// The push service's host, for logs and the audit trail.
fn push_service(endpoint: &str) -> Option<String> {
    endpoint.parse::<Uri>().ok()?.host().map(str::to_owned)
}

/// The browser's `PushSubscription.toJSON()`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct SubscribeRequest {
    endpoint: String,
    #[serde(default)]
    expiration_time: Option<f64>,
    keys: KeysRequest,
}

#[derive(Deserialize)]
struct KeysRequest {
    p256dh: String,
    auth: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(super) enum InvalidSubscription {
    #[error("endpoint must be an http or https URL")]
    Endpoint,
    #[error("endpoint is longer than {MAX_ENDPOINT_LEN} bytes")]
    EndpointTooLong,
    #[error("keys.p256dh must be base64url")]
    P256dhEncoding,
    #[error("keys.p256dh must be a 65-byte uncompressed P-256 point")]
    P256dhLength,
    #[error("keys.p256dh is not a point on the P-256 curve")]
    P256dhNotOnCurve,
    #[error("keys.auth must be base64url")]
    AuthEncoding,
    #[error("keys.auth must be 16 bytes")]
    AuthLength,
    #[error("expirationTime must be a time in milliseconds since the epoch, or null")]
    ExpirationTime,
}

impl From<InvalidSubscription> for AppError {
    fn from(error: InvalidSubscription) -> Self {
        AppError::Rejected(StatusCode::UNPROCESSABLE_ENTITY, error.to_string())
    }
}

/// A subscription that passed validation, keys re-encoded without padding.
#[derive(Debug)]
struct NewSubscription {
    endpoint: String,
    p256dh: String,
    auth: String,
    expiration_time: Option<i64>,
}

impl NewSubscription {
    fn parse(request: SubscribeRequest) -> Result<Self, InvalidSubscription> {
        if request.endpoint.len() > MAX_ENDPOINT_LEN {
            return Err(InvalidSubscription::EndpointTooLong);
        }
        let uri: Uri = request
            .endpoint
            .parse()
            .map_err(|_| InvalidSubscription::Endpoint)?;
        let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
        if !scheme_ok || uri.host().is_none_or(str::is_empty) {
            return Err(InvalidSubscription::Endpoint);
        }

        let p256dh = BASE64URL_ANY_PADDING
            .decode(request.keys.p256dh.trim())
            .map_err(|_| InvalidSubscription::P256dhEncoding)?;
        if p256dh.len() != 65 || p256dh[0] != 0x04 {
            return Err(InvalidSubscription::P256dhLength);
        }
        p256::PublicKey::from_sec1_bytes(&p256dh)
            .map_err(|_| InvalidSubscription::P256dhNotOnCurve)?;

        let auth = BASE64URL_ANY_PADDING
            .decode(request.keys.auth.trim())
            .map_err(|_| InvalidSubscription::AuthEncoding)?;
        if auth.len() != 16 {
            return Err(InvalidSubscription::AuthLength);
        }

        let expiration_time = match request.expiration_time {
            None => None,
            Some(ms) if ms >= 0.0 && ms <= i64::MAX as f64 => Some(ms as i64),
            Some(_) => return Err(InvalidSubscription::ExpirationTime),
        };
        Ok(Self {
            endpoint: request.endpoint,
            p256dh: URL_SAFE_NO_PAD.encode(p256dh),
            auth: URL_SAFE_NO_PAD.encode(auth),
            expiration_time,
        })
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PublicKeyResponse {
    public_key: String,
}

/// The key a browser passes as `applicationServerKey`; any logged-in device may ask.
pub(super) async fn vapid_public_key(
    State(state): State<AppState>,
    _identity: Identity,
) -> Json<PublicKeyResponse> {
    Json(PublicKeyResponse {
        public_key: state.push.public_key_base64().to_owned(),
    })
}

#[derive(Serialize)]
pub(super) struct SubscribeResponse {
    id: String,
}

/// Stores the calling device's subscription. The same endpoint again (a re-subscribe, or
/// another user on a shared browser) replaces the row and binds it to the calling device.
#[tracing::instrument(skip_all, fields(user_id = %identity.user_id, device_id = %identity.device_id))]
pub(super) async fn subscribe(
    State(state): State<AppState>,
    identity: Identity,
    ApiJson(request): ApiJson<SubscribeRequest>,
) -> Result<(StatusCode, Json<SubscribeResponse>), AppError> {
    let subscription = NewSubscription::parse(request)?;
    let previous_device: Option<String> =
        sqlx::query_scalar("SELECT device_id FROM push_subscriptions WHERE endpoint = $1")
            .bind(&subscription.endpoint)
            .fetch_optional(&state.pool)
            .await?;
    let id: String = sqlx::query_scalar(
        "INSERT INTO push_subscriptions \
         (id, device_id, user_id, endpoint, p256dh, auth, expiration_time, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (endpoint) DO UPDATE SET device_id = excluded.device_id, \
         user_id = excluded.user_id, p256dh = excluded.p256dh, auth = excluded.auth, \
         expiration_time = excluded.expiration_time \
         RETURNING id",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(&identity.device_id)
    .bind(&identity.user_id)
    .bind(&subscription.endpoint)
    .bind(&subscription.p256dh)
    .bind(&subscription.auth)
    .bind(subscription.expiration_time)
    .bind(now_ms())
    .fetch_one(&state.pool)
    .await?;
    audit::record(
        &state,
        Entry::new("push.subscribe")
            .by(&identity.user_id, Some(&identity.device_id))
            .detail(json!({
                "subscription_id": id,
                "push_service": push_service(&subscription.endpoint),
                "replaced_device": previous_device,
            })),
    )
    .await?;
    tracing::info!(subscription_id = %id, "push subscription stored");
    Ok((StatusCode::CREATED, Json(SubscribeResponse { id })))
}

#[derive(Deserialize)]
pub(super) struct UnsubscribeRequest {
    endpoint: String,
}

/// Removes one of the caller's subscriptions, named by its endpoint as the browser knows it.
#[tracing::instrument(skip_all, fields(user_id = %identity.user_id, device_id = %identity.device_id))]
pub(super) async fn unsubscribe_by_endpoint(
    State(state): State<AppState>,
    identity: Identity,
    ApiJson(request): ApiJson<UnsubscribeRequest>,
) -> Result<StatusCode, AppError> {
    let row = sqlx::query(
        "DELETE FROM push_subscriptions WHERE endpoint = $1 AND user_id = $2 \
         RETURNING id, endpoint",
    )
    .bind(&request.endpoint)
    .bind(&identity.user_id)
    .fetch_optional(&state.pool)
    .await?;
    unsubscribed(&state, &identity, row).await
}

/// Removes one of the caller's subscriptions by the id it was given at registration.
#[tracing::instrument(skip_all, fields(user_id = %identity.user_id, device_id = %identity.device_id))]
pub(super) async fn unsubscribe_by_id(
    State(state): State<AppState>,
    identity: Identity,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    let row = sqlx::query(
        "DELETE FROM push_subscriptions WHERE id = $1 AND user_id = $2 RETURNING id, endpoint",
    )
    .bind(&id)
    .bind(&identity.user_id)
    .fetch_optional(&state.pool)
    .await?;
    unsubscribed(&state, &identity, row).await
}

async fn unsubscribed(
    state: &AppState,
    identity: &Identity,
    deleted: Option<AnyRow>,
) -> Result<StatusCode, AppError> {
    // Someone else's subscription is answered like a missing one: its existence is none of
    // the caller's business.
    let row = deleted.ok_or(AppError::NotFound("no such push subscription"))?;
    let id: String = row.try_get("id")?;
    let endpoint: String = row.try_get("endpoint")?;
    audit::record(
        state,
        Entry::new("push.unsubscribe")
            .by(&identity.user_id, Some(&identity.device_id))
            .detail(json!({
                "subscription_id": id,
                "push_service": push_service(&endpoint),
            })),
    )
    .await?;
    tracing::info!(subscription_id = %id, "push subscription removed");
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(endpoint: &str, p256dh: &str, auth: &str) -> SubscribeRequest {
        SubscribeRequest {
            endpoint: endpoint.into(),
            expiration_time: None,
            keys: KeysRequest {
                p256dh: p256dh.into(),
                auth: auth.into(),
            },
        }
    }

    // The user agent's key and auth secret of RFC 8291's worked example (Section 5).
    const P256DH: &str =
        "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4";
    const AUTH: &str = "BTBZMqHH6r4Tts7J_aSIgg";

    #[test]
    fn accepts_a_browser_subscription_with_or_without_padding() {
        let parsed =
            NewSubscription::parse(request("https://push.example/x", P256DH, AUTH)).expect("valid");
        assert_eq!(
            (parsed.p256dh.as_str(), parsed.auth.as_str()),
            (P256DH, AUTH)
        );
        let padded = NewSubscription::parse(request(
            "http://127.0.0.1:9/x",
            &format!("{P256DH}="),
            &format!("{AUTH}=="),
        ))
        .expect("padding is accepted");
        assert_eq!(
            (padded.p256dh.as_str(), padded.auth.as_str()),
            (P256DH, AUTH)
        );
    }

    #[test]
    fn refuses_what_cannot_be_pushed_to() {
        let cases = [
            (
                request("not a url", P256DH, AUTH),
                InvalidSubscription::Endpoint,
            ),
            (
                request("/relative", P256DH, AUTH),
                InvalidSubscription::Endpoint,
            ),
            (
                request("ftp://push.example/x", P256DH, AUTH),
                InvalidSubscription::Endpoint,
            ),
            (
                request("https://x/y", "!!", AUTH),
                InvalidSubscription::P256dhEncoding,
            ),
            (
                request("https://x/y", AUTH, AUTH),
                InvalidSubscription::P256dhLength,
            ),
            (
                request("https://x/y", P256DH, P256DH),
                InvalidSubscription::AuthLength,
            ),
        ];
        for (request, expected) in cases {
            assert_eq!(NewSubscription::parse(request).unwrap_err(), expected);
        }
        let mut off_curve = URL_SAFE_NO_PAD.decode(P256DH).unwrap();
        off_curve[64] ^= 1;
        let off_curve = URL_SAFE_NO_PAD.encode(off_curve);
        assert_eq!(
            NewSubscription::parse(request("https://x/y", &off_curve, AUTH)).unwrap_err(),
            InvalidSubscription::P256dhNotOnCurve
        );
    }
}
