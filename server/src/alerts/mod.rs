//! Alerts that reach people (D10–D17, D23): an alert is raised in the same transaction as the
//! change that causes it (a red incident arriving from an offline phone, a grade raised, an
//! instruction addressed to someone, a deadline coming up, a roll-call), and is itself a
//! durable timer. Each step resolves its targets (who is on duty *now*, from the roster; only
//! users of the unit or a superior office), records them, and queues one push per
//! subscription in the same transaction that advances the alert, so a restart neither loses
//! nor repeats a step. Acknowledging an alert stops its repeats and escalation.
//!
//! - `engine`: raise, run a step, resolve; each returns what it queued ([`Raised`]).
//! - `targets`: who a step reaches. `rules`: what a projected record calls for.
//! - `worker`: the timer loop. `api`: the inbox, acknowledgements, roll-calls, policies.

pub mod api;
pub mod engine;
pub mod policy;
pub mod rules;
mod targets;
pub mod worker;

use std::sync::Arc;

use sqlx::Row;
use zhiban_api::{AlertKind, Grade, Step};

use crate::outbox::OutboxPush;

pub use api::routes;
pub use engine::raise;

/// What raising alerts or running their steps set in motion, handed over after the commit:
/// pushes to send now, and whether the worker must look at its timers again.
#[derive(Debug, Default)]
#[must_use]
pub struct Raised {
    pub pushes: Vec<OutboxPush>,
    /// A new alert has a step later than now.
    pub wake: bool,
}

impl Raised {
    pub fn add(&mut self, other: Raised) {
        self.pushes.extend(other.pushes);
        self.wake |= other.wake;
    }
}

/// Wakes the timer worker when a commit raised an alert with a step to schedule.
pub type Wake = Arc<tokio::sync::Notify>;

/// An alert about to be raised.
pub struct NewAlert {
    pub kind: AlertKind,
    /// The same key never raises twice (e.g. `incident:<id>:red`).
    pub dedupe_key: String,
    pub document_id: Option<String>,
    pub unit_id: String,
    pub classified: bool,
    pub grade: Option<Grade>,
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
    pub kind: AlertKind,
    pub dedupe_key: String,
    pub document_id: Option<String>,
    pub unit_id: String,
    pub classified: bool,
    pub grade: Option<Grade>,
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
        let kind: String = row.try_get("kind")?;
        Ok(Self {
            id: row.try_get("id")?,
            kind: kind
                .parse()
                .map_err(|error: String| sqlx::Error::Decode(error.into()))?,
            dedupe_key: row.try_get("dedupe_key")?,
            document_id: row.try_get("document_id")?,
            unit_id: row.try_get("unit_id")?,
            classified: row.try_get::<i64, _>("classified")? != 0,
            grade: crate::records::parse_name(row.try_get("grade")?),
            title: row.try_get("title")?,
            steps: serde_json::from_str(&steps).unwrap_or_default(),
            created_at: row.try_get("created_at")?,
            due_at: row.try_get("due_at")?,
            step: usize::try_from(row.try_get::<i64, _>("step")?).unwrap_or(0),
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

    /// When step `index` is due; saturating, since a deadline may come from a document.
    fn step_at(&self, index: usize) -> Option<i64> {
        self.steps.get(index).map(|step| {
            self.base()
                .saturating_add(step.after_secs.saturating_mul(1000))
        })
    }
}
