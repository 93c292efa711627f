//! The projection: queryable rows derived from each duty record, one module per record type
//! (its rows, its tables, its read routes) behind the registry in this file. [`project`] runs
//! in the document's actor and reads the typed record (`zhiban-records`, lenient: a field that
//! does not fit costs that field and flags the record); [`write`] runs in the commit's
//! transaction. Long records (duty logs, registers) are projected item by item from what a
//! change touched, so a change costs work proportional to itself, not to the document.
//!
//! Derived only: `admin reproject` rebuilds every row from the documents. Knows nothing of
//! alerts: the rules read a [`Projection`] after it is written.

pub mod daily_report;
pub mod duty_log;
pub mod handover;
pub mod incident;
pub mod items;
pub mod register;
pub mod roster;
pub mod search;
pub mod status;
pub mod times;

use automerge::{Automerge, ObjId, Patch, ReadDoc};
use serde_json::Value;
use zhiban_protocol::DocumentId;
use zhiban_records::{RecordKind, json};

use crate::AppState;
use crate::db::Backend;
use crate::documents::DocumentMeta;

pub fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .merge(incident::routes())
        .merge(duty_log::routes())
        .merge(handover::routes())
        .merge(roster::routes())
        .merge(search::routes())
        .merge(status::routes())
}

/// What changed in a document since its rows were last written.
#[derive(Clone, Copy)]
pub enum Change<'a> {
    /// Unknown or everything: read the whole record.
    All,
    /// The patches of the changes since (automerge's patch log of the round).
    Patches(&'a [Patch]),
}

/// The document a projection reads.
pub struct Source<'a> {
    pub document_id: DocumentId,
    pub meta: &'a DocumentMeta,
    pub doc: &'a Automerge,
    /// When the server received the document's changes (kept for incidents).
    pub receipts: &'a times::Receipts,
}

/// What every record's rows carry.
#[derive(Debug, Clone)]
pub struct Common {
    pub document_id: DocumentId,
    pub kind: RecordKind,
    pub unit_id: String,
    pub classified: bool,
    /// Who created the document: responsible for its reports (D13).
    pub created_by: Option<String>,
    /// Stored for the first time in this transaction: it has no rows to replace and no alerts
    /// to settle, which spares a new report's commit a dozen statements.
    pub fresh: bool,
}

/// The record as a whole: its title and what the checks found. Absent when a change touched
/// only items of a long record.
#[derive(Debug, Clone, Default)]
pub struct Status {
    pub title: String,
    pub problems: Vec<String>,
    pub warnings: Vec<String>,
}

impl Status {
    /// The title and what the checks found, taken from `checked`.
    fn of(checked: &mut zhiban_records::Checked) -> Status {
        Status {
            title: checked
                .record
                .as_ref()
                .map(|record| record.title().to_owned())
                .unwrap_or_default(),
            problems: std::mem::take(&mut checked.errors),
            warnings: std::mem::take(&mut checked.warnings),
        }
    }
}

/// The rows one change of one record contributes.
#[derive(Debug, Clone)]
pub struct Projection {
    pub common: Common,
    pub status: Option<Status>,
    pub rows: Rows,
    pub search: search::Update,
}

/// Each record type's rows. Every `match` on it is exhaustive: a new type is added here, in
/// `zhiban_records::RecordKind`, in its own module and in a migration, and the compiler
/// names every place that must know it.
#[derive(Debug, Clone)]
pub enum Rows {
    Incident(incident::Rows),
    DutyLog(duty_log::Rows),
    Roster(roster::Rows),
    Handover(handover::Rows),
    DailyReport(daily_report::Rows),
    DocumentRegister(register::Rows),
}

impl Rows {
    /// No rows: for a record that cannot be read as its type at all.
    fn empty(kind: RecordKind) -> Rows {
        match kind {
            RecordKind::Incident => Rows::Incident(incident::Rows::default()),
            RecordKind::DutyLog => Rows::DutyLog(duty_log::Rows::default()),
            RecordKind::Roster => Rows::Roster(roster::Rows::default()),
            RecordKind::Handover => Rows::Handover(handover::Rows::default()),
            RecordKind::DailyReport => Rows::DailyReport(daily_report::Rows::default()),
            RecordKind::DocumentRegister => Rows::DocumentRegister(register::Rows::default()),
        }
    }
}

/// The record's type, from the document's `type` field.
pub fn kind_of(doc: &Automerge) -> Option<RecordKind> {
    json::text(doc, &automerge::ROOT, "type").and_then(|kind| RecordKind::of_name(&kind))
}

/// The rows of a duty record after `change`, or None for a document that is not one.
pub fn project(source: &Source<'_>, change: Change<'_>, fresh: bool) -> Option<Projection> {
    let kind = kind_of(source.doc)?;
    let common = Common {
        document_id: source.document_id,
        kind,
        unit_id: source.meta.unit_id.clone(),
        classified: source.meta.classified,
        created_by: source.meta.created_by.clone(),
        fresh,
    };
    let (status, rows, search) = match kind.items() {
        None => {
            let (mut checked, text) = read_whole(source.doc, kind);
            if !checked.is_valid() {
                tracing::warn!(document_id = %source.document_id, problems = ?checked.errors, "record stored but flagged");
            }
            let mut status = Status::of(&mut checked);
            use zhiban_records::Record;
            let rows = match checked.record {
                Some(Record::Incident(incident)) => {
                    let rows = incident::project(source.doc, &incident, source.receipts);
                    if let Some(row) = &rows.incident {
                        status.problems.extend(row.backdated.iter().cloned());
                    }
                    Rows::Incident(rows)
                }
                Some(Record::Roster(roster)) => Rows::Roster(roster::project(source.doc, roster)),
                Some(Record::Handover(handover)) => Rows::Handover(handover::Rows {
                    handover: Some(handover),
                }),
                Some(Record::DailyReport(report)) => Rows::DailyReport(daily_report::Rows {
                    report: Some(report),
                }),
                // Unreadable as its type: the record has its status and no rows.
                Some(Record::DutyLog(_) | Record::DocumentRegister(_)) | None => Rows::empty(kind),
            };
            (Some(status), rows, search::Update::whole(text))
        }
        Some(list) => {
            let delta = items::Delta::of(change, list);
            let header = delta.header.then(|| read_header(source.doc, kind, list));
            let (status, header_text) = match header {
                Some((status, text)) => (Some(status), Some(text)),
                None => (None, None),
            };
            let (rows, item_texts, truncate_at) = match kind {
                RecordKind::DutyLog => {
                    let (entries, texts) = items::read(
                        source.doc,
                        list,
                        &delta,
                        zhiban_records::duty_log::read_entry,
                    );
                    let truncate_at = entries.truncate_at;
                    (
                        Rows::DutyLog(duty_log::Rows { entries }),
                        texts,
                        truncate_at,
                    )
                }
                RecordKind::DocumentRegister => {
                    let (entries, texts) = items::read(
                        source.doc,
                        list,
                        &delta,
                        zhiban_records::register::read_entry,
                    );
                    let truncate_at = entries.truncate_at;
                    (
                        Rows::DocumentRegister(register::Rows { entries }),
                        texts,
                        truncate_at,
                    )
                }
                RecordKind::Incident
                | RecordKind::Roster
                | RecordKind::Handover
                | RecordKind::DailyReport => (Rows::empty(kind), Vec::new(), None),
            };
            let search = search::Update::items(header_text, list, item_texts, truncate_at);
            (status, rows, search)
        }
    };
    Some(Projection {
        common,
        status,
        rows,
        search,
    })
}

/// A record read whole, with its search text.
fn read_whole(doc: &Automerge, kind: RecordKind) -> (zhiban_records::Checked, String) {
    let mut view = json::read(doc, &automerge::ROOT);
    zhiban_records::read::clean(&mut view);
    let text = zhiban_records::read::search_text(&view, &[]);
    (zhiban_records::read_record(kind, view), text)
}

/// A long record's fields other than its items, and their search text.
fn read_header(doc: &Automerge, kind: RecordKind, list: &str) -> (Status, String) {
    let mut view = json::read_except(doc, &automerge::ROOT, &[list]);
    zhiban_records::read::clean(&mut view);
    let text = zhiban_records::read::search_text(&view, &[]);
    let mut checked = zhiban_records::read_record(kind, view);
    (Status::of(&mut checked), text)
}

/// Writes a projection's rows (inside the commit's transaction).
pub async fn write(
    tx: &mut sqlx::AnyConnection,
    backend: Backend,
    projection: &Projection,
    now: i64,
) -> Result<(), sqlx::Error> {
    let common = &projection.common;
    let id = common.document_id.to_string();
    if let Some(status) = &projection.status {
        // A document whose `type` changed leaves the rows of its former type behind.
        if !common.fresh
            && let Some(former) = status::kind(tx, &id).await?
            && former != common.kind
        {
            clear(tx, former, &id).await?;
        }
        status::upsert(tx, common, status, now).await?;
    }
    match &projection.rows {
        Rows::Incident(rows) => incident::write(tx, common, rows, now).await?,
        Rows::DutyLog(rows) => duty_log::write(tx, backend, common, rows).await?,
        Rows::Roster(rows) => roster::write(tx, common, rows).await?,
        Rows::Handover(rows) => handover::write(tx, common, rows, now).await?,
        Rows::DailyReport(rows) => daily_report::write(tx, common, rows).await?,
        Rows::DocumentRegister(rows) => register::write(tx, backend, common, rows).await?,
    }
    search::write(tx, backend, common, &projection.search).await
}

/// Removes a record's rows of `kind`.
async fn clear(
    tx: &mut sqlx::AnyConnection,
    kind: RecordKind,
    id: &str,
) -> Result<(), sqlx::Error> {
    match kind {
        RecordKind::Incident => incident::clear(tx, id).await,
        RecordKind::DutyLog => duty_log::clear(tx, id).await,
        RecordKind::Roster => roster::clear(tx, id).await,
        RecordKind::Handover => handover::clear(tx, id).await,
        RecordKind::DailyReport => daily_report::clear(tx, id).await,
        RecordKind::DocumentRegister => register::clear(tx, id).await,
    }
}

/// The items of `kind` with problems of their own, for the record view.
async fn item_problems(
    pool: &crate::db::Pool,
    kind: RecordKind,
    id: &str,
) -> Result<Vec<zhiban_api::ItemProblems>, sqlx::Error> {
    match kind {
        RecordKind::DutyLog => items::problems(pool, "log_entries", id).await,
        RecordKind::DocumentRegister => items::problems(pool, "register_entries", id).await,
        RecordKind::Incident
        | RecordKind::Roster
        | RecordKind::Handover
        | RecordKind::DailyReport => Ok(Vec::new()),
    }
}

/// Records that `identity` read a classified record through the API (D18, D19): who knew
/// what, and when, is the question the trail must answer for these above all.
pub(crate) async fn audit_classified_read(
    state: &AppState,
    identity: &crate::access::Identity,
    document_id: &str,
) -> Result<(), sqlx::Error> {
    let entry = crate::audit::Entry::new("record.read_classified")
        .by(&identity.user_id, Some(&identity.device_id))
        .document(document_id);
    crate::audit::record(
        &state.pool,
        &state.audit_key,
        &[entry],
        state.clock.now_ms(),
    )
    .await
}

/// The object at `list[position]` under the root.
pub(crate) fn element(doc: &Automerge, list: &str, position: usize) -> Option<ObjId> {
    let (_, list) = doc.get(automerge::ROOT, list).ok()??;
    match doc.get(&list, position).ok()?? {
        (automerge::Value::Object(_), item) => Some(item),
        _ => None,
    }
}

/// The actor (hex) of the operation that wrote the current value of `object.key`: who wrote
/// it, as opposed to whose name it holds.
pub(crate) fn writer(doc: &Automerge, object: &ObjId, key: &str) -> Option<String> {
    match doc.get(object, key).ok()?? {
        (_, ObjId::Id(_, actor, _)) => Some(actor.to_hex_string()),
        (_, ObjId::Root) => None,
    }
}

/// A document id column.
pub(crate) fn document_id(
    row: &sqlx::any::AnyRow,
    column: &str,
) -> Result<DocumentId, sqlx::Error> {
    use sqlx::Row;
    row.try_get::<String, _>(column)?
        .parse()
        .map_err(|error| sqlx::Error::Decode(Box::new(error)))
}

/// A JSON text column.
pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}

/// A JSON text column read back; what does not parse reads as the type's default.
pub(crate) fn from_json<T: serde::de::DeserializeOwned + Default>(text: Option<&str>) -> T {
    text.and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or_default()
}

/// An enum stored as its serde name.
pub(crate) fn parse_name<T: serde::de::DeserializeOwned>(text: Option<String>) -> Option<T> {
    serde_json::from_value(Value::String(text?)).ok()
}
