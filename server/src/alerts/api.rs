//! The alert inbox and acknowledgement, device receipts, roll-calls (D16) and escalation
//! policies. Visibility follows the unit tree and clearance as everywhere else (D18): an alert
//! one may not see answers 404, like one that does not exist. Every action commits with its
//! audit row.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use sqlx::Row;
use zhiban_api::{
    Acknowledged, AlertKind, AlertList, AlertView, Grade, Policy, PolicyBody, Resolution,
    RollcallAnswered, RollcallCalled, RollcallList, RollcallRequest, RollcallStatus, RollcallView,
    Target,
};

use super::engine::{append, raise, resolve_alert};
use super::{Alert, NewAlert, policy};
use crate::AppState;
use crate::access::{Identity, Role, Visibility, units_above};
use crate::audit::{self, Entry};
use crate::db::{Sql, begin_write};
use crate::error::{ApiJson, AppError};
use crate::records::parse_name;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/alerts", get(list))
        .route("/api/alerts/{id}", get(one))
        .route("/api/alerts/{id}/ack", post(acknowledge))
        .route("/api/alerts/{id}/take-over", post(take_over))
        .route("/api/alerts/{id}/receipt", post(receipt))
        .route("/api/alerts/{id}/push-ack", post(push_acknowledge))
        .route("/api/alerts/{id}/push-receipt", post(push_receipt))
        .route("/api/rollcalls", post(call).get(rollcalls))
        .route("/api/rollcalls/{id}/answer", post(answer))
        .route(
            "/api/escalation-policies/{unit}/{grade}",
            get(get_policy).put(put_policy),
        )
}

const VIEW_COLUMNS: &str = "a.id, a.kind, a.dedupe_key, a.document_id, a.unit_id, a.classified, a.grade, \
     a.title, a.created_at, a.due_at, a.step, a.next_at, a.acknowledged_at, a.acknowledged_by, \
     a.resolved_at, a.resolution, \
     CAST(CASE WHEN t.user_id IS NULL THEN 0 ELSE 1 END AS BIGINT) AS targeted";

fn view(row: &sqlx::any::AnyRow) -> Result<AlertView, sqlx::Error> {
    let kind: String = row.try_get("kind")?;
    let resolution: Option<String> = row.try_get("resolution")?;
    Ok(AlertView {
        id: row.try_get::<String, _>("id")?.into(),
        kind: kind
            .parse::<AlertKind>()
            .map_err(|error| sqlx::Error::Decode(error.into()))?,
        document_id: row
            .try_get::<Option<String>, _>("document_id")?
            .and_then(|id| id.parse().ok()),
        rollcall_id: row
            .try_get::<String, _>("dedupe_key")?
            .strip_prefix("rollcall:")
            .map(Into::into),
        unit_id: row.try_get::<String, _>("unit_id")?.into(),
        classified: row.try_get::<i64, _>("classified")? != 0,
        grade: parse_name(row.try_get("grade")?),
        title: row.try_get("title")?,
        created_at: row.try_get("created_at")?,
        due_at: row.try_get("due_at")?,
        step: row.try_get("step")?,
        next_at: row.try_get("next_at")?,
        acknowledged_at: row.try_get("acknowledged_at")?,
        acknowledged_by: row
            .try_get::<Option<String>, _>("acknowledged_by")?
            .map(Into::into),
        resolved_at: row.try_get("resolved_at")?,
        resolution: resolution.and_then(|resolution| resolution.parse::<Resolution>().ok()),
        targeted: row.try_get::<i64, _>("targeted")? != 0,
        timeline: None,
    })
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// Only alerts still running (neither acknowledged nor resolved).
    #[serde(default)]
    open: bool,
    /// Only alerts that reached the caller.
    #[serde(default)]
    mine: bool,
    /// 1 to 500; 50 by default.
    limit: Option<i64>,
}

/// The alerts the caller may see, newest first.
#[utoipa::path(get, path = "/api/alerts", tag = "alerts", params(ListQuery),
    responses((status = 200, body = AlertList), (status = 400, body = zhiban_api::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn list(
    State(state): State<AppState>,
    identity: Identity,
    Query(query): Query<ListQuery>,
) -> Result<Json<AlertList>, AppError> {
    let limit = query.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(AppError::BadRequest("limit must be 1 to 500".into()));
    }
    let mut select = visible_alerts(&state, &identity).await?;
    if query.open {
        select.push(" AND a.acknowledged_at IS NULL AND a.resolved_at IS NULL");
    }
    if query.mine {
        select.push(" AND t.user_id IS NOT NULL");
    }
    select
        .push(" ORDER BY a.created_at DESC, a.id DESC LIMIT ")
        .bind(limit);
    let alerts = select
        .query()
        .fetch_all(&state.pool)
        .await?
        .iter()
        .map(view)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(AlertList { alerts }))
}

/// Alerts the caller may see (their units, classified only when cleared), each marked
/// `targeted` when it reached them; callers append `AND …` conditions.
async fn visible_alerts(state: &AppState, identity: &Identity) -> Result<Sql, AppError> {
    let visibility = Visibility::of(&state.pool, identity).await?;
    let mut select = Sql::new(&format!(
        "SELECT {VIEW_COLUMNS} FROM alerts a LEFT JOIN alert_targets t \
         ON t.alert_id = a.id AND t.user_id = "
    ));
    select.bind(identity.user_id.clone()).push(" WHERE 1 = 1");
    visibility.restrict(&mut select, "a.unit_id", "a.classified <> 0");
    Ok(select)
}

/// The alert if the caller may see it.
async fn visible(state: &AppState, identity: &Identity, id: &str) -> Result<AlertView, AppError> {
    let mut select = visible_alerts(state, identity).await?;
    select.push(" AND a.id = ").bind(id.to_owned());
    let row = select
        .query()
        .fetch_optional(&state.pool)
        .await?
        .ok_or(AppError::NotFound("no such alert"))?;
    Ok(view(&row)?)
}

/// One alert with its timeline.
#[utoipa::path(get, path = "/api/alerts/{id}", tag = "alerts", params(("id" = String, Path)),
    responses((status = 200, body = AlertView), (status = 404, body = zhiban_api::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn one(
    State(state): State<AppState>,
    identity: Identity,
    Path(id): Path<String>,
) -> Result<Json<AlertView>, AppError> {
    let mut alert = visible(&state, &identity, &id).await?;
    alert.timeline = Some(crate::timeline::of_alert(&state.pool, &id).await?);
    Ok(Json(alert))
}

/// Stops the alert's repeats and escalation (D23). Its targets may acknowledge it, and so may
/// a leader or admin of its unit; an office above takes it over instead (`take-over`). A
/// roll-call's alert is answered by whoever is at the unit's desk, and answers the roll-call.
#[utoipa::path(post, path = "/api/alerts/{id}/ack", tag = "alerts", params(("id" = String, Path)),
    responses((status = 200, body = Acknowledged), (status = 403, body = zhiban_api::ErrorBody),
        (status = 404, body = zhiban_api::ErrorBody), (status = 409, body = zhiban_api::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn acknowledge(
    State(state): State<AppState>,
    identity: Identity,
    Path(id): Path<String>,
) -> Result<Json<Acknowledged>, AppError> {
    let alert = visible(&state, &identity, &id).await?;
    if let Some(rollcall) = &alert.rollcall_id {
        if !alert.targeted && !matches!(identity.role, Role::Leader | Role::Officer | Role::Admin) {
            return Err(AppError::Forbidden("this alert was not sent to you"));
        }
        let answered = answer_rollcall(&state, &identity, rollcall.as_str()).await?;
        let alert = visible(&state, &identity, &id).await?;
        return Ok(Json(Acknowledged {
            id: alert.id,
            already: false,
            acknowledged_at: alert.acknowledged_at,
            acknowledged_by: alert.acknowledged_by,
            resolved_at: alert.resolved_at,
            resolution: alert.resolution,
            rollcall: Some(answered),
        }));
    }
    let unit_lead = identity.unit_id == alert.unit_id.as_str()
        && matches!(identity.role, Role::Leader | Role::Admin);
    if !alert.targeted && !unit_lead {
        return Err(AppError::Forbidden(
            "only the alert's targets and its unit's leaders and admins acknowledge it; \
             an office above takes it over",
        ));
    }
    settle(
        &state,
        &identity,
        &id,
        "alert.acknowledged",
        "alert.acknowledge",
    )
    .await
}

/// A leader or admin of an office above the alert's unit takes the alert over: it stops as
/// an acknowledgement does, and the timeline and audit trail say it was taken over, by whom.
#[utoipa::path(post, path = "/api/alerts/{id}/take-over", tag = "alerts", params(("id" = String, Path)),
    responses((status = 200, body = Acknowledged), (status = 403, body = zhiban_api::ErrorBody),
        (status = 404, body = zhiban_api::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn take_over(
    State(state): State<AppState>,
    identity: Identity,
    Path(id): Path<String>,
) -> Result<Json<Acknowledged>, AppError> {
    let alert = visible(&state, &identity, &id).await?;
    let above = units_above(&state.pool, alert.unit_id.as_str()).await?;
    let superior = identity.unit_id != alert.unit_id.as_str()
        && above.contains(&identity.unit_id)
        && matches!(identity.role, Role::Leader | Role::Admin);
    if !superior || alert.rollcall_id.is_some() {
        return Err(AppError::Forbidden(
            "only a leader or admin of an office above the alert's unit takes it over",
        ));
    }
    settle(
        &state,
        &identity,
        &id,
        "alert.taken_over",
        "alert.take_over",
    )
    .await
}

/// Acknowledges the alert (`event` on its timeline, `action` in the audit trail), or says
/// who already did.
async fn settle(
    state: &AppState,
    identity: &Identity,
    id: &str,
    event: &'static str,
    action: &'static str,
) -> Result<Json<Acknowledged>, AppError> {
    let now = state.clock.now_ms();
    let mut tx = begin_write(&state.pool).await?;
    let updated = sqlx::query(
        "UPDATE alerts SET acknowledged_at = $1, acknowledged_by = $2, next_at = NULL \
         WHERE id = $3 AND acknowledged_at IS NULL AND resolved_at IS NULL",
    )
    .bind(now)
    .bind(&identity.user_id)
    .bind(id)
    .execute(&mut *tx)
    .await?;
    if updated.rows_affected() == 0 {
        tx.rollback().await?;
        let current = visible(state, identity, id).await?;
        return Ok(Json(Acknowledged {
            id: current.id,
            already: true,
            acknowledged_at: current.acknowledged_at,
            acknowledged_by: current.acknowledged_by,
            resolved_at: current.resolved_at,
            resolution: current.resolution,
            rollcall: None,
        }));
    }
    crate::outbox::cancel_pending(&mut tx, id).await?;
    let stored = stored_alert(&mut tx, id).await?;
    append(
        &mut tx,
        &stored,
        now,
        event,
        Some(&identity.user_id),
        json!({"device_id": identity.device_id, "after_ms": now.saturating_sub(stored.created_at)}),
    )
    .await?;
    let entry = Entry::new(action)
        .by(&identity.user_id, Some(&identity.device_id))
        .detail(json!({"alert_id": id, "document_id": stored.document_id}));
    audit::append(&mut tx, &state.audit_key, &[entry], now).await?;
    tx.commit().await?;
    tracing::info!(alert_id = %id, user_id = %identity.user_id, event, "alert acknowledged");
    Ok(Json(Acknowledged {
        id: id.into(),
        already: false,
        acknowledged_at: Some(now),
        acknowledged_by: Some(identity.user_id.as_str().into()),
        resolved_at: None,
        resolution: None,
        rollcall: None,
    }))
}

async fn stored_alert(
    connection: &mut sqlx::AnyConnection,
    id: &str,
) -> Result<Alert, sqlx::Error> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {} FROM alerts WHERE id = $1",
        Alert::COLUMNS
    )))
    .bind(id)
    .fetch_one(connection)
    .await?;
    Alert::from_row(&row)
}

/// The device showed the notification (the service worker reports it): the delivery receipt,
/// accepted only from a device the alert was pushed to.
#[utoipa::path(post, path = "/api/alerts/{id}/receipt", tag = "alerts", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = zhiban_api::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn receipt(
    State(state): State<AppState>,
    identity: Identity,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    visible(&state, &identity, &id).await?;
    let pushed: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM push_outbox o JOIN push_subscriptions s ON s.id = o.subscription_id \
         WHERE o.alert_id = $1 AND s.device_id = $2 LIMIT 1",
    )
    .bind(&id)
    .bind(&identity.device_id)
    .fetch_optional(&state.pool)
    .await?;
    if pushed.is_none() {
        return Err(AppError::Forbidden(
            "this alert was not pushed to this device",
        ));
    }
    let now = state.clock.now_ms();
    let mut connection = state.pool.acquire().await?;
    let stored = stored_alert(&mut connection, &id).await?;
    append(
        &mut connection,
        &stored,
        now,
        "push.received",
        Some(&identity.user_id),
        json!({"device_id": identity.device_id}),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Who a notification's `push_token` stands for: the user and device the alert was pushed
/// to, if they may still act (not disabled, not revoked). Anything else is the same 404, so a
/// guessed token learns nothing.
async fn pushed_to(state: &AppState, id: &str, token: &str) -> Result<Identity, AppError> {
    let refused = AppError::NotFound("no such alert");
    if token.len() != 32 || !token.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        return Err(refused);
    }
    let Some((user_id, device_id)) = crate::outbox::pushed_to(&state.pool, id, token).await? else {
        tracing::warn!(alert_id = %id, "a push token that was never issued for this alert");
        return Err(refused);
    };
    crate::auth::load_identity(state, &user_id, &device_id)
        .await
        .map_err(|error| {
            tracing::info!(%error, alert_id = %id, "push token of a user or device cut off");
            refused
        })
}

/// Acknowledges from the notification itself: its service worker has no session, only the
/// token that came with the push.
#[utoipa::path(post, path = "/api/alerts/{id}/push-ack", tag = "alerts", params(("id" = String, Path)),
    request_body = zhiban_api::PushToken,
    responses((status = 200, body = Acknowledged), (status = 404, body = zhiban_api::ErrorBody)))]
pub(crate) async fn push_acknowledge(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<zhiban_api::PushToken>,
) -> Result<Json<Acknowledged>, AppError> {
    let identity = pushed_to(&state, &id, &body.token).await?;
    acknowledge(State(state), identity, Path(id)).await
}

/// The notification was shown, reported by the service worker with the push's token.
#[utoipa::path(post, path = "/api/alerts/{id}/push-receipt", tag = "alerts", params(("id" = String, Path)),
    request_body = zhiban_api::PushToken,
    responses((status = 204), (status = 404, body = zhiban_api::ErrorBody)))]
pub(crate) async fn push_receipt(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<zhiban_api::PushToken>,
) -> Result<StatusCode, AppError> {
    let identity = pushed_to(&state, &id, &body.token).await?;
    receipt(State(state), identity, Path(id)).await
}

/// A roll-call (D16): only a superior office (or an admin) calls a unit's duty post.
#[utoipa::path(post, path = "/api/rollcalls", tag = "alerts", request_body = RollcallRequest,
    responses((status = 201, body = RollcallCalled), (status = 400, body = zhiban_api::ErrorBody),
        (status = 403, body = zhiban_api::ErrorBody), (status = 404, body = zhiban_api::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn call(
    State(state): State<AppState>,
    identity: Identity,
    ApiJson(call): ApiJson<RollcallRequest>,
) -> Result<(StatusCode, Json<RollcallCalled>), AppError> {
    let window_secs = call.window_secs.unwrap_or(300);
    if !(30..=3600).contains(&window_secs) {
        return Err(AppError::BadRequest(
            "window_secs must be 30 to 3600".into(),
        ));
    }
    let unit_id = call.unit_id.0;
    let visibility = Visibility::of(&state.pool, &identity).await?;
    if !visibility.sees_unit(&unit_id) {
        return Err(AppError::NotFound("no such unit"));
    }
    let superior = unit_id != identity.unit_id
        && matches!(identity.role, Role::Leader | Role::Officer | Role::Admin);
    if !(superior || identity.role == Role::Admin) {
        return Err(AppError::Forbidden(
            "roll-calls come from a superior office's duty post",
        ));
    }
    let name: String = sqlx::query_scalar("SELECT name FROM units WHERE id = $1")
        .bind(&unit_id)
        .fetch_one(&state.pool)
        .await?;
    let now = state.clock.now_ms();
    let id = uuid::Uuid::now_v7().to_string();
    let mut tx = begin_write(&state.pool).await?;
    let alert = NewAlert {
        kind: AlertKind::Rollcall,
        dedupe_key: format!("rollcall:{id}"),
        document_id: None,
        unit_id: unit_id.clone(),
        classified: false,
        grade: None,
        title: format!(
            "Roll-call for {name}: answer within {} min",
            window_secs / 60
        ),
        steps: policy::rollcall_steps(&identity.user_id, window_secs),
        due_at: None,
        responsible: None,
    };
    let raised = raise(&mut tx, alert, now).await?;
    let alert_id: String = sqlx::query_scalar("SELECT id FROM alerts WHERE dedupe_key = $1")
        .bind(format!("rollcall:{id}"))
        .fetch_one(&mut *tx)
        .await?;
    let window_ms = window_secs * 1000;
    sqlx::query(
        "INSERT INTO rollcalls (id, unit_id, called_by, called_at, window_ms, status, alert_id) \
         VALUES ($1, $2, $3, $4, $5, 'open', $6)",
    )
    .bind(&id)
    .bind(&unit_id)
    .bind(&identity.user_id)
    .bind(now)
    .bind(window_ms)
    .bind(&alert_id)
    .execute(&mut *tx)
    .await?;
    let entry = Entry::new("rollcall.call")
        .by(&identity.user_id, Some(&identity.device_id))
        .detail(json!({"rollcall_id": id, "unit_id": unit_id, "window_secs": window_secs}));
    audit::append(&mut tx, &state.audit_key, &[entry], now).await?;
    tx.commit().await?;
    state.hand_over(raised);
    Ok((
        StatusCode::CREATED,
        Json(RollcallCalled {
            id: id.into(),
            alert_id: alert_id.into(),
            due_at: now.saturating_add(window_ms),
        }),
    ))
}

/// The duty post answers; the delay is kept. After the window it counts as missed.
#[utoipa::path(post, path = "/api/rollcalls/{id}/answer", tag = "alerts",
    params(("id" = String, Path)),
    responses((status = 200, body = RollcallAnswered), (status = 404, body = zhiban_api::ErrorBody),
        (status = 409, body = zhiban_api::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn answer(
    State(state): State<AppState>,
    identity: Identity,
    Path(id): Path<String>,
) -> Result<Json<RollcallAnswered>, AppError> {
    answer_rollcall(&state, &identity, &id).await.map(Json)
}

async fn answer_rollcall(
    state: &AppState,
    identity: &Identity,
    id: &str,
) -> Result<RollcallAnswered, AppError> {
    let row = sqlx::query(
        "SELECT unit_id, called_at, window_ms, status, alert_id FROM rollcalls WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&state.pool)
    .await?
    .ok_or(AppError::NotFound("no such roll-call"))?;
    let unit_id: String = row.try_get("unit_id")?;
    if unit_id != identity.unit_id {
        return Err(AppError::NotFound("no such roll-call"));
    }
    let called_at: i64 = row.try_get("called_at")?;
    let window_ms: i64 = row.try_get("window_ms")?;
    let alert_id: String = row.try_get("alert_id")?;
    let now = state.clock.now_ms();
    let delay_ms = now.saturating_sub(called_at);
    let mut tx = begin_write(&state.pool).await?;
    let updated = sqlx::query(
        "UPDATE rollcalls SET status = 'answered', answered_at = $1, answered_by = $2 \
         WHERE id = $3 AND status = 'open' AND called_at + window_ms >= $1",
    )
    .bind(now)
    .bind(&identity.user_id)
    .bind(id)
    .execute(&mut *tx)
    .await?;
    if updated.rows_affected() == 0 {
        let status: String = sqlx::query_scalar("SELECT status FROM rollcalls WHERE id = $1")
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        return Err(AppError::Conflict(match status.as_str() {
            "open" if delay_ms > window_ms => {
                "the roll-call's window has closed: it counts as missed".into()
            }
            other => format!("the roll-call is already {other}"),
        }));
    }
    let alert = stored_alert(&mut tx, &alert_id).await?;
    resolve_alert(&mut tx, &alert, Resolution::Answered, now).await?;
    append(
        &mut tx,
        &alert,
        now,
        "rollcall.answered",
        Some(&identity.user_id),
        json!({"device_id": identity.device_id, "delay_ms": delay_ms}),
    )
    .await?;
    let entry = Entry::new("rollcall.answer")
        .by(&identity.user_id, Some(&identity.device_id))
        .detail(json!({"rollcall_id": id, "delay_ms": delay_ms}));
    audit::append(&mut tx, &state.audit_key, &[entry], now).await?;
    tx.commit().await?;
    Ok(RollcallAnswered {
        id: id.into(),
        status: RollcallStatus::Answered,
        answered_at: now,
        delay_ms,
    })
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct RollcallQuery {
    /// The caller's own unit if absent.
    unit: Option<String>,
}

/// A unit's roll-calls, newest first, with how long each answer took.
#[utoipa::path(get, path = "/api/rollcalls", tag = "alerts", params(RollcallQuery),
    responses((status = 200, body = RollcallList), (status = 404, body = zhiban_api::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn rollcalls(
    State(state): State<AppState>,
    identity: Identity,
    Query(query): Query<RollcallQuery>,
) -> Result<Json<RollcallList>, AppError> {
    let unit_id = query.unit.unwrap_or_else(|| identity.unit_id.clone());
    let visibility = Visibility::of(&state.pool, &identity).await?;
    if !visibility.sees_unit(&unit_id) {
        return Err(AppError::NotFound("no such unit"));
    }
    let rows = sqlx::query(
        "SELECT id, called_by, called_at, window_ms, status, answered_at, answered_by, alert_id \
         FROM rollcalls WHERE unit_id = $1 ORDER BY called_at DESC LIMIT 200",
    )
    .bind(&unit_id)
    .fetch_all(&state.pool)
    .await?;
    let rollcalls = rows
        .iter()
        .map(|row| {
            let called_at: i64 = row.try_get("called_at")?;
            let answered_at: Option<i64> = row.try_get("answered_at")?;
            let status: String = row.try_get("status")?;
            Ok(RollcallView {
                id: row.try_get::<String, _>("id")?.into(),
                called_by: row.try_get::<String, _>("called_by")?.into(),
                called_at,
                window_ms: row.try_get("window_ms")?,
                status: status
                    .parse()
                    .map_err(|error: String| sqlx::Error::Decode(error.into()))?,
                answered_at,
                answered_by: row
                    .try_get::<Option<String>, _>("answered_by")?
                    .map(Into::into),
                delay_ms: answered_at.map(|at| at.saturating_sub(called_at)),
                alert_id: row.try_get::<String, _>("alert_id")?.into(),
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(Json(RollcallList {
        unit_id: unit_id.into(),
        rollcalls,
    }))
}

fn grade(name: &str) -> Result<Grade, AppError> {
    parse_name(Some(name.to_owned()))
        .ok_or_else(|| AppError::BadRequest("grade is red, yellow or blue".into()))
}

/// A unit's escalation policy for a grade: its own, or the default.
#[utoipa::path(get, path = "/api/escalation-policies/{unit}/{grade}", tag = "alerts",
    params(("unit" = String, Path), ("grade" = String, Path, description = "red, yellow or blue")),
    responses((status = 200, body = Policy), (status = 400, body = zhiban_api::ErrorBody),
        (status = 404, body = zhiban_api::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn get_policy(
    State(state): State<AppState>,
    identity: Identity,
    Path((unit_id, grade_name)): Path<(String, String)>,
) -> Result<Json<Policy>, AppError> {
    let grade = grade(&grade_name)?;
    let visibility = Visibility::of(&state.pool, &identity).await?;
    if !visibility.sees_unit(&unit_id) {
        return Err(AppError::NotFound("no such unit"));
    }
    let mut connection = state.pool.acquire().await?;
    let steps = policy::steps_for(&mut connection, &unit_id, grade).await?;
    Ok(Json(Policy {
        unit_id: unit_id.into(),
        grade,
        steps,
    }))
}

/// A unit's leader (or an admin) sets how its alerts escalate. A `user:` target must be a
/// user of the unit or of an office above it.
#[utoipa::path(put, path = "/api/escalation-policies/{unit}/{grade}", tag = "alerts",
    params(("unit" = String, Path), ("grade" = String, Path, description = "red, yellow or blue")),
    request_body = PolicyBody,
    responses((status = 200, body = Policy), (status = 400, body = zhiban_api::ErrorBody),
        (status = 403, body = zhiban_api::ErrorBody), (status = 404, body = zhiban_api::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn put_policy(
    State(state): State<AppState>,
    identity: Identity,
    Path((unit_id, grade_name)): Path<(String, String)>,
    ApiJson(body): ApiJson<PolicyBody>,
) -> Result<Json<Policy>, AppError> {
    let grade = grade(&grade_name)?;
    let visibility = Visibility::of(&state.pool, &identity).await?;
    if !visibility.sees_unit(&unit_id) {
        return Err(AppError::NotFound("no such unit"));
    }
    let allowed = identity.role == Role::Admin
        || (identity.role == Role::Leader && identity.unit_id == unit_id);
    if !allowed {
        return Err(AppError::Forbidden(
            "only the unit's leader or an admin sets its escalation policy",
        ));
    }
    policy::validate(&body.steps).map_err(AppError::BadRequest)?;
    let offices = units_above(&state.pool, &unit_id).await?;
    // D10: a red report reaches a leader's phone; a policy that pages no leader is refused.
    let mut reaches_leader = false;
    for step in &body.steps {
        for target in &step.targets {
            match target {
                Target::LeaderOnDuty | Target::UnitLeaders => reaches_leader = true,
                Target::User(user) => {
                    let found: Option<(String, String)> =
                        sqlx::query_as("SELECT unit_id, role FROM users WHERE id = $1")
                            .bind(user.as_str())
                            .fetch_optional(&state.pool)
                            .await?;
                    match found {
                        Some((unit, role)) if offices.contains(&unit) => {
                            reaches_leader |= role == Role::Leader.as_str();
                        }
                        _ => {
                            return Err(AppError::BadRequest(format!(
                                "{target}: not a user of this unit or an office above it"
                            )));
                        }
                    }
                }
                _ => {}
            }
        }
    }
    if grade == Grade::Red && !reaches_leader {
        return Err(AppError::BadRequest(
            "a red policy must reach a leader: the leader on duty, the unit's leaders or a \
             named leader (D10)"
                .into(),
        ));
    }
    let steps =
        serde_json::to_string(&body.steps).map_err(|error| AppError::Internal(error.into()))?;
    let now = state.clock.now_ms();
    let mut tx = begin_write(&state.pool).await?;
    sqlx::query(
        "INSERT INTO escalation_policies (unit_id, grade, steps, updated_by, updated_at) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (unit_id, grade) DO UPDATE SET \
         steps = excluded.steps, updated_by = excluded.updated_by, updated_at = excluded.updated_at",
    )
    .bind(&unit_id)
    .bind(grade.as_str())
    .bind(&steps)
    .bind(&identity.user_id)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    let entry = Entry::new("policy.set")
        .by(&identity.user_id, Some(&identity.device_id))
        .detail(json!({"unit_id": unit_id, "grade": grade, "steps": body.steps}));
    audit::append(&mut tx, &state.audit_key, &[entry], now).await?;
    tx.commit().await?;
    Ok(Json(Policy {
        unit_id: unit_id.into(),
        grade,
        steps: body.steps,
    }))
}
