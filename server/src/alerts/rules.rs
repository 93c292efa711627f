//! What a record's new state calls for, run by `commit` in the change's transaction after the
//! record's rows are written: the alerts it raises (a red or yellow incident, an instruction
//! addressed to someone, a report deadline, a holiday roster due) and those it settles.
//! Returns what it raised; times come from the typed record, already checked to be plausible,
//! and every sum on them saturates.

use zhiban_api::{AlertKind, Grade, Resolution};
use zhiban_records::{Intervals, time};

use super::engine::{raise, resolve_key, resolve_where};
use super::{NewAlert, Raised, policy};
use crate::db::Sql;
use crate::records::{Common, Projection, Rows, incident};

const HOLIDAY_ROSTER_AHEAD_MS: i64 = 3 * 24 * 3_600_000;

pub async fn after_projection(
    connection: &mut sqlx::AnyConnection,
    projection: &Projection,
    now: i64,
    intervals: Intervals,
) -> Result<Raised, sqlx::Error> {
    let common = &projection.common;
    let id = common.document_id.to_string();
    let mut raised = Raised::default();
    match &projection.rows {
        Rows::Incident(rows) => {
            if let Some(incident) = &rows.incident {
                let intervals =
                    crate::units::intervals(&mut *connection, &common.unit_id, intervals).await?;
                raised.add(
                    incident_alerts(
                        connection,
                        common,
                        incident,
                        &rows.instructions,
                        now,
                        intervals,
                    )
                    .await?,
                );
            }
        }
        Rows::DailyReport(rows) => {
            if let Some(report) = &rows.report {
                let key = format!("daily_report:{}:{}", common.unit_id, report.date);
                resolve_key(connection, key, Resolution::Submitted, now).await?;
            }
        }
        // A holiday roster is due at the superior office 3 days before it starts (D3).
        Rows::Roster(rows) => {
            if let Some(roster) = &rows.roster
                && roster.holiday
                && let Some(due_at) = roster
                    .due_at
                    .or_else(|| Some(roster.starts_at()?.saturating_sub(HOLIDAY_ROSTER_AHEAD_MS)))
            {
                let key = format!("holiday_roster:{id}");
                if roster.submitted_at.is_some() {
                    resolve_key(connection, key, Resolution::Submitted, now).await?;
                } else {
                    let alert = NewAlert {
                        kind: AlertKind::HolidayRoster,
                        dedupe_key: key,
                        document_id: Some(id.clone()),
                        unit_id: common.unit_id.clone(),
                        classified: common.classified,
                        grade: None,
                        title: format!("Holiday roster due: {}", roster.title),
                        steps: policy::holiday_roster_steps(),
                        due_at: Some(due_at),
                        responsible: None,
                    };
                    raised.add(raise(connection, alert, now).await?);
                }
            }
        }
        Rows::Handover(_) | Rows::DutyLog(_) | Rows::DocumentRegister(_) => {}
    }
    Ok(raised)
}

async fn incident_alerts(
    connection: &mut sqlx::AnyConnection,
    common: &Common,
    incident: &incident::IncidentRow,
    instructions: &[incident::InstructionRow],
    now: i64,
    intervals: Intervals,
) -> Result<Raised, sqlx::Error> {
    let id = common.document_id.to_string();
    let mut raised = Raised::default();
    let closed = incident.final_report_at.is_some();
    // The grade: a new alert when it is raised; the alert of a former grade stops.
    let grade = incident.grade.unwrap_or(Grade::Blue);
    let other_grades = |q: &mut Sql| {
        q.push("kind = 'incident' AND document_id = ")
            .bind(id.clone())
            .push(" AND grade <> ")
            .bind(grade.as_str());
    };
    if !common.fresh {
        resolve_where(connection, other_grades, Resolution::Regraded, now).await?;
        // The grade's alert key names its current episode: once the incident leaves a
        // grade, that alert (open or acknowledged) gives up the key, so a return to the
        // grade is a new episode with an alert of its own (W3 keeps a field user from
        // lowering red; a leader's downgrade is in the change's audit row).
        sqlx::query(
            "UPDATE alerts SET dedupe_key = dedupe_key || ':' || id \
             WHERE kind = 'incident' AND document_id = $1 AND grade <> $2 \
             AND dedupe_key = $3 || grade",
        )
        .bind(&id)
        .bind(grade.as_str())
        .bind(format!("incident:{id}:"))
        .execute(&mut *connection)
        .await?;
    }
    if !closed {
        let steps = policy::steps_for(connection, &common.unit_id, grade).await?;
        if !steps.is_empty() {
            let alert = NewAlert {
                kind: AlertKind::Incident,
                dedupe_key: format!("incident:{id}:{}", grade.as_str()),
                document_id: Some(id.clone()),
                unit_id: common.unit_id.clone(),
                classified: common.classified,
                grade: Some(grade),
                title: incident.title.clone(),
                steps,
                due_at: None,
                responsible: None,
            };
            raised.add(raise(connection, alert, now).await?);
        }
    }

    // Instructions addressed to someone (D14), when written by a leader from their own device.
    for instruction in instructions {
        let (Some(to), Some(by), Some(actor), Some(at)) = (
            &instruction.to_user,
            &instruction.by_user,
            &instruction.by_actor,
            instruction.at,
        ) else {
            continue;
        };
        let key = format!("instruction:{id}:{}:{at}", instruction.position);
        if instruction.done {
            if !common.fresh {
                resolve_key(connection, key, Resolution::Done, now).await?;
            }
            continue;
        }
        let verified: Option<String> = sqlx::query_scalar(
            "SELECT u.id FROM actors a JOIN users u ON u.id = a.user_id \
             WHERE a.actor_id = $1 AND a.user_id = $2 AND u.role IN ('leader', 'admin')",
        )
        .bind(actor)
        .bind(by)
        .fetch_optional(&mut *connection)
        .await?;
        if verified.is_none() {
            continue;
        }
        let alert = NewAlert {
            kind: AlertKind::Instruction,
            dedupe_key: key,
            document_id: Some(id.clone()),
            unit_id: common.unit_id.clone(),
            classified: common.classified,
            grade: incident.grade,
            title: format!("Instruction on {}: {}", incident.title, instruction.text),
            steps: policy::instruction_steps(to, incident.grade),
            due_at: None,
            responsible: None,
        };
        raised.add(raise(connection, alert, now).await?);
    }

    // Reporting deadlines (D11, D12).
    if closed {
        let deadlines = |q: &mut Sql| {
            q.push("kind IN ('first_report', 'follow_up') AND document_id = ")
                .bind(id.clone());
        };
        if !common.fresh {
            resolve_where(connection, deadlines, Resolution::Closed, now).await?;
        }
        return Ok(raised);
    }
    let responsible = common.created_by.clone();
    match (incident.record_known_at, incident.first_report_at) {
        (Some(known_at), None) => {
            let alert = NewAlert {
                kind: AlertKind::FirstReport,
                dedupe_key: format!("first_report:{id}"),
                document_id: Some(id.clone()),
                unit_id: common.unit_id.clone(),
                classified: common.classified,
                grade: incident.grade,
                title: format!("First report due: {}", incident.title),
                steps: policy::deadline_steps(),
                due_at: Some(time::after(known_at, intervals.first_report_ms)),
                responsible,
            };
            raised.add(raise(connection, alert, now).await?);
        }
        (_, Some(first)) => {
            // The k-th follow-up is due k × 2 h after the first report; earlier ones are met.
            let next = i64::try_from(incident.follow_ups.len())
                .unwrap_or(i64::MAX)
                .saturating_add(1);
            let met = |q: &mut Sql| {
                q.push("document_id = ")
                    .bind(id.clone())
                    .push(" AND (kind = 'first_report' OR (kind = 'follow_up' AND dedupe_key <> ")
                    .bind(format!("follow_up:{id}:{next}"))
                    .push("))");
            };
            if !common.fresh {
                resolve_where(connection, met, Resolution::Met, now).await?;
            }
            let alert = NewAlert {
                kind: AlertKind::FollowUp,
                dedupe_key: format!("follow_up:{id}:{next}"),
                document_id: Some(id.clone()),
                unit_id: common.unit_id.clone(),
                classified: common.classified,
                grade: incident.grade,
                title: format!("Follow-up report {next} due: {}", incident.title),
                steps: policy::deadline_steps(),
                due_at: Some(time::after(
                    first,
                    next.saturating_mul(intervals.follow_up_ms),
                )),
                responsible,
            };
            raised.add(raise(connection, alert, now).await?);
        }
        (None, None) => {}
    }
    Ok(raised)
}
