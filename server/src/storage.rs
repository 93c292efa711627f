//! Document storage: one writer task owns all writes and commits whatever is queued in a
//! single transaction (group commit), so one fsync covers many devices' changes. A caller
//! learns the outcome of its own writes; nothing is acknowledged before it is committed and
//! no failure is swallowed.

use std::time::Duration;

use sqlx::Row;
use tokio::sync::{mpsc, oneshot};
use zhiban_protocol::DocumentId;

use crate::db::{Arg, Pool, Sql, now_ms};

/// Who may see a document, fixed the first time the server stores it (D18).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentMeta {
    pub unit_id: String,
    pub classified: bool,
    /// The server's own list of a unit's documents: read-only for every device.
    pub catalog: bool,
    /// None for catalogs.
    pub created_by: Option<String>,
}

#[derive(Debug, Clone)]
pub enum Write {
    RegisterDocument {
        document_id: DocumentId,
        meta: DocumentMeta,
    },
    /// Changes since the previous chunk.
    AppendChanges {
        document_id: DocumentId,
        seq: i64,
        data: Vec<u8>,
    },
    /// The whole document at `seq`; every older chunk is deleted in the same transaction.
    Snapshot {
        document_id: DocumentId,
        seq: i64,
        data: Vec<u8>,
    },
    SyncState {
        peer_id: String,
        document_id: DocumentId,
        state: Vec<u8>,
    },
    /// Appended to the hash chain in the same transaction as the writes it accompanies.
    Audit(crate::audit::Entry),
    /// The document's queryable rows, replaced.
    Project(Box<crate::projection::Projection>),
    /// An Automerge actor seen for the first time, bound to the user who delivered it.
    BindActor {
        actor_id: String,
        user_id: String,
        device_id: String,
    },
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum StorageError {
    #[error("database error: {0}")]
    Database(String),
    #[error("the storage writer has stopped")]
    Stopped,
}

impl From<sqlx::Error> for StorageError {
    fn from(error: sqlx::Error) -> Self {
        StorageError::Database(error.to_string())
    }
}

enum Job {
    Write {
        writes: Vec<Write>,
        done: Option<oneshot::Sender<Result<(), StorageError>>>,
    },
    Stop(oneshot::Sender<()>),
}

/// A loaded document: its registration (if any) and its chunks in order.
pub struct StoredDocument {
    pub meta: Option<DocumentMeta>,
    pub chunks: Vec<Vec<u8>>,
    pub next_seq: i64,
}

#[derive(Clone)]
pub struct Storage {
    pool: Pool,
    jobs: mpsc::Sender<Job>,
    backend: Backend,
}

/// Where the writer hands what a commit set in motion: pushes to send at once, and a wake-up
/// for the alert worker when a new alert has a step to schedule.
pub struct AlertHooks {
    pub clock: crate::clock::Clock,
    pub queue: mpsc::UnboundedSender<crate::alerts::Queued>,
    pub wake: std::sync::Arc<tokio::sync::Notify>,
}

/// How a write transaction starts: on SQLite it takes the write lock at once, so that reading
/// the audit chain's head and appending to it cannot be interleaved with another process
/// (the `admin` commands) writing.
#[derive(Clone, Copy)]
pub struct Backend {
    pub sqlite: bool,
}

/// Most jobs gathered into one transaction; bounds the time one commit holds the lock.
const MAX_JOBS_PER_COMMIT: usize = 1024;

impl Storage {
    pub fn spawn(
        pool: Pool,
        backend: Backend,
        hooks: AlertHooks,
    ) -> (Storage, tokio::task::JoinHandle<()>) {
        let (jobs, receiver) = mpsc::channel(4096);
        let writer = tokio::spawn(run_writer(pool.clone(), backend, hooks, receiver));
        (
            Storage {
                pool,
                jobs,
                backend,
            },
            writer,
        )
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Returns once `writes` are committed, or with the error that prevented it.
    pub async fn commit(&self, writes: Vec<Write>) -> Result<(), StorageError> {
        let (done, outcome) = oneshot::channel();
        self.jobs
            .send(Job::Write {
                writes,
                done: Some(done),
            })
            .await
            .map_err(|_| StorageError::Stopped)?;
        outcome.await.map_err(|_| StorageError::Stopped)?
    }

    /// For writes whose loss costs only efficiency (sync states): failures are logged.
    pub fn submit(&self, writes: Vec<Write>) {
        if let Err(error) = self.jobs.try_send(Job::Write { writes, done: None }) {
            tracing::warn!(%error, "storage queue full; sync state not saved");
        }
    }

    /// Lets queued writes finish, then stops the writer.
    pub async fn stop(&self) {
        let (done, stopped) = oneshot::channel();
        if self.jobs.send(Job::Stop(done)).await.is_ok() {
            let _ = stopped.await;
        }
    }

    pub async fn load_document(
        &self,
        document_id: &DocumentId,
    ) -> Result<StoredDocument, StorageError> {
        let id = document_id.to_string();
        let meta = sqlx::query(
            "SELECT unit_id, classification, kind, created_by FROM documents WHERE id = $1",
        )
        .bind(&id)
        .fetch_optional(&self.pool)
        .await?
        .map(|row| -> Result<DocumentMeta, sqlx::Error> {
            Ok(DocumentMeta {
                unit_id: row.try_get("unit_id")?,
                classified: row.try_get::<String, _>("classification")? == "classified",
                catalog: row.try_get::<String, _>("kind")? == "catalog",
                created_by: row.try_get("created_by")?,
            })
        })
        .transpose()?;
        let rows = sqlx::query(
            "SELECT seq, data FROM document_chunks WHERE document_id = $1 ORDER BY seq",
        )
        .bind(&id)
        .fetch_all(&self.pool)
        .await?;
        let mut next_seq = 0;
        let mut chunks = Vec::with_capacity(rows.len());
        for row in rows {
            next_seq = row.try_get::<i64, _>("seq")? + 1;
            chunks.push(row.try_get("data")?);
        }
        Ok(StoredDocument {
            meta,
            chunks,
            next_seq,
        })
    }

    /// The records of a unit in one class, for its catalog: (id, creator, created at).
    pub async fn list_records(
        &self,
        unit_id: &str,
        classified: bool,
    ) -> Result<Vec<(String, Option<String>, i64)>, StorageError> {
        let rows = sqlx::query(
            "SELECT id, created_by, created_at FROM documents \
             WHERE unit_id = $1 AND classification = $2 AND kind = 'record'",
        )
        .bind(unit_id)
        .bind(if classified { "classified" } else { "plain" })
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    row.try_get("id")?,
                    row.try_get("created_by")?,
                    row.try_get("created_at")?,
                ))
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StorageError::from)
    }

    pub async fn load_sync_state(
        &self,
        peer_id: &str,
        document_id: &DocumentId,
    ) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(sqlx::query_scalar(
            "SELECT state FROM sync_states WHERE peer_id = $1 AND document_id = $2",
        )
        .bind(peer_id)
        .bind(document_id.to_string())
        .fetch_optional(&self.pool)
        .await?)
    }
}

async fn run_writer(
    pool: Pool,
    backend: Backend,
    hooks: AlertHooks,
    mut jobs: mpsc::Receiver<Job>,
) {
    let mut batch = Vec::new();
    loop {
        let Some(first) = jobs.recv().await else {
            return;
        };
        let mut stop = None;
        match first {
            Job::Write { writes, done } => batch.push((writes, done)),
            Job::Stop(done) => stop = Some(done),
        }
        while stop.is_none() && batch.len() < MAX_JOBS_PER_COMMIT {
            match jobs.try_recv() {
                Ok(Job::Write { writes, done }) => batch.push((writes, done)),
                Ok(Job::Stop(done)) => stop = Some(done),
                Err(_) => break,
            }
        }
        if !batch.is_empty() {
            commit_batch(&pool, backend, &hooks, &mut batch).await;
        }
        if let Some(done) = stop {
            let _ = done.send(());
            return;
        }
    }
}

type Pending = (
    Vec<Write>,
    Option<oneshot::Sender<Result<(), StorageError>>>,
);

async fn commit_batch(pool: &Pool, backend: Backend, hooks: &AlertHooks, batch: &mut Vec<Pending>) {
    let all: Vec<&Write> = batch.iter().flat_map(|(writes, _)| writes).collect();
    match apply(pool, backend, &all, hooks.clock.now_ms()).await {
        Ok(effects) => {
            effects.hand_over(hooks);
            for (_, done) in batch.drain(..) {
                if let Some(done) = done {
                    let _ = done.send(Ok(()));
                }
            }
        }
        Err(error) if batch.len() == 1 => {
            let (writes, done) = batch.pop().expect("one job");
            report(&writes, done, error);
        }
        Err(error) => {
            // One bad job must not fail its neighbours: retry each on its own.
            tracing::warn!(%error, jobs = batch.len(), "group commit failed; retrying jobs one by one");
            for (writes, done) in batch.drain(..) {
                let refs: Vec<&Write> = writes.iter().collect();
                match apply(pool, backend, &refs, hooks.clock.now_ms()).await {
                    Ok(effects) => {
                        effects.hand_over(hooks);
                        if let Some(done) = done {
                            let _ = done.send(Ok(()));
                        }
                    }
                    Err(error) => report(&writes, done, error),
                }
            }
        }
    }
}

fn report(
    writes: &[Write],
    done: Option<oneshot::Sender<Result<(), StorageError>>>,
    error: sqlx::Error,
) {
    let error = StorageError::from(error);
    match done {
        Some(done) => {
            let _ = done.send(Err(error));
        }
        None => tracing::warn!(%error, writes = writes.len(), "background write failed"),
    }
}

/// Writes outside the server's writer task, for the `admin` commands.
/// Pushes these writes put in the outbox are not sent from here: when their lease runs out,
/// the server's worker sends them.
pub async fn write_now(pool: &Pool, backend: Backend, writes: &[Write]) -> Result<(), sqlx::Error> {
    let refs: Vec<&Write> = writes.iter().collect();
    apply(pool, backend, &refs, now_ms()).await.map(|_| ())
}

/// What a commit set in motion.
#[derive(Default)]
struct Effects {
    queued: Vec<crate::alerts::Queued>,
    raised: bool,
}

impl Effects {
    fn hand_over(self, hooks: &AlertHooks) {
        for queued in self.queued {
            let _ = hooks.queue.send(queued);
        }
        if self.raised {
            hooks.wake.notify_one();
        }
    }
}

/// Rows per multi-row INSERT: well under both backends' limits on bound parameters.
const ROWS_PER_INSERT: usize = 500;

/// Applies `writes` in one transaction. Change chunks and audit rows, the bulk of a busy
/// batch, go in multi-row INSERTs; registrations come first because chunks, sync states and
/// projections refer to them.
async fn apply(
    pool: &Pool,
    backend: Backend,
    writes: &[&Write],
    now: i64,
) -> Result<Effects, sqlx::Error> {
    let mut effects = Effects::default();
    let mut tx = if backend.sqlite {
        pool.begin_with("BEGIN IMMEDIATE").await?
    } else {
        pool.begin().await?
    };
    for write in writes {
        if let Write::RegisterDocument { document_id, meta } = write {
            sqlx::query(
                "INSERT INTO documents (id, unit_id, classification, kind, created_by, \
                 created_at) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(document_id.to_string())
            .bind(&meta.unit_id)
            .bind(if meta.classified {
                "classified"
            } else {
                "plain"
            })
            .bind(if meta.catalog { "catalog" } else { "record" })
            .bind(&meta.created_by)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
    }
    let changes: Vec<(&DocumentId, &i64, &Vec<u8>)> = writes
        .iter()
        .filter_map(|write| match write {
            Write::AppendChanges {
                document_id,
                seq,
                data,
            } => Some((document_id, seq, data)),
            _ => None,
        })
        .collect();
    for rows in changes.chunks(ROWS_PER_INSERT) {
        let mut insert = Sql::new(
            "INSERT INTO document_chunks (document_id, seq, kind, data, created_at) VALUES ",
        );
        for (index, (document_id, seq, data)) in rows.iter().enumerate() {
            if index > 0 {
                insert.push(", ");
            }
            insert.bind_list([
                Arg::from(document_id.to_string()),
                Arg::from(**seq),
                Arg::from("changes"),
                Arg::from((*data).clone()),
                Arg::from(now),
            ]);
        }
        insert.query().execute(&mut *tx).await?;
    }
    for write in writes {
        match write {
            Write::RegisterDocument { .. } | Write::AppendChanges { .. } | Write::Audit(_) => {}
            Write::Snapshot {
                document_id,
                seq,
                data,
            } => {
                let id = document_id.to_string();
                sqlx::query(
                    "INSERT INTO document_chunks (document_id, seq, kind, data, created_at) \
                     VALUES ($1, $2, 'snapshot', $3, $4)",
                )
                .bind(&id)
                .bind(seq)
                .bind(data)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                sqlx::query("DELETE FROM document_chunks WHERE document_id = $1 AND seq < $2")
                    .bind(&id)
                    .bind(seq)
                    .execute(&mut *tx)
                    .await?;
            }
            Write::SyncState {
                peer_id,
                document_id,
                state,
            } => {
                sqlx::query(
                    "INSERT INTO sync_states (peer_id, document_id, state, updated_at) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (peer_id, document_id) \
                     DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at",
                )
                .bind(peer_id)
                .bind(document_id.to_string())
                .bind(state)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            Write::Project(projection) => {
                effects.raised |= crate::projection::write(
                    &mut tx,
                    backend,
                    projection,
                    now,
                    &mut effects.queued,
                )
                .await?;
            }
            Write::BindActor {
                actor_id,
                user_id,
                device_id,
            } => {
                sqlx::query(
                    "INSERT INTO actors (actor_id, user_id, device_id, first_seen_at) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (actor_id) DO NOTHING",
                )
                .bind(actor_id)
                .bind(user_id)
                .bind(device_id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
        }
    }
    let entries: Vec<&crate::audit::Entry> = writes
        .iter()
        .filter_map(|write| match write {
            Write::Audit(entry) => Some(entry),
            _ => None,
        })
        .collect();
    if !entries.is_empty() {
        append_audit(&mut tx, &entries, now, backend.sqlite).await?;
    }
    tx.commit().await?;
    Ok(effects)
}

/// Appends to the hash chain, reading its head once; the transaction's write lock keeps
/// anyone else from appending in between.
async fn append_audit(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    entries: &[&crate::audit::Entry],
    now: i64,
    sqlite: bool,
) -> Result<(), sqlx::Error> {
    let (mut seq, mut prev) = sqlx::query_as::<_, (i64, String)>(
        "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1",
    )
    .fetch_optional(&mut **tx)
    .await?
    .unwrap_or((0, crate::audit::GENESIS.to_owned()));
    let mut rows = Vec::with_capacity(entries.len());
    for entry in entries {
        seq += 1;
        let detail = entry.detail.to_string();
        let hash = crate::audit::hash(
            &prev,
            &crate::audit::Chained {
                seq,
                at: now,
                user_id: entry.user_id.as_deref(),
                device_id: entry.device_id.as_deref(),
                action: entry.action,
                document_id: entry.document_id.as_deref(),
                detail: &detail,
            },
        );
        rows.push((
            seq,
            *entry,
            detail,
            std::mem::replace(&mut prev, hash.clone()),
            hash,
        ));
    }
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let mut insert = Sql::for_backend(
            "INSERT INTO audit_log (seq, at, user_id, device_id, action, document_id, detail, \
             prev_hash, hash) VALUES ",
            sqlite,
        );
        for (index, (seq, entry, detail, prev_hash, hash)) in chunk.iter().enumerate() {
            if index > 0 {
                insert.push(", ");
            }
            insert.bind_list([
                Arg::from(*seq),
                Arg::from(now),
                Arg::from(entry.user_id.clone()),
                Arg::from(entry.device_id.clone()),
                Arg::from(entry.action),
                Arg::from(entry.document_id.clone()),
                Arg::from(detail.clone()),
                Arg::from(prev_hash.clone()),
                Arg::from(hash.clone()),
            ]);
        }
        insert.query().execute(&mut **tx).await?;
    }
    Ok(())
}

/// Delay before retrying a failed commit: doubling from 50 ms, at most 5 s.
pub fn retry_delay(attempt: u32) -> Duration {
    Duration::from_millis(50u64.saturating_mul(1 << attempt.min(7))).min(Duration::from_secs(5))
}
