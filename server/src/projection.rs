//! The projection: queryable rows derived from each record after every stored change
//! (incidents, and the search text of every record, D20). Computed by the document's actor
//! and written by the storage writer in the same transaction as the change, so the rows never
//! describe something that is not stored. Derived only: [`reproject`] rebuilds them.

use automerge::{Automerge, ObjId, ObjType, ReadDoc, Value};
use sqlx::Row;
use zhiban_protocol::DocumentId;

use crate::db::{Arg, Pool, Sql};
use crate::storage::{Backend, DocumentMeta, Write};

/// The rows one document contributes.
#[derive(Debug, Clone, PartialEq)]
pub struct Projection {
    pub document_id: DocumentId,
    pub incident: Option<Incident>,
    /// For a duty log: its entries, with the log's unit and class.
    pub log_entries: Option<(String, bool, Vec<zhiban_records::LogEntry>)>,
    /// For a roster: the roster, with its unit and class.
    pub roster: Option<(String, bool, zhiban_records::Roster)>,
    /// For a handover: the handover, with its unit and class.
    pub handover: Option<(String, bool, zhiban_records::Handover)>,
    /// For a roster: per request, the actor that wrote its current status.
    pub deciders: Vec<Option<String>>,
    /// For an incident: its leaders' instructions (D14).
    pub instructions: Vec<InstructionRow>,
    /// For a daily or zero report (D15).
    pub daily_report: Option<(String, bool, zhiban_records::DailyReport)>,
    /// For a document register (D8): its entries.
    pub register: Option<(String, bool, Vec<zhiban_records::RegisteredDocument>)>,
    /// Every text of the record, for search.
    pub search_text: String,
    /// Who created the document: responsible for its reports (D13).
    pub created_by: Option<String>,
    /// The document is stored for the first time in this transaction: it has no rows to
    /// replace and no alerts to settle, which spares a report's commit a dozen statements.
    pub fresh: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Incident {
    pub unit_id: String,
    pub classified: bool,
    pub title: String,
    pub category: Option<String>,
    pub level: Option<String>,
    pub grade: Option<String>,
    pub status: Option<String>,
    pub location: Option<String>,
    pub known_at: Option<i64>,
    pub reported_at: Option<i64>,
    pub first_report_at: Option<i64>,
    pub follow_ups: Vec<i64>,
    pub final_report_at: Option<i64>,
    /// What the record checks found: never blocking (D11).
    pub warnings: Vec<String>,
    /// Structural faults: the record is stored but flagged.
    pub problems: Vec<String>,
}

/// An instruction, and the actor that wrote its `by`: it counts as the leader's only if that
/// actor is bound to that leader (see `sync::authorship`).
#[derive(Debug, Clone, PartialEq)]
pub struct InstructionRow {
    pub by_user: Option<String>,
    pub by_actor: Option<String>,
    pub to_user: Option<String>,
    pub at: i64,
    pub text: String,
    pub steps: usize,
    pub done: bool,
}

/// Keys whose values are identifiers, not text anyone searches for.
const NOT_SEARCHED: [&str; 8] = [
    "type",
    "schema",
    "unit",
    "classification",
    "device",
    "reported_by",
    "by",
    "created_by",
];

/// Record types with rows of their own; other documents are stored and synced but not
/// projected (they are not part of the duty record, and projecting costs a full read).
const RECORD_TYPES: [&str; 6] = [
    "incident",
    "duty_log",
    "roster",
    "handover",
    "daily_report",
    "document_register",
];

/// The rows of a duty record, or None for a document that is not one.
pub fn project(
    document_id: DocumentId,
    meta: &DocumentMeta,
    doc: &Automerge,
) -> Option<Projection> {
    if !root_text(doc, "type").is_some_and(|kind| RECORD_TYPES.contains(&kind.as_str())) {
        return None;
    }
    let view = zhiban_records::json::read(doc, &automerge::ROOT);
    let checked = zhiban_records::check(&view);
    let typed = match &checked.record {
        Some(zhiban_records::Record::Incident(incident)) => Some(incident.as_ref()),
        _ => None,
    };
    let incident =
        (view.get("type").and_then(serde_json::Value::as_str) == Some("incident")).then(|| {
            let text = |key: &str| {
                view.get(key)
                    .and_then(serde_json::Value::as_str)
                    .map(str::to_owned)
            };
            let number = |key: &str| {
                view.get(key)
                    .and_then(serde_json::Value::as_f64)
                    .map(|n| n as i64)
            };
            Incident {
                unit_id: meta.unit_id.clone(),
                classified: meta.classified,
                title: text("title").unwrap_or_default(),
                category: text("category"),
                level: text("level"),
                grade: text("grade"),
                status: text("status"),
                location: text("location"),
                known_at: number("known_at"),
                reported_at: number("reported_at"),
                first_report_at: typed
                    .and_then(zhiban_records::Incident::first_report_at)
                    .or(number("reported_at")),
                follow_ups: typed
                    .map(zhiban_records::Incident::follow_up_times)
                    .unwrap_or_default(),
                final_report_at: typed.and_then(zhiban_records::Incident::final_report_at),
                warnings: checked.warnings.clone(),
                problems: checked.errors.clone(),
            }
        });
    if !checked.is_valid() {
        tracing::warn!(%document_id, problems = ?checked.errors, "record stored but flagged");
    }
    let (mut log_entries, mut roster, mut handover) = (None, None, None);
    let (mut deciders, mut instructions) = (Vec::new(), Vec::new());
    let (mut daily_report, mut register) = (None, None);
    let class = || (meta.unit_id.clone(), meta.classified);
    match checked.record {
        Some(zhiban_records::Record::Incident(incident)) => {
            instructions = incident
                .instructions
                .iter()
                .enumerate()
                .map(|(position, instruction)| InstructionRow {
                    by_user: instruction.by.clone(),
                    by_actor: element(doc, "instructions", position)
                        .and_then(|item| writer(doc, &item, "by")),
                    to_user: instruction.to.clone(),
                    at: instruction.at,
                    text: instruction.text.clone(),
                    steps: instruction.steps.len(),
                    done: instruction.done,
                })
                .collect();
        }
        Some(zhiban_records::Record::DutyLog(log)) => {
            let (unit_id, classified) = class();
            log_entries = Some((unit_id, classified, log.entries));
        }
        Some(zhiban_records::Record::Roster(written)) => {
            deciders = (0..written.requests.len())
                .map(|position| {
                    element(doc, "requests", position).and_then(|item| writer(doc, &item, "status"))
                })
                .collect();
            let (unit_id, classified) = class();
            roster = Some((unit_id, classified, written));
        }
        Some(zhiban_records::Record::Handover(written)) => {
            let (unit_id, classified) = class();
            handover = Some((unit_id, classified, written));
        }
        Some(zhiban_records::Record::DailyReport(report)) => {
            let (unit_id, classified) = class();
            daily_report = Some((unit_id, classified, report));
        }
        Some(zhiban_records::Record::DocumentRegister(written)) => {
            let (unit_id, classified) = class();
            register = Some((unit_id, classified, written.entries));
        }
        None => {}
    }
    let mut search_text = String::new();
    collect_text(doc, &automerge::ROOT, &mut search_text);
    Some(Projection {
        document_id,
        incident,
        log_entries,
        roster,
        handover,
        deciders,
        instructions,
        daily_report,
        register,
        search_text,
        created_by: meta.created_by.clone(),
        fresh: false,
    })
}

/// The object at `list[position]` under the root.
fn element(doc: &Automerge, list: &str, position: usize) -> Option<ObjId> {
    let (_, list) = doc.get(automerge::ROOT, list).ok()??;
    match doc.get(&list, position).ok()?? {
        (Value::Object(_), item) => Some(item),
        _ => None,
    }
}

/// The actor (hex) of the operation that wrote the current value of `object.key`: who wrote
/// it, as opposed to whose name it holds.
fn writer(doc: &Automerge, object: &ObjId, key: &str) -> Option<String> {
    match doc.get(object, key).ok()?? {
        (_, ObjId::Id(_, actor, _)) => Some(actor.to_hex_string()),
        (_, ObjId::Root) => None,
    }
}

/// A root field as text, whether stored as a plain string or as collaborative text (what the
/// JavaScript client writes by default).
pub fn root_text(doc: &Automerge, key: &str) -> Option<String> {
    match doc.get(automerge::ROOT, key).ok()?? {
        (Value::Scalar(scalar), _) => scalar.as_str().map(str::to_owned),
        (Value::Object(ObjType::Text), id) => doc.text(&id).ok(),
        _ => None,
    }
}

fn push_text(out: &mut String, text: &str) {
    if !text.trim().is_empty() {
        out.push_str(text);
        out.push('\n');
    }
}

fn collect_text(doc: &Automerge, object: &ObjId, out: &mut String) {
    match doc.object_type(object) {
        Ok(ObjType::Text) => push_text(out, &doc.text(object).unwrap_or_default()),
        Ok(ObjType::Map) | Ok(ObjType::Table) => {
            for key in doc.keys(object) {
                if NOT_SEARCHED.contains(&key.as_str()) {
                    continue;
                }
                match doc.get(object, key.as_str()) {
                    Ok(Some((Value::Scalar(scalar), _))) => {
                        if let Some(text) = scalar.as_str() {
                            push_text(out, text);
                        }
                    }
                    Ok(Some((Value::Object(_), inner))) => collect_text(doc, &inner, out),
                    _ => {}
                }
            }
        }
        Ok(ObjType::List) => {
            for index in 0..doc.length(object) {
                match doc.get(object, index) {
                    Ok(Some((Value::Scalar(scalar), _))) => {
                        if let Some(text) = scalar.as_str() {
                            push_text(out, text);
                        }
                    }
                    Ok(Some((Value::Object(_), inner))) => collect_text(doc, &inner, out),
                    _ => {}
                }
            }
        }
        Err(_) => {}
    }
}

/// Writes one document's rows (inside the storage writer's transaction).
/// Returns whether the new state raised an alert; what it queued to push is added to `queued`.
pub async fn write(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    backend: Backend,
    projection: &Projection,
    now: i64,
    queued: &mut Vec<crate::alerts::Queued>,
) -> Result<bool, sqlx::Error> {
    let id = projection.document_id.to_string();
    match &projection.incident {
        Some(incident) => {
            sqlx::query(
                "INSERT INTO incidents (document_id, unit_id, classified, title, category, level, \
                 grade, status, location, known_at, reported_at, first_report_at, follow_ups, \
                 final_report_at, updated_at, warnings, problems) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, \
                 $16, $17) \
                 ON CONFLICT (document_id) DO UPDATE SET unit_id = excluded.unit_id, \
                 classified = excluded.classified, title = excluded.title, \
                 category = excluded.category, level = excluded.level, grade = excluded.grade, \
                 status = excluded.status, location = excluded.location, \
                 known_at = excluded.known_at, reported_at = excluded.reported_at, \
                 first_report_at = excluded.first_report_at, follow_ups = excluded.follow_ups, \
                 final_report_at = excluded.final_report_at, \
                 updated_at = excluded.updated_at, warnings = excluded.warnings, \
                 problems = excluded.problems",
            )
            .bind(&id)
            .bind(&incident.unit_id)
            .bind(i64::from(incident.classified))
            .bind(&incident.title)
            .bind(incident.category.as_deref())
            .bind(incident.level.as_deref())
            .bind(incident.grade.as_deref())
            .bind(incident.status.as_deref())
            .bind(incident.location.as_deref())
            .bind(incident.known_at)
            .bind(incident.reported_at)
            .bind(incident.first_report_at)
            .bind(to_json(&incident.follow_ups))
            .bind(incident.final_report_at)
            .bind(now)
            .bind(serde_json::to_string(&incident.warnings).unwrap_or_default())
            .bind(serde_json::to_string(&incident.problems).unwrap_or_default())
            .execute(&mut **tx)
            .await?;
        }
        None if !projection.fresh => clear(tx, &["incidents"], &id).await?,
        None => {}
    }
    if !projection.fresh {
        clear(tx, &["log_entries"], &id).await?;
    }
    if let Some((unit_id, classified, entries)) = &projection.log_entries {
        let positions: Vec<(usize, &zhiban_records::LogEntry)> =
            entries.iter().enumerate().collect();
        for rows in positions.chunks(200) {
            let mut insert = Sql::for_backend(
                "INSERT INTO log_entries (document_id, position, unit_id, classified, \
                 received_at, caller_unit, caller_name, phone, content, handling, handler, \
                 incident) VALUES ",
                backend.sqlite,
            );
            for (index, (position, entry)) in rows.iter().enumerate() {
                if index > 0 {
                    insert.push(", ");
                }
                insert.bind_list([
                    Arg::from(id.clone()),
                    Arg::from(*position as i64),
                    Arg::from(unit_id.clone()),
                    Arg::from(i64::from(*classified)),
                    Arg::from(entry.received_at),
                    Arg::from(entry.caller_unit.clone()),
                    Arg::from(entry.caller_name.clone()),
                    Arg::from(entry.phone.clone()),
                    Arg::from(entry.content.clone()),
                    Arg::from(entry.handling.clone()),
                    Arg::from(entry.handler.clone()),
                    Arg::from(entry.incident.clone()),
                ]);
            }
            insert.query().execute(&mut **tx).await?;
        }
    }
    if !projection.fresh {
        clear(
            tx,
            &[
                "rosters",
                "shifts",
                "shift_requests",
                "instructions",
                "daily_reports",
                "register_entries",
            ],
            &id,
        )
        .await?;
        if projection.handover.is_none() {
            clear(tx, &["handovers"], &id).await?;
        }
    }
    write_roster(tx, &id, projection.roster.as_ref(), &projection.deciders).await?;
    write_handover(tx, &id, projection.handover.as_ref(), now).await?;
    write_instructions(tx, &id, projection).await?;
    write_reports(tx, &id, projection).await?;
    if backend.sqlite {
        // The FTS5 table is keyed by an integer rowid, mapped from the document id here.
        let rowid: i64 = sqlx::query_scalar(
            "INSERT INTO search_documents (document_id) VALUES ($1) \
             ON CONFLICT (document_id) DO UPDATE SET document_id = excluded.document_id \
             RETURNING id",
        )
        .bind(&id)
        .fetch_one(&mut **tx)
        .await?;
        if !projection.fresh {
            sqlx::query("DELETE FROM search_index WHERE rowid = $1")
                .bind(rowid)
                .execute(&mut **tx)
                .await?;
        }
        sqlx::query("INSERT INTO search_index (rowid, body) VALUES ($1, $2)")
            .bind(rowid)
            .bind(&projection.search_text)
            .execute(&mut **tx)
            .await?;
    } else {
        sqlx::query(
            "INSERT INTO search_index (document_id, body) VALUES ($1, $2) \
             ON CONFLICT (document_id) DO UPDATE SET body = excluded.body",
        )
        .bind(&id)
        .bind(&projection.search_text)
        .execute(&mut **tx)
        .await?;
    }
    crate::alerts::after_projection(tx, projection, now, queued).await
}

async fn write_roster(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    id: &str,
    roster: Option<&(String, bool, zhiban_records::Roster)>,
    deciders: &[Option<String>],
) -> Result<(), sqlx::Error> {
    let Some((unit_id, classified, roster)) = roster else {
        return Ok(());
    };
    sqlx::query(
        "INSERT INTO rosters (document_id, unit_id, classified, title, holiday, starts_at, \
         due_at, submitted_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(id)
    .bind(unit_id)
    .bind(i64::from(*classified))
    .bind(&roster.title)
    .bind(i64::from(roster.holiday))
    .bind(roster.shifts.iter().map(|shift| shift.start).min())
    .bind(roster.due_at)
    .bind(roster.submitted_at)
    .execute(&mut **tx)
    .await?;
    for (position, shift) in roster.shifts.iter().enumerate() {
        sqlx::query(
            "INSERT INTO shifts (document_id, position, unit_id, classified, start_at, end_at, \
             kind, leader, officers, backup_leader, backup_officers) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(id)
        .bind(position as i64)
        .bind(unit_id)
        .bind(i64::from(*classified))
        .bind(shift.start)
        .bind(shift.end)
        .bind(shift.kind.as_deref())
        .bind(shift.leader.as_ref().map(to_json))
        .bind(to_json(&shift.officers))
        .bind(shift.backup_leader.as_ref().map(to_json))
        .bind(to_json(&shift.backup_officers))
        .execute(&mut **tx)
        .await?;
    }
    for (position, request) in roster.requests.iter().enumerate() {
        sqlx::query(
            "INSERT INTO shift_requests (document_id, position, shift_position, kind, requester, \
             substitute, status, decided_by, decided_at, decided_actor) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(id)
        .bind(position as i64)
        .bind(request.shift as i64)
        .bind(&request.kind)
        .bind(&request.requester)
        .bind(request.substitute.as_ref().map(to_json))
        .bind(&request.status)
        .bind(request.decided_by.as_deref())
        .bind(request.decided_at)
        .bind(deciders.get(position).cloned().flatten())
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

async fn write_handover(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    id: &str,
    handover: Option<&(String, bool, zhiban_records::Handover)>,
    now: i64,
) -> Result<(), sqlx::Error> {
    let Some((unit_id, classified, handover)) = handover else {
        return Ok(());
    };
    let open = handover
        .pending
        .iter()
        .filter(|item| item.closed_at.is_none())
        .count() as i64;
    let (outgoing, incoming) = (&handover.signatures.outgoing, &handover.signatures.incoming);
    sqlx::query(
        "INSERT INTO handovers (document_id, unit_id, classified, title, outgoing_by, \
         outgoing_at, incoming_by, incoming_at, open_items, pending, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
         ON CONFLICT (document_id) DO UPDATE SET unit_id = excluded.unit_id, \
         classified = excluded.classified, title = excluded.title, \
         outgoing_by = excluded.outgoing_by, outgoing_at = excluded.outgoing_at, \
         incoming_by = excluded.incoming_by, incoming_at = excluded.incoming_at, \
         open_items = excluded.open_items, pending = excluded.pending, \
         updated_at = excluded.updated_at",
    )
    .bind(id)
    .bind(unit_id)
    .bind(i64::from(*classified))
    .bind(&handover.title)
    .bind(outgoing.as_ref().map(|s| s.by.as_str()))
    .bind(outgoing.as_ref().map(|s| s.at))
    .bind(incoming.as_ref().map(|s| s.by.as_str()))
    .bind(incoming.as_ref().map(|s| s.at))
    .bind(open)
    .bind(to_json(&handover.pending))
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn write_instructions(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    id: &str,
    projection: &Projection,
) -> Result<(), sqlx::Error> {
    let Some(incident) = &projection.incident else {
        return Ok(());
    };
    for (position, row) in projection.instructions.iter().enumerate() {
        sqlx::query(
            "INSERT INTO instructions (document_id, position, unit_id, classified, by_user, \
             by_actor, to_user, at, text, steps, done) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(id)
        .bind(position as i64)
        .bind(&incident.unit_id)
        .bind(i64::from(incident.classified))
        .bind(row.by_user.as_deref())
        .bind(row.by_actor.as_deref())
        .bind(row.to_user.as_deref())
        .bind(row.at)
        .bind(&row.text)
        .bind(row.steps as i64)
        .bind(i64::from(row.done))
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

async fn write_reports(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    id: &str,
    projection: &Projection,
) -> Result<(), sqlx::Error> {
    if let Some((unit_id, classified, report)) = &projection.daily_report {
        sqlx::query(
            "INSERT INTO daily_reports (document_id, unit_id, classified, day, zero, \
             holiday_summary, submitted_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(id)
        .bind(unit_id)
        .bind(i64::from(*classified))
        .bind(&report.date)
        .bind(i64::from(report.zero))
        .bind(i64::from(report.holiday_summary))
        .bind(report.submitted_at)
        .execute(&mut **tx)
        .await?;
    }
    if let Some((unit_id, classified, entries)) = &projection.register {
        for (position, entry) in entries.iter().enumerate() {
            sqlx::query(
                "INSERT INTO register_entries (document_id, position, unit_id, classified, \
                 received_at, sender, title, routed_to, done) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(id)
            .bind(position as i64)
            .bind(unit_id)
            .bind(i64::from(*classified))
            .bind(entry.received_at)
            .bind(&entry.from)
            .bind(&entry.title)
            .bind(entry.routed_to.as_deref())
            .bind(i64::from(entry.done))
            .execute(&mut **tx)
            .await?;
        }
    }
    Ok(())
}

/// Removes the document's rows from `tables` (before writing its current ones).
async fn clear(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    tables: &[&str],
    id: &str,
) -> Result<(), sqlx::Error> {
    for table in tables {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM {table} WHERE document_id = $1"
        )))
        .bind(id)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// A serialisable value as a JSON text column.
fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// Rebuilds every record's rows from the stored documents; returns how many documents.
pub async fn reproject(pool: &Pool, backend: Backend) -> anyhow::Result<usize> {
    let storage_rows = sqlx::query(
        "SELECT id, unit_id, classification, kind, created_by FROM documents WHERE kind = 'record'",
    )
    .fetch_all(pool)
    .await?;
    let mut writes = Vec::with_capacity(storage_rows.len());
    for row in &storage_rows {
        let id: String = row.try_get("id")?;
        let document_id: DocumentId = id.parse()?;
        let meta = DocumentMeta {
            unit_id: row.try_get("unit_id")?,
            classified: row.try_get::<String, _>("classification")? == "classified",
            catalog: false,
            created_by: row.try_get("created_by")?,
        };
        let chunks: Vec<Vec<u8>> = sqlx::query_scalar(
            "SELECT data FROM document_chunks WHERE document_id = $1 ORDER BY seq",
        )
        .bind(&id)
        .fetch_all(pool)
        .await?;
        let mut doc = Automerge::new();
        for chunk in &chunks {
            doc.load_incremental(chunk)?;
        }
        if let Some(projection) = project(document_id, &meta, &doc) {
            writes.push(Write::Project(Box::new(projection)));
        }
    }
    crate::storage::write_now(pool, backend, &writes).await?;
    Ok(writes.len())
}
