//! The push outbox: one row per push to send, written in the same transaction as the alert
//! step that calls for it. Rows queued by this node arrive over a channel right after their
//! commit and are sent at once; rows whose lease ran out (a crash) or whose retry is due are
//! claimed from the table by the alert worker. Every attempt lands on the timeline; 404/410
//! removes the subscription; 429/5xx retries with backoff. Knows `push` and `timeline` only.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use sqlx::Row;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use web_push::Urgency;

use crate::clock::Clock;
use crate::db::{Backend, Pool};
use crate::push::{Outcome, Sender, Subscription, SubscriptionInfo};

/// How long a node owns an outbox row it is sending before another may take it over.
pub const LEASE_MS: i64 = 60_000;

/// Attempts before a push is given up; the alert's repeats and escalation go on regardless.
const MAX_ATTEMPTS: i64 = 8;

/// One push to send, as committed to the outbox.
#[derive(Debug, Clone)]
pub struct OutboxPush {
    pub outbox_id: i64,
    pub alert_id: String,
    pub document_id: Option<String>,
    pub subscription: Subscription,
    pub payload: String,
    pub urgency: Urgency,
    pub ttl: u32,
    pub attempts: i64,
}

/// Where committed pushes go to be sent now.
pub type Queue = mpsc::UnboundedSender<OutboxPush>;

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

/// Outbox rows this node is sending right now: not claimed again while in flight, even if
/// their lease runs out meanwhile (the clock may jump).
#[derive(Default)]
struct InFlight(Mutex<HashSet<i64>>);

impl InFlight {
    fn start(&self, id: i64) -> bool {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).insert(id)
    }

    fn done(&self, id: i64) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
    }
}

/// What sending needs: the database for the record of each attempt, the clock, the sender.
#[derive(Clone)]
pub struct Delivery {
    pub pool: Pool,
    pub clock: Clock,
    pub sender: Sender,
    in_flight: Arc<InFlight>,
}

impl Delivery {
    pub fn new(pool: Pool, clock: Clock, sender: Sender) -> Self {
        Self {
            pool,
            clock,
            sender,
            in_flight: Arc::default(),
        }
    }

    /// Sends everything that arrives on `queue` until shutdown, each push in its own task.
    pub async fn run(
        self,
        mut queue: mpsc::UnboundedReceiver<OutboxPush>,
        tasks: TaskTracker,
        shutdown: CancellationToken,
    ) {
        loop {
            let push = tokio::select! {
                push = queue.recv() => match push {
                    Some(push) => push,
                    None => return,
                },
                () = shutdown.cancelled() => return,
            };
            if !self.in_flight.start(push.outbox_id) {
                continue;
            }
            let delivery = self.clone();
            tasks.spawn(async move {
                let id = push.outbox_id;
                delivery.send(push).await;
                delivery.in_flight.done(id);
            });
        }
    }

    async fn send(&self, push: OutboxPush) {
        let outcome = self
            .sender
            .send(
                &push.subscription,
                push.payload.as_bytes(),
                push.urgency,
                push.ttl,
            )
            .await;
        if let Err(error) = self.record(&push, &outcome).await {
            // The row stays pending under its lease; it is sent again when the lease runs out.
            tracing::error!(%error, outbox_id = push.outbox_id, "cannot record a push attempt");
        }
    }

    async fn record(&self, push: &OutboxPush, outcome: &Outcome) -> Result<(), sqlx::Error> {
        let now = self.clock.now_ms();
        let attempts = push.attempts.saturating_add(1);
        let mut tx = self.pool.begin().await?;
        let (event, detail) = match outcome {
            Outcome::Delivered => {
                sqlx::query(
                    "UPDATE push_outbox SET status = 'delivered', attempts = $1, \
                     delivered_at = $2 WHERE id = $3",
                )
                .bind(attempts)
                .bind(now)
                .bind(push.outbox_id)
                .execute(&mut *tx)
                .await?;
                ("push.delivered", json!({}))
            }
            Outcome::Retry { after, reason } if attempts < MAX_ATTEMPTS => {
                let backoff = after.unwrap_or_else(|| backoff(attempts));
                let next = now.saturating_add(i64::try_from(backoff.as_millis()).unwrap_or(0));
                sqlx::query(
                    "UPDATE push_outbox SET attempts = $1, next_attempt_at = $2, last_error = $3 \
                     WHERE id = $4 AND status = 'pending'",
                )
                .bind(attempts)
                .bind(next)
                .bind(reason)
                .bind(push.outbox_id)
                .execute(&mut *tx)
                .await?;
                (
                    "push.retry",
                    json!({"reason": reason, "next_attempt_at": next}),
                )
            }
            Outcome::Retry { reason, .. } => {
                failed(&mut tx, push, attempts, "rejected", reason).await?;
                ("push.failed", json!({"reason": reason, "gave_up": true}))
            }
            Outcome::Gone => {
                failed(&mut tx, push, attempts, "gone", "subscription gone").await?;
                sqlx::query("DELETE FROM push_subscriptions WHERE id = $1")
                    .bind(&push.subscription.id)
                    .execute(&mut *tx)
                    .await?;
                ("push.gone", json!({"subscription_removed": true}))
            }
            Outcome::Rejected { reason } => {
                failed(&mut tx, push, attempts, "rejected", reason).await?;
                ("push.failed", json!({"reason": reason}))
            }
        };
        let mut detail = detail;
        detail["outbox_id"] = json!(push.outbox_id);
        detail["device_id"] = json!(push.subscription.device_id);
        detail["attempt"] = json!(attempts);
        crate::timeline::append(
            &mut tx,
            crate::timeline::Event {
                alert_id: &push.alert_id,
                document_id: push.document_id.as_deref(),
                at: now,
                event,
                user_id: Some(&push.subscription.user_id),
                detail,
            },
        )
        .await?;
        tx.commit().await?;
        match outcome {
            Outcome::Delivered => tracing::debug!(outbox_id = push.outbox_id, "push delivered"),
            other => tracing::warn!(outbox_id = push.outbox_id, ?other, "push not delivered"),
        }
        Ok(())
    }
}

async fn failed(
    tx: &mut sqlx::AnyConnection,
    push: &OutboxPush,
    attempts: i64,
    status: &str,
    reason: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE push_outbox SET status = $1, attempts = $2, last_error = $3 WHERE id = $4")
        .bind(status)
        .bind(attempts)
        .bind(reason)
        .bind(push.outbox_id)
        .execute(tx)
        .await?;
    Ok(())
}

/// 2 s, 4 s, … up to 5 minutes.
fn backoff(attempts: i64) -> Duration {
    let exponent = u32::try_from(attempts.clamp(1, 8)).unwrap_or(8);
    Duration::from_secs((1u64 << exponent).min(300))
}

/// Writes one pending push, leased to this node: it sends at once; after a crash the lease
/// runs out and any node's worker sends it.
pub async fn enqueue(
    tx: &mut sqlx::AnyConnection,
    alert: (&str, Option<&str>),
    step: i64,
    subscription: &Subscription,
    payload: &str,
    (urgency, ttl): (Urgency, u32),
    now: i64,
) -> Result<OutboxPush, sqlx::Error> {
    let (alert_id, document_id) = alert;
    // The notification's own credential (see `pushed_to`): only the device this payload is
    // encrypted for can read it.
    let token = uuid::Uuid::new_v4().simple().to_string();
    let payload = match serde_json::from_str::<serde_json::Value>(payload) {
        Ok(serde_json::Value::Object(mut fields)) => {
            fields.insert(
                "push_token".into(),
                serde_json::Value::String(token.clone()),
            );
            serde_json::Value::Object(fields).to_string()
        }
        _ => payload.to_owned(),
    };
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO push_outbox (alert_id, subscription_id, user_id, step, payload, urgency, \
         ttl, status, attempts, next_attempt_at, created_at, token) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', 0, $8, $9, $10) RETURNING id",
    )
    .bind(alert_id)
    .bind(&subscription.id)
    .bind(&subscription.user_id)
    .bind(step)
    .bind(&payload)
    .bind(urgency_name(urgency))
    .bind(i64::from(ttl))
    .bind(now.saturating_add(LEASE_MS))
    .bind(now)
    .bind(&token)
    .fetch_one(tx)
    .await?;
    Ok(OutboxPush {
        outbox_id: id,
        alert_id: alert_id.to_owned(),
        document_id: document_id.map(str::to_owned),
        subscription: subscription.clone(),
        payload,
        urgency,
        ttl,
        attempts: 0,
    })
}

/// The user and device an alert was pushed to with `token` (the push's own credential), if
/// any: a notification acknowledges or reports itself shown with it, without a session.
pub async fn pushed_to(
    pool: &Pool,
    alert_id: &str,
    token: &str,
) -> Result<Option<(String, String)>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT o.user_id, s.device_id FROM push_outbox o \
         JOIN push_subscriptions s ON s.id = o.subscription_id \
         WHERE o.alert_id = $1 AND o.token = $2 LIMIT 1",
    )
    .bind(alert_id)
    .bind(token)
    .fetch_optional(pool)
    .await?;
    row.map(|row| Ok((row.try_get("user_id")?, row.try_get("device_id")?)))
        .transpose()
}

/// Cancels an alert's pushes not yet sent (it was acknowledged or resolved).
pub async fn cancel_pending(
    tx: &mut sqlx::AnyConnection,
    alert_id: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE push_outbox SET status = 'cancelled' WHERE alert_id = $1 AND status = 'pending'",
    )
    .bind(alert_id)
    .execute(tx)
    .await?;
    Ok(())
}

/// Claims pending pushes that are due (retries, and rows whose sender's lease ran out),
/// leasing them to this node. PostgreSQL skips rows another node is claiming at the same
/// moment.
pub async fn claim_due(
    pool: &Pool,
    backend: Backend,
    now: i64,
) -> Result<Vec<OutboxPush>, sqlx::Error> {
    let text = format!(
        "UPDATE push_outbox SET next_attempt_at = $1 WHERE id IN (SELECT id FROM push_outbox \
         WHERE status = 'pending' AND next_attempt_at <= $2 ORDER BY next_attempt_at LIMIT 64{}) \
         RETURNING id, alert_id, subscription_id, payload, urgency, ttl, attempts",
        backend.skip_locked()
    );
    let mut tx = pool.begin().await?;
    let rows = sqlx::query(sqlx::AssertSqlSafe(text))
        .bind(now.saturating_add(LEASE_MS))
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
        claimed.push(OutboxPush {
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
