//! Long records, item by item. A duty log gains a call every few minutes for a whole shift;
//! reading and rewriting all of it on every change cost 16 ms at 1,000 calls. Instead the
//! patches of a change say which items it touched and from which position the list was
//! reshaped; only those items are read and their rows rewritten (rows are keyed by position).

use std::collections::BTreeSet;

use automerge::{Automerge, PatchAction, Prop, ReadDoc};
use serde_json::Value;
use sqlx::Row;
use zhiban_records::{json, read};

use super::{Change, Common};
use crate::db::{Arg, Backend, Sql};

/// What a change did to a long record.
#[derive(Debug, Clone, Default)]
pub struct Delta {
    /// Fields outside the item list changed.
    pub header: bool,
    /// Items were inserted or removed at this position or later: everything from here to the
    /// end may have moved.
    pub from: Option<usize>,
    /// Items changed in place.
    pub touched: BTreeSet<usize>,
}

impl Delta {
    /// Everything.
    pub fn all() -> Delta {
        Delta {
            header: true,
            from: Some(0),
            touched: BTreeSet::new(),
        }
    }

    /// What `change` did, for the record whose items are the root list `list`.
    pub fn of(change: Change<'_>, list: &str) -> Delta {
        let Change::Patches(patches) = change else {
            return Delta::all();
        };
        let mut delta = Delta::default();
        for patch in patches {
            match patch.path.as_slice() {
                // A field of the root: the list itself replaced, or a header field.
                [] => match &patch.action {
                    PatchAction::PutMap { key, .. } | PatchAction::DeleteMap { key }
                        if key == list =>
                    {
                        delta.reshaped(0)
                    }
                    PatchAction::Increment {
                        prop: Prop::Map(key),
                        ..
                    }
                    | PatchAction::Conflict {
                        prop: Prop::Map(key),
                    } if key == list => delta.reshaped(0),
                    _ => delta.header = true,
                },
                // The list object itself.
                [(_, Prop::Map(key))] if key == list => match &patch.action {
                    PatchAction::Insert { index, .. } | PatchAction::DeleteSeq { index, .. } => {
                        delta.reshaped(*index)
                    }
                    PatchAction::PutSeq { index, .. }
                    | PatchAction::Increment {
                        prop: Prop::Seq(index),
                        ..
                    }
                    | PatchAction::Conflict {
                        prop: Prop::Seq(index),
                    } => {
                        delta.touched.insert(*index);
                    }
                    _ => delta.reshaped(0),
                },
                // Inside an item.
                [(_, Prop::Map(key)), (_, Prop::Seq(index)), ..] if key == list => {
                    delta.touched.insert(*index);
                }
                _ => delta.header = true,
            }
        }
        delta
    }

    fn reshaped(&mut self, at: usize) {
        self.from = Some(self.from.map_or(at, |from| from.min(at)));
    }

    /// The positions to read again in a list now `len` long, in order.
    pub fn positions(&self, len: usize) -> Vec<usize> {
        let mut positions: BTreeSet<usize> =
            self.touched.iter().copied().filter(|p| *p < len).collect();
        if let Some(from) = self.from {
            positions.extend(from..len);
        }
        positions.into_iter().collect()
    }
}

/// Items read again: their new values by position, and the list's length when it was
/// reshaped (rows at or past it are removed).
#[derive(Debug, Clone)]
pub struct Items<T> {
    pub changed: Vec<(usize, T)>,
    pub truncate_at: Option<usize>,
}

impl<T> Default for Items<T> {
    fn default() -> Self {
        Self {
            changed: Vec::new(),
            truncate_at: None,
        }
    }
}

/// Reads the items `delta` names from the root list `list` with `read_item`, and each one's
/// search text.
pub fn read<T>(
    doc: &Automerge,
    list: &str,
    delta: &Delta,
    read_item: impl Fn(usize, Value) -> T,
) -> (Items<T>, Vec<(usize, String)>) {
    let object = match doc.get(automerge::ROOT, list) {
        Ok(Some((automerge::Value::Object(_), object))) => Some(object),
        _ => None,
    };
    let len = object.as_ref().map_or(0, |object| doc.length(object));
    let mut items = Items {
        changed: Vec::new(),
        truncate_at: delta.from.map(|_| len),
    };
    let mut texts = Vec::new();
    let Some(object) = object else {
        return (items, texts);
    };
    for position in delta.positions(len) {
        let mut view = match doc.get(&object, position) {
            Ok(Some((automerge::Value::Object(_), item))) => json::read(doc, &item),
            Ok(Some((value, item))) => json::read_value(doc, value, &item),
            _ => Value::Null,
        };
        read::clean(&mut view);
        texts.push((position, read::search_text(&view, &[])));
        items.changed.push((position, read_item(position, view)));
    }
    (items, texts)
}

/// Rows per multi-row statement: a long record read whole writes in a few statements.
const ROWS_PER_STATEMENT: usize = 200;

/// Writes a long record's items to `table`, keyed by (document, position): upserts the rows
/// of the items read again, `values` giving each one's `columns`, and removes the rows past
/// the list's end when it was reshaped.
pub async fn write<T>(
    tx: &mut sqlx::AnyConnection,
    backend: Backend,
    common: &Common,
    (table, columns): (&'static str, &[&'static str]),
    items: &Items<T>,
    values: impl Fn(&T) -> Vec<Arg>,
) -> Result<(), sqlx::Error> {
    let id = common.document_id.to_string();
    for chunk in items.changed.chunks(ROWS_PER_STATEMENT) {
        let mut upsert = Sql::for_backend(
            &format!(
                "INSERT INTO {table} (document_id, position, unit_id, classified, {}) VALUES ",
                columns.join(", ")
            ),
            backend.is_sqlite(),
        );
        for (index, (position, item)) in chunk.iter().enumerate() {
            if index > 0 {
                upsert.push(", ");
            }
            let mut row = vec![
                Arg::from(id.clone()),
                Arg::from(i64::try_from(*position).unwrap_or(i64::MAX)),
                Arg::from(common.unit_id.clone()),
                Arg::from(i64::from(common.classified)),
            ];
            row.extend(values(item));
            upsert.bind_list(row);
        }
        let updates: Vec<String> = ["unit_id", "classified"]
            .iter()
            .chain(columns)
            .map(|column| format!("{column} = excluded.{column}"))
            .collect();
        upsert.push(&format!(
            " ON CONFLICT (document_id, position) DO UPDATE SET {}",
            updates.join(", ")
        ));
        upsert.query().execute(&mut *tx).await?;
    }
    if let Some(len) = items.truncate_at
        && !common.fresh
    {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM {table} WHERE document_id = $1 AND position >= $2"
        )))
        .bind(&id)
        .bind(i64::try_from(len).unwrap_or(i64::MAX))
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

/// Positions of `table` rows of one document whose `problems` are not empty.
pub async fn problems(
    pool: &crate::db::Pool,
    table: &'static str,
    document_id: &str,
) -> Result<Vec<zhiban_api::ItemProblems>, sqlx::Error> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT position, problems FROM {table} WHERE document_id = $1 AND problems <> '[]' \
         ORDER BY position"
    )))
    .bind(document_id)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(zhiban_api::ItemProblems {
                position: row.try_get("position")?,
                problems: super::from_json(
                    row.try_get::<Option<String>, _>("problems")?.as_deref(),
                ),
            })
        })
        .collect()
}
