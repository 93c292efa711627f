//! Handovers (D7): one row per handover with its signatures and the pending items still open;
//! `GET /api/handovers`, newest first (`?open=true` for those with any).

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use sqlx::Row;
use zhiban_api::HandoverView;
use zhiban_records::Handover;

use super::{Common, document_id, from_json, to_json};
use crate::AppState;
use crate::access::{Identity, Visibility};
use crate::db::Sql;
use crate::error::AppError;

#[derive(Debug, Clone, Default)]
pub struct Rows {
    pub handover: Option<Handover>,
}

pub async fn write(
    tx: &mut sqlx::AnyConnection,
    common: &Common,
    rows: &Rows,
    now: i64,
) -> Result<(), sqlx::Error> {
    let id = common.document_id.to_string();
    let Some(handover) = &rows.handover else {
        return clear(tx, &id).await;
    };
    let (outgoing, incoming) = (&handover.signatures.outgoing, &handover.signatures.incoming);
    sqlx::query(
        "INSERT INTO handovers (document_id, unit_id, classified, title, outgoing_by, \
         outgoing_at, incoming_by, incoming_at, open_items, pending, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
         ON CONFLICT (document_id) DO UPDATE SET unit_id = excluded.unit_id, \
         classified = excluded.classified, title = excluded.title, \
         outgoing_by = excluded.outgoing_by, outgoing_at = excluded.outgoing_at, \
         incoming_by = excluded.incoming_by, incoming_at = excluded.incoming_at, \
         open_items = excluded.open_items, pending = excluded.pending, \
         updated_at = excluded.updated_at",
    )
    .bind(&id)
    .bind(&common.unit_id)
    .bind(i64::from(common.classified))
    .bind(&handover.title)
    .bind(outgoing.as_ref().map(|s| s.by.as_str()))
    .bind(outgoing.as_ref().and_then(|s| s.at))
    .bind(incoming.as_ref().map(|s| s.by.as_str()))
    .bind(incoming.as_ref().and_then(|s| s.at))
    .bind(i64::try_from(handover.open_items()).unwrap_or(i64::MAX))
    .bind(to_json(&handover.pending))
    .bind(now)
    .execute(tx)
    .await?;
    Ok(())
}

pub async fn clear(tx: &mut sqlx::AnyConnection, id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM handovers WHERE document_id = $1")
        .bind(id)
        .execute(tx)
        .await?;
    Ok(())
}

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/handovers", get(list))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct Filter {
    unit: Option<String>,
    /// Only handovers with pending items still open.
    open: Option<bool>,
    /// 1 to 500; 50 by default.
    limit: Option<i64>,
}

/// Handovers of the units the caller may see, newest first (D7).
#[utoipa::path(get, path = "/api/handovers", tag = "records", params(Filter),
    responses((status = 200, body = Vec<HandoverView>), (status = 400, body = zhiban_api::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn list(
    State(state): State<AppState>,
    identity: Identity,
    Query(filter): Query<Filter>,
) -> Result<Json<Vec<HandoverView>>, AppError> {
    let limit = filter.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(AppError::BadRequest(
            "limit must be between 1 and 500".into(),
        ));
    }
    let visibility = Visibility::of(&state.pool, &identity).await?;
    let mut query = Sql::new(
        "SELECT document_id, unit_id, title, outgoing_by, outgoing_at, incoming_by, incoming_at, \
         open_items, pending FROM handovers WHERE 1 = 1",
    );
    visibility.restrict(&mut query, "unit_id", "classified <> 0");
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
                document_id: document_id(row, "document_id")?,
                unit_id: row.try_get::<String, _>("unit_id")?.into(),
                title: row.try_get("title")?,
                outgoing_by: row.try_get("outgoing_by")?,
                outgoing_at: row.try_get("outgoing_at")?,
                incoming_by: row.try_get("incoming_by")?,
                incoming_at: row.try_get("incoming_at")?,
                open_items: row.try_get("open_items")?,
                pending: from_json(row.try_get::<Option<String>, _>("pending")?.as_deref()),
            })
        })
        .collect::<Result<_, sqlx::Error>>()?;
    Ok(Json(handovers))
}
