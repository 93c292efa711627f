//! The push routes: the VAPID public key a browser subscribes with, and registering and
//! removing the calling device's subscriptions. Each change commits with its audit row.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::json;
use zhiban_api::{SubscribeRequest, Subscribed, UnsubscribeRequest, VapidPublicKey};

use super::subscriptions::{self, InvalidSubscription, NewSubscription, Which};
use crate::AppState;
use crate::access::Identity;
use crate::audit::{self, Entry};
use crate::db::begin_write;
use crate::error::{ApiJson, AppError};

impl From<InvalidSubscription> for AppError {
    fn from(error: InvalidSubscription) -> Self {
        AppError::Rejected(StatusCode::UNPROCESSABLE_ENTITY, error.to_string())
    }
}

/// The key a browser passes as `applicationServerKey`; any logged-in device may ask.
#[utoipa::path(get, path = "/api/push/vapid-public-key", tag = "push",
    responses((status = 200, body = VapidPublicKey)), security(("bearer" = [])))]
pub(crate) async fn vapid_public_key(
    State(state): State<AppState>,
    _identity: Identity,
) -> Json<VapidPublicKey> {
    Json(VapidPublicKey {
        public_key: state.push.public_key_base64().to_owned(),
    })
}

/// Stores the calling device's subscription (the browser's `PushSubscription.toJSON()`).
#[utoipa::path(post, path = "/api/push/subscriptions", tag = "push", request_body = SubscribeRequest,
    responses((status = 201, body = Subscribed), (status = 422, body = zhiban_api::ErrorBody)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(user_id = %identity.user_id, device_id = %identity.device_id))]
pub(crate) async fn subscribe(
    State(state): State<AppState>,
    identity: Identity,
    ApiJson(request): ApiJson<SubscribeRequest>,
) -> Result<(StatusCode, Json<Subscribed>), AppError> {
    let subscription = NewSubscription::parse(request)?;
    if let Err(reason) = state.push.check_endpoint(&subscription.endpoint) {
        tracing::warn!(%reason, "push endpoint refused");
        return Err(AppError::Rejected(StatusCode::UNPROCESSABLE_ENTITY, reason));
    }
    let now = state.clock.now_ms();
    let mut tx = begin_write(&state.pool).await?;
    let limits = &state.settings.limits;
    let (on_device, of_user) = subscriptions::count_others(
        &mut tx,
        &subscription.endpoint,
        &identity.user_id,
        &identity.device_id,
    )
    .await?;
    for (held, limit, whose) in [
        (
            on_device,
            limits.max_push_subscriptions_per_device,
            "this device",
        ),
        (of_user, limits.max_push_subscriptions_per_user, "this user"),
    ] {
        if held >= limit {
            tracing::warn!(held, limit, whose, "push subscription refused: too many");
            return Err(AppError::Rejected(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "{whose} already has {held} push subscriptions, the limit; remove one first"
                ),
            ));
        }
    }
    let (id, replaced_device) = subscriptions::store(
        &mut tx,
        &subscription,
        &identity.user_id,
        &identity.device_id,
        now,
    )
    .await?;
    let entry = Entry::new("push.subscribe")
        .by(&identity.user_id, Some(&identity.device_id))
        .detail(json!({
            "subscription_id": id,
            "push_service": subscriptions::push_service(&subscription.endpoint),
            "replaced_device": replaced_device,
        }));
    audit::append(&mut tx, &state.audit_key, &[entry], now).await?;
    tx.commit().await?;
    tracing::info!(subscription_id = %id, "push subscription stored");
    Ok((StatusCode::CREATED, Json(Subscribed { id: id.into() })))
}

/// Removes one of the caller's subscriptions, named by its endpoint as the browser knows it.
#[utoipa::path(delete, path = "/api/push/subscriptions", tag = "push",
    request_body = UnsubscribeRequest,
    responses((status = 204), (status = 404, body = zhiban_api::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn unsubscribe_by_endpoint(
    State(state): State<AppState>,
    identity: Identity,
    ApiJson(request): ApiJson<UnsubscribeRequest>,
) -> Result<StatusCode, AppError> {
    unsubscribe(&state, &identity, Which::Endpoint(&request.endpoint)).await
}

/// Removes one of the caller's subscriptions by the id it was given at registration.
#[utoipa::path(delete, path = "/api/push/subscriptions/{id}", tag = "push",
    params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = zhiban_api::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn unsubscribe_by_id(
    State(state): State<AppState>,
    identity: Identity,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    unsubscribe(&state, &identity, Which::Id(&id)).await
}

#[tracing::instrument(skip_all, fields(user_id = %identity.user_id, device_id = %identity.device_id))]
async fn unsubscribe(
    state: &AppState,
    identity: &Identity,
    which: Which<'_>,
) -> Result<StatusCode, AppError> {
    let now = state.clock.now_ms();
    let mut tx = begin_write(&state.pool).await?;
    // Someone else's subscription is answered like a missing one: its existence is none of
    // the caller's business.
    let (id, push_service) = subscriptions::remove(&mut tx, which, &identity.user_id)
        .await?
        .ok_or(AppError::NotFound("no such push subscription"))?;
    let entry = Entry::new("push.unsubscribe")
        .by(&identity.user_id, Some(&identity.device_id))
        .detail(json!({"subscription_id": id, "push_service": push_service}));
    audit::append(&mut tx, &state.audit_key, &[entry], now).await?;
    tx.commit().await?;
    tracing::info!(subscription_id = %id, "push subscription removed");
    Ok(StatusCode::NO_CONTENT)
}
