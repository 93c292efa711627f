//! Browsers' push subscriptions: validated before they are stored ([`NewSubscription`]),
//! bound to the device that registered them, and read back for sending only while their
//! device is not revoked. Plain SQL: the routes are in `api`.

use std::fmt;

use axum::http::Uri;
use base64::Engine;
use base64::alphabet::URL_SAFE;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use sqlx::Row;
use sqlx::any::AnyRow;
use web_push::SubscriptionInfo;
use zhiban_api::SubscribeRequest;

use crate::db::{Arg, Sql};

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
pub fn push_service(endpoint: &str) -> Option<String> {
    endpoint.parse::<Uri>().ok()?.host().map(str::to_owned)
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidSubscription {
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

/// A subscription that passed validation, keys re-encoded without padding.
#[derive(Debug)]
pub struct NewSubscription {
    pub endpoint: String,
    pub p256dh: String,
    pub auth: String,
    pub expiration_time: Option<i64>,
}

impl NewSubscription {
    pub fn parse(request: SubscribeRequest) -> Result<Self, InvalidSubscription> {
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
            // Whole milliseconds within i64: the cast neither truncates a fraction that
            // matters nor overflows.
            #[allow(clippy::cast_possible_truncation)]
            Some(ms) if (0.0..9.0e15).contains(&ms) => Some(ms as i64),
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

/// Stores the device's subscription. The same endpoint again (a re-subscribe, or another user
/// on a shared browser) replaces the row and binds it to the calling device. Returns the id
/// and the device it was bound to before, if another.
pub async fn store(
    tx: &mut sqlx::AnyConnection,
    subscription: &NewSubscription,
    user_id: &str,
    device_id: &str,
    now: i64,
) -> Result<(String, Option<String>), sqlx::Error> {
    let previous_device: Option<String> =
        sqlx::query_scalar("SELECT device_id FROM push_subscriptions WHERE endpoint = $1")
            .bind(&subscription.endpoint)
            .fetch_optional(&mut *tx)
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
    .bind(device_id)
    .bind(user_id)
    .bind(&subscription.endpoint)
    .bind(&subscription.p256dh)
    .bind(&subscription.auth)
    .bind(subscription.expiration_time)
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    Ok((id, previous_device.filter(|previous| previous != device_id)))
}

/// How many subscriptions other than `endpoint` the device holds, and the user.
pub async fn count_others(
    tx: &mut sqlx::AnyConnection,
    endpoint: &str,
    user_id: &str,
    device_id: &str,
) -> Result<(i64, i64), sqlx::Error> {
    let row = sqlx::query(
        "SELECT COALESCE(SUM(CASE WHEN device_id = $1 THEN 1 ELSE 0 END), 0) AS on_device, \
         COUNT(*) AS of_user FROM push_subscriptions WHERE user_id = $2 AND endpoint <> $3",
    )
    .bind(device_id)
    .bind(user_id)
    .bind(endpoint)
    .fetch_one(&mut *tx)
    .await?;
    Ok((row.try_get("on_device")?, row.try_get("of_user")?))
}

/// Which subscription of a user to remove.
pub enum Which<'a> {
    Endpoint(&'a str),
    Id(&'a str),
}

/// Deletes one of `user_id`'s subscriptions; its id and push service if there was one.
pub async fn remove(
    tx: &mut sqlx::AnyConnection,
    which: Which<'_>,
    user_id: &str,
) -> Result<Option<(String, Option<String>)>, sqlx::Error> {
    let (column, value) = match which {
        Which::Endpoint(endpoint) => ("endpoint", endpoint),
        Which::Id(id) => ("id", id),
    };
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "DELETE FROM push_subscriptions WHERE {column} = $1 AND user_id = $2 \
         RETURNING id, endpoint"
    )))
    .bind(value)
    .bind(user_id)
    .fetch_optional(tx)
    .await?;
    row.map(|row| {
        let endpoint: String = row.try_get("endpoint")?;
        Ok((row.try_get("id")?, push_service(&endpoint)))
    })
    .transpose()
}

/// Deletes a device's subscriptions and cancels what is queued for them (a revoked phone,
/// D24).
pub async fn remove_device(
    tx: &mut sqlx::AnyConnection,
    device_id: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE push_outbox SET status = 'cancelled' WHERE status = 'pending' AND subscription_id \
         IN (SELECT id FROM push_subscriptions WHERE device_id = $1)",
    )
    .bind(device_id)
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM push_subscriptions WHERE device_id = $1")
        .bind(device_id)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(endpoint: &str, p256dh: &str, auth: &str) -> SubscribeRequest {
        SubscribeRequest {
            endpoint: endpoint.into(),
            expiration_time: None,
            keys: zhiban_api::SubscriptionKeys {
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
