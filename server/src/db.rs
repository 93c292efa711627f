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

/// Which database a pool talks to. The SQL is the same; how a write transaction starts, how
/// rows are locked and how the audit chain is serialised differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn of_url(url: &str) -> Backend {
        if url.starts_with("sqlite") {
            Backend::Sqlite
        } else {
            Backend::Postgres
        }
    }

    /// The database `pool` talks to.
    pub fn of(pool: &Pool) -> Backend {
        Backend::of_url(pool.connect_options().database_url.as_str())
    }

    /// The database `connection` talks to.
    pub fn of_connection(connection: &sqlx::AnyConnection) -> Backend {
        if connection.backend_name().eq_ignore_ascii_case("sqlite") {
            Backend::Sqlite
        } else {
            Backend::Postgres
        }
    }

    pub fn is_sqlite(self) -> bool {
        self == Backend::Sqlite
    }

    /// What a claiming SELECT appends so that two nodes never take the same row
    /// (PostgreSQL); SQLite has one writer and needs nothing.
    pub fn skip_locked(self) -> &'static str {
        match self {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
        }
    }
}

pub type Tx = sqlx::Transaction<'static, sqlx::Any>;

/// Starts a transaction that will write. On SQLite it takes the write lock at once
/// (`BEGIN IMMEDIATE`): a deferred transaction that reads and then writes could fail with
/// "database is locked" at its first write, where waiting is what is wanted.
pub async fn begin_write(pool: &Pool) -> Result<Tx, sqlx::Error> {
    match Backend::of(pool) {
        Backend::Sqlite => pool.begin_with("BEGIN IMMEDIATE").await,
        Backend::Postgres => pool.begin().await,
    }
}

/// Runs `work` in a savepoint of the transaction `tx`. A deterministic failure rolls back
/// only `work` and comes back as `Ok(Err(error))`, for the caller to record and go on; a
/// transient one fails the whole transaction (`Err`), to be retried.
pub async fn savepoint<T>(
    tx: &mut sqlx::AnyConnection,
    work: impl AsyncFnOnce(&mut sqlx::AnyConnection) -> Result<T, sqlx::Error>,
) -> Result<Result<T, sqlx::Error>, sqlx::Error> {
    use sqlx::Connection;
    let mut savepoint = tx.begin().await?;
    match work(&mut savepoint).await {
        Ok(value) => {
            savepoint.commit().await?;
            Ok(Ok(value))
        }
        Err(error) if is_transient(&error) => Err(error),
        Err(error) => {
            savepoint.rollback().await?;
            Ok(Err(error))
        }
    }
}

/// Whether trying the same work again may succeed: a busy or unreachable database, a lost
/// connection, a deadlock, a full disk. A deterministic failure (a constraint, a value the
/// database refuses, a bug in a statement) would fail the same way for ever; callers must not
/// retry those endlessly.
pub fn is_transient(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(error) => {
            let Some(code) = error.code() else {
                return true;
            };
            match code.parse::<u32>() {
                // SQLite result codes: the primary code is the low byte. BUSY, LOCKED, NOMEM,
                // IOERR, CORRUPT, FULL, CANTOPEN, PROTOCOL are about the database, not the data.
                Ok(sqlite) => matches!(sqlite & 0xff, 5 | 6 | 7 | 10 | 11 | 13 | 14 | 15),
                // PostgreSQL SQLSTATE classes: connection, transaction rollback (deadlock,
                // serialization), resources, lock not available, operator intervention, system.
                Err(_) => {
                    matches!(
                        &code[..2.min(code.len())],
                        "08" | "40" | "53" | "57" | "58" | "XX"
                    ) || code == "55P03"
                }
            }
        }
        sqlx::Error::Configuration(_)
        | sqlx::Error::InvalidArgument(_)
        | sqlx::Error::RowNotFound
        | sqlx::Error::TypeNotFound { .. }
        | sqlx::Error::ColumnIndexOutOfBounds { .. }
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Encode(_)
        | sqlx::Error::Decode(_) => false,
        _ => true,
    }
}

/// A value bound to a [`Sql`] statement.
#[derive(Debug, Clone)]
pub enum Arg {
    Text(Option<String>),
    Int(Option<i64>),
    Bytes(Vec<u8>),
}

impl From<String> for Arg {
    fn from(value: String) -> Self {
        Arg::Text(Some(value))
    }
}

impl From<&str> for Arg {
    fn from(value: &str) -> Self {
        Arg::Text(Some(value.to_owned()))
    }
}

impl From<Option<String>> for Arg {
    fn from(value: Option<String>) -> Self {
        Arg::Text(value)
    }
}

impl From<i64> for Arg {
    fn from(value: i64) -> Self {
        Arg::Int(Some(value))
    }
}

impl From<Option<i64>> for Arg {
    fn from(value: Option<i64>) -> Self {
        Arg::Int(value)
    }
}

impl From<Vec<u8>> for Arg {
    fn from(value: Vec<u8>) -> Self {
        Arg::Bytes(value)
    }
}

/// SQL assembled at run time (optional filters, multi-row inserts) with `$n` placeholders,
/// which both SQLite and PostgreSQL read; sqlx's `QueryBuilder` writes `?` for `Any`, which
/// PostgreSQL does not. Only fixed text is pushed; every value is bound.
#[derive(Debug, Default)]
pub struct Sql {
    text: String,
    args: Vec<Arg>,
    /// `?` placeholders: SQLite binds them by position, without looking each `$n` up by name
    /// (which costs a scan per parameter in statements with hundreds of them).
    positional: bool,
}

impl Sql {
    pub fn new(text: &str) -> Self {
        Self {
            text: text.to_owned(),
            args: Vec::new(),
            positional: false,
        }
    }

    /// For statements known to run on SQLite only when `sqlite` is true.
    pub fn for_backend(text: &str, sqlite: bool) -> Self {
        Self {
            positional: sqlite,
            ..Self::new(text)
        }
    }

    pub fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    pub fn bind(&mut self, value: impl Into<Arg>) -> &mut Self {
        self.args.push(value.into());
        if self.positional {
            self.text.push('?');
        } else {
            self.text.push_str(&format!("${}", self.args.len()));
        }
        self
    }

    /// `(v1, v2, …)` with each value bound.
    pub fn bind_list(&mut self, values: impl IntoIterator<Item = Arg>) -> &mut Self {
        self.push("(");
        for (index, value) in values.into_iter().enumerate() {
            if index > 0 {
                self.push(", ");
            }
            self.bind(value);
        }
        self.push(")")
    }

    pub fn query(&self) -> sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments> {
        let mut query = sqlx::query(sqlx::AssertSqlSafe(self.text.as_str()));
        for arg in &self.args {
            query = match arg {
                Arg::Text(value) => query.bind(value.clone()),
                Arg::Int(value) => query.bind(*value),
                Arg::Bytes(value) => query.bind(value.clone()),
            };
        }
        query
    }
}
