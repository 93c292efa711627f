//! The alert inbox and acknowledgement, device receipts, roll-calls (D16) and escalation
//! policies. Visibility follows the unit tree and clearance as everywhere else (D18): an alert
//! one may not see answers 404, like one that does not exist.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::Row;

use super::policy::{self, Step};
use super::{Alert, NewAlert, cancel_pending, raise, timeline};
use crate::AppState;
use crate::audit::{self, Entry};
use crate::auth::Identity;
use crate::db::Sql;
use crate::error::{ApiJson, AppError};
use crate::units::Role;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/alerts", get(list))
        .route("/api/alerts/{id}", get(one))
        .route("/api/alerts/{id}/ack", post(acknowledge))
        .route("/api/alerts/{id}/receipt", post(receipt))
        .route("/api/rollcalls", post(call).get(rollcalls))
        .route("/api/rollcalls/{id}/answer", post(answer))
        .route(
            "/api/escalation-policies/{unit}/{grade}",
            get(get_policy).put(put_policy),
        )
}

#[derive(Serialize)]
struct AlertView {
    id: String,
    kind: String,
    document_id: Option<String>,
    /// For a roll-call's alert: the roll-call to answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    rollcall_id: Option<String>,
    unit_id: String,
    classified: bool,
    grade: Option<String>,
    title: String,
    created_at: i64,
    due_at: Option<i64>,
    step: i64,
    next_at: Option<i64>,
    acknowledged_at: Option<i64>,
    acknowledged_by: Option<String>,
    resolved_at: Option<i64>,
    resolution: Option<String>,
    /// Whether the caller was among those alerted.
    targeted: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    timeline: Option<Vec<Value>>,
}

const VIEW_COLUMNS: &str = "a.id, a.kind, a.dedupe_key, a.document_id, a.unit_id, a.classified, a.grade, \
     a.title, a.created_at, a.due_at, a.step, a.next_at, a.acknowledged_at, a.acknowledged_by, \
     a.resolved_at, a.resolution, \
     CAST(CASE WHEN t.user_id IS NULL THEN 0 ELSE 1 END AS BIGINT) AS targeted";

fn view(row: &sqlx::any::AnyRow) -> Result<AlertView, sqlx::Error> {
    Ok(AlertView {
        id: row.try_get("id")?,
        kind: row.try_get("kind")?,
        document_id: row.try_get("document_id")?,
        rollcall_id: row
            .try_get::<String, _>("dedupe_key")?
            .strip_prefix("rollcall:")
            .map(str::to_owned),
        unit_id: row.try_get("unit_id")?,
        classified: row.try_get::<i64, _>("classified")? != 0,
        grade: row.try_get("grade")?,
        title: row.try_get("title")?,
        created_at: row.try_get("created_at")?,
        due_at: row.try_get("due_at")?,
        step: row.try_get("step")?,
        next_at: row.try_get("next_at")?,
        acknowledged_at: row.try_get("acknowledged_at")?,
        acknowledged_by: row.try_get("acknowledged_by")?,
        resolved_at: row.try_get("resolved_at")?,
        resolution: row.try_get("resolution")?,
        targeted: row.try_get::<i64, _>("targeted")? != 0,
        timeline: None,
    })
}

#[derive(Deserialize)]
struct ListQuery {
    /// Only alerts still running (neither acknowledged nor resolved).
    #[serde(default)]
    open: bool,
    /// Only alerts that reached the caller.
    #[serde(default)]
    mine: bool,
    limit: Option<i64>,
}

async fn list(
    State(state): State<AppState>,
    identity: Identity,
    Query(query): Query<ListQuery>,
) -> Result<Json<Value>, AppError> {
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
    Ok(Json(json!({ "alerts": alerts })))
}

/// Alerts the caller may see (their units, classified only when cleared), each marked
/// `targeted` when it reached them; callers append `AND …` conditions.
async fn visible_alerts(state: &AppState, identity: &Identity) -> Result<Sql, AppError> {
    let units = crate::units::visible_units(&state.pool, &identity.unit_id).await?;
    let mut select = Sql::new(&format!(
        "SELECT {VIEW_COLUMNS} FROM alerts a LEFT JOIN alert_targets t \
         ON t.alert_id = a.id AND t.user_id = "
    ));
    select.bind(identity.user_id.clone()).push(" WHERE 1 = 1");
    crate::incident::push_visibility(
        &mut select,
        &units,
        identity.cleared,
        "a.unit_id",
        "a.classified <> 0",
    );
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

async fn one(
    State(state): State<AppState>,
    identity: Identity,
    Path(id): Path<String>,
) -> Result<Json<AlertView>, AppError> {
    let mut alert = visible(&state, &identity, &id).await?;
    alert.timeline = Some(alert_timeline(&state, "alert_id", &id).await?);
    Ok(Json(alert))
}

/// Timeline entries by `alert_id` or `document_id`, oldest first.
pub async fn alert_timeline(
    state: &AppState,
    column: &'static str,
    id: &str,
) -> Result<Vec<Value>, sqlx::Error> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT alert_id, at, event, user_id, detail FROM timeline WHERE {column} = $1 ORDER BY id"
    )))
    .bind(id)
    .fetch_all(&state.pool)
    .await?;
    rows.iter()
        .map(|row| {
            let detail: String = row.try_get("detail")?;
            Ok(json!({
                "alert_id": row.try_get::<String, _>("alert_id")?,
                "at": row.try_get::<i64, _>("at")?,
                "event": row.try_get::<String, _>("event")?,
                "user_id": row.try_get::<Option<String>, _>("user_id")?,
                "detail": serde_json::from_str::<Value>(&detail).unwrap_or(Value::Null),
            }))
        })
        .collect()
}

/// Stops the alert's repeats and escalation (D23). Anyone it reached may acknowledge, and so
/// may a leader or officer who can see it (the colleague at the desk picks up).
async fn acknowledge(
    State(state): State<AppState>,
    identity: Identity,
    Path(id): Path<String>,
) -> Result<Json<Value>, AppError> {
    let alert = visible(&state, &identity, &id).await?;
    if !alert.targeted && !matches!(identity.role, Role::Leader | Role::Officer | Role::Admin) {
        return Err(AppError::Forbidden("this alert was not sent to you"));
    }
    // Acknowledging a roll-call's alert is answering the roll-call (D16).
    if let Some(rollcall) = &alert.rollcall_id {
        return answer_rollcall(&state, &identity, rollcall).await.map(Json);
    }
    let now = state.clock.now_ms();
    let mut tx = state.pool.begin().await?;
    let updated = sqlx::query(
        "UPDATE alerts SET acknowledged_at = $1, acknowledged_by = $2, next_at = NULL \
         WHERE id = $3 AND acknowledged_at IS NULL AND resolved_at IS NULL",
    )
    .bind(now)
    .bind(&identity.user_id)
    .bind(&id)
    .execute(&mut *tx)
    .await?;
    if updated.rows_affected() == 0 {
        tx.rollback().await?;
        let current = visible(&state, &identity, &id).await?;
        return Ok(Json(json!({
            "id": id, "already": true,
            "acknowledged_at": current.acknowledged_at, "acknowledged_by": current.acknowledged_by,
            "resolved_at": current.resolved_at, "resolution": current.resolution,
        })));
    }
    cancel_pending(&mut tx, &id).await?;
    let stored = stored_alert(&mut tx, &id).await?;
    timeline(
        &mut tx,
        &stored,
        now,
        "alert.acknowledged",
        Some(&identity.user_id),
        json!({"device_id": identity.device_id, "after_ms": now - stored.created_at}),
    )
    .await?;
    tx.commit().await?;
    audit::record(
        &state,
        Entry::new("alert.acknowledge")
            .by(&identity.user_id, Some(&identity.device_id))
            .detail(json!({"alert_id": id, "document_id": stored.document_id})),
    )
    .await?;
    tracing::info!(alert_id = %id, user_id = %identity.user_id, "alert acknowledged");
    Ok(Json(json!({
        "id": id, "already": false, "acknowledged_at": now, "acknowledged_by": identity.user_id,
    })))
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

/// The device showed the notification (the service worker reports it): the delivery receipt.
async fn receipt(
    State(state): State<AppState>,
    identity: Identity,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    visible(&state, &identity, &id).await?;
    let now = state.clock.now_ms();
    let mut connection = state.pool.acquire().await?;
    let stored = stored_alert(&mut connection, &id).await?;
    timeline(
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Call {
    unit_id: String,
    /// How long the duty post has to answer; 5 minutes by default.
    window_secs: Option<i64>,
}

/// A roll-call (D16): only a superior office (or an admin) calls a unit's duty post.
async fn call(
    State(state): State<AppState>,
    identity: Identity,
    ApiJson(call): ApiJson<Call>,
) -> Result<(StatusCode, Json<Value>), AppError> {
    let window_secs = call.window_secs.unwrap_or(300);
    if !(30..=3600).contains(&window_secs) {
        return Err(AppError::BadRequest(
            "window_secs must be 30 to 3600".into(),
        ));
    }
    let units = crate::units::visible_units(&state.pool, &identity.unit_id).await?;
    if !units.contains(&call.unit_id) {
        return Err(AppError::NotFound("no such unit"));
    }
    let superior = call.unit_id != identity.unit_id
        && matches!(identity.role, Role::Leader | Role::Officer | Role::Admin);
    if !(superior || identity.role == Role::Admin) {
        return Err(AppError::Forbidden(
            "roll-calls come from a superior office's duty post",
        ));
    }
    let name: String = sqlx::query_scalar("SELECT name FROM units WHERE id = $1")
        .bind(&call.unit_id)
        .fetch_one(&state.pool)
        .await?;
    let now = state.clock.now_ms();
    let id = uuid::Uuid::now_v7().to_string();
    let mut tx = state.pool.begin().await?;
    let mut queued = Vec::new();
    let alert = NewAlert {
        kind: "rollcall",
        dedupe_key: format!("rollcall:{id}"),
        document_id: None,
        unit_id: call.unit_id.clone(),
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
    let alert_id: String = {
        raise(&mut tx, alert, now, &mut queued).await?;
        sqlx::query_scalar("SELECT id FROM alerts WHERE dedupe_key = $1")
            .bind(format!("rollcall:{id}"))
            .fetch_one(&mut *tx)
            .await?
    };
    sqlx::query(
        "INSERT INTO rollcalls (id, unit_id, called_by, called_at, window_ms, status, alert_id) \
         VALUES ($1, $2, $3, $4, $5, 'open', $6)",
    )
    .bind(&id)
    .bind(&call.unit_id)
    .bind(&identity.user_id)
    .bind(now)
    .bind(window_secs * 1000)
    .bind(&alert_id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    for item in queued {
        let _ = state.alert_queue.send(item);
    }
    state.alerts_wake.notify_one();
    audit::record(
        &state,
        Entry::new("rollcall.call")
            .by(&identity.user_id, Some(&identity.device_id))
            .detail(
                json!({"rollcall_id": id, "unit_id": call.unit_id, "window_secs": window_secs}),
            ),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"id": id, "alert_id": alert_id, "due_at": now + window_secs * 1000})),
    ))
}

/// The duty post answers; the delay is kept. After the window it counts as missed.
async fn answer(
    State(state): State<AppState>,
    identity: Identity,
    Path(id): Path<String>,
) -> Result<Json<Value>, AppError> {
    answer_rollcall(&state, &identity, &id).await.map(Json)
}

async fn answer_rollcall(
    state: &AppState,
    identity: &Identity,
    id: &str,
) -> Result<Value, AppError> {
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
    let mut tx = state.pool.begin().await?;
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
            "open" if now > called_at + window_ms => {
                "the roll-call's window has closed: it counts as missed".into()
            }
            other => format!("the roll-call is already {other}"),
        }));
    }
    let alert = stored_alert(&mut tx, &alert_id).await?;
    super::resolve_alert(&mut tx, &alert, "answered", now).await?;
    timeline(
        &mut tx,
        &alert,
        now,
        "rollcall.answered",
        Some(&identity.user_id),
        json!({"device_id": identity.device_id, "delay_ms": now - called_at}),
    )
    .await?;
    tx.commit().await?;
    audit::record(
        state,
        Entry::new("rollcall.answer")
            .by(&identity.user_id, Some(&identity.device_id))
            .detail(json!({"rollcall_id": id, "delay_ms": now - called_at})),
    )
    .await?;
    Ok(json!({"id": id, "status": "answered", "answered_at": now, "delay_ms": now - called_at}))
}

#[derive(Deserialize)]
struct RollcallQuery {
    unit: Option<String>,
}

async fn rollcalls(
    State(state): State<AppState>,
    identity: Identity,
    Query(query): Query<RollcallQuery>,
) -> Result<Json<Value>, AppError> {
    let unit_id = query.unit.unwrap_or_else(|| identity.unit_id.clone());
    let units = crate::units::visible_units(&state.pool, &identity.unit_id).await?;
    if !units.contains(&unit_id) {
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
            Ok(json!({
                "id": row.try_get::<String, _>("id")?,
                "called_by": row.try_get::<String, _>("called_by")?,
                "called_at": called_at,
                "window_ms": row.try_get::<i64, _>("window_ms")?,
                "status": row.try_get::<String, _>("status")?,
                "answered_at": answered_at,
                "answered_by": row.try_get::<Option<String>, _>("answered_by")?,
                "delay_ms": answered_at.map(|at| at - called_at),
                "alert_id": row.try_get::<String, _>("alert_id")?,
            }))
        })
        .collect::<Result<Vec<Value>, sqlx::Error>>()?;
    Ok(Json(json!({"unit_id": unit_id, "rollcalls": rollcalls})))
}

fn grade(grade: &str) -> Result<(), AppError> {
    match grade {
        "red" | "yellow" | "blue" => Ok(()),
        _ => Err(AppError::BadRequest("grade is red, yellow or blue".into())),
    }
}

async fn get_policy(
    State(state): State<AppState>,
    identity: Identity,
    Path((unit_id, grade_name)): Path<(String, String)>,
) -> Result<Json<Value>, AppError> {
    grade(&grade_name)?;
    let units = crate::units::visible_units(&state.pool, &identity.unit_id).await?;
    if !units.contains(&unit_id) {
        return Err(AppError::NotFound("no such unit"));
    }
    let mut connection = state.pool.acquire().await?;
    let steps = policy::steps_for(&mut connection, &unit_id, &grade_name).await?;
    Ok(Json(
        json!({"unit_id": unit_id, "grade": grade_name, "steps": steps}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyBody {
    steps: Vec<Step>,
}

/// A unit's leader (or an admin) sets how its alerts escalate.
async fn put_policy(
    State(state): State<AppState>,
    identity: Identity,
    Path((unit_id, grade_name)): Path<(String, String)>,
    ApiJson(body): ApiJson<PolicyBody>,
) -> Result<Json<Value>, AppError> {
    grade(&grade_name)?;
    let units = crate::units::visible_units(&state.pool, &identity.unit_id).await?;
    if !units.contains(&unit_id) {
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
    let steps =
        serde_json::to_string(&body.steps).map_err(|error| AppError::Internal(error.into()))?;
    sqlx::query(
        "INSERT INTO escalation_policies (unit_id, grade, steps, updated_by, updated_at) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (unit_id, grade) DO UPDATE SET \
         steps = excluded.steps, updated_by = excluded.updated_by, updated_at = excluded.updated_at",
    )
    .bind(&unit_id)
    .bind(&grade_name)
    .bind(&steps)
    .bind(&identity.user_id)
    .bind(state.clock.now_ms())
    .execute(&state.pool)
    .await?;
    audit::record(
        &state,
        Entry::new("policy.set")
            .by(&identity.user_id, Some(&identity.device_id))
            .detail(json!({"unit_id": unit_id, "grade": grade_name, "steps": body.steps})),
    )
    .await?;
    Ok(Json(
        json!({"unit_id": unit_id, "grade": grade_name, "steps": body.steps}),
    ))
}
