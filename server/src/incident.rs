//! Incidents as the duty room queries them: `GET /api/incidents` over the projection, limited
//! to the units the caller may see and, for classified incidents, to cleared users (D18).

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::db::{Arg, Sql};

use crate::AppState;
use crate::auth::Identity;
use crate::error::AppError;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/incidents", get(list))
        .route("/api/incidents/{id}", get(one))
}

#[derive(Deserialize)]
struct Filter {
    unit: Option<String>,
    status: Option<String>,
    category: Option<String>,
    level: Option<String>,
    grade: Option<String>,
    /// Reported at or after, milliseconds since the epoch.
    from: Option<i64>,
    /// Reported before, milliseconds since the epoch.
    to: Option<i64>,
    limit: Option<i64>,
    offset: Option<i64>,
}

#[derive(Serialize)]
struct IncidentView {
    document_id: String,
    unit_id: String,
    classified: bool,
    title: String,
    category: Option<String>,
    level: Option<String>,
    grade: Option<String>,
    status: Option<String>,
    location: Option<String>,
    known_at: Option<i64>,
    reported_at: Option<i64>,
    warnings: serde_json::Value,
    /// Structural faults of a stored but flagged record.
    problems: serde_json::Value,
    /// Reporting against its deadlines, as of the request (D11–D13).
    timeliness: zhiban_records::Timeliness,
    /// Only in the single-incident view.
    #[serde(skip_serializing_if = "Option::is_none")]
    instructions: Option<Vec<InstructionView>>,
    /// Only in the single-incident view: its alerts' every step, push, receipt and
    /// acknowledgement (D23).
    #[serde(skip_serializing_if = "Option::is_none")]
    timeline: Option<Vec<serde_json::Value>>,
}

/// A leader's instruction (D14). `verified`: written from a device of the leader it names,
/// who holds a leader's (or admin's) role; otherwise it is only text somebody typed.
#[derive(Serialize)]
struct InstructionView {
    by: Option<String>,
    to: Option<String>,
    at: i64,
    text: String,
    steps: i64,
    done: bool,
    verified: bool,
}

#[derive(Serialize)]
struct Page {
    incidents: Vec<IncidentView>,
    /// How many match in all (for paging).
    total: i64,
}

/// Appends the visibility condition every query of records carries.
pub fn push_visibility(
    query: &mut Sql,
    units: &std::collections::HashSet<String>,
    cleared: bool,
    unit_column: &str,
    classified_condition: &str,
) {
    query
        .push(&format!(" AND {unit_column} IN "))
        .bind_list(units.iter().map(|unit| Arg::from(unit.as_str())));
    if !cleared {
        query.push(&format!(" AND NOT ({classified_condition})"));
    }
}

async fn list(
    State(state): State<AppState>,
    identity: Identity,
    Query(filter): Query<Filter>,
) -> Result<Json<Page>, AppError> {
    let limit = filter.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(AppError::BadRequest(
            "limit must be between 1 and 500".into(),
        ));
    }
    let offset = filter.offset.unwrap_or(0).max(0);
    let units = crate::units::visible_units(&state.pool, &identity.unit_id).await?;
    let conditions = |query: &mut Sql| {
        push_visibility(
            query,
            &units,
            identity.cleared,
            "unit_id",
            "classified <> 0",
        );
        for (column, value) in [
            ("unit_id", &filter.unit),
            ("status", &filter.status),
            ("category", &filter.category),
            ("level", &filter.level),
            ("grade", &filter.grade),
        ] {
            if let Some(value) = value {
                query.push(&format!(" AND {column} = "));
                query.bind(value.clone());
            }
        }
        if let Some(from) = filter.from {
            query.push(" AND reported_at >= ").bind(from);
        }
        if let Some(to) = filter.to {
            query.push(" AND reported_at < ").bind(to);
        }
    };
    let mut count = Sql::new("SELECT COUNT(*) AS n FROM incidents WHERE 1 = 1");
    conditions(&mut count);
    let total: i64 = count.query().fetch_one(&state.pool).await?.try_get("n")?;
    let mut query = Sql::new(COLUMNS);
    query.push(" WHERE 1 = 1");
    conditions(&mut query);
    query
        .push(" ORDER BY reported_at DESC, document_id LIMIT ")
        .bind(limit)
        .push(" OFFSET ")
        .bind(offset);
    let rows = query.query().fetch_all(&state.pool).await?;
    let now = state.clock.now_ms();
    let incidents = rows
        .iter()
        .map(|row| view(row, now))
        .collect::<Result<_, sqlx::Error>>()?;
    Ok(Json(Page { incidents, total }))
}

const COLUMNS: &str = "SELECT document_id, unit_id, classified, title, category, level, grade, \
     status, location, known_at, reported_at, first_report_at, follow_ups, final_report_at, \
     warnings, problems FROM incidents";

/// One incident; 404 both when it does not exist and when the caller may not see it.
async fn one(
    State(state): State<AppState>,
    identity: Identity,
    Path(id): Path<String>,
) -> Result<Json<IncidentView>, AppError> {
    let units = crate::units::visible_units(&state.pool, &identity.unit_id).await?;
    let mut query = Sql::new(COLUMNS);
    query.push(" WHERE document_id = ").bind(id);
    push_visibility(
        &mut query,
        &units,
        identity.cleared,
        "unit_id",
        "classified <> 0",
    );
    let row = query
        .query()
        .fetch_optional(&state.pool)
        .await?
        .ok_or(AppError::NotFound("no such incident"))?;
    let mut incident = view(&row, state.clock.now_ms())?;
    let rows = sqlx::query(
        "SELECT i.by_user, i.to_user, i.at, i.text, i.steps, i.done, \
         CAST(CASE WHEN u.id IS NULL THEN 0 ELSE 1 END AS BIGINT) AS verified FROM instructions i \
         LEFT JOIN actors a ON a.actor_id = i.by_actor AND a.user_id = i.by_user \
         LEFT JOIN users u ON u.id = a.user_id AND u.role IN ('leader', 'admin') \
         WHERE i.document_id = $1 ORDER BY i.position",
    )
    .bind(&incident.document_id)
    .fetch_all(&state.pool)
    .await?;
    let instructions = rows
        .iter()
        .map(|row| {
            Ok(InstructionView {
                by: row.try_get("by_user")?,
                to: row.try_get("to_user")?,
                at: row.try_get("at")?,
                text: row.try_get("text")?,
                steps: row.try_get("steps")?,
                done: row.try_get::<i64, _>("done")? != 0,
                verified: row.try_get::<i64, _>("verified")? != 0,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    incident.instructions = Some(instructions);
    incident.timeline =
        Some(crate::alerts::timeline_of(&state, "document_id", &incident.document_id).await?);
    Ok(Json(incident))
}

fn view(row: &sqlx::any::AnyRow, now: i64) -> Result<IncidentView, sqlx::Error> {
    let follow_ups: Vec<i64> =
        serde_json::from_str(&row.try_get::<String, _>("follow_ups")?).unwrap_or_default();
    let timeliness = zhiban_records::Timeliness::of(
        row.try_get("known_at")?,
        row.try_get("first_report_at")?,
        &follow_ups,
        row.try_get("final_report_at")?,
        now,
    );
    Ok(IncidentView {
        timeliness,
        document_id: row.try_get("document_id")?,
        unit_id: row.try_get("unit_id")?,
        classified: row.try_get::<i64, _>("classified")? != 0,
        title: row.try_get("title")?,
        category: row.try_get("category")?,
        level: row.try_get("level")?,
        grade: row.try_get("grade")?,
        status: row.try_get("status")?,
        location: row.try_get("location")?,
        known_at: row.try_get("known_at")?,
        reported_at: row.try_get("reported_at")?,
        warnings: serde_json::from_str(&row.try_get::<String, _>("warnings")?).unwrap_or_default(),
        problems: serde_json::from_str(&row.try_get::<String, _>("problems")?).unwrap_or_default(),
        instructions: None,
        timeline: None,
    })
}
