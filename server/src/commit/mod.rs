//! The unit of work: the only module whose transaction spans document bytes, record rows,
//! alert rules and the audit chain. A document's actor hands it one [`Work`] per round; the
//! writer (`writer`) commits whatever is queued from all documents in one transaction (group
//! commit: one fsync for many devices), in this order: registrations, chunks, actor bindings,
//! then for each record its rows and the rules (which return what they raised), then the audit
//! rows. Nothing is acknowledged to a device before its commit.
//!
//! What is derived from a change never holds the change hostage: a transient failure (busy,
//! I/O, a lost connection) fails the commit and the actor retries with backoff, but after a
//! deterministic one (a constraint, a value the database refuses) the batch is replayed with
//! each record's rows and rules in a savepoint: the failing record's are rolled back alone,
//! it is flagged, its unit's admins are alerted, and its change is stored and acknowledged.

mod writer;

use sha2::{Digest, Sha256};
use zhiban_protocol::DocumentId;
use zhiban_records::Intervals;

use crate::alerts::{self, Raised};
use crate::audit::AuditKey;
use crate::db::{Backend, Pool, begin_write, is_transient, savepoint};
use crate::documents::{self, ActorBinding, Chunk, DocumentMeta, Receipt};
use crate::records::times::Receipts;
use crate::records::{self, Change, Projection, Source};
use crate::{audit, outbox};

pub use writer::{Committer, retry_delay};

/// One document's round: its new bytes and everything that goes with them.
#[derive(Debug, Clone)]
pub struct DocumentWork {
    pub document_id: DocumentId,
    /// Set the first time the server stores the document.
    pub register: Option<DocumentMeta>,
    pub chunk: Chunk,
    /// When the round's changes arrived (kept for incidents: `records::times`).
    pub receipts: Vec<Receipt>,
    /// Actors first seen in this round, bound to the users who delivered their changes.
    pub actors: Vec<ActorBinding>,
    /// The record's rows after this round, for a duty record.
    pub record: Option<Projection>,
    pub audit: Vec<audit::Entry>,
}

/// What the writer commits.
#[derive(Debug, Clone)]
pub enum Work {
    Document(Box<DocumentWork>),
    /// A stored record's rows derived again, with no new bytes (`admin reproject`).
    Rederive(Box<Projection>),
    /// A peer's sync state with a document, kept so that a reconnecting device resumes.
    SyncState {
        peer_id: String,
        document_id: DocumentId,
        state: Vec<u8>,
    },
    /// Audit rows that record nothing else (a refusal).
    Audit(Vec<audit::Entry>),
}

/// What became of one piece of work that was committed.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// The record's rows or rules could not be written (why): the change is stored, the
    /// record flagged, its unit's admins alerted. The next round should read the record whole.
    pub flagged: Option<String>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum CommitError {
    #[error("database error: {0}")]
    Database(String),
    #[error("the commit writer has stopped")]
    Stopped,
}

impl From<sqlx::Error> for CommitError {
    fn from(error: sqlx::Error) -> Self {
        CommitError::Database(error.to_string())
    }
}

/// Where what a commit set in motion goes after it: pushes to send now, and the alert worker
/// to wake when a new alert has a step to schedule.
#[derive(Clone)]
pub struct Handoff {
    pub outbox: outbox::Queue,
    pub wake: alerts::Wake,
}

impl Handoff {
    pub fn hand_over(&self, raised: Raised) {
        for push in raised.pushes {
            let _ = self.outbox.send(push);
        }
        if raised.wake {
            self.wake.notify_one();
        }
    }
}

/// Applies `works` in one transaction; per work, its outcome, and what the rules raised.
/// Records' rows and rules are written straight into the transaction: savepoints cost two
/// statements a commit and are needed only once something failed, so a deterministic
/// failure replays the batch with each record's rows and rules in a savepoint of their own.
async fn apply(
    pool: &Pool,
    backend: Backend,
    works: &[&Work],
    now: i64,
    (intervals, audit_key): (Intervals, &AuditKey),
) -> Result<(Vec<Outcome>, Raised), sqlx::Error> {
    match apply_once(pool, backend, works, now, (intervals, audit_key), false).await {
        Err(error) if !is_transient(&error) => {
            tracing::warn!(%error, "commit failed; again with each record's rows contained");
            apply_once(pool, backend, works, now, (intervals, audit_key), true).await
        }
        done => done,
    }
}

async fn apply_once(
    pool: &Pool,
    backend: Backend,
    works: &[&Work],
    now: i64,
    (intervals, audit_key): (Intervals, &AuditKey),
    contained: bool,
) -> Result<(Vec<Outcome>, Raised), sqlx::Error> {
    let mut tx = begin_write(pool).await?;
    let documents: Vec<&DocumentWork> = works
        .iter()
        .filter_map(|work| match work {
            Work::Document(document) => Some(document.as_ref()),
            _ => None,
        })
        .collect();
    // Registrations first: chunks, sync states and rows refer to them.
    for document in &documents {
        if let Some(meta) = &document.register {
            documents::register(&mut tx, &document.document_id, meta, now).await?;
        }
    }
    let chunks: Vec<(&DocumentId, &Chunk)> = documents
        .iter()
        .map(|document| (&document.document_id, &document.chunk))
        .collect();
    documents::store_chunks(&mut tx, backend, &chunks, now).await?;
    let receipts: Vec<(&DocumentId, &Receipt)> = documents
        .iter()
        .flat_map(|document| {
            document
                .receipts
                .iter()
                .map(|receipt| (&document.document_id, receipt))
        })
        .collect();
    documents::store_receipts(&mut tx, backend, &receipts).await?;
    // Bindings before rows: the rules check who wrote an instruction or an approval.
    for binding in documents.iter().flat_map(|document| &document.actors) {
        documents::bind_actor(&mut tx, binding, now).await?;
    }
    for work in works {
        if let Work::SyncState {
            peer_id,
            document_id,
            state,
        } = work
        {
            documents::save_sync_state(&mut tx, peer_id, document_id, state, now).await?;
        }
    }
    let projections: Vec<Option<&Projection>> = works
        .iter()
        .map(|work| match work {
            Work::Document(document) => document.record.as_ref(),
            Work::Rederive(projection) => Some(projection.as_ref()),
            Work::SyncState { .. } | Work::Audit(_) => None,
        })
        .collect();
    let mut raised = Raised::default();
    let flags = if contained {
        derive(&mut tx, backend, &projections, now, intervals, &mut raised).await?
    } else {
        let all: Vec<&Projection> = projections.iter().flatten().copied().collect();
        raised.add(derive_all(&mut tx, backend, &all, now, intervals).await?);
        vec![None; projections.len()]
    };
    let entries: Vec<audit::Entry> = works
        .iter()
        .flat_map(|work| match work {
            Work::Document(document) => document.audit.clone(),
            Work::Audit(entries) => entries.clone(),
            Work::Rederive(_) | Work::SyncState { .. } => Vec::new(),
        })
        .collect();
    audit::append(&mut tx, audit_key, &entries, now).await?;
    tx.commit().await?;
    let outcomes = flags
        .into_iter()
        .map(|flagged| Outcome { flagged })
        .collect();
    Ok((outcomes, raised))
}

/// Commits `works` in one transaction without the writer task, for `admin` commands run
/// beside (or instead of) a server. Pushes the rules queue are not sent from here: when their
/// lease runs out, a server's worker sends them.
pub async fn write_now(
    pool: &Pool,
    backend: Backend,
    works: &[Work],
    now: i64,
    rules: (Intervals, &AuditKey),
) -> Result<Vec<Outcome>, sqlx::Error> {
    let works: Vec<&Work> = works.iter().collect();
    let (outcomes, _sent_when_leases_expire) = apply(pool, backend, &works, now, rules).await?;
    Ok(outcomes)
}

/// Writes each record's rows and runs the rules in a savepoint of its own, so that only the
/// records that fail for good are rolled back and flagged. Per work, why it was flagged.
async fn derive(
    tx: &mut sqlx::AnyConnection,
    backend: Backend,
    each: &[Option<&Projection>],
    now: i64,
    intervals: Intervals,
    raised: &mut Raised,
) -> Result<Vec<Option<String>>, sqlx::Error> {
    let mut flags = vec![None; each.len()];
    for (index, projection) in each.iter().enumerate() {
        let Some(projection) = *projection else {
            continue;
        };
        match savepoint(tx, async |savepoint| {
            derive_all(savepoint, backend, &[projection], now, intervals).await
        })
        .await?
        {
            Ok(one) => raised.add(one),
            Err(error) => {
                let reason: String = error.to_string().chars().take(500).collect();
                raised.add(flag(tx, projection, &reason, now).await?);
                flags[index] = Some(reason);
            }
        }
    }
    Ok(flags)
}

/// Each record's rows, then what the rules make of them.
async fn derive_all(
    tx: &mut sqlx::AnyConnection,
    backend: Backend,
    projections: &[&Projection],
    now: i64,
    intervals: Intervals,
) -> Result<Raised, sqlx::Error> {
    let mut raised = Raised::default();
    for projection in projections {
        records::write(tx, backend, projection, now).await?;
        raised.add(alerts::rules::after_projection(tx, projection, now, intervals).await?);
    }
    Ok(raised)
}

/// The record could not be processed: flag it and tell its unit's admins, once per reason.
async fn flag(
    tx: &mut sqlx::AnyConnection,
    projection: &Projection,
    reason: &str,
    now: i64,
) -> Result<Raised, sqlx::Error> {
    let common = &projection.common;
    let id = common.document_id.to_string();
    tracing::error!(document_id = %id, %reason, "record stored, but its rows or alerts could not be written; flagged");
    let flagged = savepoint(tx, async |savepoint| {
        records::status::flag(savepoint, common, reason, now).await
    })
    .await?;
    if let Err(error) = flagged {
        // The change is stored all the same; only the flag is missing.
        tracing::error!(document_id = %id, %error, "cannot flag the record");
    }
    let key = format!(
        "record:{id}:{}",
        hex::encode(&Sha256::digest(reason.as_bytes())[..8])
    );
    alerts::engine::problem(
        tx,
        &key,
        &common.unit_id,
        Some((&id, common.classified)),
        format!("Record {id} is stored but could not be processed: {reason}"),
        now,
    )
    .await
}

/// Rebuilds every record's rows from the stored documents (and settles or raises what the
/// rules say); returns how many records.
pub async fn reproject(
    pool: &Pool,
    now: i64,
    rules: (Intervals, &AuditKey),
) -> anyhow::Result<usize> {
    let backend = Backend::of(pool);
    let mut works = Vec::new();
    for (document_id, meta) in documents::list_all_records(pool).await? {
        let stored = documents::load(pool, &document_id).await?;
        let mut doc = automerge::Automerge::new();
        for chunk in &stored.chunks {
            doc.load_incremental(chunk)?;
        }
        let receipts = Receipts::new(documents::load_receipts(pool, &document_id).await?);
        let source = Source {
            document_id,
            meta: &meta,
            doc: &doc,
            receipts: &receipts,
        };
        if let Some(projection) = records::project(&source, Change::All, false) {
            works.push(Work::Rederive(Box::new(projection)));
        }
    }
    for outcome in write_now(pool, backend, &works, now, rules).await? {
        if let Some(reason) = outcome.flagged {
            tracing::warn!(%reason, "a record could not be rebuilt; it is flagged");
        }
    }
    Ok(works.len())
}
