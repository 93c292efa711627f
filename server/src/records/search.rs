//! Search over every record's text (D20), Chinese included: a record's text is kept in parts
//! (its fields; each item of a long record on its own, so a new call in a long duty log adds
//! one part instead of rewriting the log's text). `GET /api/search?q=` finds records with any
//! part containing the query, limited to what the caller may see (D18).
//!
//! SQLite: an FTS5 trigram table keyed by `search_parts.id`; PostgreSQL: `search_index` with a
//! `pg_trgm` index. Both are queried with LIKE/ILIKE (see `search` below for why).

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use sqlx::Row;
use zhiban_api::{SearchHit, SearchHits};

use super::{Common, document_id};
use crate::AppState;
use crate::access::{Identity, Visibility};
use crate::db::{Backend, Sql};
use crate::error::AppError;

/// The header part's list name: the record's own fields.
const HEADER: &str = "";

/// Search text to write for one change.
#[derive(Debug, Clone, Default)]
pub struct Update {
    /// (list, position, text); the record's own fields are list `""`, position 0.
    pub parts: Vec<(&'static str, usize, String)>,
    /// A list reshaped to this length: its parts at or past it go.
    pub truncate: Option<(&'static str, usize)>,
}

impl Update {
    /// A record whose text is one part.
    pub fn whole(text: String) -> Update {
        Update {
            parts: vec![(HEADER, 0, text)],
            truncate: None,
        }
    }

    /// A long record: its header's text if it was read, and the items read again.
    pub fn items(
        header: Option<String>,
        list: &'static str,
        items: Vec<(usize, String)>,
        truncate_at: Option<usize>,
    ) -> Update {
        let mut parts: Vec<_> = header.map(|text| (HEADER, 0, text)).into_iter().collect();
        parts.extend(
            items
                .into_iter()
                .map(|(position, text)| (list, position, text)),
        );
        Update {
            parts,
            truncate: truncate_at.map(|len| (list, len)),
        }
    }
}

pub async fn write(
    tx: &mut sqlx::AnyConnection,
    backend: Backend,
    common: &Common,
    update: &Update,
) -> Result<(), sqlx::Error> {
    let id = common.document_id.to_string();
    for (list, position, text) in &update.parts {
        let position = i64::try_from(*position).unwrap_or(i64::MAX);
        match backend {
            Backend::Sqlite => {
                // The FTS5 table is keyed by an integer rowid: the part's id.
                let rowid: i64 = sqlx::query_scalar(
                    "INSERT INTO search_parts (document_id, list, position) VALUES ($1, $2, $3) \
                     ON CONFLICT (document_id, list, position) DO UPDATE SET \
                     document_id = excluded.document_id RETURNING id",
                )
                .bind(&id)
                .bind(*list)
                .bind(position)
                .fetch_one(&mut *tx)
                .await?;
                if !common.fresh {
                    sqlx::query("DELETE FROM search_index WHERE rowid = $1")
                        .bind(rowid)
                        .execute(&mut *tx)
                        .await?;
                }
                sqlx::query("INSERT INTO search_index (rowid, body) VALUES ($1, $2)")
                    .bind(rowid)
                    .bind(text)
                    .execute(&mut *tx)
                    .await?;
            }
            Backend::Postgres => {
                sqlx::query(
                    "INSERT INTO search_index (document_id, list, position, body) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (document_id, list, position) \
                     DO UPDATE SET body = excluded.body",
                )
                .bind(&id)
                .bind(*list)
                .bind(position)
                .bind(text)
                .execute(&mut *tx)
                .await?;
            }
        }
    }
    if let Some((list, len)) = update.truncate
        && !common.fresh
    {
        let len = i64::try_from(len).unwrap_or(i64::MAX);
        let statements: &[&str] = match backend {
            Backend::Sqlite => &[
                "DELETE FROM search_index WHERE rowid IN (SELECT id FROM search_parts \
                 WHERE document_id = $1 AND list = $2 AND position >= $3)",
                "DELETE FROM search_parts WHERE document_id = $1 AND list = $2 AND position >= $3",
            ],
            Backend::Postgres => &[
                "DELETE FROM search_index WHERE document_id = $1 AND list = $2 AND position >= $3",
            ],
        };
        for statement in statements {
            sqlx::query(sqlx::AssertSqlSafe(*statement))
                .bind(&id)
                .bind(list)
                .bind(len)
                .execute(&mut *tx)
                .await?;
        }
    }
    Ok(())
}

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/search", get(search))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct SearchQuery {
    /// 1 to 100 characters, found anywhere in a record's text.
    q: String,
    /// 1 to 200; 20 by default.
    limit: Option<i64>,
}

/// Records whose text contains `q`, newest first.
#[utoipa::path(get, path = "/api/search", tag = "records", params(SearchQuery),
    responses((status = 200, body = SearchHits), (status = 400, body = zhiban_api::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn search(
    State(state): State<AppState>,
    identity: Identity,
    Query(query): Query<SearchQuery>,
) -> Result<Json<SearchHits>, AppError> {
    let needle = query.q.trim();
    if needle.is_empty() || needle.chars().count() > 100 {
        return Err(AppError::BadRequest(
            "q must have 1 to 100 characters".into(),
        ));
    }
    let limit = query.limit.unwrap_or(20);
    if !(1..=200).contains(&limit) {
        return Err(AppError::BadRequest("limit must be 1 to 200".into()));
    }
    let pattern = format!(
        "%{}%",
        needle
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_")
    );
    let visibility = Visibility::of(&state.pool, &identity).await?;
    // LIKE rather than a trigram MATCH: on 100,000 records the scan answers in about 20 ms
    // for any query, while MATCH on common Chinese trigrams took 0.3 to 0.8 s (measured with
    // the `search` benchmark). PostgreSQL uses ILIKE the same way.
    // A record appears once however many of its parts match.
    let mut sql = Sql::new(match state.backend {
        Backend::Sqlite => {
            "SELECT d.id AS document_id, d.unit_id, r.title FROM search_index s \
             JOIN search_parts p ON p.id = s.rowid JOIN documents d ON d.id = p.document_id \
             LEFT JOIN records r ON r.document_id = d.id WHERE s.body LIKE "
        }
        Backend::Postgres => {
            "SELECT d.id AS document_id, d.unit_id, r.title FROM search_index s \
             JOIN documents d ON d.id = s.document_id \
             LEFT JOIN records r ON r.document_id = d.id WHERE s.body ILIKE "
        }
    });
    sql.bind(pattern).push(" ESCAPE '\\'");
    visibility.restrict(&mut sql, "d.unit_id", "d.classification = 'classified'");
    sql.push(" GROUP BY d.id, d.unit_id, r.title, d.created_at");
    sql.push(" ORDER BY d.created_at DESC LIMIT ").bind(limit);
    let rows = sql.query().fetch_all(&state.pool).await?;
    let hits = rows
        .iter()
        .map(|row| {
            Ok(SearchHit {
                document_id: document_id(row, "document_id")?,
                unit_id: row.try_get::<String, _>("unit_id")?.into(),
                title: row.try_get("title")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()?;
    Ok(Json(SearchHits { hits }))
}
