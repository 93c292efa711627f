//! The audit trail (D19): who, on which device, when, did what — for API actions and for
//! every change accepted through sync. Rows are appended by the storage writer in the same
//! transaction as what they record, and hash-chained so that [`verify`] finds the first row
//! that was altered, inserted or removed.

use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::AppState;
use crate::db::Pool;
use crate::error::AppError;
use crate::storage::Write;

/// Records an API action; returns once it is committed, so a response never precedes its
/// audit row.
pub async fn record(state: &AppState, entry: Entry) -> Result<(), AppError> {
    state
        .storage
        .commit(vec![Write::Audit(entry)])
        .await
        .map_err(|error| AppError::Internal(error.into()))
}

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
