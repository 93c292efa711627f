//! The database connection: one `sqlx::Any` pool so the same queries run on the embedded
//! SQLite default and on PostgreSQL. Types are kept to what `Any` carries: TEXT ids,
//! 64-bit integer milliseconds and flags, byte blobs. Each backend has its own migrations
//! folder because the column type names differ.

use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};

pub type Pool = AnyPool;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot open the database: {0}")]
    Connect(#[source] sqlx::Error),
    #[error("cannot apply migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database url (expected sqlite:// or postgres://)")]
    UnsupportedUrl,
}

/// Opens the pool and brings the schema up to date.
pub async fn connect(url: &str) -> Result<Pool, DbError> {
    sqlx::any::install_default_drivers();
    let is_sqlite = url.starts_with("sqlite:");
    if !is_sqlite && !url.starts_with("postgres:") && !url.starts_with("postgresql:") {
        return Err(DbError::UnsupportedUrl);
    }
    if is_sqlite {
        create_parent_dir(url)?;
    }
    let options: AnyConnectOptions = url.parse().map_err(DbError::Connect)?;
    let pool = AnyPoolOptions::new()
        .max_connections(if is_sqlite { 8 } else { 16 })
        .acquire_timeout(Duration::from_secs(10))
        .after_connect(move |conn, _| {
            Box::pin(async move {
                if conn.backend_name().eq_ignore_ascii_case("sqlite") {
                    // FULL: a change acknowledged to a device must survive a power cut, not
                    // only a crash; group commit keeps the fsync cost per change small.
                    conn.execute(
                        "PRAGMA busy_timeout = 10000; PRAGMA synchronous = FULL; \
                         PRAGMA foreign_keys = ON;",
                    )
                    .await?;
                }
                Ok(())
            })
        })
        .connect_with(options)
        .await
        .map_err(DbError::Connect)?;
    if is_sqlite {
        // WAL persists in the file; readers then never block the writer.
        pool.execute("PRAGMA journal_mode = WAL")
            .await
            .map_err(DbError::Connect)?;
        sqlx::migrate!("../migrations/sqlite").run(&pool).await?;
    } else {
        sqlx::migrate!("../migrations/postgres").run(&pool).await?;
    }
    Ok(pool)
}

fn create_parent_dir(url: &str) -> Result<(), DbError> {
    let path = url
        .trim_start_matches("sqlite:")
        .trim_start_matches("//")
        .split('?')
        .next()
        .unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return Ok(());
    }
    if let Some(parent) = std::path::Path::new(path).parent() {
        std::fs::create_dir_all(parent).map_err(|source| DbError::DataDir {
            path: parent.display().to_string(),
            source,
        })?;
    }
    Ok(())
}

/// Milliseconds since the Unix epoch, the one time format stored in the database.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
