//! Duty logs (D6): one row per call or message, by its position in the log, written item by
//! item as the log grows; `GET /api/log` lists the calls of the units the caller may see,
//! newest first, optionally those of one incident ("one case, one file").

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use sqlx::Row;
use zhiban_api::LogEntryView;
use zhiban_records::duty_log::Entry;

use super::items::{self, Items};
use super::{Common, document_id, from_json, to_json};
use crate::AppState;
use crate::access::{Identity, Visibility};
use crate::db::{Arg, Backend, Sql};
use crate::error::AppError;

#[derive(Debug, Clone, Default)]
pub struct Rows {
    pub entries: Items<Entry>,
}

pub async fn write(
    tx: &mut sqlx::AnyConnection,
    backend: Backend,
    common: &Common,
    rows: &Rows,
) -> Result<(), sqlx::Error> {
    let columns = [
        "received_at",
        "caller_unit",
        "caller_name",
        "phone",
        "content",
        "handling",
        "handler",
        "incident",
        "problems",
    ];
    items::write(
        tx,
        backend,
        common,
        ("log_entries", &columns),
        &rows.entries,
        |entry| {
            let item = &entry.entry;
            vec![
                Arg::from(item.received_at),
                Arg::from(item.caller_unit.clone()),
                Arg::from(item.caller_name.clone()),
                Arg::from(item.phone.clone()),
                Arg::from(item.content.clone()),
                Arg::from(item.handling.clone()),
                Arg::from(item.handler.clone()),
                Arg::from(item.incident.clone()),
                Arg::from(to_json(&entry.errors)),
            ]
        },
    )
    .await
}

pub async fn clear(tx: &mut sqlx::AnyConnection, id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM log_entries WHERE document_id = $1")
        .bind(id)
        .execute(tx)
        .await?;
    Ok(())
}

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/log", get(list))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct Filter {
    unit: Option<String>,
    /// Only the calls about this incident.
    incident: Option<String>,
    /// Received at or after, milliseconds since the epoch.
    from: Option<i64>,
    /// Received before.
    to: Option<i64>,
    /// 1 to 1000; 100 by default.
    limit: Option<i64>,
    offset: Option<i64>,
}

/// Calls and messages of the units the caller may see, newest first.
#[utoipa::path(get, path = "/api/log", tag = "records", params(Filter),
    responses((status = 200, body = Vec<LogEntryView>), (status = 400, body = zhiban_api::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn list(
    State(state): State<AppState>,
    identity: Identity,
    Query(filter): Query<Filter>,
) -> Result<Json<Vec<LogEntryView>>, AppError> {
    let limit = filter.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(AppError::BadRequest(
            "limit must be between 1 and 1000".into(),
        ));
    }
    if filter.offset.is_some_and(|offset| offset < 0) {
        return Err(AppError::BadRequest("offset must not be negative".into()));
    }
    let visibility = Visibility::of(&state.pool, &identity).await?;
    let mut query = Sql::new(
        "SELECT document_id, position, unit_id, received_at, caller_unit, caller_name, phone, \
         content, handling, handler, incident, problems FROM log_entries WHERE 1 = 1",
    );
    visibility.restrict(&mut query, "unit_id", "classified <> 0");
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
        .bind(filter.offset.unwrap_or(0));
    let rows = query.query().fetch_all(&state.pool).await?;
    let entries = rows
        .iter()
        .map(|row| {
            Ok(LogEntryView {
                document_id: document_id(row, "document_id")?,
                position: row.try_get("position")?,
                unit_id: row.try_get::<String, _>("unit_id")?.into(),
                received_at: row.try_get("received_at")?,
                caller_unit: row.try_get("caller_unit")?,
                caller_name: row.try_get("caller_name")?,
                phone: row.try_get("phone")?,
                content: row.try_get("content")?,
                handling: row.try_get("handling")?,
                handler: row.try_get("handler")?,
                incident: row.try_get("incident")?,
                problems: from_json(row.try_get::<Option<String>, _>("problems")?.as_deref()),
            })
        })
        .collect::<Result<_, sqlx::Error>>()?;
    Ok(Json(entries))
}
