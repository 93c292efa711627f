//! The duty log as the duty room reads it (D6): `GET /api/log`, every call and message of the
//! units the caller may see, newest first, optionally those of one incident ("one case, one
//! file").

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
    Router::new().route("/api/log", get(list))
}

#[derive(Deserialize)]
struct Filter {
    unit: Option<String>,
    incident: Option<String>,
    from: Option<i64>,
    to: Option<i64>,
    limit: Option<i64>,
    offset: Option<i64>,
}

#[derive(Serialize)]
struct Entry {
    document_id: String,
    position: i64,
    unit_id: String,
    received_at: i64,
    caller_unit: Option<String>,
    caller_name: Option<String>,
    phone: Option<String>,
    content: String,
    handling: Option<String>,
    handler: Option<String>,
    incident: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    identity: Identity,
    Query(filter): Query<Filter>,
) -> Result<Json<Vec<Entry>>, AppError> {
    let limit = filter.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(AppError::BadRequest(
            "limit must be between 1 and 1000".into(),
        ));
    }
    let units = crate::units::visible_units(&state.pool, &identity.unit_id).await?;
    let mut query = Sql::new(
        "SELECT document_id, position, unit_id, received_at, caller_unit, caller_name, phone, \
         content, handling, handler, incident FROM log_entries WHERE 1 = 1",
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
    if let Some(incident) = filter.incident {
        query.push(" AND incident = ").bind(incident);
    }
    if let Some(from) = filter.from {
        query.push(" AND received_at >= ").bind(from);
    }
    if let Some(to) = filter.to {
        query.push(" AND received_at < ").bind(to);
    }
    query
        .push(" ORDER BY received_at DESC, document_id, position LIMIT ")
        .bind(limit)
        .push(" OFFSET ")
        .bind(filter.offset.unwrap_or(0).max(0));
    let rows = query.query().fetch_all(&state.pool).await?;
    let entries = rows
        .iter()
        .map(|row| {
            Ok(Entry {
                document_id: row.try_get("document_id")?,
                position: row.try_get("position")?,
                unit_id: row.try_get("unit_id")?,
                received_at: row.try_get("received_at")?,
                caller_unit: row.try_get("caller_unit")?,
                caller_name: row.try_get("caller_name")?,
                phone: row.try_get("phone")?,
                content: row.try_get("content")?,
                handling: row.try_get("handling")?,
                handler: row.try_get("handler")?,
                incident: row.try_get("incident")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()?;
    Ok(Json(entries))
}
