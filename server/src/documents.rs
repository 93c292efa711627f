//! Automerge bytes and what the server knows of each document, and nothing of what the
//! documents mean: the registration that fixes a document's unit and classification (D18),
//! its change chunks and snapshots, peers' sync states, and which user each Automerge actor
//! belongs to. Reads take the pool; writes take the caller's transaction (`commit`).

use sqlx::Row;
use zhiban_protocol::DocumentId;

use crate::db::{Arg, Backend, Pool, Sql};

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

/// A document as stored: its registration (if any) and its chunks in order.
pub struct StoredDocument {
    pub meta: Option<DocumentMeta>,
    pub chunks: Vec<Vec<u8>>,
    pub next_seq: i64,
}

/// New bytes of one document.
#[derive(Debug, Clone)]
pub enum Chunk {
    /// The changes since the previous chunk.
    Changes { seq: i64, data: Vec<u8> },
    /// The whole document at `seq`; every older chunk is deleted with it.
    Snapshot { seq: i64, data: Vec<u8> },
}

/// An Automerge actor seen for the first time, bound to the user who delivered it.
#[derive(Debug, Clone)]
pub struct ActorBinding {
    pub actor_id: String,
    pub user_id: String,
    pub device_id: String,
}

/// When the server first received one change, and the earliest time the device that sent it
/// could have made it: what the times a change writes are checked against (D11-D13).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The change's actor (hex) and the counters of its first and last operation: a value's
    /// operation id finds the change that wrote it.
    pub actor: String,
    pub start_op: u64,
    pub end_op: u64,
    pub hash: String,
    pub received_at: i64,
    pub earliest: i64,
}

fn meta_from_row(row: &sqlx::any::AnyRow) -> Result<DocumentMeta, sqlx::Error> {
    Ok(DocumentMeta {
        unit_id: row.try_get("unit_id")?,
        classified: row.try_get::<String, _>("classification")? == "classified",
        catalog: row.try_get::<String, _>("kind")? == "catalog",
        created_by: row.try_get("created_by")?,
    })
}

pub async fn load(pool: &Pool, document_id: &DocumentId) -> Result<StoredDocument, sqlx::Error> {
    let id = document_id.to_string();
    let meta = sqlx::query(
        "SELECT unit_id, classification, kind, created_by FROM documents WHERE id = $1",
    )
    .bind(&id)
    .fetch_optional(pool)
    .await?
    .as_ref()
    .map(meta_from_row)
    .transpose()?;
    let rows =
        sqlx::query("SELECT seq, data FROM document_chunks WHERE document_id = $1 ORDER BY seq")
            .bind(&id)
            .fetch_all(pool)
            .await?;
    let mut next_seq = 0;
    let mut chunks = Vec::with_capacity(rows.len());
    for row in rows {
        next_seq = row.try_get::<i64, _>("seq")?.saturating_add(1);
        chunks.push(row.try_get("data")?);
    }
    Ok(StoredDocument {
        meta,
        chunks,
        next_seq,
    })
}

/// Every registered record (not catalogs), for rebuilding what is derived from them.
pub async fn list_all_records(pool: &Pool) -> Result<Vec<(DocumentId, DocumentMeta)>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, unit_id, classification, kind, created_by FROM documents \
         WHERE kind = 'record' ORDER BY id",
    )
    .fetch_all(pool)
    .await?;
    rows.iter()
        .filter_map(|row| {
            let id: String = match row.try_get("id") {
                Ok(id) => id,
                Err(error) => return Some(Err(error)),
            };
            let document_id = id.parse().ok()?;
            Some(meta_from_row(row).map(|meta| (document_id, meta)))
        })
        .collect()
}

/// The records of a unit in one class, for its catalog: (id, creator, created at).
pub async fn list_records(
    pool: &Pool,
    unit_id: &str,
    classified: bool,
) -> Result<Vec<(String, Option<String>, i64)>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, created_by, created_at FROM documents \
         WHERE unit_id = $1 AND classification = $2 AND kind = 'record'",
    )
    .bind(unit_id)
    .bind(if classified { "classified" } else { "plain" })
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok((
                row.try_get("id")?,
                row.try_get("created_by")?,
                row.try_get("created_at")?,
            ))
        })
        .collect()
}

pub async fn load_sync_state(
    pool: &Pool,
    peer_id: &str,
    document_id: &DocumentId,
) -> Result<Option<Vec<u8>>, sqlx::Error> {
    sqlx::query_scalar("SELECT state FROM sync_states WHERE peer_id = $1 AND document_id = $2")
        .bind(peer_id)
        .bind(document_id.to_string())
        .fetch_optional(pool)
        .await
}

/// How many documents `user_id` created since `since`.
pub async fn created_since(pool: &Pool, user_id: &str, since: i64) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COUNT(*) FROM documents WHERE created_by = $1 AND created_at >= $2")
        .bind(user_id)
        .bind(since)
        .fetch_one(pool)
        .await
}

/// The user an actor is bound to, if any.
pub async fn actor_owner(pool: &Pool, actor_id: &str) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT user_id FROM actors WHERE actor_id = $1")
        .bind(actor_id)
        .fetch_optional(pool)
        .await
}

pub async fn register(
    tx: &mut sqlx::AnyConnection,
    document_id: &DocumentId,
    meta: &DocumentMeta,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO documents (id, unit_id, classification, kind, created_by, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
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
    .execute(tx)
    .await?;
    Ok(())
}

/// Rows per multi-row INSERT: well under both backends' limits on bound parameters.
const ROWS_PER_INSERT: usize = 500;

/// Stores the receipts of a round's changes. A change delivered twice (two devices of one
/// user, a retried round) keeps its first receipt.
pub async fn store_receipts(
    tx: &mut sqlx::AnyConnection,
    backend: Backend,
    receipts: &[(&DocumentId, &Receipt)],
) -> Result<(), sqlx::Error> {
    for rows in receipts.chunks(ROWS_PER_INSERT) {
        let mut insert = Sql::for_backend(
            "INSERT INTO change_receipts (document_id, actor, start_op, end_op, hash, \
             received_at, earliest) VALUES ",
            backend.is_sqlite(),
        );
        for (index, (document_id, receipt)) in rows.iter().enumerate() {
            if index > 0 {
                insert.push(", ");
            }
            insert.bind_list([
                Arg::from(document_id.to_string()),
                Arg::from(receipt.actor.clone()),
                Arg::from(i64::try_from(receipt.start_op).unwrap_or(i64::MAX)),
                Arg::from(i64::try_from(receipt.end_op).unwrap_or(i64::MAX)),
                Arg::from(receipt.hash.clone()),
                Arg::from(receipt.received_at),
                Arg::from(receipt.earliest),
            ]);
        }
        insert.push(" ON CONFLICT DO NOTHING");
        insert.query().execute(&mut *tx).await?;
    }
    Ok(())
}

/// Every receipt of a document.
pub async fn load_receipts(
    pool: &Pool,
    document_id: &DocumentId,
) -> Result<Vec<Receipt>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT actor, start_op, end_op, hash, received_at, earliest FROM change_receipts \
         WHERE document_id = $1",
    )
    .bind(document_id.to_string())
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(Receipt {
                actor: row.try_get("actor")?,
                start_op: u64::try_from(row.try_get::<i64, _>("start_op")?).unwrap_or(0),
                end_op: u64::try_from(row.try_get::<i64, _>("end_op")?).unwrap_or(0),
                hash: row.try_get("hash")?,
                received_at: row.try_get("received_at")?,
                earliest: row.try_get("earliest")?,
            })
        })
        .collect()
}

/// Stores the chunks of many documents: change chunks, the bulk of a busy round, in
/// multi-row INSERTs; snapshots each with the deletion of the chunks they replace.
pub async fn store_chunks(
    tx: &mut sqlx::AnyConnection,
    backend: Backend,
    chunks: &[(&DocumentId, &Chunk)],
    now: i64,
) -> Result<(), sqlx::Error> {
    let changes: Vec<(&DocumentId, i64, &Vec<u8>)> = chunks
        .iter()
        .filter_map(|(id, chunk)| match chunk {
            Chunk::Changes { seq, data } => Some((*id, *seq, data)),
            Chunk::Snapshot { .. } => None,
        })
        .collect();
    for rows in changes.chunks(ROWS_PER_INSERT) {
        let mut insert = Sql::for_backend(
            "INSERT INTO document_chunks (document_id, seq, kind, data, created_at) VALUES ",
            backend.is_sqlite(),
        );
        for (index, (document_id, seq, data)) in rows.iter().enumerate() {
            if index > 0 {
                insert.push(", ");
            }
            insert.bind_list([
                Arg::from(document_id.to_string()),
                Arg::from(*seq),
                Arg::from("changes"),
                Arg::from((*data).clone()),
                Arg::from(now),
            ]);
        }
        insert.query().execute(&mut *tx).await?;
    }
    for (document_id, chunk) in chunks {
        let Chunk::Snapshot { seq, data } = chunk else {
            continue;
        };
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
    Ok(())
}

pub async fn save_sync_state(
    tx: &mut sqlx::AnyConnection,
    peer_id: &str,
    document_id: &DocumentId,
    state: &[u8],
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO sync_states (peer_id, document_id, state, updated_at) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (peer_id, document_id) \
         DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at",
    )
    .bind(peer_id)
    .bind(document_id.to_string())
    .bind(state)
    .bind(now)
    .execute(tx)
    .await?;
    Ok(())
}

pub async fn bind_actor(
    tx: &mut sqlx::AnyConnection,
    binding: &ActorBinding,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO actors (actor_id, user_id, device_id, first_seen_at) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (actor_id) DO NOTHING",
    )
    .bind(&binding.actor_id)
    .bind(&binding.user_id)
    .bind(&binding.device_id)
    .bind(now)
    .execute(tx)
    .await?;
    Ok(())
}
