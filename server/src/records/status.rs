//! One row per record (`records`): its type, title, what the checks found, and the flag the
//! commit sets when what is derived from a change could not be written (the change itself is
//! stored all the same). `GET /api/records/{id}` shows it for any record the caller may see;
//! `GET /api/records?flagged=true` lists the flagged ones (the unit's admins are alerted too).

use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use sqlx::Row;
use zhiban_api::{RecordPage, RecordStatus};
use zhiban_records::RecordKind;

use super::{Common, Status, document_id, from_json, to_json};
use crate::AppState;
use crate::access::{Identity, Visibility};
use crate::db::Sql;
use crate::error::AppError;

/// The type a record was last projected as.
pub async fn kind(
    tx: &mut sqlx::AnyConnection,
    id: &str,
) -> Result<Option<RecordKind>, sqlx::Error> {
    let kind: Option<String> =
        sqlx::query_scalar("SELECT kind FROM records WHERE document_id = $1")
            .bind(id)
            .fetch_optional(tx)
            .await?;
    Ok(kind.and_then(|kind| RecordKind::of_name(&kind)))
}

/// Writes the record's row; a record read whole again is no longer flagged.
pub async fn upsert(
    tx: &mut sqlx::AnyConnection,
    common: &Common,
    status: &Status,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO records (document_id, kind, unit_id, classified, title, problems, \
         warnings, flag, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, $8) \
         ON CONFLICT (document_id) DO UPDATE SET kind = excluded.kind, \
         unit_id = excluded.unit_id, classified = excluded.classified, title = excluded.title, \
         problems = excluded.problems, warnings = excluded.warnings, flag = NULL, \
         updated_at = excluded.updated_at",
    )
    .bind(common.document_id.to_string())
    .bind(common.kind.name())
    .bind(&common.unit_id)
    .bind(i64::from(common.classified))
    .bind(&status.title)
    .bind(to_json(&status.problems))
    .bind(to_json(&status.warnings))
    .bind(now)
    .execute(tx)
    .await?;
    Ok(())
}

/// Marks the record: what is derived from its last change could not be written (`reason`).
pub async fn flag(
    tx: &mut sqlx::AnyConnection,
    common: &Common,
    reason: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO records (document_id, kind, unit_id, classified, title, problems, \
         warnings, flag, updated_at) VALUES ($1, $2, $3, $4, '', '[]', '[]', $5, $6) \
         ON CONFLICT (document_id) DO UPDATE SET flag = excluded.flag, \
         updated_at = excluded.updated_at",
    )
    .bind(common.document_id.to_string())
    .bind(common.kind.name())
    .bind(&common.unit_id)
    .bind(i64::from(common.classified))
    .bind(reason)
    .bind(now)
    .execute(tx)
    .await?;
    Ok(())
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/records", get(list))
        .route("/api/records/{id}", get(one))
}

const COLUMNS: &str = "SELECT document_id, kind, unit_id, classified, title, problems, warnings, \
     flag, updated_at FROM records WHERE 1 = 1";

fn view(row: &sqlx::any::AnyRow) -> Result<RecordStatus, sqlx::Error> {
    let kind: String = row.try_get("kind")?;
    Ok(RecordStatus {
        document_id: document_id(row, "document_id")?,
        kind: RecordKind::of_name(&kind)
            .ok_or_else(|| sqlx::Error::Decode(format!("unknown record kind `{kind}`").into()))?,
        unit_id: row.try_get::<String, _>("unit_id")?.into(),
        classified: row.try_get::<i64, _>("classified")? != 0,
        title: row.try_get("title")?,
        problems: from_json(row.try_get::<Option<String>, _>("problems")?.as_deref()),
        warnings: from_json(row.try_get::<Option<String>, _>("warnings")?.as_deref()),
        flag: row.try_get("flag")?,
        item_problems: Vec::new(),
        updated_at: row.try_get("updated_at")?,
    })
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct Filter {
    /// Only records whose last change could not be processed.
    #[serde(default)]
    flagged: bool,
    /// Only records with problems (malformed fields).
    #[serde(default)]
    with_problems: bool,
    /// 1 to 500; 100 by default.
    limit: Option<i64>,
}

/// Records the caller may see, most recently changed first.
#[utoipa::path(get, path = "/api/records", tag = "records", params(Filter),
    responses((status = 200, body = RecordPage), (status = 400, body = zhiban_api::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn list(
    State(state): State<AppState>,
    identity: Identity,
    Query(filter): Query<Filter>,
) -> Result<Json<RecordPage>, AppError> {
    let limit = filter.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(AppError::BadRequest("limit must be 1 to 500".into()));
    }
    let visibility = Visibility::of(&state.pool, &identity).await?;
    let mut query = Sql::new(COLUMNS);
    visibility.restrict(&mut query, "unit_id", "classified <> 0");
    if filter.flagged {
        query.push(" AND flag IS NOT NULL");
    }
    if filter.with_problems {
        query.push(" AND problems <> '[]'");
    }
    query
        .push(" ORDER BY updated_at DESC, document_id LIMIT ")
        .bind(limit);
    let records = query
        .query()
        .fetch_all(&state.pool)
        .await?
        .iter()
        .map(view)
        .collect::<Result<_, _>>()?;
    Ok(Json(RecordPage { records }))
}

/// One record's state, with the items that have problems of their own.
#[utoipa::path(get, path = "/api/records/{id}", tag = "records",
    params(("id" = String, Path, description = "The record's document id")),
    responses((status = 200, body = RecordStatus), (status = 404, body = zhiban_api::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn one(
    State(state): State<AppState>,
    identity: Identity,
    Path(id): Path<String>,
) -> Result<Json<RecordStatus>, AppError> {
    let visibility = Visibility::of(&state.pool, &identity).await?;
    let mut query = Sql::new(COLUMNS);
    query.push(" AND document_id = ").bind(id.clone());
    visibility.restrict(&mut query, "unit_id", "classified <> 0");
    let row = query
        .query()
        .fetch_optional(&state.pool)
        .await?
        .ok_or(AppError::NotFound("no such record"))?;
    let mut record = view(&row)?;
    record.item_problems = super::item_problems(&state.pool, record.kind, &id).await?;
    if record.classified {
        super::audit_classified_read(&state, &identity, &id).await?;
    }
    Ok(Json(record))
}
