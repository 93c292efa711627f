//! The device's durable store: SQLite in the data directory, WAL mode, `synchronous = FULL`.
//! Everything the device holds lives here, so every operation works with no network, and
//! several processes of one device (the CLI and a background `run`) can share it.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use automerge::ChangeHash;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};
use zhiban_protocol::DocumentId;

use crate::Error;

#[derive(Clone)]
pub(crate) struct Store {
    pool: SqlitePool,
}

/// One document as stored: its chunks in write order.
pub(crate) struct StoredDocument {
    pub id: DocumentId,
    pub chunks: Vec<(i64, Vec<u8>)>,
    pub server_state: Option<Vec<u8>>,
    pub server_heads: Vec<ChangeHash>,
}

/// Writes made together in one transaction by the sync connection.
pub(crate) enum RemoteWrite {
    /// Changes received from the server; returns the chunk id through `commit_remote`.
    Changes { id: DocumentId, data: Vec<u8> },
    ServerSync {
        id: DocumentId,
        state: Vec<u8>,
        heads: Vec<ChangeHash>,
    },
}

impl Store {
    pub async fn open(data_dir: &Path) -> Result<Store, Error> {
        std::fs::create_dir_all(data_dir).map_err(|e| Error::Storage(e.to_string()))?;
        let options = SqliteConnectOptions::new()
            .filename(data_dir.join("device.db"))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // A report is "saved on this device" only once it survives a pulled battery.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(30))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Store { pool })
    }

    /// Removes a document and everything kept of it.
    pub async fn delete_document(&self, id: DocumentId) -> Result<(), Error> {
        let mut tx = self.pool.begin().await?;
        for statement in [
            "DELETE FROM chunks WHERE document_id = ?1",
            "DELETE FROM server_sync WHERE document_id = ?1",
            "DELETE FROM refusals WHERE document_id = ?1",
            "DELETE FROM documents WHERE id = ?1",
        ] {
            sqlx::query(statement)
                .bind(id.to_string())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Records (or, with None, clears) the server's refusal of this device's changes.
    pub async fn set_refusal(
        &self,
        id: DocumentId,
        reason: Option<&str>,
        at: i64,
    ) -> Result<(), Error> {
        match reason {
            Some(reason) => sqlx::query(
                "INSERT INTO refusals (document_id, reason, at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (document_id) DO UPDATE SET reason = excluded.reason, at = excluded.at",
            )
            .bind(id.to_string())
            .bind(reason)
            .bind(at),
            None => sqlx::query("DELETE FROM refusals WHERE document_id = ?1").bind(id.to_string()),
        }
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every standing refusal, by document id.
    pub async fn refusals(&self) -> Result<HashMap<String, String>, Error> {
        Ok(sqlx::query_as("SELECT document_id, reason FROM refusals")
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .collect())
    }

    pub async fn setting(&self, key: &str) -> Result<Option<String>, Error> {
        Ok(
            sqlx::query_scalar("SELECT value FROM settings WHERE key = ?1")
                .bind(key)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    pub async fn set_setting(&self, key: &str, value: &str) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO settings (key, value) VALUES (?1, ?2) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn delete_setting(&self, key: &str) -> Result<(), Error> {
        sqlx::query("DELETE FROM settings WHERE key = ?1")
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn load_all(&self) -> Result<Vec<StoredDocument>, Error> {
        let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM documents ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        let mut documents = Vec::with_capacity(ids.len());
        for id in ids {
            let Ok(document_id) = id.parse::<DocumentId>() else {
                tracing::error!(%id, "skipping a stored document with a malformed id");
                continue;
            };
            documents.push(self.load(document_id).await?);
        }
        Ok(documents)
    }

    pub async fn load(&self, id: DocumentId) -> Result<StoredDocument, Error> {
        let chunks = self.chunks_after(id, 0).await?;
        let sync =
            sqlx::query("SELECT state, server_heads FROM server_sync WHERE document_id = ?1")
                .bind(id.to_string())
                .fetch_optional(&self.pool)
                .await?;
        let (server_state, server_heads) = match sync {
            Some(row) => (
                Some(row.try_get::<Vec<u8>, _>("state")?),
                decode_heads(&row.try_get::<Vec<u8>, _>("server_heads")?),
            ),
            None => (None, Vec::new()),
        };
        Ok(StoredDocument {
            id,
            chunks,
            server_state,
            server_heads,
        })
    }

    pub async fn chunks_after(
        &self,
        id: DocumentId,
        after: i64,
    ) -> Result<Vec<(i64, Vec<u8>)>, Error> {
        let rows = sqlx::query(
            "SELECT id, data FROM chunks WHERE document_id = ?1 AND id > ?2 ORDER BY id",
        )
        .bind(id.to_string())
        .bind(after)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("id")?, row.try_get("data")?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Error::from)
    }

    /// Runs `edit` inside an immediate (write-locked) transaction, so a local change is always
    /// made on top of the latest stored state of the document even when another process of the
    /// same device writes too. `edit` gets the chunks stored since `after` and returns the new
    /// chunk to append (or None). Returns the new chunk's id.
    pub async fn local_write<F>(
        &self,
        id: DocumentId,
        after: i64,
        create: bool,
        edit: F,
    ) -> Result<Option<i64>, Error>
    where
        F: FnOnce(Vec<(i64, Vec<u8>)>) -> Result<Option<Vec<u8>>, Error>,
    {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let rows = sqlx::query(
            "SELECT id, data FROM chunks WHERE document_id = ?1 AND id > ?2 ORDER BY id",
        )
        .bind(id.to_string())
        .bind(after)
        .fetch_all(&mut *tx)
        .await?;
        let newer = rows
            .iter()
            .map(|row| Ok((row.try_get("id")?, row.try_get("data")?)))
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        let Some(data) = edit(newer)? else {
            return Ok(None);
        };
        let now = chrono::Utc::now().timestamp_millis();
        if create {
            sqlx::query(
                "INSERT INTO documents (id, created_at, local_seq) \
                 VALUES (?1, ?2, (SELECT COALESCE(MAX(local_seq), 0) + 1 FROM documents))",
            )
            .bind(id.to_string())
            .bind(now)
            .execute(&mut *tx)
            .await?;
        } else {
            sqlx::query(
                "UPDATE documents SET local_seq = (SELECT MAX(local_seq) + 1 FROM documents) \
                 WHERE id = ?1",
            )
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        }
        let chunk_id = sqlx::query("INSERT INTO chunks (document_id, data) VALUES (?1, ?2)")
            .bind(id.to_string())
            .bind(data)
            .execute(&mut *tx)
            .await?
            .last_insert_rowid();
        tx.commit().await?;
        Ok(Some(chunk_id))
    }

    /// Records a document learned of from the server (through a catalog) before its content
    /// arrives; does nothing if it is already held.
    pub async fn ensure_document(&self, id: DocumentId) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO documents (id, created_at, local_seq) VALUES (?1, ?2, 0) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(id.to_string())
        .bind(chrono::Utc::now().timestamp_millis())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Stores what the sync connection received, in one transaction; returns the ids of the
    /// `Changes` chunks in order.
    pub async fn commit_remote(&self, writes: &[RemoteWrite]) -> Result<Vec<i64>, Error> {
        let mut tx = self.pool.begin().await?;
        let mut chunk_ids = Vec::new();
        for write in writes {
            match write {
                RemoteWrite::Changes { id, data } => {
                    let chunk_id =
                        sqlx::query("INSERT INTO chunks (document_id, data) VALUES (?1, ?2)")
                            .bind(id.to_string())
                            .bind(data)
                            .execute(&mut *tx)
                            .await?
                            .last_insert_rowid();
                    chunk_ids.push(chunk_id);
                }
                RemoteWrite::ServerSync { id, state, heads } => {
                    sqlx::query(
                        "INSERT INTO server_sync (document_id, state, server_heads) \
                         VALUES (?1, ?2, ?3) ON CONFLICT (document_id) DO UPDATE \
                         SET state = excluded.state, server_heads = excluded.server_heads",
                    )
                    .bind(id.to_string())
                    .bind(state)
                    .bind(encode_heads(heads))
                    .execute(&mut *tx)
                    .await?;
                }
            }
        }
        tx.commit().await?;
        Ok(chunk_ids)
    }

    /// Replaces the chunks up to `through` with one snapshot, keeping any written since.
    pub async fn compact(
        &self,
        id: DocumentId,
        through: i64,
        snapshot: Vec<u8>,
    ) -> Result<i64, Error> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM chunks WHERE document_id = ?1 AND id <= ?2")
            .bind(id.to_string())
            .bind(through)
            .execute(&mut *tx)
            .await?;
        let chunk_id = sqlx::query("INSERT INTO chunks (document_id, data) VALUES (?1, ?2)")
            .bind(id.to_string())
            .bind(snapshot)
            .execute(&mut *tx)
            .await?
            .last_insert_rowid();
        tx.commit().await?;
        Ok(chunk_id)
    }

    /// The highest local write sequence: grows whenever any process of this device edits.
    pub async fn local_seq(&self) -> Result<i64, Error> {
        Ok(
            sqlx::query_scalar("SELECT COALESCE(MAX(local_seq), 0) FROM documents")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    pub async fn changed_since(&self, local_seq: i64) -> Result<Vec<DocumentId>, Error> {
        let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM documents WHERE local_seq > ?1")
            .bind(local_seq)
            .fetch_all(&self.pool)
            .await?;
        Ok(ids.iter().filter_map(|id| id.parse().ok()).collect())
    }
}

fn encode_heads(heads: &[ChangeHash]) -> Vec<u8> {
    heads.iter().flat_map(|hash| hash.0).collect()
}

fn decode_heads(bytes: &[u8]) -> Vec<ChangeHash> {
    bytes
        .chunks_exact(32)
        .filter_map(|chunk| ChangeHash::try_from(chunk).ok())
        .collect()
}
