//! The catalogs: for each unit, two server-owned, read-only documents (plain and classified)
//! listing its records, which devices follow to learn of new reports. Their ids are keyed
//! with a server secret, so no client can derive one and offer a document of its own there
//! first; devices learn them from `GET /api/units`. Both exist from the moment their unit
//! does (created in the same transaction), so an id nobody registered is never a catalog.

use automerge::transaction::Transactable;
use automerge::{Automerge, ObjType, ROOT};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zhiban_protocol::DocumentId;

use crate::db::{Backend, Pool};
use crate::documents::{self, Chunk, DocumentMeta};

/// The secret catalog ids are keyed with; cheap to clone.
#[derive(Clone)]
pub struct CatalogKey([u8; 32]);

impl std::fmt::Debug for CatalogKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CatalogKey(<redacted>)")
    }
}

impl CatalogKey {
    /// The catalog of `unit_id`'s plain or classified records.
    pub fn id(&self, unit_id: &str, classified: bool) -> DocumentId {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.0) else {
            unreachable!("HMAC takes a key of any length");
        };
        mac.update(b"zhiban/catalog/v2/");
        mac.update(unit_id.as_bytes());
        mac.update(if classified {
            b"/classified"
        } else {
            b"/plain"
        });
        let digest = mac.finalize().into_bytes();
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        DocumentId::from_bytes(bytes)
    }
}

impl CatalogKey {
    pub fn from_bytes(bytes: [u8; 32]) -> CatalogKey {
        CatalogKey(bytes)
    }
}

/// Registers and stores `unit_id`'s two catalogs, inside the caller's transaction, unless
/// they exist.
pub async fn create(
    tx: &mut sqlx::AnyConnection,
    key: &CatalogKey,
    unit_id: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    let backend = Backend::of_connection(tx);
    for classified in [false, true] {
        let id = key.id(unit_id, classified);
        let exists: Option<String> = sqlx::query_scalar("SELECT id FROM documents WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_some() {
            continue;
        }
        let meta = DocumentMeta {
            unit_id: unit_id.to_owned(),
            classified,
            catalog: true,
            created_by: None,
        };
        documents::register(tx, &id, &meta, now).await?;
        let chunk = Chunk::Snapshot {
            seq: 0,
            data: initial(unit_id, classified),
        };
        documents::store_chunks(tx, backend, &[(&id, &chunk)], now).await?;
    }
    Ok(())
}

/// Creates the catalogs units made before catalogs were keyed do not have.
pub async fn create_missing(pool: &Pool, key: &CatalogKey, now: i64) -> Result<(), sqlx::Error> {
    let units: Vec<String> = sqlx::query_scalar("SELECT id FROM units ORDER BY id")
        .fetch_all(pool)
        .await?;
    let mut tx = crate::db::begin_write(pool).await?;
    for unit in units {
        create(&mut tx, key, &unit, now).await?;
    }
    tx.commit().await
}

/// A catalog with no entries yet.
fn initial(unit_id: &str, classified: bool) -> Vec<u8> {
    let mut doc = Automerge::new();
    let made = doc.transact::<_, _, automerge::AutomergeError>(|tx| {
        tx.put(ROOT, "type", "catalog")?;
        tx.put(ROOT, "unit", unit_id)?;
        tx.put(
            ROOT,
            "classification",
            if classified { "classified" } else { "plain" },
        )?;
        tx.put_object(ROOT, "documents", ObjType::Map)?;
        Ok(())
    });
    if let Err(failure) = made {
        // Only fixed keys and values are written: this cannot fail.
        tracing::error!(error = %failure.error, "cannot make a catalog");
    }
    doc.save()
}
