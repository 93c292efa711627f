//! Who is on duty (D5): `GET /api/oncall?unit=&at=` answers, for any unit the caller may see
//! and any instant (midnight and holiday boundaries are just timestamps), the leader on duty
//! and the officers with their contacts, after the swaps and leaves a leader of the unit has
//! approved (D4).

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::Row;

use crate::db::Sql;

use crate::AppState;
use crate::auth::Identity;
use crate::error::AppError;
use crate::incident::push_visibility;

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/oncall", get(oncall))
}

#[derive(Deserialize)]
struct At {
    unit: Option<String>,
    /// Milliseconds since the epoch; now if absent.
    at: Option<i64>,
}

#[derive(Serialize)]
struct OnDuty {
    unit_id: String,
    at: i64,
    shifts: Vec<ShiftOnDuty>,
}

#[derive(Serialize)]
struct ShiftOnDuty {
    roster: String,
    start: i64,
    end: i64,
    kind: Option<String>,
    leader: Value,
    officers: Value,
    backup_leader: Value,
    backup_officers: Value,
}

async fn oncall(
    State(state): State<AppState>,
    identity: Identity,
    Query(query): Query<At>,
) -> Result<Json<OnDuty>, AppError> {
    let unit_id = query.unit.unwrap_or_else(|| identity.unit_id.clone());
    let at = query.at.unwrap_or_else(|| state.clock.now_ms());
    let units = crate::units::visible_units(&state.pool, &identity.unit_id).await?;
    if !units.contains(&unit_id) {
        return Err(AppError::NotFound("no such unit"));
    }
    let mut connection = state.pool.acquire().await?;
    let shifts = shifts_at(
        &mut connection,
        &unit_id,
        at,
        Some((&units, identity.cleared)),
    )
    .await?;
    Ok(Json(OnDuty {
        unit_id,
        at,
        shifts,
    }))
}

/// The user ids of whoever is on duty in `unit_id` at `at`: (leaders, officers). Alerts go to
/// them (D10, D23), classified rosters included.
pub async fn on_duty_users(
    connection: &mut sqlx::AnyConnection,
    unit_id: &str,
    at: i64,
) -> Result<(Vec<String>, Vec<String>), sqlx::Error> {
    let (mut leaders, mut officers) = (Vec::new(), Vec::new());
    for shift in shifts_at(connection, unit_id, at, None).await? {
        leaders.extend(user_id(&shift.leader));
        if let Value::Array(people) = &shift.officers {
            officers.extend(people.iter().filter_map(user_id));
        }
    }
    leaders.dedup();
    officers.dedup();
    Ok((leaders, officers))
}

fn user_id(person: &Value) -> Option<String> {
    person
        .get("user_id")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// The shifts of `unit_id` running at `at`, with approved swaps applied; only what the viewer
/// (visible units, cleared) may see when one is given.
async fn shifts_at(
    connection: &mut sqlx::AnyConnection,
    unit_id: &str,
    at: i64,
    viewer: Option<(&std::collections::HashSet<String>, bool)>,
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
    if let Some((units, cleared)) = viewer {
        push_visibility(&mut select, units, cleared, "unit_id", "classified <> 0");
    }
    select.push(" ORDER BY start_at, document_id, position");
    let rows = select.query().fetch_all(&mut *connection).await?;

    let mut shifts = Vec::with_capacity(rows.len());
    for row in &rows {
        let roster: String = row.try_get("document_id")?;
        let position: i64 = row.try_get("position")?;
        let parse = |column: &str| -> Result<Value, sqlx::Error> {
            let text: Option<String> = row.try_get(column)?;
            Ok(text
                .and_then(|text| serde_json::from_str(&text).ok())
                .unwrap_or(Value::Null))
        };
        let mut shift = ShiftOnDuty {
            start: row.try_get("start_at")?,
            end: row.try_get("end_at")?,
            kind: row.try_get("kind")?,
            leader: parse("leader")?,
            officers: parse("officers")?,
            backup_leader: parse("backup_leader")?,
            backup_officers: parse("backup_officers")?,
            roster: roster.clone(),
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
        .bind(&roster)
        .bind(position)
        .bind(unit_id)
        .fetch_all(&mut *connection)
        .await?;
        for request in &approved {
            let requester: String = request.try_get("requester")?;
            let substitute: Value = request
                .try_get::<Option<String>, _>("substitute")?
                .and_then(|text| serde_json::from_str(&text).ok())
                .unwrap_or(Value::Null);
            replace_person(&mut shift.leader, &requester, &substitute);
            if let Value::Array(officers) = &mut shift.officers {
                for officer in officers {
                    replace_person(officer, &requester, &substitute);
                }
            }
        }
        shifts.push(shift);
    }
    Ok(shifts)
}

fn replace_person(person: &mut Value, requester: &str, substitute: &Value) {
    if person.get("user_id").and_then(Value::as_str) == Some(requester) {
        *person = substitute.clone();
    }
}
