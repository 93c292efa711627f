//! The server's keys live in files, never in the database: a copy of a database backup must
//! not be able to sign tokens (D24). Each key is 32 random bytes, hex in
//! `<keys_dir>/<name>.key` (mode 0600, its directory 0700), made on first start. Every node
//! of a deployment reads the same files (a shared secret mount, or copies). A deployment
//! that kept its keys in the `server_secrets` table (before this module) has them moved out
//! on its first start: written to the file, then deleted from the table with SQLite's
//! `secure_delete` (and the WAL checkpointed), so the database file holds them no more.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;
use rand::RngCore;

use crate::audit::AuditKey;
use crate::catalog::CatalogKey;
use crate::db::{Backend, Pool};
use crate::settings::Settings;

/// The keys a server signs and derives with.
pub struct Keys {
    /// Signs access tokens (HS256); `jwt_secret` in the settings overrides the file.
    pub jwt: Vec<u8>,
    /// The VAPID private scalar push services know the server by.
    pub vapid: [u8; 32],
    /// Derives the catalogs' document ids.
    pub catalog: CatalogKey,
    /// Keys the audit trail's chain and its checkpoints.
    pub audit: AuditKey,
}

impl Keys {
    pub async fn load(settings: &Settings, pool: &Pool) -> anyhow::Result<Keys> {
        let jwt = match &settings.jwt_secret {
            Some(secret) => {
                anyhow::ensure!(secret.len() >= 32, "jwt_secret must be at least 32 bytes");
                secret.as_bytes().to_vec()
            }
            None => key(settings, pool, "jwt").await?.to_vec(),
        };
        Ok(Keys {
            jwt,
            vapid: key(settings, pool, "vapid").await?,
            catalog: CatalogKey::from_bytes(key(settings, pool, "catalog").await?),
            audit: AuditKey::from_bytes(key(settings, pool, "audit").await?),
        })
    }
}

/// Where the key files are.
pub fn dir(settings: &Settings) -> PathBuf {
    settings
        .keys_dir
        .clone()
        .unwrap_or_else(|| settings.data_dir.join("keys"))
}

/// The key `name`: read from its file; else moved there from the database; else made.
pub async fn key(settings: &Settings, pool: &Pool, name: &str) -> anyhow::Result<[u8; 32]> {
    let dir = dir(settings);
    let path = dir.join(format!("{name}.key"));
    if let Some(key) = read(&path)? {
        return Ok(key);
    }
    let stored: Option<Vec<u8>> =
        sqlx::query_scalar("SELECT value FROM server_secrets WHERE name = $1")
            .bind(name)
            .fetch_optional(pool)
            .await?;
    let key = match stored {
        Some(stored) => stored
            .try_into()
            .map_err(|_| anyhow::anyhow!("the stored {name} key is not 32 bytes"))?,
        None => {
            let mut fresh = [0u8; 32];
            rand::rng().fill_bytes(&mut fresh);
            fresh
        }
    };
    // Another node (or a start at the same moment) may have written it first: its key wins.
    let key = write_if_absent(&dir, &path, &key)?;
    forget_stored(pool, name).await?;
    Ok(key)
}

fn read(path: &Path) -> anyhow::Result<Option<[u8; 32]>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error).with_context(|| format!("reading {}", path.display())),
    };
    let bytes = hex::decode(text.trim())
        .ok()
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
        .with_context(|| format!("{} must hold 64 hex digits", path.display()))?;
    Ok(Some(bytes))
}

/// Writes `key` to `path` unless a key is there already; returns the key that is there.
/// Written whole to a temporary file first and linked into place, so no node reads half a
/// key, and the link fails rather than replace one.
fn write_if_absent(dir: &Path, path: &Path, key: &[u8; 32]) -> anyhow::Result<[u8; 32]> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("restricting {}", dir.display()))?;
    let mut nonce = [0u8; 8];
    rand::rng().fill_bytes(&mut nonce);
    let temporary = dir.join(format!(".{}.tmp", hex::encode(nonce)));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temporary)
        .with_context(|| format!("creating {}", temporary.display()))?;
    writeln!(file, "{}", hex::encode(key))?;
    file.sync_all()?;
    let linked = std::fs::hard_link(&temporary, path);
    std::fs::remove_file(&temporary)?;
    match linked {
        Ok(()) => {
            std::fs::File::open(dir)?.sync_all()?;
            tracing::info!(path = %path.display(), "key written");
            Ok(*key)
        }
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
            read(path)?.context("a key file appeared and vanished")
        }
        Err(error) => Err(error).with_context(|| format!("writing {}", path.display())),
    }
}

/// Deletes a key the database still holds, so that its backups from now on hold none.
async fn forget_stored(pool: &Pool, name: &str) -> anyhow::Result<()> {
    let mut connection = pool.acquire().await?;
    let sqlite = Backend::of(pool).is_sqlite();
    if sqlite {
        // Deleted rows otherwise stay readable in free pages.
        sqlx::query("PRAGMA secure_delete = ON")
            .execute(&mut *connection)
            .await?;
    }
    let deleted = sqlx::query("DELETE FROM server_secrets WHERE name = $1")
        .bind(name)
        .execute(&mut *connection)
        .await?
        .rows_affected();
    if deleted > 0 {
        tracing::warn!(
            key = name,
            "key moved out of the database into its key file"
        );
        if sqlite {
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(&mut *connection)
                .await?;
        } else {
            sqlx::query("VACUUM server_secrets")
                .execute(&mut *connection)
                .await?;
        }
    }
    Ok(())
}
