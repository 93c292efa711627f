//! Handovers as the duty room reads them (D7): `GET /api/handovers`, newest first, with their
//! signatures and the pending items still open (`?open=true` for those with any).

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::db::Sql;

use crate::AppState;
use crate::auth::Identity;
use crate::error::AppError;
use crate::incident::push_visibility;

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/handovers", get(list))
}

#[derive(Deserialize)]
struct Filter {
    unit: Option<String>,
    /// Only handovers with pending items still open.
    open: Option<bool>,
    limit: Option<i64>,
}

#[derive(Serialize)]
struct HandoverView {
    document_id: String,
    unit_id: String,
    title: String,
    outgoing_by: Option<String>,
    outgoing_at: Option<i64>,
    incoming_by: Option<String>,
    incoming_at: Option<i64>,
    open_items: i64,
    pending: serde_json::Value,
}

async fn list(
    State(state): State<AppState>,
    identity: Identity,
    Query(filter): Query<Filter>,
) -> Result<Json<Vec<HandoverView>>, AppError> {
    let limit = filter.limit.unwrap_or(50).clamp(1, 500);
    let units = crate::units::visible_units(&state.pool, &identity.unit_id).await?;
    let mut query = Sql::new(
        "SELECT document_id, unit_id, title, outgoing_by, outgoing_at, incoming_by, incoming_at, \
         open_items, pending FROM handovers WHERE 1 = 1",
    );
    push_visibility(
        &mut query,
        &units,
        identity.cleared,
        "unit_id",
        "classified <> 0",
    );
    if let Some(unit) = filter.unit {
        query.push(" AND unit_id = ").bind(unit);
    }
    if filter.open == Some(true) {
        query.push(" AND open_items > 0");
    }
    query
        .push(" ORDER BY updated_at DESC, document_id LIMIT ")
        .bind(limit);
    let rows = query.query().fetch_all(&state.pool).await?;
    let handovers = rows
        .iter()
        .map(|row| {
            Ok(HandoverView {
                document_id: row.try_get("document_id")?,
                unit_id: row.try_get("unit_id")?,
                title: row.try_get("title")?,
                outgoing_by: row.try_get("outgoing_by")?,
                outgoing_at: row.try_get("outgoing_at")?,
                incoming_by: row.try_get("incoming_by")?,
                incoming_at: row.try_get("incoming_at")?,
                open_items: row.try_get("open_items")?,
                pending: serde_json::from_str(&row.try_get::<String, _>("pending")?)
                    .unwrap_or_default(),
            })
        })
        .collect::<Result<_, sqlx::Error>>()?;
    Ok(Json(handovers))
}
