//! The register of incoming documents (D8): one row per registered document, by its
//! position, written item by item like a duty log.

use zhiban_records::register::Entry;

use super::items::{self, Items};
use super::{Common, to_json};
use crate::db::{Arg, Backend};

#[derive(Debug, Clone, Default)]
pub struct Rows {
    pub entries: Items<Entry>,
}

pub async fn write(
    tx: &mut sqlx::AnyConnection,
    backend: Backend,
    common: &Common,
    rows: &Rows,
) -> Result<(), sqlx::Error> {
    let columns = [
        "received_at",
        "sender",
        "title",
        "routed_to",
        "done",
        "problems",
    ];
    let table = ("register_entries", &columns[..]);
    items::write(tx, backend, common, table, &rows.entries, |entry| {
        let item = &entry.entry;
        vec![
            Arg::from(item.received_at),
            Arg::from(item.from.clone()),
            Arg::from(item.title.clone()),
            Arg::from(item.routed_to.clone()),
            Arg::from(i64::from(item.done)),
            Arg::from(to_json(&entry.errors)),
        ]
    })
    .await
}

pub async fn clear(tx: &mut sqlx::AnyConnection, id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM register_entries WHERE document_id = $1")
        .bind(id)
        .execute(tx)
        .await?;
    Ok(())
}
