//! The timer worker: runs alert steps when due (repeats, escalation, deadline reminders,
//! roll-call windows), raises missing holiday daily reports (D15), and hands due retries to
//! delivery. It sleeps until the earliest due time on the injected clock, or until woken.
//!
//! Each step runs in a savepoint of its batch: a step that fails for good (a bad row) is
//! rolled back alone, put off, noted on its timeline and reported to the unit's admins,
//! while every other unit's alerts go on.

use std::time::Duration;

use chrono::{FixedOffset, TimeZone, Timelike};
use serde_json::json;
use sqlx::Row;
use tokio_util::sync::CancellationToken;
use zhiban_api::AlertKind;

use super::engine::{self, raise, run_step};
use super::{Alert, NewAlert, Raised, Wake, policy};
use crate::clock::Clock;
use crate::db::{Backend, Pool, begin_write, savepoint};
use crate::outbox::{self, Queue};

/// Looks again at least this often even when nothing is due (new holidays, other nodes' rows).
const IDLE_CHECK: Duration = Duration::from_secs(30);

/// Steps run per transaction.
const STEPS_PER_BATCH: usize = 50;

/// A step that failed for good is tried again this much later.
const FAILED_STEP_RETRY_MS: i64 = 10 * 60_000;

/// What the worker needs, and nothing else.
#[derive(Clone)]
pub struct Worker {
    pub pool: Pool,
    pub backend: Backend,
    pub clock: Clock,
    /// Pushes committed by a step, to send now.
    pub queue: Queue,
    pub wake: Wake,
    /// Holiday daily reports are due at this local hour (D15)…
    pub daily_report_hour: u32,
    /// …in the offices' time zone, hours east of UTC.
    pub utc_offset_hours: i32,
}

impl Worker {
    pub async fn run(self, shutdown: CancellationToken) {
        let mut failures = 0u32;
        loop {
            let now = self.clock.now_ms();
            let next = match self.tick(now).await {
                Ok(next) => {
                    failures = 0;
                    next
                }
                Err(error) => {
                    failures = failures.saturating_add(1);
                    tracing::error!(%error, failures, "alert worker failed; retrying");
                    None
                }
            };
            let idle = i64::try_from(IDLE_CHECK.as_millis()).unwrap_or(i64::MAX);
            let wake_at = next.unwrap_or(i64::MAX).min(now.saturating_add(idle));
            let backoff = Duration::from_millis(100 * u64::from(failures.min(50)));
            tokio::select! {
                () = self.clock.sleep_until(wake_at) => {}
                () = self.wake.notified() => {}
                () = shutdown.cancelled() => return,
            }
            if failures > 0 {
                tokio::time::sleep(backoff).await;
            }
        }
    }

    fn hand_over(&self, raised: Raised) {
        for push in raised.pushes {
            let _ = self.queue.send(push);
        }
    }

    /// One round; returns when the next thing is due.
    async fn tick(&self, now: i64) -> Result<Option<i64>, sqlx::Error> {
        loop {
            let (raised, more) = self.run_due_steps(now).await?;
            self.hand_over(raised);
            if !more {
                break;
            }
        }
        self.daily_reports(now).await?;
        for push in outbox::claim_due(&self.pool, self.backend, now).await? {
            let _ = self.queue.send(push);
        }
        let next_step: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(next_at) FROM alerts WHERE next_at IS NOT NULL \
             AND acknowledged_at IS NULL AND resolved_at IS NULL",
        )
        .fetch_one(&self.pool)
        .await?;
        let next_retry: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(next_attempt_at) FROM push_outbox WHERE status = 'pending'",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok([next_step, next_retry].into_iter().flatten().min())
    }

    /// Runs up to a batch of due steps in one transaction; whether more may be due.
    async fn run_due_steps(&self, now: i64) -> Result<(Raised, bool), sqlx::Error> {
        // Looking is a read; the write lock is taken only when there is something to run, so
        // an idle tick does not hold up reports being committed.
        let due: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM alerts WHERE next_at <= $1 AND acknowledged_at IS NULL \
             AND resolved_at IS NULL LIMIT 1",
        )
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        if due.is_none() {
            return Ok((Raised::default(), false));
        }
        let mut tx = begin_write(&self.pool).await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {} FROM alerts WHERE next_at <= $1 AND acknowledged_at IS NULL \
             AND resolved_at IS NULL ORDER BY next_at LIMIT {STEPS_PER_BATCH}{}",
            Alert::COLUMNS,
            self.backend.skip_locked(),
        )))
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        let mut raised = Raised::default();
        for row in &rows {
            let step = savepoint(&mut tx, async |savepoint| {
                let mut alert = Alert::from_row(row)?;
                run_step(savepoint, &mut alert, now).await
            })
            .await?;
            match step {
                Ok(pushes) => raised.pushes.extend(pushes),
                Err(error) => raised.add(step_failed(&mut tx, row, &error, now).await?),
            }
        }
        tx.commit().await?;
        Ok((raised, rows.len() == STEPS_PER_BATCH))
    }

    /// On holidays (a unit has a holiday shift running), each unit's daily or zero report is
    /// due at the configured local hour; one missing then raises an alert, resolved when it
    /// arrives.
    async fn daily_reports(&self, now: i64) -> Result<(), sqlx::Error> {
        let Some(offset) = FixedOffset::east_opt(self.utc_offset_hours.saturating_mul(3600)) else {
            return Ok(());
        };
        let Some(local) = offset.timestamp_millis_opt(now).single() else {
            return Ok(());
        };
        if local.hour() < self.daily_report_hour {
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
        .fetch_all(&self.pool)
        .await?;
        for row in &rows {
            let unit_id: String = row.try_get("unit_id")?;
            let mut tx = begin_write(&self.pool).await?;
            let alert = NewAlert {
                kind: AlertKind::DailyReport,
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
            let raised = raise(&mut tx, alert, now).await?;
            tx.commit().await?;
            self.hand_over(raised);
        }
        Ok(())
    }
}

/// A step that failed for good: put off, noted on the alert's timeline, and reported to the
/// unit's admins.
async fn step_failed(
    tx: &mut sqlx::AnyConnection,
    row: &sqlx::any::AnyRow,
    error: &sqlx::Error,
    now: i64,
) -> Result<Raised, sqlx::Error> {
    let id: String = row.try_get("id")?;
    let id = id.as_str();
    tracing::error!(alert_id = %id, %error, "alert step failed; put off and reported");
    let unit_id: String = row.try_get("unit_id")?;
    let document_id: Option<String> = row.try_get("document_id")?;
    let classified = row.try_get::<i64, _>("classified")? != 0;
    sqlx::query("UPDATE alerts SET next_at = $1 WHERE id = $2")
        .bind(now.saturating_add(FAILED_STEP_RETRY_MS))
        .bind(id)
        .execute(&mut *tx)
        .await?;
    crate::timeline::append(
        tx,
        crate::timeline::Event {
            alert_id: id,
            document_id: document_id.as_deref(),
            at: now,
            event: "alert.step_failed",
            user_id: None,
            detail: json!({"reason": error.to_string(), "retry_in_ms": FAILED_STEP_RETRY_MS}),
        },
    )
    .await?;
    engine::problem(
        tx,
        &format!("alert:{id}"),
        &unit_id,
        document_id
            .as_deref()
            .map(|document| (document, classified)),
        format!("An alert could not be sent and is retried every 10 minutes: {error}"),
        now,
    )
    .await
}
