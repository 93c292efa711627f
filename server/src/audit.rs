//! The audit trail (D19): who, on which device, when, did what — for API actions and for
//! every change accepted through sync. [`append`] adds entries inside the caller's own
//! transaction, so an action and its audit row commit together or not at all; each row
//! carries the hash of the one before, so that [`verify`] finds the first row that was
//! altered, inserted or removed. Plain SQL: knows nothing of the modules that record.

use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::db::{Arg, Backend, Pool, Sql};

/// The `prev_hash` of the first row.
pub const GENESIS: &str = "zhiban-audit-genesis";

/// One action to record.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    pub user_id: Option<String>,
    pub device_id: Option<String>,
    pub action: &'static str,
    pub document_id: Option<String>,
    pub detail: serde_json::Value,
}

impl Entry {
    pub fn new(action: &'static str) -> Self {
        Self {
            user_id: None,
            device_id: None,
            action,
            document_id: None,
            detail: serde_json::Value::Null,
        }
    }

    pub fn by(mut self, user_id: &str, device_id: Option<&str>) -> Self {
        self.user_id = Some(user_id.to_owned());
        self.device_id = device_id.map(str::to_owned);
        self
    }

    pub fn document(mut self, document_id: impl ToString) -> Self {
        self.document_id = Some(document_id.to_string());
        self
    }

    pub fn detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = detail;
        self
    }
}

/// Rows per multi-row INSERT: well under both backends' limits on bound parameters.
const ROWS_PER_INSERT: usize = 500;

/// An arbitrary constant: the PostgreSQL advisory lock that serialises appends to the chain
/// across transactions and nodes (SQLite's write lock does it there).
const CHAIN_LOCK: i64 = 0x7a68_6962_616e;

/// Appends `entries` to the hash chain inside `tx`, reading the chain's head once. On SQLite
/// `tx` must hold the write lock (`db::begin_write`); on PostgreSQL an advisory lock, held to
/// the end of `tx`, keeps other appenders out between reading the head and writing.
pub async fn append(
    tx: &mut sqlx::AnyConnection,
    entries: &[Entry],
    now: i64,
) -> Result<(), sqlx::Error> {
    if entries.is_empty() {
        return Ok(());
    }
    let backend = Backend::of_connection(tx);
    if backend == Backend::Postgres {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(CHAIN_LOCK)
            .execute(&mut *tx)
            .await?;
    }
    let (mut seq, mut prev) = sqlx::query_as::<_, (i64, String)>(
        "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1",
    )
    .fetch_optional(&mut *tx)
    .await?
    .unwrap_or((0, GENESIS.to_owned()));
    let mut rows = Vec::with_capacity(entries.len());
    for entry in entries {
        seq += 1;
        let detail = entry.detail.to_string();
        let hash = hash(
            &prev,
            &Chained {
                seq,
                at: now,
                user_id: entry.user_id.as_deref(),
                device_id: entry.device_id.as_deref(),
                action: entry.action,
                document_id: entry.document_id.as_deref(),
                detail: &detail,
            },
        );
        let prev_hash = std::mem::replace(&mut prev, hash.clone());
        rows.push([
            Arg::from(seq),
            Arg::from(now),
            Arg::from(entry.user_id.clone()),
            Arg::from(entry.device_id.clone()),
            Arg::from(entry.action),
            Arg::from(entry.document_id.clone()),
            Arg::from(detail),
            Arg::from(prev_hash),
            Arg::from(hash),
        ]);
    }
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let mut insert = Sql::for_backend(
            "INSERT INTO audit_log (seq, at, user_id, device_id, action, document_id, detail, \
             prev_hash, hash) VALUES ",
            backend.is_sqlite(),
        );
        for (index, row) in chunk.iter().enumerate() {
            if index > 0 {
                insert.push(", ");
            }
            insert.bind_list(row.iter().cloned());
        }
        insert.query().execute(&mut *tx).await?;
    }
    Ok(())
}

/// Records `entries` in a transaction of their own (failed logins, refusals, admin commands
/// that change nothing else).
pub async fn record(pool: &Pool, entries: &[Entry], now: i64) -> Result<(), sqlx::Error> {
    let mut tx = crate::db::begin_write(pool).await?;
    append(&mut tx, entries, now).await?;
    tx.commit().await
}

/// A stored row as the chain sees it.
pub struct Chained<'a> {
    pub seq: i64,
    pub at: i64,
    pub user_id: Option<&'a str>,
    pub device_id: Option<&'a str>,
    pub action: &'a str,
    pub document_id: Option<&'a str>,
    pub detail: &'a str,
}

/// The row's hash: SHA-256 over the previous hash and every field, each length-prefixed so
/// that no two different rows serialise alike.
pub fn hash(prev_hash: &str, row: &Chained<'_>) -> String {
    let mut hasher = Sha256::new();
    let mut field = |bytes: &[u8]| {
        hasher.update((bytes.len() as u64).to_be_bytes());
        hasher.update(bytes);
    };
    field(prev_hash.as_bytes());
    field(&row.seq.to_be_bytes());
    field(&row.at.to_be_bytes());
    for text in [
        row.user_id,
        row.device_id,
        Some(row.action),
        row.document_id,
    ] {
        match text {
            Some(text) => field(text.as_bytes()),
            None => field(b"\xff"),
        }
    }
    field(row.detail.as_bytes());
    hex::encode(hasher.finalize())
}

/// The outcome of checking the chain.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Intact { rows: i64 },
    Broken { seq: i64, reason: String },
}

/// Walks the whole chain in order and reports the first row that does not fit.
pub async fn verify(pool: &Pool) -> Result<Verdict, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT seq, at, user_id, device_id, action, document_id, detail, prev_hash, hash \
         FROM audit_log ORDER BY seq",
    )
    .fetch_all(pool)
    .await?;
    let mut prev = GENESIS.to_owned();
    let mut expected_seq = 1;
    for row in &rows {
        let seq: i64 = row.try_get("seq")?;
        let user_id: Option<String> = row.try_get("user_id")?;
        let device_id: Option<String> = row.try_get("device_id")?;
        let action: String = row.try_get("action")?;
        let document_id: Option<String> = row.try_get("document_id")?;
        let detail: String = row.try_get("detail")?;
        let prev_hash: String = row.try_get("prev_hash")?;
        let stored: String = row.try_get("hash")?;
        if seq != expected_seq {
            return Ok(Verdict::Broken {
                seq: expected_seq,
                reason: format!("row {expected_seq} is missing (next is {seq})"),
            });
        }
        if prev_hash != prev {
            return Ok(Verdict::Broken {
                seq,
                reason: "does not follow the row before it".into(),
            });
        }
        let computed = hash(
            &prev,
            &Chained {
                seq,
                at: row.try_get("at")?,
                user_id: user_id.as_deref(),
                device_id: device_id.as_deref(),
                action: &action,
                document_id: document_id.as_deref(),
                detail: &detail,
            },
        );
        if computed != stored {
            return Ok(Verdict::Broken {
                seq,
                reason: "its content was altered".into(),
            });
        }
        prev = stored;
        expected_seq += 1;
    }
    Ok(Verdict::Intact {
        rows: expected_seq - 1,
    })
}
