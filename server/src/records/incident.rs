//! Incidents (D9–D14): one row per incident with its report chain, one per leader's
//! instruction with the Automerge actor that wrote it; `GET /api/incidents` (filters,
//! paging) and `GET /api/incidents/{id}` (with instructions and the alerts' timeline), both
//! limited to what the caller may see (D18).

use automerge::{Automerge, ObjId, ROOT};
use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use sqlx::Row;
use zhiban_api::{IncidentPage, IncidentView, InstructionView};
use zhiban_records::{Grade, Incident, Intervals, Level, Timeliness};

use super::times::{self, Receipts};
use super::{Common, document_id, element, from_json, parse_name, to_json, writer};
use crate::AppState;
use crate::access::{Identity, Visibility};
use crate::db::Sql;
use crate::error::AppError;

/// An incident's rows.
#[derive(Debug, Clone, Default)]
pub struct Rows {
    pub incident: Option<IncidentRow>,
    pub instructions: Vec<InstructionRow>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct IncidentRow {
    pub title: String,
    pub category: Option<String>,
    pub level: Option<Level>,
    pub grade: Option<Grade>,
    pub status: Option<String>,
    pub location: Option<String>,
    /// As the device wrote them.
    pub known_at: Option<i64>,
    pub reported_at: Option<i64>,
    /// The times the deadlines run on (`times`): from here on, the server's.
    pub record_known_at: Option<i64>,
    pub record_reported_at: Option<i64>,
    pub first_report_at: Option<i64>,
    pub follow_ups: Vec<i64>,
    pub final_report_at: Option<i64>,
    /// Written times that could not be true (`times`), as problems of the record.
    pub backdated: Vec<String>,
}

/// An instruction, and the actor that wrote its `by`: it counts as the leader's only if that
/// actor is bound to that leader (see `sync::authorship`).
#[derive(Debug, Clone, PartialEq)]
pub struct InstructionRow {
    /// Its place in the document's list: the alert about it and its writer are found by it.
    pub position: usize,
    pub by_user: Option<String>,
    pub by_actor: Option<String>,
    pub to_user: Option<String>,
    pub at: Option<i64>,
    pub text: String,
    pub steps: usize,
    pub done: bool,
}

pub fn project(doc: &Automerge, incident: &Incident, receipts: &Receipts) -> Rows {
    let instructions = incident
        .instructions
        .iter()
        .enumerate()
        .map(|(position, instruction)| InstructionRow {
            position,
            by_user: instruction.by.clone(),
            by_actor: element(doc, "instructions", position)
                .and_then(|item| writer(doc, &item, "by")),
            to_user: instruction.to.clone(),
            at: instruction.at,
            text: instruction.text.clone(),
            steps: instruction.steps.len(),
            done: instruction.done,
        })
        .collect();
    // The report chain again with the times the server counts.
    let mut counted = incident.clone();
    let mut backdated = Vec::new();
    let mut check = |object: &ObjId, key: &str, written: Option<i64>, label: &str| {
        let checked = times::check(doc, receipts, object, key, written, label);
        backdated.extend(checked.problem);
        checked.counted
    };
    counted.known_at = check(&ROOT, "known_at", incident.known_at, "known_at");
    counted.reported_at = check(&ROOT, "reported_at", incident.reported_at, "reported_at");
    for (position, report) in counted.reports.iter_mut().enumerate() {
        if let Some(item) = element(doc, "reports", position) {
            let label = format!("the time of report {}", position + 1);
            report.at = check(&item, "at", report.at, &label);
        }
    }
    Rows {
        incident: Some(IncidentRow {
            title: incident.title.clone(),
            category: incident.category.clone(),
            level: incident.level,
            grade: incident.grade,
            status: incident.status.clone(),
            location: incident.location.clone(),
            known_at: incident.known_at,
            reported_at: incident.reported_at,
            record_known_at: counted.known_at,
            record_reported_at: counted.reported_at,
            first_report_at: counted.first_report_at(),
            follow_ups: counted.follow_up_times(),
            final_report_at: counted.final_report_at(),
            backdated,
        }),
        instructions,
    }
}

pub async fn write(
    tx: &mut sqlx::AnyConnection,
    common: &Common,
    rows: &Rows,
    now: i64,
) -> Result<(), sqlx::Error> {
    let id = common.document_id.to_string();
    let Some(incident) = &rows.incident else {
        return clear(tx, &id).await;
    };
    sqlx::query(
        "INSERT INTO incidents (document_id, unit_id, classified, title, category, level, \
         grade, status, location, known_at, reported_at, first_report_at, follow_ups, \
         final_report_at, updated_at, record_known_at, record_reported_at, backdated) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
         $18) \
         ON CONFLICT (document_id) DO UPDATE SET unit_id = excluded.unit_id, \
         classified = excluded.classified, title = excluded.title, \
         category = excluded.category, level = excluded.level, grade = excluded.grade, \
         status = excluded.status, location = excluded.location, \
         known_at = excluded.known_at, reported_at = excluded.reported_at, \
         first_report_at = excluded.first_report_at, follow_ups = excluded.follow_ups, \
         final_report_at = excluded.final_report_at, updated_at = excluded.updated_at, \
         record_known_at = excluded.record_known_at, \
         record_reported_at = excluded.record_reported_at, backdated = excluded.backdated",
    )
    .bind(&id)
    .bind(&common.unit_id)
    .bind(i64::from(common.classified))
    .bind(&incident.title)
    .bind(incident.category.as_deref())
    .bind(incident.level.map(Level::as_str))
    .bind(incident.grade.map(Grade::as_str))
    .bind(incident.status.as_deref())
    .bind(incident.location.as_deref())
    .bind(incident.known_at)
    .bind(incident.reported_at)
    .bind(incident.first_report_at)
    .bind(to_json(&incident.follow_ups))
    .bind(incident.final_report_at)
    .bind(now)
    .bind(incident.record_known_at)
    .bind(incident.record_reported_at)
    .bind(i64::try_from(incident.backdated.len()).unwrap_or(i64::MAX))
    .execute(&mut *tx)
    .await?;
    if !common.fresh {
        sqlx::query("DELETE FROM instructions WHERE document_id = $1")
            .bind(&id)
            .execute(&mut *tx)
            .await?;
    }
    for row in &rows.instructions {
        sqlx::query(
            "INSERT INTO instructions (document_id, position, unit_id, classified, by_user, \
             by_actor, to_user, at, text, steps, done) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&id)
        .bind(i64::try_from(row.position).unwrap_or(i64::MAX))
        .bind(&common.unit_id)
        .bind(i64::from(common.classified))
        .bind(row.by_user.as_deref())
        .bind(row.by_actor.as_deref())
        .bind(row.to_user.as_deref())
        .bind(row.at)
        .bind(&row.text)
        .bind(i64::try_from(row.steps).unwrap_or(i64::MAX))
        .bind(i64::from(row.done))
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

pub async fn clear(tx: &mut sqlx::AnyConnection, id: &str) -> Result<(), sqlx::Error> {
    for statement in [
        "DELETE FROM incidents WHERE document_id = $1",
        "DELETE FROM instructions WHERE document_id = $1",
    ] {
        sqlx::query(statement).bind(id).execute(&mut *tx).await?;
    }
    Ok(())
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/incidents", get(list))
        .route("/api/incidents/{id}", get(one))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct Filter {
    unit: Option<String>,
    status: Option<String>,
    category: Option<String>,
    level: Option<String>,
    grade: Option<String>,
    /// Reported at or after, milliseconds since the epoch.
    from: Option<i64>,
    /// Reported before, milliseconds since the epoch.
    to: Option<i64>,
    /// 1 to 500; 50 by default.
    limit: Option<i64>,
    offset: Option<i64>,
}

const COLUMNS: &str = "SELECT i.document_id, i.unit_id, i.classified, i.title, i.category, \
     i.level, i.grade, i.status, i.location, i.known_at, i.reported_at, i.record_known_at, \
     i.first_report_at, i.follow_ups, i.final_report_at, r.warnings, r.problems, r.flag, \
     u.first_report_minutes, u.follow_up_minutes FROM incidents i \
     LEFT JOIN records r ON r.document_id = i.document_id LEFT JOIN units u ON u.id = i.unit_id";

/// Incidents of the units the caller may see, newest report first.
#[utoipa::path(get, path = "/api/incidents", tag = "records", params(Filter),
    responses((status = 200, body = IncidentPage), (status = 400, body = zhiban_api::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn list(
    State(state): State<AppState>,
    identity: Identity,
    Query(filter): Query<Filter>,
) -> Result<Json<IncidentPage>, AppError> {
    let limit = filter.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(AppError::BadRequest(
            "limit must be between 1 and 500".into(),
        ));
    }
    if filter.offset.is_some_and(|offset| offset < 0) {
        return Err(AppError::BadRequest("offset must not be negative".into()));
    }
    let visibility = Visibility::of(&state.pool, &identity).await?;
    let conditions = |query: &mut Sql| {
        visibility.restrict(query, "i.unit_id", "i.classified <> 0");
        for (column, value) in [
            ("i.unit_id", &filter.unit),
            ("i.status", &filter.status),
            ("i.category", &filter.category),
            ("i.level", &filter.level),
            ("i.grade", &filter.grade),
        ] {
            if let Some(value) = value {
                query.push(&format!(" AND {column} = "));
                query.bind(value.clone());
            }
        }
        if let Some(from) = filter.from {
            query.push(" AND i.reported_at >= ").bind(from);
        }
        if let Some(to) = filter.to {
            query.push(" AND i.reported_at < ").bind(to);
        }
    };
    let mut count = Sql::new("SELECT COUNT(*) AS n FROM incidents i WHERE 1 = 1");
    conditions(&mut count);
    let total: i64 = count.query().fetch_one(&state.pool).await?.try_get("n")?;
    let mut query = Sql::new(COLUMNS);
    query.push(" WHERE 1 = 1");
    conditions(&mut query);
    query
        .push(" ORDER BY i.reported_at DESC, i.document_id LIMIT ")
        .bind(limit)
        .push(" OFFSET ")
        .bind(filter.offset.unwrap_or(0));
    let rows = query.query().fetch_all(&state.pool).await?;
    let now = state.clock.now_ms();
    let intervals = state.settings.intervals();
    let incidents = rows
        .iter()
        .map(|row| view(row, now, intervals))
        .collect::<Result<_, sqlx::Error>>()?;
    Ok(Json(IncidentPage { incidents, total }))
}

/// One incident with its instructions and timeline; 404 both when it does not exist and when
/// the caller may not see it.
#[utoipa::path(get, path = "/api/incidents/{id}", tag = "records",
    params(("id" = String, Path, description = "The incident's document id")),
    responses((status = 200, body = IncidentView), (status = 404, body = zhiban_api::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn one(
    State(state): State<AppState>,
    identity: Identity,
    Path(id): Path<String>,
) -> Result<Json<IncidentView>, AppError> {
    let visibility = Visibility::of(&state.pool, &identity).await?;
    let mut query = Sql::new(COLUMNS);
    query.push(" WHERE i.document_id = ").bind(id.clone());
    visibility.restrict(&mut query, "i.unit_id", "i.classified <> 0");
    let row = query
        .query()
        .fetch_optional(&state.pool)
        .await?
        .ok_or(AppError::NotFound("no such incident"))?;
    let mut incident = view(&row, state.clock.now_ms(), state.settings.intervals())?;
    let rows = sqlx::query(
        "SELECT i.by_user, i.to_user, i.at, i.text, i.steps, i.done, \
         CAST(CASE WHEN u.id IS NULL THEN 0 ELSE 1 END AS BIGINT) AS verified FROM instructions i \
         LEFT JOIN actors a ON a.actor_id = i.by_actor AND a.user_id = i.by_user \
         LEFT JOIN users u ON u.id = a.user_id AND u.role IN ('leader', 'admin') \
         WHERE i.document_id = $1 ORDER BY i.position",
    )
    .bind(&id)
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
    incident.timeline = Some(crate::timeline::of_document(&state.pool, &id).await?);
    if incident.classified {
        super::audit_classified_read(&state, &identity, &id).await?;
    }
    Ok(Json(incident))
}

/// `deployment`: the reporting intervals where the incident's unit has none of its own.
fn view(
    row: &sqlx::any::AnyRow,
    now: i64,
    deployment: Intervals,
) -> Result<IncidentView, sqlx::Error> {
    let follow_ups: Vec<i64> =
        from_json(row.try_get::<Option<String>, _>("follow_ups")?.as_deref());
    let timeliness = Timeliness::of(
        row.try_get("record_known_at")?,
        row.try_get("first_report_at")?,
        &follow_ups,
        row.try_get("final_report_at")?,
        now,
        deployment.with(
            row.try_get("first_report_minutes")?,
            row.try_get("follow_up_minutes")?,
        ),
    );
    Ok(IncidentView {
        timeliness,
        document_id: document_id(row, "document_id")?,
        unit_id: row.try_get::<String, _>("unit_id")?.into(),
        classified: row.try_get::<i64, _>("classified")? != 0,
        title: row.try_get("title")?,
        category: row.try_get("category")?,
        level: parse_name(row.try_get("level")?),
        grade: parse_name(row.try_get("grade")?),
        status: row.try_get("status")?,
        location: row.try_get("location")?,
        known_at: row.try_get("known_at")?,
        reported_at: row.try_get("reported_at")?,
        warnings: from_json(row.try_get::<Option<String>, _>("warnings")?.as_deref()),
        problems: from_json(row.try_get::<Option<String>, _>("problems")?.as_deref()),
        flag: row.try_get("flag")?,
        instructions: None,
        timeline: None,
    })
}
