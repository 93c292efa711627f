//! Rosters (D2–D5): the roster, its shifts and its swap/leave requests with the Automerge
//! actor that wrote each request's status; who is on duty at an instant, for the alerts and
//! for `GET /api/oncall?unit=&at=` (any unit the caller may see, any instant: midnight and
//! holiday boundaries are just timestamps), after the swaps and leaves a leader of the unit
//! approved (D4).

use automerge::Automerge;
use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use sqlx::Row;
use zhiban_api::{OnDuty, ShiftOnDuty};
use zhiban_records::{Person, Roster};

use super::{Common, document_id, element, from_json, to_json, writer};
use crate::AppState;
use crate::access::{Identity, Visibility};
use crate::db::Sql;
use crate::error::AppError;

#[derive(Debug, Clone, Default)]
pub struct Rows {
    pub roster: Option<Roster>,
    /// Per request, the actor that wrote its current status.
    pub deciders: Vec<Option<String>>,
}

pub fn project(doc: &Automerge, roster: Roster) -> Rows {
    let deciders = (0..roster.requests.len())
        .map(|position| {
            element(doc, "requests", position).and_then(|item| writer(doc, &item, "status"))
        })
        .collect();
    Rows {
        roster: Some(roster),
        deciders,
    }
}

pub async fn write(
    tx: &mut sqlx::AnyConnection,
    common: &Common,
    rows: &Rows,
) -> Result<(), sqlx::Error> {
    let id = common.document_id.to_string();
    if !common.fresh {
        clear(tx, &id).await?;
    }
    let Some(roster) = &rows.roster else {
        return Ok(());
    };
    let classified = i64::from(common.classified);
    sqlx::query(
        "INSERT INTO rosters (document_id, unit_id, classified, title, holiday, starts_at, \
         due_at, submitted_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&id)
    .bind(&common.unit_id)
    .bind(classified)
    .bind(&roster.title)
    .bind(i64::from(roster.holiday))
    .bind(roster.starts_at())
    .bind(roster.due_at)
    .bind(roster.submitted_at)
    .execute(&mut *tx)
    .await?;
    for (position, shift) in roster.shifts.iter().enumerate() {
        // A shift without its times is never on duty; the record is flagged for it.
        let (Some(start), Some(end)) = (shift.start, shift.end) else {
            continue;
        };
        sqlx::query(
            "INSERT INTO shifts (document_id, position, unit_id, classified, start_at, end_at, \
             kind, leader, officers, backup_leader, backup_officers) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&id)
        .bind(i64::try_from(position).unwrap_or(i64::MAX))
        .bind(&common.unit_id)
        .bind(classified)
        .bind(start)
        .bind(end)
        .bind(shift.kind.as_deref())
        .bind(shift.leader.as_ref().map(to_json))
        .bind(to_json(&shift.officers))
        .bind(shift.backup_leader.as_ref().map(to_json))
        .bind(to_json(&shift.backup_officers))
        .execute(&mut *tx)
        .await?;
    }
    for (position, request) in roster.requests.iter().enumerate() {
        // A request naming no shift changes nothing; the record is flagged for it.
        let Some(shift) = request.shift.and_then(|shift| i64::try_from(shift).ok()) else {
            continue;
        };
        sqlx::query(
            "INSERT INTO shift_requests (document_id, position, shift_position, kind, requester, \
             substitute, status, decided_by, decided_at, decided_actor) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&id)
        .bind(i64::try_from(position).unwrap_or(i64::MAX))
        .bind(shift)
        .bind(&request.kind)
        .bind(&request.requester)
        .bind(request.substitute.as_ref().map(to_json))
        .bind(&request.status)
        .bind(request.decided_by.as_deref())
        .bind(request.decided_at)
        .bind(rows.deciders.get(position).cloned().flatten())
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

pub async fn clear(tx: &mut sqlx::AnyConnection, id: &str) -> Result<(), sqlx::Error> {
    for statement in [
        "DELETE FROM rosters WHERE document_id = $1",
        "DELETE FROM shifts WHERE document_id = $1",
        "DELETE FROM shift_requests WHERE document_id = $1",
    ] {
        sqlx::query(statement).bind(id).execute(&mut *tx).await?;
    }
    Ok(())
}

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/oncall", get(oncall))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct At {
    /// The caller's own unit if absent.
    unit: Option<String>,
    /// Milliseconds since the epoch; now if absent.
    at: Option<i64>,
}

/// The leader and officers on duty in a unit at an instant, with their contacts (D5).
#[utoipa::path(get, path = "/api/oncall", tag = "records", params(At),
    responses((status = 200, body = OnDuty), (status = 404, body = zhiban_api::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn oncall(
    State(state): State<AppState>,
    identity: Identity,
    Query(query): Query<At>,
) -> Result<Json<OnDuty>, AppError> {
    let unit_id = query.unit.unwrap_or_else(|| identity.unit_id.clone());
    let at = query.at.unwrap_or_else(|| state.clock.now_ms());
    let visibility = Visibility::of(&state.pool, &identity).await?;
    if !visibility.sees_unit(&unit_id) {
        return Err(AppError::NotFound("no such unit"));
    }
    let mut connection = state.pool.acquire().await?;
    let shifts = shifts_at(&mut connection, &unit_id, at, Some(&visibility)).await?;
    Ok(Json(OnDuty {
        unit_id: unit_id.into(),
        at,
        shifts,
    }))
}

/// Whoever is on duty in `unit_id` at `at`, as the roster names them: (leaders, officers),
/// user ids as written (the alerts check them against the users of the unit). Classified
/// rosters count too: alerts go to the people, not to the roster's readers.
pub async fn on_duty_users(
    connection: &mut sqlx::AnyConnection,
    unit_id: &str,
    at: i64,
) -> Result<(Vec<String>, Vec<String>), sqlx::Error> {
    let (mut leaders, mut officers) = (Vec::new(), Vec::new());
    for shift in shifts_at(connection, unit_id, at, None).await? {
        leaders.extend(shift.leader.and_then(|person| person.user_id));
        officers.extend(
            shift
                .officers
                .into_iter()
                .filter_map(|person| person.user_id),
        );
    }
    leaders.dedup();
    officers.dedup();
    Ok((leaders, officers))
}

/// The shifts of `unit_id` running at `at`, with approved swaps applied; only what the viewer
/// may see when one is given.
async fn shifts_at(
    connection: &mut sqlx::AnyConnection,
    unit_id: &str,
    at: i64,
    viewer: Option<&Visibility>,
) -> Result<Vec<ShiftOnDuty>, sqlx::Error> {
    let mut select = Sql::new(
        "SELECT document_id, position, start_at, end_at, kind, leader, officers, backup_leader, \
         backup_officers FROM shifts WHERE unit_id = ",
    );
    select
        .bind(unit_id.to_owned())
        .push(" AND start_at <= ")
        .bind(at)
        .push(" AND end_at > ")
        .bind(at);
    if let Some(viewer) = viewer {
        viewer.restrict(&mut select, "unit_id", "classified <> 0");
    }
    select.push(" ORDER BY start_at, document_id, position");
    let rows = select.query().fetch_all(&mut *connection).await?;

    let mut shifts = Vec::with_capacity(rows.len());
    for row in &rows {
        let roster = document_id(row, "document_id")?;
        let position: i64 = row.try_get("position")?;
        let text = |column: &str| row.try_get::<Option<String>, _>(column);
        let mut shift = ShiftOnDuty {
            roster,
            start: row.try_get("start_at")?,
            end: row.try_get("end_at")?,
            kind: row.try_get("kind")?,
            leader: from_json(text("leader")?.as_deref()),
            officers: from_json(text("officers")?.as_deref()),
            backup_leader: from_json(text("backup_leader")?.as_deref()),
            backup_officers: from_json(text("backup_officers")?.as_deref()),
        };
        // Only a leader (or admin) of the unit can approve, from their own device (the actor
        // that wrote the status is theirs); any other approval is ignored here, whatever the
        // document says.
        let approved = sqlx::query(
            "SELECT r.requester, r.substitute FROM shift_requests r \
             JOIN actors a ON a.actor_id = r.decided_actor AND a.user_id = r.decided_by \
             JOIN users u ON u.id = a.user_id \
             WHERE r.document_id = $1 AND r.shift_position = $2 AND r.status = 'approved' \
             AND r.substitute IS NOT NULL AND u.unit_id = $3 AND u.role IN ('leader', 'admin') \
             ORDER BY r.position",
        )
        .bind(roster.to_string())
        .bind(position)
        .bind(unit_id)
        .fetch_all(&mut *connection)
        .await?;
        for request in &approved {
            let requester: String = request.try_get("requester")?;
            let substitute: Option<Person> = from_json(
                request
                    .try_get::<Option<String>, _>("substitute")?
                    .as_deref(),
            );
            let Some(substitute) = substitute else {
                continue;
            };
            let replace = |person: &mut Person| {
                if person.user_id.as_deref() == Some(requester.as_str()) {
                    *person = substitute.clone();
                }
            };
            if let Some(leader) = &mut shift.leader {
                replace(leader);
            }
            shift.officers.iter_mut().for_each(replace);
        }
        shifts.push(shift);
    }
    Ok(shifts)
}
