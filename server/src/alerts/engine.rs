//! Raising an alert (once per `dedupe_key`), running its current step (targets →
//! `alert_targets`, one outbox row per subscription, the timeline, the next step or repeat),
//! and resolving it (a deadline met, a roll-call answered or missed, a grade changed). All on
//! the caller's transaction; each returns the pushes it queued instead of sending them.

use std::collections::HashSet;

use serde_json::{Value, json};
use zhiban_api::{AlertKind, Resolution, Step};

use super::{Alert, NewAlert, Raised, policy, targets};
use crate::db::{Sql, savepoint};
use crate::outbox::{self, OutboxPush};
use crate::push::subscriptions_for_users;
use crate::timeline;

/// Raises an alert unless one with its key exists; runs its first step at once when due.
pub async fn raise(
    connection: &mut sqlx::AnyConnection,
    new: NewAlert,
    now: i64,
) -> Result<Raised, sqlx::Error> {
    let steps: Vec<Step> = new
        .steps
        .into_iter()
        .map(|mut step| {
            step.targets = step
                .targets
                .into_iter()
                .filter_map(|target| match target {
                    zhiban_api::Target::Responsible => new
                        .responsible
                        .as_ref()
                        .map(|user| zhiban_api::Target::User(user.as_str().into())),
                    other => Some(other),
                })
                .collect();
            step
        })
        .collect();
    let mut alert = Alert {
        id: uuid::Uuid::now_v7().to_string(),
        kind: new.kind,
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
    .bind(alert.kind.as_str())
    .bind(&alert.dedupe_key)
    .bind(alert.document_id.as_deref())
    .bind(&alert.unit_id)
    .bind(i64::from(alert.classified))
    .bind(alert.grade.map(|grade| grade.as_str()))
    .bind(&alert.title)
    .bind(serde_json::to_string(&alert.steps).unwrap_or_else(|_| "[]".into()))
    .bind(now)
    .bind(alert.due_at)
    .bind(next_at)
    .execute(&mut *connection)
    .await?;
    if inserted.rows_affected() == 0 {
        return Ok(Raised::default());
    }
    append(
        connection,
        &alert,
        now,
        "alert.raised",
        None,
        json!({"kind": alert.kind, "grade": alert.grade, "due_at": alert.due_at}),
    )
    .await?;
    tracing::info!(alert_id = %alert.id, kind = alert.kind.as_str(), grade = ?alert.grade, "alert raised");
    let mut raised = Raised {
        pushes: Vec::new(),
        wake: true,
    };
    if next_at.is_some_and(|at| at <= now) {
        raised.pushes = run_step(connection, &mut alert, now).await?;
    }
    Ok(raised)
}

/// Runs the alert's current step: finds its targets, queues a push to each of their devices,
/// and moves the alert on (a repeat, the next step, or done).
pub async fn run_step(
    connection: &mut sqlx::AnyConnection,
    alert: &mut Alert,
    now: i64,
) -> Result<Vec<OutboxPush>, sqlx::Error> {
    // Steps overtaken by a later one that is due by now (the server was down, the clock
    // jumped, a deadline raised late) give way to it: later steps reach everyone earlier ones
    // did and more.
    while alert.step_at(alert.step + 1).is_some_and(|at| at <= now) {
        alert.step += 1;
        alert.repeats = 0;
    }
    let Some(step) = alert.steps.get(alert.step).cloned() else {
        set_next(connection, alert, None).await?;
        return Ok(Vec::new());
    };
    let reached = targets::resolve(connection, alert, &step.targets, now).await?;
    let step_number = i64::try_from(alert.step).unwrap_or(i64::MAX);
    for user in &reached.users {
        sqlx::query(
            "INSERT INTO alert_targets (alert_id, user_id, step, first_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (alert_id, user_id) DO NOTHING",
        )
        .bind(&alert.id)
        .bind(user)
        .bind(step_number)
        .bind(now)
        .execute(&mut *connection)
        .await?;
    }
    let subscriptions = subscriptions_for_users(connection, &reached.users, now).await?;
    let delivery = policy::urgency_and_ttl(alert.grade, alert.kind);
    let payload = payload(alert, &step).to_string();
    let mut pushes = Vec::with_capacity(subscriptions.len());
    for subscription in &subscriptions {
        pushes.push(
            outbox::enqueue(
                connection,
                (&alert.id, alert.document_id.as_deref()),
                step_number,
                subscription,
                &payload,
                delivery,
                now,
            )
            .await?,
        );
    }
    let with_push: HashSet<&str> = subscriptions
        .iter()
        .map(|subscription| subscription.user_id.as_str())
        .collect();
    let without_push: Vec<&String> = reached
        .users
        .iter()
        .filter(|user| !with_push.contains(user.as_str()))
        .collect();
    append(
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
            "step": alert.step, "repeat": alert.repeats, "targets": reached.users,
            "devices": subscriptions.len(), "without_push": without_push,
            "fallbacks": reached.fallbacks, "ignored": reached.ignored,
        }),
    )
    .await?;
    if step.expire {
        set_next(connection, alert, None).await?;
        resolve_alert(connection, alert, Resolution::Missed, now).await?;
        return Ok(pushes);
    }
    // Repeat this step until the next one is due; then escalate.
    let next_step_at = alert.step_at(alert.step + 1);
    let repeat_at = step
        .repeat_every_secs
        .map(|every| now.saturating_add(every.saturating_mul(1000)));
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
            set_next(connection, alert, Some(at)).await?;
        }
        None => set_next(connection, alert, None).await?,
    }
    Ok(pushes)
}

pub(crate) async fn set_next(
    connection: &mut sqlx::AnyConnection,
    alert: &Alert,
    next_at: Option<i64>,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE alerts SET step = $1, repeats = $2, next_at = $3 WHERE id = $4")
        .bind(i64::try_from(alert.step).unwrap_or(i64::MAX))
        .bind(alert.repeats)
        .bind(next_at)
        .bind(&alert.id)
        .execute(connection)
        .await?;
    Ok(())
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
pub async fn append(
    connection: &mut sqlx::AnyConnection,
    alert: &Alert,
    at: i64,
    event: &str,
    user_id: Option<&str>,
    detail: Value,
) -> Result<(), sqlx::Error> {
    timeline::append(
        connection,
        timeline::Event {
            alert_id: &alert.id,
            document_id: alert.document_id.as_deref(),
            at,
            event,
            user_id,
            detail,
        },
    )
    .await
}

/// Ends an alert without an acknowledgement: a deadline met, a roll-call answered or
/// missed, an incident regraded. Pending pushes are cancelled.
pub async fn resolve_alert(
    connection: &mut sqlx::AnyConnection,
    alert: &Alert,
    resolution: Resolution,
    now: i64,
) -> Result<(), sqlx::Error> {
    let updated = sqlx::query(
        "UPDATE alerts SET resolved_at = $1, resolution = $2, next_at = NULL \
         WHERE id = $3 AND resolved_at IS NULL",
    )
    .bind(now)
    .bind(resolution.as_str())
    .bind(&alert.id)
    .execute(&mut *connection)
    .await?;
    if updated.rows_affected() == 0 {
        return Ok(());
    }
    outbox::cancel_pending(connection, &alert.id).await?;
    if alert.kind == AlertKind::Rollcall && resolution == Resolution::Missed {
        sqlx::query(
            "UPDATE rollcalls SET status = 'missed' WHERE alert_id = $1 AND status = 'open'",
        )
        .bind(&alert.id)
        .execute(&mut *connection)
        .await?;
    }
    append(
        connection,
        alert,
        now,
        "alert.resolved",
        None,
        json!({ "resolution": resolution }),
    )
    .await
}

/// Resolves the open alerts that `filter` (which appends to a WHERE clause) selects.
pub async fn resolve_where(
    connection: &mut sqlx::AnyConnection,
    filter: impl FnOnce(&mut Sql),
    resolution: Resolution,
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

pub async fn resolve_key(
    connection: &mut sqlx::AnyConnection,
    key: String,
    resolution: Resolution,
    now: i64,
) -> Result<(), sqlx::Error> {
    let filter = |q: &mut Sql| {
        q.push("dedupe_key = ").bind(key);
    };
    resolve_where(connection, filter, resolution, now).await
}

/// Something the server could not process, for the unit's admins: once per `key` (a record
/// and a reason, an alert), never again for the same. `document`: the record and whether it
/// is classified.
pub async fn problem(
    connection: &mut sqlx::AnyConnection,
    key: &str,
    unit_id: &str,
    document: Option<(&str, bool)>,
    title: String,
    now: i64,
) -> Result<Raised, sqlx::Error> {
    let alert = NewAlert {
        kind: AlertKind::Problem,
        dedupe_key: format!("problem:{key}"),
        document_id: document.map(|(id, _)| id.to_owned()),
        unit_id: unit_id.to_owned(),
        // About a classified record, only cleared admins hear of it (D18).
        classified: document.is_some_and(|(_, classified)| classified),
        grade: None,
        title: title.chars().take(300).collect(),
        steps: policy::problem_steps(),
        due_at: None,
        responsible: None,
    };
    // Telling the admins must not become a second way to fail.
    match savepoint(connection, async |savepoint| {
        raise(savepoint, alert, now).await
    })
    .await?
    {
        Ok(raised) => Ok(raised),
        Err(error) => {
            tracing::error!(%error, key, "cannot alert the admins of a problem");
            Ok(Raised::default())
        }
    }
}
