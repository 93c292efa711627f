//! The audit trail (D19): who, on which device, when, did what — for API actions and for
//! every change accepted through sync. [`append`] adds entries inside the caller's own
//! transaction, so an action and its audit row commit together or not at all; each row
//! carries an HMAC, under the audit key (a key file, never in the database), of its content
//! and the row before, so that [`verify`] finds the first row that was altered, inserted or
//! removed, and nobody without the key can write a chain that passes. Dropping the newest
//! rows leaves a valid chain: [`checkpoint`] appends the signed head to a file outside the
//! database from time to time, and [`verify`] checks the table still reaches every one.
//! Plain SQL: knows nothing of the modules that record.

use std::io::Write;
use std::path::Path;

use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::db::{Arg, Backend, Pool, Sql};

/// The key of the chain's HMACs and of the checkpoints (`keys`).
#[derive(Clone)]
pub struct AuditKey([u8; 32]);

impl AuditKey {
    pub fn from_bytes(bytes: [u8; 32]) -> AuditKey {
        AuditKey(bytes)
    }

    fn mac(&self) -> Hmac<Sha256> {
        Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes a key of any length")
    }
}

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditKey(<redacted>)")
    }
}

/// Keyed rows' hashes start so; rows written before the chain was keyed have plain SHA-256
/// hex and may only come before every keyed row.
const KEYED: &str = "k1:";

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
    key: &AuditKey,
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
            Some(key),
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
pub async fn record(
    pool: &Pool,
    key: &AuditKey,
    entries: &[Entry],
    now: i64,
) -> Result<(), sqlx::Error> {
    let mut tx = crate::db::begin_write(pool).await?;
    append(&mut tx, key, entries, now).await?;
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

/// The row's hash over the previous hash and every field, each length-prefixed so that no
/// two different rows serialise alike: an HMAC under `key`, or (None) the plain SHA-256 of
/// rows written before the chain was keyed.
pub fn hash(key: Option<&AuditKey>, prev_hash: &str, row: &Chained<'_>) -> String {
    let mut bytes = Vec::with_capacity(128 + row.detail.len());
    let mut field = |value: &[u8]| {
        bytes.extend_from_slice(&(value.len() as u64).to_be_bytes());
        bytes.extend_from_slice(value);
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
    match key {
        Some(key) => {
            let mut mac = key.mac();
            mac.update(&bytes);
            format!("{KEYED}{}", hex::encode(mac.finalize().into_bytes()))
        }
        None => hex::encode(Sha256::digest(&bytes)),
    }
}

/// The outcome of checking the chain.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Intact { rows: i64 },
    Broken { seq: i64, reason: String },
}

/// Walks the whole chain in order and reports the first row that does not fit, then checks
/// that the chain still holds every head recorded in `checkpoints` (if given).
pub async fn verify(
    pool: &Pool,
    key: &AuditKey,
    checkpoints: Option<&Path>,
) -> Result<Verdict, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT seq, at, user_id, device_id, action, document_id, detail, prev_hash, hash \
         FROM audit_log ORDER BY seq",
    )
    .fetch_all(pool)
    .await?;
    let mut prev = GENESIS.to_owned();
    let mut expected_seq = 1;
    let mut seen_keyed = false;
    let mut heads = std::collections::HashMap::new();
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
        let keyed = stored.starts_with(KEYED);
        if keyed {
            seen_keyed = true;
        } else if seen_keyed {
            return Ok(Verdict::Broken {
                seq,
                reason: "an unkeyed row after keyed ones (written without the audit key)".into(),
            });
        }
        let computed = hash(
            keyed.then_some(key),
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
        heads.insert(seq, stored.clone());
        prev = stored;
        expected_seq += 1;
    }
    if let Some(path) = checkpoints {
        for (line, checkpoint) in read_checkpoints(path)?.into_iter().enumerate() {
            let Some((seq, head)) = checkpoint.verified(key) else {
                return Ok(Verdict::Broken {
                    seq: 0,
                    reason: format!(
                        "checkpoint {} in {} is not signed with the audit key",
                        line + 1,
                        path.display()
                    ),
                });
            };
            match heads.get(&seq) {
                Some(stored) if *stored == head => {}
                Some(_) => {
                    return Ok(Verdict::Broken {
                        seq,
                        reason: "differs from the checkpoint taken of it".into(),
                    });
                }
                None => {
                    return Ok(Verdict::Broken {
                        seq,
                        reason: format!(
                            "is missing: a checkpoint saw the trail reach it ({} rows are left)",
                            expected_seq - 1
                        ),
                    });
                }
            }
        }
    }
    Ok(Verdict::Intact {
        rows: expected_seq - 1,
    })
}

/// One line of the checkpoint file: `<seq> <head hash> <at> <hmac>`.
struct Checkpoint {
    seq: i64,
    head: String,
    at: i64,
    mac: String,
}

impl Checkpoint {
    fn signer(key: &AuditKey, seq: i64, head: &str, at: i64) -> Hmac<Sha256> {
        let mut mac = key.mac();
        mac.update(format!("zhiban-audit-checkpoint\n{seq}\n{head}\n{at}").as_bytes());
        mac
    }

    fn parse(line: &str) -> Option<Checkpoint> {
        let mut parts = line.split_whitespace();
        let checkpoint = Checkpoint {
            seq: parts.next()?.parse().ok()?,
            head: parts.next()?.to_owned(),
            at: parts.next()?.parse().ok()?,
            mac: parts.next()?.to_owned(),
        };
        parts.next().is_none().then_some(checkpoint)
    }

    /// Its seq and head, if its signature holds (compared in constant time).
    fn verified(&self, key: &AuditKey) -> Option<(i64, String)> {
        let mac = hex::decode(&self.mac).ok()?;
        Checkpoint::signer(key, self.seq, &self.head, self.at)
            .verify_slice(&mac)
            .ok()
            .map(|()| (self.seq, self.head.clone()))
    }
}

/// Every line of the file; a missing file has none, an unreadable line is a forged one.
fn read_checkpoints(path: &Path) -> Result<Vec<Checkpoint>, sqlx::Error> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(sqlx::Error::Io(error)),
    };
    Ok(text
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            Checkpoint::parse(line).unwrap_or(Checkpoint {
                seq: 0,
                head: String::new(),
                at: 0,
                mac: String::new(),
            })
        })
        .collect())
}

/// Appends the chain's head to `path`, signed, unless the file's last line already holds
/// it. Returns the seq written, if any.
pub async fn checkpoint(
    pool: &Pool,
    key: &AuditKey,
    path: &Path,
    now: i64,
) -> Result<Option<i64>, sqlx::Error> {
    let head: Option<(i64, String)> =
        sqlx::query_as("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
            .fetch_optional(pool)
            .await?;
    let Some((seq, head)) = head else {
        return Ok(None);
    };
    if read_checkpoints(path)?
        .last()
        .is_some_and(|last| last.seq == seq)
    {
        return Ok(None);
    }
    let mac = Checkpoint::signer(key, seq, &head, now)
        .finalize()
        .into_bytes();
    let line = format!("{seq} {head} {now} {}\n", hex::encode(mac));
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(sqlx::Error::Io)?;
    file.write_all(line.as_bytes()).map_err(sqlx::Error::Io)?;
    file.sync_all().map_err(sqlx::Error::Io)?;
    Ok(Some(seq))
}
