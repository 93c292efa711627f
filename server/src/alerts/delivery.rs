//! Sends the push outbox. Rows queued by this node arrive over a channel right after their
//! commit and are sent at once; rows whose lease ran out (a crash) or whose retry is due are
//! claimed from the table. Every attempt lands on the timeline; 404/410 removes the
//! subscription; 429/5xx retries with backoff.

use std::time::Duration;

use serde_json::json;
use sqlx::Row;
use tokio::sync::mpsc;
use web_push::Urgency;

use crate::AppState;
use crate::push::{Outcome, Subscription, SubscriptionInfo};

/// One push to send, as committed to the outbox.
#[derive(Debug, Clone)]
pub struct Queued {
    pub outbox_id: i64,
    pub alert_id: String,
    pub document_id: Option<String>,
    pub subscription: Subscription,
    pub payload: String,
    pub urgency: Urgency,
    pub ttl: u32,
    pub attempts: i64,
}

/// Outbox rows this node is sending right now: not claimed again while in flight, even if
/// their lease runs out meanwhile (the clock may jump).
#[derive(Default)]
pub struct InFlight(std::sync::Mutex<std::collections::HashSet<i64>>);

impl InFlight {
    fn start(&self, id: i64) -> bool {
        self.0.lock().expect("in-flight lock").insert(id)
    }

    fn done(&self, id: i64) {
        self.0.lock().expect("in-flight lock").remove(&id);
    }
}

/// Attempts before a push is given up; the alert's repeats and escalation go on regardless.
const MAX_ATTEMPTS: i64 = 8;

pub fn urgency_name(urgency: Urgency) -> &'static str {
    match urgency {
        Urgency::VeryLow => "very-low",
        Urgency::Low => "low",
        Urgency::Normal => "normal",
        Urgency::High => "high",
    }
}

fn urgency_from(name: &str) -> Urgency {
    match name {
        "very-low" => Urgency::VeryLow,
        "low" => Urgency::Low,
        "high" => Urgency::High,
        _ => Urgency::Normal,
    }
}

/// Sends everything that arrives on `queue` until shutdown, each push in its own task.
pub async fn run(state: AppState, mut queue: mpsc::UnboundedReceiver<Queued>) {
    loop {
        let queued = tokio::select! {
            queued = queue.recv() => match queued {
                Some(queued) => queued,
                None => return,
            },
            () = state.shutdown.cancelled() => return,
        };
        if !state.sending.start(queued.outbox_id) {
            continue;
        }
        let state_for_task = state.clone();
        state.tasks.spawn(async move {
            let id = queued.outbox_id;
            send(&state_for_task, queued).await;
            state_for_task.sending.done(id);
        });
    }
}

async fn send(state: &AppState, queued: Queued) {
    let outcome = state
        .push
        .send(
            &queued.subscription,
            queued.payload.as_bytes(),
            queued.urgency,
            queued.ttl,
        )
        .await;
    if let Err(error) = record(state, &queued, &outcome).await {
        // The row stays pending under its lease; it is sent again when the lease runs out.
        tracing::error!(%error, outbox_id = queued.outbox_id, "cannot record a push attempt");
    }
}

async fn record(state: &AppState, queued: &Queued, outcome: &Outcome) -> Result<(), sqlx::Error> {
    let now = state.clock.now_ms();
    let attempts = queued.attempts + 1;
    let mut tx = state.pool.begin().await?;
    let (event, detail) = match outcome {
        Outcome::Delivered => {
            sqlx::query(
                "UPDATE push_outbox SET status = 'delivered', attempts = $1, delivered_at = $2 \
                 WHERE id = $3",
            )
            .bind(attempts)
            .bind(now)
            .bind(queued.outbox_id)
            .execute(&mut *tx)
            .await?;
            ("push.delivered", json!({}))
        }
        Outcome::Retry { after, reason } if attempts < MAX_ATTEMPTS => {
            let backoff = after.unwrap_or_else(|| backoff(attempts));
            let next = now + backoff.as_millis() as i64;
            sqlx::query(
                "UPDATE push_outbox SET attempts = $1, next_attempt_at = $2, last_error = $3 \
                 WHERE id = $4 AND status = 'pending'",
            )
            .bind(attempts)
            .bind(next)
            .bind(reason)
            .bind(queued.outbox_id)
            .execute(&mut *tx)
            .await?;
            (
                "push.retry",
                json!({"reason": reason, "next_attempt_at": next}),
            )
        }
        Outcome::Retry { reason, .. } => {
            failed(&mut tx, queued, attempts, "rejected", reason).await?;
            ("push.failed", json!({"reason": reason, "gave_up": true}))
        }
        Outcome::Gone => {
            failed(&mut tx, queued, attempts, "gone", "subscription gone").await?;
            sqlx::query("DELETE FROM push_subscriptions WHERE id = $1")
                .bind(&queued.subscription.id)
                .execute(&mut *tx)
                .await?;
            ("push.gone", json!({"subscription_removed": true}))
        }
        Outcome::Rejected { reason } => {
            failed(&mut tx, queued, attempts, "rejected", reason).await?;
            ("push.failed", json!({"reason": reason}))
        }
    };
    let mut detail = detail;
    detail["outbox_id"] = json!(queued.outbox_id);
    detail["device_id"] = json!(queued.subscription.device_id);
    detail["attempt"] = json!(attempts);
    super::timeline_entry(
        &mut tx,
        &queued.alert_id,
        queued.document_id.as_deref(),
        now,
        event,
        Some(&queued.subscription.user_id),
        detail,
    )
    .await?;
    tx.commit().await?;
    match outcome {
        Outcome::Delivered => {
            tracing::debug!(outbox_id = queued.outbox_id, "push delivered")
        }
        other => tracing::warn!(outbox_id = queued.outbox_id, ?other, "push not delivered"),
    }
    Ok(())
}

async fn failed(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    queued: &Queued,
    attempts: i64,
    status: &str,
    reason: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE push_outbox SET status = $1, attempts = $2, last_error = $3 WHERE id = $4")
        .bind(status)
        .bind(attempts)
        .bind(reason)
        .bind(queued.outbox_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// 2 s, 4 s, … up to 5 minutes.
fn backoff(attempts: i64) -> Duration {
    Duration::from_secs((1u64 << attempts.clamp(1, 8) as u32).min(300))
}

/// Claims pending pushes that are due (retries, and rows whose sender's lease ran out), leasing
/// them to this node. PostgreSQL skips rows another node is claiming at the same moment.
pub async fn claim_due(
    state: &AppState,
    now: i64,
    sqlite: bool,
) -> Result<Vec<Queued>, sqlx::Error> {
    let lock = if sqlite {
        ""
    } else {
        " FOR UPDATE SKIP LOCKED"
    };
    let text = format!(
        "UPDATE push_outbox SET next_attempt_at = $1 WHERE id IN (SELECT id FROM push_outbox \
         WHERE status = 'pending' AND next_attempt_at <= $2 ORDER BY next_attempt_at LIMIT 64{lock}) \
         RETURNING id, alert_id, subscription_id, payload, urgency, ttl, attempts"
    );
    let mut tx = state.pool.begin().await?;
    let rows = sqlx::query(sqlx::AssertSqlSafe(text))
        .bind(now + super::LEASE_MS)
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
    let mut claimed = Vec::with_capacity(rows.len());
    for row in &rows {
        let subscription_id: String = row.try_get("subscription_id")?;
        let alert_id: String = row.try_get("alert_id")?;
        let subscription = sqlx::query(
            "SELECT s.id, s.user_id, s.device_id, s.endpoint, s.p256dh, s.auth, \
             s.expiration_time, d.revoked_at FROM push_subscriptions s \
             JOIN devices d ON d.id = s.device_id WHERE s.id = $1",
        )
        .bind(&subscription_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(subscription) = subscription.filter(|row| {
            row.try_get::<Option<i64>, _>("revoked_at")
                .ok()
                .flatten()
                .is_none()
        }) else {
            sqlx::query("UPDATE push_outbox SET status = 'gone' WHERE id = $1")
                .bind(row.try_get::<i64, _>("id")?)
                .execute(&mut *tx)
                .await?;
            continue;
        };
        let document_id: Option<String> =
            sqlx::query_scalar("SELECT document_id FROM alerts WHERE id = $1")
                .bind(&alert_id)
                .fetch_one(&mut *tx)
                .await?;
        claimed.push(Queued {
            outbox_id: row.try_get("id")?,
            alert_id,
            document_id,
            subscription: Subscription {
                id: subscription.try_get("id")?,
                user_id: subscription.try_get("user_id")?,
                device_id: subscription.try_get("device_id")?,
                info: SubscriptionInfo::new(
                    subscription.try_get::<String, _>("endpoint")?,
                    subscription.try_get::<String, _>("p256dh")?,
                    subscription.try_get::<String, _>("auth")?,
                ),
                expiration_time: subscription.try_get("expiration_time")?,
            },
            payload: row.try_get("payload")?,
            urgency: urgency_from(&row.try_get::<String, _>("urgency")?),
            ttl: u32::try_from(row.try_get::<i64, _>("ttl")?).unwrap_or(60),
            attempts: row.try_get("attempts")?,
        });
    }
    tx.commit().await?;
    Ok(claimed)
}
