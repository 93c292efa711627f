//! The timer worker: runs alert steps when due (repeats, escalation, deadline reminders,
//! roll-call windows), raises missing holiday daily reports (D15), and hands due retries to
//! delivery. It sleeps until the earliest due time on the injected clock, or until woken.

use std::time::Duration;

use chrono::{FixedOffset, TimeZone, Timelike};
use sqlx::Row;
use tokio::sync::mpsc;

use super::{Alert, NewAlert, Queued, delivery, policy, raise, run_step};
use crate::AppState;

/// Looks again at least this often even when nothing is due (new holidays, other nodes' rows).
const IDLE_CHECK: Duration = Duration::from_secs(30);

/// Starts delivery and the timer worker; both stop on shutdown.
pub fn spawn(state: &AppState, queue: mpsc::UnboundedReceiver<Queued>) {
    state.tasks.spawn(delivery::run(state.clone(), queue));
    state.tasks.spawn(run(state.clone()));
}

async fn run(state: AppState) {
    let sqlite = state.storage.backend().sqlite;
    let mut failures = 0u32;
    loop {
        let now = state.clock.now_ms();
        let next = match tick(&state, now, sqlite).await {
            Ok(next) => {
                failures = 0;
                next
            }
            Err(error) => {
                failures += 1;
                tracing::error!(%error, failures, "alert worker failed; retrying");
                None
            }
        };
        let wake_at = next
            .unwrap_or(i64::MAX)
            .min(now + IDLE_CHECK.as_millis() as i64);
        let backoff = Duration::from_millis(100 * u64::from(failures.min(50)));
        tokio::select! {
            () = state.clock.sleep_until(wake_at) => {}
            () = state.alerts_wake.notified() => {}
            () = state.shutdown.cancelled() => return,
        }
        if failures > 0 {
            tokio::time::sleep(backoff).await;
        }
    }
}

/// One round; returns when the next thing is due.
async fn tick(state: &AppState, now: i64, sqlite: bool) -> Result<Option<i64>, sqlx::Error> {
    // Steps run in batches, each batch in one transaction with the outbox rows it queues.
    loop {
        let (queued, more) = run_due_steps(state, now, sqlite).await?;
        for item in queued {
            let _ = state.alert_queue.send(item);
        }
        if !more {
            break;
        }
    }
    daily_reports(state, now).await?;
    for item in delivery::claim_due(state, now, sqlite).await? {
        let _ = state.alert_queue.send(item);
    }
    let next_step: Option<i64> = sqlx::query_scalar(
        "SELECT MIN(next_at) FROM alerts WHERE next_at IS NOT NULL \
         AND acknowledged_at IS NULL AND resolved_at IS NULL",
    )
    .fetch_one(&state.pool)
    .await?;
    let next_retry: Option<i64> =
        sqlx::query_scalar("SELECT MIN(next_attempt_at) FROM push_outbox WHERE status = 'pending'")
            .fetch_one(&state.pool)
            .await?;
    Ok([next_step, next_retry].into_iter().flatten().min())
}

const STEPS_PER_BATCH: i64 = 50;

async fn run_due_steps(
    state: &AppState,
    now: i64,
    sqlite: bool,
) -> Result<(Vec<Queued>, bool), sqlx::Error> {
    // Looking is a read; the write lock is taken only when there is something to run, so an
    // idle tick does not hold up reports being committed.
    let due: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM alerts WHERE next_at <= $1 AND acknowledged_at IS NULL \
         AND resolved_at IS NULL LIMIT 1",
    )
    .bind(now)
    .fetch_optional(&state.pool)
    .await?;
    if due.is_none() {
        return Ok((Vec::new(), false));
    }
    let mut tx = if sqlite {
        state.pool.begin_with("BEGIN IMMEDIATE").await?
    } else {
        state.pool.begin().await?
    };
    let lock = if sqlite {
        ""
    } else {
        " FOR UPDATE SKIP LOCKED"
    };
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {} FROM alerts WHERE next_at <= $1 AND acknowledged_at IS NULL \
         AND resolved_at IS NULL ORDER BY next_at LIMIT {STEPS_PER_BATCH}{lock}",
        Alert::COLUMNS
    )))
    .bind(now)
    .fetch_all(&mut *tx)
    .await?;
    let mut queued = Vec::new();
    for row in &rows {
        let mut alert = Alert::from_row(row)?;
        run_step(&mut tx, &mut alert, now, &mut queued).await?;
    }
    tx.commit().await?;
    Ok((queued, rows.len() as i64 == STEPS_PER_BATCH))
}

/// On holidays (a unit has a holiday shift running), each unit's daily or zero report is due
/// at the configured local hour; one missing then raises an alert, resolved when it arrives.
async fn daily_reports(state: &AppState, now: i64) -> Result<(), sqlx::Error> {
    let settings = &state.settings;
    let Some(offset) = FixedOffset::east_opt(settings.utc_offset_hours * 3600) else {
        return Ok(());
    };
    let Some(local) = offset.timestamp_millis_opt(now).single() else {
        return Ok(());
    };
    if local.hour() < settings.daily_report_hour {
        return Ok(());
    }
    let day = local.format("%Y-%m-%d").to_string();
    let rows = sqlx::query(
        "SELECT DISTINCT s.unit_id FROM shifts s WHERE s.kind = 'holiday' \
         AND s.start_at <= $1 AND s.end_at > $1 AND NOT EXISTS (SELECT 1 FROM daily_reports r \
         WHERE r.unit_id = s.unit_id AND r.day = $2) AND NOT EXISTS (SELECT 1 FROM alerts a \
         WHERE a.dedupe_key = 'daily_report:' || s.unit_id || ':' || $2)",
    )
    .bind(now)
    .bind(&day)
    .fetch_all(&state.pool)
    .await?;
    for row in &rows {
        let unit_id: String = row.try_get("unit_id")?;
        let mut tx = state.pool.begin().await?;
        let mut queued = Vec::new();
        let alert = NewAlert {
            kind: "daily_report",
            dedupe_key: format!("daily_report:{unit_id}:{day}"),
            document_id: None,
            unit_id,
            classified: false,
            grade: None,
            title: format!(
                "Holiday daily report for {day} not yet sent (a zero report if nothing happened)"
            ),
            steps: policy::daily_report_steps(),
            due_at: None,
            responsible: None,
        };
        raise(&mut tx, alert, now, &mut queued).await?;
        tx.commit().await?;
        for item in queued {
            let _ = state.alert_queue.send(item);
        }
    }
    Ok(())
}
