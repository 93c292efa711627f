//! Alerts that reach people (D10–D17, D23): an alert is raised in the same transaction as the
//! change that causes it (a red incident arriving from an offline phone, a grade raised, an
//! instruction addressed to someone, a deadline coming up, a roll-call), and is itself a
//! durable timer. Each step resolves its targets (who is on duty *now*, from the roster),
//! records them, and writes one outbox row per push subscription in the same transaction that
//! advances the alert, so a restart neither loses nor repeats a step. The delivery worker
//! sends the outbox; acknowledging an alert stops its repeats and escalation.

mod api;
mod delivery;
pub mod policy;
mod worker;

use std::collections::HashSet;

use serde_json::{Value, json};
use sqlx::Row;

use crate::db::{Arg, Sql};
use crate::projection::Projection;
use crate::push::subscriptions_for_users;
pub use api::{alert_timeline as timeline_of, routes};
pub use delivery::{InFlight, Queued};
use policy::Step;
pub use worker::spawn;

const HOLIDAY_ROSTER_AHEAD_MS: i64 = 3 * 24 * 3_600_000;

/// How long a node owns an outbox row it is sending before another may take it over.
const LEASE_MS: i64 = 60_000;

/// An alert about to be raised.
pub struct NewAlert {
    pub kind: &'static str,
    /// The same key never raises twice (e.g. `incident:<id>:red`).
    pub dedupe_key: String,
    pub document_id: Option<String>,
    pub unit_id: String,
    pub classified: bool,
    pub grade: Option<String>,
    pub title: String,
    pub steps: Vec<Step>,
    /// For deadlines: steps count from here rather than from now.
    pub due_at: Option<i64>,
    /// Who the `responsible` target is (the reporter, D13).
    pub responsible: Option<String>,
}

/// An alert as stored.
#[derive(Debug, Clone)]
pub struct Alert {
    pub id: String,
    pub kind: String,
    pub dedupe_key: String,
    pub document_id: Option<String>,
    pub unit_id: String,
    pub classified: bool,
    pub grade: Option<String>,
    pub title: String,
    pub steps: Vec<Step>,
    pub created_at: i64,
    pub due_at: Option<i64>,
    pub step: usize,
    pub repeats: i64,
}

impl Alert {
    pub const COLUMNS: &'static str = "id, kind, dedupe_key, document_id, unit_id, classified, \
         grade, title, steps, created_at, due_at, step, repeats";

    pub fn from_row(row: &sqlx::any::AnyRow) -> Result<Self, sqlx::Error> {
        let steps: String = row.try_get("steps")?;
        Ok(Self {
            id: row.try_get("id")?,
            kind: row.try_get("kind")?,
            dedupe_key: row.try_get("dedupe_key")?,
            document_id: row.try_get("document_id")?,
            unit_id: row.try_get("unit_id")?,
            classified: row.try_get::<i64, _>("classified")? != 0,
            grade: row.try_get("grade")?,
            title: row.try_get("title")?,
            steps: serde_json::from_str(&steps).unwrap_or_default(),
            created_at: row.try_get("created_at")?,
            due_at: row.try_get("due_at")?,
            step: row.try_get::<i64, _>("step")?.max(0) as usize,
            repeats: row.try_get("repeats")?,
        })
    }

    /// The roll-call a `rollcall` alert is for.
    pub fn rollcall_id(&self) -> Option<&str> {
        self.dedupe_key.strip_prefix("rollcall:")
    }

    fn base(&self) -> i64 {
        self.due_at.unwrap_or(self.created_at)
    }

    fn step_at(&self, index: usize) -> Option<i64> {
        self.steps
            .get(index)
            .map(|step| self.base() + step.after_secs * 1000)
    }
}

/// Raises an alert unless one with its key exists; runs its first step at once when due.
/// Returns whether it was new.
pub async fn raise(
    connection: &mut sqlx::AnyConnection,
    new: NewAlert,
    now: i64,
    queued: &mut Vec<Queued>,
) -> Result<bool, sqlx::Error> {
    let steps: Vec<Step> = new
        .steps
        .into_iter()
        .map(|mut step| {
            step.targets = step
                .targets
                .into_iter()
                .filter_map(|target| match target.as_str() {
                    "responsible" => new.responsible.as_ref().map(|user| format!("user:{user}")),
                    _ => Some(target),
                })
                .collect();
            step
        })
        .collect();
    let mut alert = Alert {
        id: uuid::Uuid::now_v7().to_string(),
        kind: new.kind.to_owned(),
        dedupe_key: new.dedupe_key,
        document_id: new.document_id,
        unit_id: new.unit_id,
        classified: new.classified,
        grade: new.grade,
        title: new.title,
        steps,
        created_at: now,
        due_at: new.due_at,
        step: 0,
        repeats: 0,
    };
    let next_at = alert.step_at(0);
    let inserted = sqlx::query(
        "INSERT INTO alerts (id, kind, dedupe_key, document_id, unit_id, classified, grade, \
         title, steps, created_at, due_at, step, repeats, next_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 0, 0, $12) \
         ON CONFLICT (dedupe_key) DO NOTHING",
    )
    .bind(&alert.id)
    .bind(&alert.kind)
    .bind(&alert.dedupe_key)
    .bind(alert.document_id.as_deref())
    .bind(&alert.unit_id)
    .bind(i64::from(alert.classified))
    .bind(alert.grade.as_deref())
    .bind(&alert.title)
    .bind(serde_json::to_string(&alert.steps).unwrap_or_else(|_| "[]".into()))
    .bind(now)
    .bind(alert.due_at)
    .bind(next_at)
    .execute(&mut *connection)
    .await?;
    if inserted.rows_affected() == 0 {
        return Ok(false);
    }
    timeline(
        connection,
        &alert,
        now,
        "alert.raised",
        None,
        json!({"kind": alert.kind, "grade": alert.grade, "due_at": alert.due_at}),
    )
    .await?;
    tracing::info!(alert_id = %alert.id, kind = %alert.kind, grade = ?alert.grade, "alert raised");
    if next_at.is_some_and(|at| at <= now) {
        run_step(connection, &mut alert, now, queued).await?;
    }
    Ok(true)
}

/// Runs the alert's current step: finds its targets, queues a push to each of their devices,
/// and moves the alert on (a repeat, the next step, or done).
pub async fn run_step(
    connection: &mut sqlx::AnyConnection,
    alert: &mut Alert,
    now: i64,
    queued: &mut Vec<Queued>,
) -> Result<(), sqlx::Error> {
    // Steps overtaken by a later one that is due by now (the server was down, the clock
    // jumped, a deadline raised late) give way to it: later steps reach everyone earlier ones
    // did and more.
    while alert.step_at(alert.step + 1).is_some_and(|at| at <= now) {
        alert.step += 1;
        alert.repeats = 0;
    }
    let Some(step) = alert.steps.get(alert.step).cloned() else {
        return set_next(connection, alert, None).await;
    };
    let (users, fallbacks) = targets(connection, alert, &step.targets, now).await?;
    for user in &users {
        sqlx::query(
            "INSERT INTO alert_targets (alert_id, user_id, step, first_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (alert_id, user_id) DO NOTHING",
        )
        .bind(&alert.id)
        .bind(user)
        .bind(alert.step as i64)
        .bind(now)
        .execute(&mut *connection)
        .await?;
    }
    let subscriptions = subscriptions_for_users(connection, &users, now).await?;
    let (urgency, ttl) = policy::urgency_and_ttl(alert.grade.as_deref(), &alert.kind);
    let payload = payload(alert, &step).to_string();
    for subscription in &subscriptions {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO push_outbox (alert_id, subscription_id, user_id, step, payload, urgency, \
             ttl, status, attempts, next_attempt_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', 0, $8, $9) RETURNING id",
        )
        .bind(&alert.id)
        .bind(&subscription.id)
        .bind(&subscription.user_id)
        .bind(alert.step as i64)
        .bind(&payload)
        .bind(delivery::urgency_name(urgency))
        .bind(i64::from(ttl))
        // Leased to this node: it sends at once; after a crash the lease runs out and any
        // node's worker sends it.
        .bind(now + LEASE_MS)
        .bind(now)
        .fetch_one(&mut *connection)
        .await?;
        queued.push(Queued {
            outbox_id: id,
            alert_id: alert.id.clone(),
            document_id: alert.document_id.clone(),
            subscription: subscription.clone(),
            payload: payload.clone(),
            urgency,
            ttl,
            attempts: 0,
        });
    }
    let reached: HashSet<&str> = subscriptions
        .iter()
        .map(|subscription| subscription.user_id.as_str())
        .collect();
    let unreachable: Vec<&String> = users
        .iter()
        .filter(|user| !reached.contains(user.as_str()))
        .collect();
    timeline(
        connection,
        alert,
        now,
        if alert.repeats == 0 {
            "alert.step"
        } else {
            "alert.repeat"
        },
        None,
        json!({
            "step": alert.step, "repeat": alert.repeats, "targets": users,
            "devices": subscriptions.len(), "without_push": unreachable, "fallbacks": fallbacks,
        }),
    )
    .await?;
    if step.expire {
        set_next(connection, alert, None).await?;
        return resolve_alert(connection, alert, "missed", now).await;
    }
    // Repeat this step until the next one is due; then escalate.
    let next_step_at = alert.step_at(alert.step + 1);
    let repeat_at = step.repeat_every_secs.map(|every| now + every * 1000);
    let next = match (repeat_at, next_step_at) {
        (Some(repeat), Some(next)) if repeat < next => {
            Some((alert.step, alert.repeats + 1, repeat))
        }
        (Some(repeat), None) => Some((alert.step, alert.repeats + 1, repeat)),
        (_, Some(next)) => Some((alert.step + 1, 0, next.max(now))),
        (None, None) => None,
    };
    match next {
        Some((step, repeats, at)) => {
            alert.step = step;
            alert.repeats = repeats;
            set_next(connection, alert, Some(at)).await
        }
        None => set_next(connection, alert, None).await,
    }
}

async fn set_next(
    connection: &mut sqlx::AnyConnection,
    alert: &Alert,
    next_at: Option<i64>,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE alerts SET step = $1, repeats = $2, next_at = $3 WHERE id = $4")
        .bind(alert.step as i64)
        .bind(alert.repeats)
        .bind(next_at)
        .bind(&alert.id)
        .execute(connection)
        .await?;
    Ok(())
}

/// The users a step reaches. Nobody on the roster falls back to the unit's leaders (or
/// officers): an alert must reach someone; the fallback is noted on the timeline.
async fn targets(
    connection: &mut sqlx::AnyConnection,
    alert: &Alert,
    targets: &[String],
    now: i64,
) -> Result<(Vec<String>, Vec<String>), sqlx::Error> {
    let mut users: Vec<String> = Vec::new();
    let mut fallbacks = Vec::new();
    for target in targets {
        let found = match target.as_str() {
            "leader_on_duty" => {
                let (leaders, _) =
                    crate::roster::on_duty_users(connection, &alert.unit_id, now).await?;
                if leaders.is_empty() {
                    fallbacks.push(format!("{target}: nobody on the roster; unit leaders"));
                    unit_users(connection, &alert.unit_id, &["leader"]).await?
                } else {
                    leaders
                }
            }
            "officers_on_duty" => {
                let (_, officers) =
                    crate::roster::on_duty_users(connection, &alert.unit_id, now).await?;
                if officers.is_empty() {
                    fallbacks.push(format!("{target}: nobody on the roster; unit officers"));
                    unit_users(connection, &alert.unit_id, &["officer"]).await?
                } else {
                    officers
                }
            }
            "unit_leaders" => unit_users(connection, &alert.unit_id, &["leader"]).await?,
            "superior_on_duty" => {
                let parent: Option<String> =
                    sqlx::query_scalar("SELECT parent_id FROM units WHERE id = $1")
                        .bind(&alert.unit_id)
                        .fetch_optional(&mut *connection)
                        .await?
                        .flatten();
                match parent {
                    Some(parent) => {
                        let (leaders, officers) =
                            crate::roster::on_duty_users(connection, &parent, now).await?;
                        let on_duty: Vec<String> = leaders.into_iter().chain(officers).collect();
                        if on_duty.is_empty() {
                            fallbacks.push(format!("{target}: nobody on the roster; its leaders"));
                            unit_users(connection, &parent, &["leader"]).await?
                        } else {
                            on_duty
                        }
                    }
                    None => Vec::new(),
                }
            }
            other => match other.strip_prefix("user:") {
                Some(user) => vec![user.to_owned()],
                None => {
                    tracing::warn!(target = other, "unknown alert target");
                    Vec::new()
                }
            },
        };
        for user in found {
            if !users.contains(&user) {
                users.push(user);
            }
        }
    }
    // A classified alert reaches cleared users only (D18); the push itself carries nothing.
    if alert.classified && !users.is_empty() {
        let mut cleared = Sql::new("SELECT id FROM users WHERE cleared <> 0 AND id IN ");
        cleared.bind_list(users.iter().map(|user| Arg::from(user.as_str())));
        let allowed: HashSet<String> = cleared
            .query()
            .fetch_all(&mut *connection)
            .await?
            .iter()
            .map(|row| row.try_get("id"))
            .collect::<Result<_, _>>()?;
        users.retain(|user| allowed.contains(user));
    }
    Ok((users, fallbacks))
}

async fn unit_users(
    connection: &mut sqlx::AnyConnection,
    unit_id: &str,
    roles: &[&str],
) -> Result<Vec<String>, sqlx::Error> {
    let mut select = Sql::new("SELECT id FROM users WHERE unit_id = ");
    select
        .bind(unit_id.to_owned())
        .push(" AND role IN ")
        .bind_list(roles.iter().map(|role| Arg::from(*role)))
        .push(" ORDER BY id");
    select
        .query()
        .fetch_all(connection)
        .await?
        .iter()
        .map(|row| row.try_get("id"))
        .collect()
}

/// What the phone shows. A classified alert says only that something needs the reader (D18).
fn payload(alert: &Alert, step: &Step) -> Value {
    let mut payload = json!({
        "alert_id": alert.id, "kind": alert.kind, "grade": alert.grade,
        "step": alert.step, "repeat": alert.repeats, "expired": step.expire,
    });
    if let Some(rollcall) = alert.rollcall_id() {
        payload["rollcall_id"] = json!(rollcall);
    }
    if alert.classified {
        payload["classified"] = json!(true);
        payload["title"] = json!("A classified matter needs you: open the app");
    } else {
        // Push payloads are capped (3052 bytes); the app shows the rest.
        let title: String = alert.title.chars().take(300).collect();
        payload["title"] = json!(title);
        payload["document_id"] = json!(alert.document_id);
        payload["due_at"] = json!(alert.due_at);
    }
    payload
}

/// Appends to the alert's (and its document's) timeline.
pub async fn timeline(
    connection: &mut sqlx::AnyConnection,
    alert: &Alert,
    at: i64,
    event: &str,
    user_id: Option<&str>,
    detail: Value,
) -> Result<(), sqlx::Error> {
    timeline_entry(
        connection,
        &alert.id,
        alert.document_id.as_deref(),
        at,
        event,
        user_id,
        detail,
    )
    .await
}

pub async fn timeline_entry(
    connection: &mut sqlx::AnyConnection,
    alert_id: &str,
    document_id: Option<&str>,
    at: i64,
    event: &str,
    user_id: Option<&str>,
    detail: Value,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO timeline (alert_id, document_id, at, event, user_id, detail) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(alert_id)
    .bind(document_id)
    .bind(at)
    .bind(event)
    .bind(user_id)
    .bind(detail.to_string())
    .execute(connection)
    .await?;
    Ok(())
}

/// Ends an alert without an acknowledgement: a deadline met, a roll-call answered or
/// missed, an incident regraded. Pending pushes are cancelled.
async fn resolve_alert(
    connection: &mut sqlx::AnyConnection,
    alert: &Alert,
    resolution: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    let updated = sqlx::query(
        "UPDATE alerts SET resolved_at = $1, resolution = $2, next_at = NULL \
         WHERE id = $3 AND resolved_at IS NULL",
    )
    .bind(now)
    .bind(resolution)
    .bind(&alert.id)
    .execute(&mut *connection)
    .await?;
    if updated.rows_affected() == 0 {
        return Ok(());
    }
    cancel_pending(connection, &alert.id).await?;
    if alert.kind == "rollcall" && resolution == "missed" {
        sqlx::query(
            "UPDATE rollcalls SET status = 'missed' WHERE alert_id = $1 AND status = 'open'",
        )
        .bind(&alert.id)
        .execute(&mut *connection)
        .await?;
    }
    timeline(
        connection,
        alert,
        now,
        "alert.resolved",
        None,
        json!({ "resolution": resolution }),
    )
    .await
}

async fn cancel_pending(
    connection: &mut sqlx::AnyConnection,
    alert_id: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE push_outbox SET status = 'cancelled' WHERE alert_id = $1 AND status = 'pending'",
    )
    .bind(alert_id)
    .execute(connection)
    .await?;
    Ok(())
}

/// Resolves the open alerts that `filter` (which appends to a WHERE clause) selects.
async fn resolve_where(
    connection: &mut sqlx::AnyConnection,
    filter: impl FnOnce(&mut Sql),
    resolution: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    let mut select = Sql::new(&format!(
        "SELECT {} FROM alerts WHERE resolved_at IS NULL AND acknowledged_at IS NULL AND ",
        Alert::COLUMNS
    ));
    filter(&mut select);
    let open = select.query().fetch_all(&mut *connection).await?;
    for row in &open {
        let alert = Alert::from_row(row)?;
        resolve_alert(connection, &alert, resolution, now).await?;
    }
    Ok(())
}

async fn resolve_key(
    connection: &mut sqlx::AnyConnection,
    key: String,
    resolution: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    let filter = |q: &mut Sql| {
        q.push("dedupe_key = ").bind(key);
    };
    resolve_where(connection, filter, resolution, now).await
}

/// Called by the projection, in the change's transaction: raises what the new state of a
/// record calls for, and resolves what it has settled. True if it raised an alert.
pub async fn after_projection(
    connection: &mut sqlx::AnyConnection,
    projection: &Projection,
    now: i64,
    queued: &mut Vec<Queued>,
) -> Result<bool, sqlx::Error> {
    let id = projection.document_id.to_string();
    let mut raised = false;
    if let Some(incident) = &projection.incident {
        raised |= incident_alerts(connection, &id, projection, incident, now, queued).await?;
    }
    if let Some((unit_id, _, report)) = &projection.daily_report {
        let key = format!("daily_report:{unit_id}:{}", report.date);
        resolve_key(connection, key, "submitted", now).await?;
    }
    // A holiday roster is due at the superior office 3 days before it starts (D3).
    if let Some((unit_id, classified, roster)) = &projection.roster
        && roster.holiday
        && let Some(due_at) = roster.due_at.or_else(|| {
            let starts = roster.shifts.iter().map(|shift| shift.start).min()?;
            Some(starts - HOLIDAY_ROSTER_AHEAD_MS)
        })
    {
        let key = format!("holiday_roster:{id}");
        if roster.submitted_at.is_some() {
            resolve_key(connection, key, "submitted", now).await?;
        } else {
            let alert = NewAlert {
                kind: "holiday_roster",
                dedupe_key: key,
                document_id: Some(id.clone()),
                unit_id: unit_id.clone(),
                classified: *classified,
                grade: None,
                title: format!("Holiday roster due: {}", roster.title),
                steps: policy::holiday_roster_steps(),
                due_at: Some(due_at),
                responsible: None,
            };
            raised |= raise(connection, alert, now, queued).await?;
        }
    }
    Ok(raised)
}

async fn incident_alerts(
    connection: &mut sqlx::AnyConnection,
    id: &str,
    projection: &Projection,
    incident: &crate::projection::Incident,
    now: i64,
    queued: &mut Vec<Queued>,
) -> Result<bool, sqlx::Error> {
    let mut raised = false;
    let closed = incident.final_report_at.is_some();
    // The grade: a new alert when it is raised; the alert of a former grade stops.
    let grade = incident.grade.clone().unwrap_or_else(|| "blue".into());
    let other_grades = |q: &mut Sql| {
        q.push("kind = 'incident' AND document_id = ")
            .bind(id.to_owned())
            .push(" AND grade <> ")
            .bind(grade.clone());
    };
    let fresh = projection.fresh;
    if !fresh {
        resolve_where(connection, other_grades, "regraded", now).await?;
    }
    if !closed {
        let steps = policy::steps_for(connection, &incident.unit_id, &grade).await?;
        if !steps.is_empty() {
            let alert = NewAlert {
                kind: "incident",
                dedupe_key: format!("incident:{id}:{grade}"),
                document_id: Some(id.to_owned()),
                unit_id: incident.unit_id.clone(),
                classified: incident.classified,
                grade: Some(grade.clone()),
                title: incident.title.clone(),
                steps,
                due_at: None,
                responsible: None,
            };
            raised |= raise(connection, alert, now, queued).await?;
        }
    }

    // Instructions addressed to someone (D14), when written by a leader from their own device.
    for (position, instruction) in projection.instructions.iter().enumerate() {
        let (Some(to), Some(by), Some(actor)) = (
            &instruction.to_user,
            &instruction.by_user,
            &instruction.by_actor,
        ) else {
            continue;
        };
        let key = format!("instruction:{id}:{position}:{}", instruction.at);
        if instruction.done {
            if fresh {
                continue;
            }
            resolve_key(connection, key, "done", now).await?;
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
            kind: "instruction",
            dedupe_key: key,
            document_id: Some(id.to_owned()),
            unit_id: incident.unit_id.clone(),
            classified: incident.classified,
            grade: incident.grade.clone(),
            title: format!("Instruction on {}: {}", incident.title, instruction.text),
            steps: policy::instruction_steps(to, incident.grade.as_deref()),
            due_at: None,
            responsible: None,
        };
        raised |= raise(connection, alert, now, queued).await?;
    }

    // Reporting deadlines (D11, D12).
    if closed {
        let deadlines = |q: &mut Sql| {
            q.push("kind IN ('first_report', 'follow_up') AND document_id = ")
                .bind(id.to_owned());
        };
        if !fresh {
            resolve_where(connection, deadlines, "closed", now).await?;
        }
        return Ok(raised);
    }
    let responsible = projection.created_by.clone();
    match (incident.known_at, incident.first_report_at) {
        (Some(known_at), None) => {
            let alert = NewAlert {
                kind: "first_report",
                dedupe_key: format!("first_report:{id}"),
                document_id: Some(id.to_owned()),
                unit_id: incident.unit_id.clone(),
                classified: incident.classified,
                grade: incident.grade.clone(),
                title: format!("First report due: {}", incident.title),
                steps: policy::deadline_steps(),
                due_at: Some(known_at + zhiban_records::FIRST_REPORT_WITHIN_MS),
                responsible,
            };
            raised |= raise(connection, alert, now, queued).await?;
        }
        (_, Some(first)) => {
            // The k-th follow-up is due k × 2 h after the first report; earlier ones are met.
            let next = incident.follow_ups.len() as i64 + 1;
            let met = |q: &mut Sql| {
                q.push("document_id = ")
                    .bind(id.to_owned())
                    .push(" AND (kind = 'first_report' OR (kind = 'follow_up' AND dedupe_key <> ")
                    .bind(format!("follow_up:{id}:{next}"))
                    .push("))");
            };
            if !fresh {
                resolve_where(connection, met, "met", now).await?;
            }
            let alert = NewAlert {
                kind: "follow_up",
                dedupe_key: format!("follow_up:{id}:{next}"),
                document_id: Some(id.to_owned()),
                unit_id: incident.unit_id.clone(),
                classified: incident.classified,
                grade: incident.grade.clone(),
                title: format!("Follow-up report {next} due: {}", incident.title),
                steps: policy::deadline_steps(),
                due_at: Some(first + next * zhiban_records::FOLLOW_UP_EVERY_MS),
                responsible,
            };
            raised |= raise(connection, alert, now, queued).await?;
        }
        (None, None) => {}
    }
    Ok(raised)
}
