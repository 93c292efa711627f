//! The register of incoming documents (D8): one row per registered document, by its
//! position, written item by item like a duty log.

use zhiban_records::register::Entry;

use super::items::Items;
use super::{Common, to_json};
use crate::db::{Arg, Backend, Sql};

#[derive(Debug, Clone, Default)]
pub struct Rows {
    pub entries: Items<Entry>,
}

const ROWS_PER_STATEMENT: usize = 200;

pub async fn write(
    tx: &mut sqlx::AnyConnection,
    backend: Backend,
    common: &Common,
    rows: &Rows,
) -> Result<(), sqlx::Error> {
    let id = common.document_id.to_string();
    for chunk in rows.entries.changed.chunks(ROWS_PER_STATEMENT) {
        let mut upsert = Sql::for_backend(
            "INSERT INTO register_entries (document_id, position, unit_id, classified, \
             received_at, sender, title, routed_to, done, problems) VALUES ",
            backend.is_sqlite(),
        );
        for (index, (position, entry)) in chunk.iter().enumerate() {
            if index > 0 {
                upsert.push(", ");
            }
            let item = &entry.entry;
            upsert.bind_list([
                Arg::from(id.clone()),
                Arg::from(i64::try_from(*position).unwrap_or(i64::MAX)),
                Arg::from(common.unit_id.clone()),
                Arg::from(i64::from(common.classified)),
                Arg::from(item.received_at),
                Arg::from(item.from.clone()),
                Arg::from(item.title.clone()),
                Arg::from(item.routed_to.clone()),
                Arg::from(i64::from(item.done)),
                Arg::from(to_json(&entry.errors)),
            ]);
        }
        upsert.push(
            " ON CONFLICT (document_id, position) DO UPDATE SET \
             unit_id = excluded.unit_id, classified = excluded.classified, \
             received_at = excluded.received_at, sender = excluded.sender, \
             title = excluded.title, routed_to = excluded.routed_to, done = excluded.done, \
             problems = excluded.problems",
        );
        upsert.query().execute(&mut *tx).await?;
    }
    if let Some(len) = rows.entries.truncate_at
        && !common.fresh
    {
        sqlx::query("DELETE FROM register_entries WHERE document_id = $1 AND position >= $2")
            .bind(&id)
            .bind(i64::try_from(len).unwrap_or(i64::MAX))
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

pub async fn clear(tx: &mut sqlx::AnyConnection, id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM register_entries WHERE document_id = $1")
        .bind(id)
        .execute(tx)
        .await?;
    Ok(())
}
